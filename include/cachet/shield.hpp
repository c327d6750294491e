// cachet/shield.hpp — a local shield for the hot keys of a remote store: keys above a share of
// the reads are served from a small in-process copy for a short TTL.
//
// Purpose: a hot key melts the one Redis node (or shard) that holds it. A full near cache
// (tiered_store) shields it, but holds every key read and serves each from L1 for l1_ttl. Where
// only the hot keys need it, hot_key_shield<Store> keeps a sampled top-k of the keys read
// (hot_key_tracker, cachet/hot_keys.hpp), and once per `window` makes the keys whose share of the
// window's sampled reads is at least `min_share` the shielded set (at most `max_keys`). A read of a
// shielded key that reaches the store is copied into a small local sharded_store for `ttl`; the
// next reads of it in this process are served from there. Every other key goes to the store
// every time, as before.
//
//   using remote_t = cachet::redis_store<std::string, std::string>;
//   cachet::hot_key_shield<remote_t> users({.min_share = 0.01, .ttl =
//   std::chrono::milliseconds(100)},
//                                          redis_opts);
//   users.get("user:42");                    // a hot key: Redis sees it about once per 100 ms
//
// Consistency (as tiered_store's L1, for the shielded keys only): a write or erase through the
// shield drops the local copy, and a copy that raced it is refused, so this process reads its own
// writes. A write made elsewhere is seen within `ttl`, or at once if the instance's invalidation
// listener calls invalidate_local(key) (wire it as tiered_store's, redis/invalidation_listener.hpp;
// clear_local() on a lost bus). The shielded set is this process's own.
//
// Cost: every get records the key in the tracker (one thread-local countdown; one read in
// hot_key_options::sample_every takes the tracker's mutex with try_lock) and looks it up in the
// shielded set's hashes (a few relaxed loads, no lock, no shared write); only a shielded key is
// looked up in the local store. Memory: the tracker's `capacity` counters, at most `max_keys`
// local copies, and 16 bytes per key of max_keys for the hashes.
//
// Thread safety: every member may be called from any thread. Exceptions: what the store throws;
// the constructor throws invalid_option naming a bad option.
#pragma once

#include <absl/container/flat_hash_set.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/detail/invalidation_guard.hpp"
#include "cachet/eviction/lru.hpp"
#include "cachet/hot_keys.hpp"
#include "cachet/options.hpp"
#include "cachet/sharded_store.hpp"
#include "cachet/store.hpp"

namespace cachet {

struct shield_options {
  // A key is shielded when its share of the window's sampled reads is at least this, in (0, 1].
  double min_share = 0.01;
  // How long a local copy is served: bounds how stale a shielded key can be after a write made
  // elsewhere that no invalidation reported. > 0.
  std::chrono::nanoseconds ttl = std::chrono::milliseconds(100);
  // At most this many keys are shielded at once (the local store's bound), >= 1.
  std::size_t max_keys = 64;
  // How often the shielded set is chosen again, from that window's samples. > 0.
  std::chrono::nanoseconds window = std::chrono::seconds(1);
  // A window with fewer sampled reads than this shields nothing (too few to tell).
  std::uint64_t min_samples = 100;
  // The tracker's sampling rate and counters.
  hot_key_options tracking{};
};

struct shield_stats {
  std::uint64_t local_hits = 0;      // reads served from a local copy
  std::uint64_t store_reads = 0;     // reads that went to the store
  std::uint64_t copies = 0;          // store hits of a shielded key copied locally
  std::uint64_t copies_refused = 0;  // copies not kept: a write or invalidation raced them
  std::uint64_t shielded_keys = 0;   // keys in the shielded set now
  std::uint64_t windows = 0;         // times the shielded set was chosen
};

template <class Store>
class hot_key_shield {
  static_assert(check_store<Store>());

 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  using clock_type = typename Store::clock_type;
  using hasher = typename Store::hasher;
  using key_equal = typename Store::key_equal;
  using local_type = sharded_store<key_type, mapped_type, lru, clock_type, hasher, key_equal>;

