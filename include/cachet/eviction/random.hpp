// cachet/eviction/random.hpp — uniformly random victim (Redis `allkeys-random`).
//
// Purpose: evicts an entry of the shard chosen uniformly at random in O(1). No history to pollute,
// no pathological pattern (a loop one entry larger than the cache defeats LRU and FIFO completely;
// random keeps a fraction). The hit path writes nothing.
//
// IMPLEMENTATION DETAILS: the shard keeps a dense array of its entries' indices; each entry's hook
// stores its position, and removal swaps the last element into the hole. The victim is
// array[bounded(rng)] with a xorshift64* generator seeded per shard from policy_init::seed (which
// a store draws per process, so its victims cannot be foretold, unless its hash names a seed: see
// hash.hpp) and Lemire's multiply-shift reduction.
//
// Thread safety: used only under the shard lock. Memory: 8 bytes per entry (4 in the hook, 4 in the
// array). Example: cachet::sharded_store<int, int, cachet::random> s({.max_entries = 1000});
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cachet/eviction.hpp"

namespace cachet {

struct random {
  struct hook {
    detail::index_t pos = detail::npos;
  };

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = true;
    shard_policy(Nodes* n, const policy_init& init)
        : n_(n), rng_(init.seed | 1), bounded_(init.capacity != 0) {
      if (bounded_) items_.reserve(init.capacity);
    }
    // Room for one more entry, so that on_insert's push_back never allocates: the store calls this
    // before each put, where std::bad_alloc still changes nothing. An entry-bounded array is
    // reserved to the shard's capacity above; a weight-bounded one doubles when full.
    void reserve() {
      if (!bounded_ && items_.size() == items_.capacity()) {
        items_.reserve(std::max<std::size_t>(8, 2 * items_.capacity()));
      }
    }
    void on_insert(detail::index_t i) noexcept {
      n_->hook(i).pos = static_cast<detail::index_t>(items_.size());
      items_.push_back(i);
    }
    void on_access(detail::index_t) noexcept {}
    void on_update(detail::index_t) noexcept {}
    void on_remove(detail::index_t i) noexcept {
      const detail::index_t p = n_->hook(i).pos;
      const detail::index_t last = items_.back();
      items_[p] = last;
      n_->hook(last).pos = p;
      items_.pop_back();
    }
    detail::index_t victim() noexcept {
      if (items_.empty()) return detail::npos;
      // Lemire's reduction on the high 32 bits (a shard holds fewer than 2^32 entries).
      const std::uint64_t r = next() >> 32;
      const auto k = static_cast<std::size_t>((r * items_.size()) >> 32);
      return items_[k];
    }
    void clear() noexcept { items_.clear(); }

   private:
    std::uint64_t next() noexcept {  // xorshift64*
      rng_ ^= rng_ >> 12;
      rng_ ^= rng_ << 25;
      rng_ ^= rng_ >> 27;
      return rng_ * 0x2545F4914F6CDD1DULL;
    }
    Nodes* n_;
    std::uint64_t rng_;
    bool bounded_;  // items_ reserved to the shard's entry bound
    std::vector<detail::index_t> items_;
  };
};

static_assert(eviction_policy<random>);

}  // namespace cachet
