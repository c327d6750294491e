// Baseline caches/maps the cachet benchmarks compare against.
//
// Every type exposes the same two operations the benchmark loop uses:
//   std::optional<V> get(const K&);
//   void put(const K&, const V&);
//
// mutex_lru only needs the standard library. The others pull in oneTBB,
// libcuckoo and Abseil; define CACHET_BENCH_STD_BASELINES_ONLY before including
// this header to get mutex_lru alone (memory_bench does this so it does not
// depend on the third-party libraries).
#pragma once

#ifndef CACHET_BENCH_STD_BASELINES_ONLY
// Must be defined before any oneTBB header is seen by this translation unit.
#ifndef TBB_PREVIEW_CONCURRENT_LRU_CACHE
#define TBB_PREVIEW_CONCURRENT_LRU_CACHE 1
#endif
#include <tbb/concurrent_lru_cache.h>

#include <absl/container/flat_hash_map.h>
#include <absl/hash/hash.h>
#include <libcuckoo/cuckoohash_map.hh>
#endif

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <new>
#include <optional>
#include <unordered_map>
#include <utility>

namespace cachet_bench {

// ---------------------------------------------------------------------------
// mutex_lru: the textbook hand-rolled LRU cache. One global std::mutex, a
// std::list ordered most- to least-recently used, and a std::unordered_map
// from key to list node. Every get (hit) moves the node to the front, so reads
// are writes and the mutex serializes everything.
// ---------------------------------------------------------------------------
template <class K, class V, class Hash = std::hash<K>>
class mutex_lru {
 public:
  explicit mutex_lru(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
    index_.reserve(capacity_);
  }

  std::optional<V> get(const K& key) {
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }

  void put(const K& key, const V& value) {
    std::lock_guard lock(mutex_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      it->second->second = value;
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    order_.emplace_front(key, value);
    index_.emplace(key, order_.begin());
    if (index_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return index_.size();
  }

 private:
  using list_type = std::list<std::pair<K, V>>;

  std::size_t capacity_;
  mutable std::mutex mutex_;
  list_type order_;
  std::unordered_map<K, typename list_type::iterator, Hash> index_;
};

#ifndef CACHET_BENCH_STD_BASELINES_ONLY

// Cache-line size used for padding. Hard-coded rather than
// std::hardware_destructive_interference_size, which GCC warns about (its
// value may differ between compiler flags).
inline constexpr std::size_t cache_line = 64;

// ---------------------------------------------------------------------------
// sharded_map: 64 independently locked absl::flat_hash_map shards, no eviction
// and no recency bookkeeping at all. This is the throughput "ceiling" for a
// lock-based sharded design: a cache can only be slower than this.
// The shard is chosen from the top bits of a mixed hash; flat_hash_map itself
// indexes with the low/middle bits of absl::Hash, so the two do not correlate.
// ---------------------------------------------------------------------------
template <class K, class V, class Hash = absl::Hash<K>>
class sharded_map {
 public:
  static constexpr std::size_t shard_count = 64;
  static constexpr unsigned shard_shift = 64 - 6;  // log2(64) = 6
  static_assert((std::size_t{1} << (64 - shard_shift)) == shard_count);

  explicit sharded_map(std::size_t expected_entries = 0) {
    if (expected_entries != 0) {
      for (auto& s : shards_) s.map.reserve(expected_entries / shard_count + 1);
    }
  }

  std::optional<V> get(const K& key) {
    shard& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(key);
    if (it == s.map.end()) return std::nullopt;
    return it->second;
  }

  void put(const K& key, const V& value) {
    shard& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    s.map.insert_or_assign(key, value);
  }

  std::size_t size() const {
    std::size_t n = 0;
    for (auto& s : shards_) {
      std::lock_guard lock(s.mutex);
      n += s.map.size();
    }
    return n;
  }

 private:
  struct alignas(cache_line) shard {
    mutable std::mutex mutex;
    absl::flat_hash_map<K, V, Hash> map;
  };

  shard& shard_for(const K& key) {
    // Re-mix so that the top bits are good even for weak user hashes.
    std::uint64_t h = static_cast<std::uint64_t>(Hash{}(key));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return shards_[static_cast<std::size_t>(h >> shard_shift)];
  }

  std::array<shard, shard_count> shards_;
};

// ---------------------------------------------------------------------------
// tbb_lru: oneTBB's (preview) tbb::concurrent_lru_cache.
//
// Semantic differences from a get/put cache, to keep in mind when reading the
// numbers:
//  * It is a *loading* cache: the only operation is `cache[key]`, which returns
//    a handle; on a miss the cache calls the value function (here: derive a
//    value from the key) to create the entry. There is no put and no way to
//    replace a value, so `put` below is the same access as `get` and the given
//    value is ignored. `get` never misses.
//  * Capacity bounds only the entries that are *not* currently referenced by a
//    live handle (the "history list"); referenced entries are never evicted.
//  * Every access is two trips through a single aggregator (one to acquire the
//    handle, one when the handle is released), i.e. all operations are
//    serialized through one combining queue over a std::map (O(log n) lookup).
// ---------------------------------------------------------------------------
template <class K, class V>
class tbb_lru {
 public:
  struct value_from_key {
    V operator()(K key) const { return static_cast<V>(key); }
  };

  explicit tbb_lru(std::size_t capacity) : cache_(value_from_key{}, capacity) {}

  std::optional<V> get(const K& key) {
    auto handle = cache_[key];
    return handle.value();
  }

  void put(const K& key, const V& /*value: not supported, see above*/) {
    auto handle = cache_[key];
    (void)handle;
  }

 private:
  tbb::concurrent_lru_cache<K, V, value_from_key> cache_;
};

// ---------------------------------------------------------------------------
// cuckoo_map: libcuckoo's concurrent cuckoo hash map (fine-grained striped
// locks, no eviction). find() copies the value out; put is insert_or_assign.
// ---------------------------------------------------------------------------
template <class K, class V, class Hash = std::hash<K>>
class cuckoo_map {
 public:
  explicit cuckoo_map(std::size_t expected_entries = 0)
      : map_(expected_entries == 0 ? libcuckoo::DEFAULT_SIZE : expected_entries) {}

  std::optional<V> get(const K& key) {
    V value;
    if (map_.find(key, value)) return value;
    return std::nullopt;
  }

  void put(const K& key, const V& value) { map_.insert_or_assign(key, value); }

  std::size_t size() const { return map_.size(); }

 private:
  libcuckoo::cuckoohash_map<K, V, Hash> map_;
};

#endif  // CACHET_BENCH_STD_BASELINES_ONLY

}  // namespace cachet_bench