  // Validates `opts` (throws invalid_option naming the option) and constructs the store from
  // `args`; the local copies use the store's clock.
  template <class... Args>
  explicit hot_key_shield(shield_options opts, Args&&... args)
      : opts_(validated(opts)),
        tracker_(opts_.tracking),
        store_(std::forward<Args>(args)...),
        local_(typename local_type::options_type{.max_entries = opts_.max_keys, .shards = 1},
               store_.clock()) {
    next_window_.store(now_ns() + opts_.window.count(), std::memory_order_relaxed);
  }
  hot_key_shield(const hot_key_shield&) = delete;
  hot_key_shield& operator=(const hot_key_shield&) = delete;

  // The local copy of a shielded key if there is one, else the store's get() (copied locally for
  // `ttl` if the key is shielded).
  std::optional<mapped_type> get(const key_type& key) {
    tracker_.record(key);
    maybe_roll();
    const bool hot = shielded(key);
    if (hot) {
      if (std::optional<mapped_type> v = local_.get(key)) {
        count(&slot::local_hits);
        return v;
      }
    }
    const std::uint64_t t = guard_.begin(key);  // before the store is read
    std::optional<mapped_type> v = store_.get(key);
    count(&slot::store_reads);
    if (v && hot) {
      const put_result r =
          local_.put_if(key_type(key), mapped_type(*v), opts_.ttl,
                        [this, &key, t]() noexcept { return !guard_.raced(key, t); });
      count(stored(r) ? &slot::copies : &slot::copies_refused);
    }
    return v;
  }
  std::optional<mapped_type> peek(const key_type& key) { return store_.peek(key); }
  bool contains(const key_type& key) { return static_cast<bool>(store_.contains(key)); }

  // Writes go to the store; then the local copy is dropped (a racing copy is refused), also when
  // the store throws (it may have written).
  put_result put(key_type key, mapped_type value) {
    const key_type k = key;
    return write(k, [&] { return store_.put(std::move(key), std::move(value)); });
  }
  template <class Rep, class Period>
  put_result put(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl) {
    const key_type k = key;
    return write(k, [&] { return store_.put(std::move(key), std::move(value), ttl); });
  }
  template <detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, Pred still_valid) {
    const key_type k = key;
    return write(k, [&] { return store_.put_if(std::move(key), std::move(value), still_valid); });
  }
  template <class Rep, class Period, detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl,
                    Pred still_valid) {
    const key_type k = key;
    return write(k,
                 [&] { return store_.put_if(std::move(key), std::move(value), ttl, still_valid); });
  }
  bool erase(const key_type& key) {
    return write(key, [&] { return static_cast<bool>(store_.erase(key)); });
  }
  const clock_type& clock() const noexcept { return store_.clock(); }

  // For the invalidation bus: drops the local copy of `key` (a copy in flight is refused), or
  // every local copy.
  void invalidate_local(const key_type& key) {
    guard_.invalidate(key);
    local_.erase(key);
  }
  void clear_local() {
    guard_.invalidate_all();
    local_.clear();
  }

  // The keys shielded now (chosen at the end of the last window).
  std::vector<key_type> shielded_keys() const {
    std::lock_guard<std::mutex> g(set_mu_);
    return std::vector<key_type>(set_.begin(), set_.end());
  }

  shield_stats stats() const {
    shield_stats s;
    for (const slot& c : slots_) {
      s.local_hits += c.local_hits.load(std::memory_order_relaxed);
      s.store_reads += c.store_reads.load(std::memory_order_relaxed);
      s.copies += c.copies.load(std::memory_order_relaxed);
      s.copies_refused += c.copies_refused.load(std::memory_order_relaxed);
    }
    {
      std::lock_guard<std::mutex> g(set_mu_);
      s.shielded_keys = set_.size();
    }
    s.windows = windows_.load(std::memory_order_relaxed);
    return s;
  }

  Store& store() noexcept { return store_; }
  const Store& store() const noexcept { return store_; }
  hot_key_tracker<key_type, hasher, key_equal>& tracker() noexcept { return tracker_; }
  const shield_options& options() const noexcept { return opts_; }

 private:
  template <class F>
  auto write(const key_type& key, F&& f) -> std::invoke_result_t<F&> {
    try {
      auto r = f();
      invalidate_local(key);
      return r;
    } catch (...) {
      invalidate_local(key);
      throw;
    }
  }

  static shield_options validated(shield_options o) {
    if (!(o.min_share > 0.0 && o.min_share <= 1.0)) {
      throw invalid_option("min_share", "= " + std::to_string(o.min_share) + ": must be in (0, 1]");
    }
    if (!(o.ttl > std::chrono::nanoseconds::zero()) || o.ttl == no_expiry) {
      throw invalid_option("ttl", "must be positive and finite: it bounds how stale a copy gets");
    }
    if (o.max_keys == 0) throw invalid_option("max_keys", "= 0: must be at least 1");
    if (!(o.window > std::chrono::nanoseconds::zero())) {
      throw invalid_option("window", "must be positive");
    }
    return o;
  }

  std::int64_t now_ns() const { return store_.clock().now().count(); }

  // At the end of a window, the first get that notices chooses the next shielded set.
  void maybe_roll() {
    const std::int64_t now = now_ns();
    if (now < next_window_.load(std::memory_order_relaxed)) return;
    std::unique_lock<std::mutex> roll(roll_mu_, std::try_to_lock);
    if (!roll.owns_lock() || now < next_window_.load(std::memory_order_relaxed)) return;
    absl::flat_hash_set<key_type, hasher, key_equal> next;
    if (tracker_.sampled() >= opts_.min_samples) {
      for (const auto& e : tracker_.hot_keys(opts_.max_keys)) {
        if (e.share >= opts_.min_share) next.insert(e.key);
      }
    }
    tracker_.reset();
    {
      std::lock_guard<std::mutex> g(set_mu_);
      set_.swap(next);
      // The lock-free copy the reads consult: emptied, then refilled (a read meanwhile may miss a
      // shielded key, and go to the store, or see a key of the last window, and copy it: both
      // harmless).
      any_shielded_.store(!set_.empty(), std::memory_order_relaxed);
      for (std::size_t i = 0; i <= mask_; ++i) table_[i].store(0, std::memory_order_relaxed);
      for (const key_type& k : set_) {
        const std::uint64_t tag = tag_of(k);
        for (std::size_t i = tag & mask_;; i = (i + 1) & mask_) {
          if (table_[i].load(std::memory_order_relaxed) == 0) {
            table_[i].store(tag, std::memory_order_relaxed);
            break;
          }
        }
      }
    }
    windows_.fetch_add(1, std::memory_order_relaxed);
    next_window_.store(now + opts_.window.count(), std::memory_order_relaxed);
  }

  // Whether `key` is shielded, by its hash, without a lock: the table holds the shielded keys'
  // hashes (a collision shields a cold key too: one more local copy, for `ttl`).
  bool shielded(const key_type& key) const noexcept {
    if (!any_shielded_.load(std::memory_order_relaxed)) return false;
    const std::uint64_t tag = tag_of(key);
    for (std::size_t i = tag & mask_, n = 0; n <= mask_; i = (i + 1) & mask_, ++n) {
      const std::uint64_t t = table_[i].load(std::memory_order_relaxed);
      if (t == tag) return true;
      if (t == 0) return false;
    }
    return false;
  }
  static std::uint64_t tag_of(const key_type& key) noexcept { return hasher{}(key) | 1; }

  shield_options opts_;
  hot_key_tracker<key_type, hasher, key_equal> tracker_;
  Store store_;
  local_type local_;
  detail::invalidation_guard<hasher> guard_;
  mutable std::mutex set_mu_;
  absl::flat_hash_set<key_type, hasher, key_equal> set_;
  std::atomic<bool> any_shielded_{false};
  // Open addressing over at least twice max_keys slots (a power of two): 0 = empty.
  std::size_t mask_ = std::bit_ceil(std::max<std::size_t>(8, 2 * opts_.max_keys)) - 1;
  std::unique_ptr<std::atomic<std::uint64_t>[]> table_ =
      std::make_unique<std::atomic<std::uint64_t>[]>(mask_ + 1);
  std::mutex roll_mu_;
  std::atomic<std::int64_t> next_window_{0};
  std::atomic<std::uint64_t> windows_{0};
  // Read counters on stripes picked per thread: readers on different cores write different lines.
  struct alignas(64) slot {
    std::atomic<std::uint64_t> local_hits{0}, store_reads{0}, copies{0}, copies_refused{0};
  };
  static constexpr std::size_t k_slots = 16;
  std::array<slot, k_slots> slots_{};

  void count(std::atomic<std::uint64_t> slot::*counter) noexcept {
    (slots_[detail::thread_stripe(k_slots)].*counter).fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace cachet
