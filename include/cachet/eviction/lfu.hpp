// cachet/eviction/lfu.hpp — least frequently used, with aging.
//
// Purpose: evicts the entry with the fewest accesses, so a popular entry survives a burst of
// one-off keys that would flush LRU. Good for skewed, stable popularity (catalogues,
// configuration); slow to adapt when popularity shifts, which aging bounds.
//
// Order: an insert starts at frequency 1; each hit or update (a put over a present key) adds 1,
// saturating at 255; misses count for nothing. The victim is the least recently used entry among
// those with the lowest frequency (ties break by recency). Aging: every 10 x capacity operations
// in a shard, counting inserts, hits and updates alike (the sample period TinyLFU uses; capacity
// is taken as 65,536 under a weight bound alone), every frequency is halved (1 stays 1), so an
// entry that was hot long ago cannot pin its place forever ("old-frequency pollution"). After
// halving, entries that merge into one frequency keep recency order within their old frequency,
// higher old frequencies ranking as more recent.
//
// IMPLEMENTATION DETAILS: O(1) frequency buckets (Shah, Mitra, Matani, "An O(1) algorithm for
// implementing the LFU cache eviction scheme", 2010): one index-linked list per frequency 1..255
// and a 256-bit map of the non-empty ones, so the victim is found with four find-first-set
// instructions at most. Aging walks every entry once per period: amortised O(1/10) per access.
//
// Hit cost: a hit appends the entry's index to a 64-slot per-shard buffer. The buffer is applied
// when it fills and before anything that depends on the frequencies (an insert, update, removal or
// victim choice), with one bucket move per distinct entry (see drain()), so the policy acts on
// exact LFU order while hot keys that repeat within a batch cost one relink, not one per hit.
//
// Thread safety: used only under the shard lock. Memory: 12 bytes per entry (links + frequency).
// Example: cachet::sharded_store<std::string, int, cachet::lfu> s({.max_entries = 1000});
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

#include "cachet/eviction.hpp"

namespace cachet {

struct lfu {
  struct hook {
    detail::link ln;
    std::uint16_t freq = 0;
    std::uint8_t batch_hits = 0;  // hits of this entry in the buffer being applied
    std::uint8_t batch_left = 0;  // of those, not yet reached in the second pass
  };

  static constexpr std::uint32_t k_max_freq = 255;
  static constexpr std::uint64_t k_sample_factor = 10;

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = false;
    shard_policy(Nodes* n, const policy_init& init) noexcept
        : n_(n),
          period_(k_sample_factor * (init.capacity != 0 ? init.capacity : std::size_t{1} << 16)) {}
    // The store's set_max_entries(): aging keeps its period of k_sample_factor x capacity.
    void set_capacity(std::size_t capacity) noexcept {
      if (capacity != 0) period_ = k_sample_factor * capacity;
    }

    void on_insert(detail::index_t i) noexcept {
      drain();
      n_->hook(i).freq = 1;
      link(i, 1);
      tick();
    }
    void on_access(detail::index_t i) noexcept {
      pending_[pending_count_++] = i;
      if (pending_count_ == k_buffer) drain();
    }
    // A batch of hits (the store's reader gate delivers its rings so): as on_access() on each.
    void on_access_batch(const detail::index_t* idx, std::uint32_t n) noexcept {
      detail::append_hits(pending_, pending_count_, idx, n, [this] { drain(); });
    }
    void on_update(detail::index_t i) noexcept {
      drain();
      apply(i);
    }
    void on_remove(detail::index_t i) noexcept {
      drain();
      unlink(i, n_->hook(i).freq);
    }
    detail::index_t victim() noexcept {
      drain();
      for (std::size_t w = 0; w < nonempty_.size(); ++w) {
        if (nonempty_[w] != 0) {
          const std::uint32_t f =
              static_cast<std::uint32_t>(w * 64 + std::countr_zero(nonempty_[w]));
          return buckets_[f].tail();
        }
      }
      return detail::npos;
    }
    // The eviction order (coldest first: lowest count first, least recent first within a count)
    // or its reverse, for hottest() / coldest(): f(i) per entry while it returns true.
    template <class F>
    void walk(bool coldest_first, F&& f) {
      drain();
      for (std::uint32_t k = 0; k <= k_max_freq; ++k) {
        const std::uint32_t b = coldest_first ? k : k_max_freq - k;
        if (!buckets_[b].walk(*n_, coldest_first, f)) return;
      }
    }
    void clear() noexcept {
      buckets_ = {};
      nonempty_ = {};
      ops_ = 0;
      pending_count_ = 0;
    }

   private:
    static constexpr std::uint32_t k_buffer = 64;

    void apply(detail::index_t i) noexcept {
      bump(i);
      tick();
    }
    // Applies buffered hits. Applied one by one, each hit moves its entry to the front of the next
    // bucket, so the outcome is: every entry hit c times in the batch gains c (saturating) and sits
    // at the front of its final bucket, entries ordered by their last hit. That is what the batched
    // path produces with one move per distinct entry: a first pass counts each entry's hits, a
    // second moves it at its last hit. Aging depends on the exact count of operations, so a batch
    // that would reach the aging point is applied one hit at a time instead.
    void drain() noexcept {
      const std::uint32_t n = pending_count_;
      if (n == 0) return;
      pending_count_ = 0;
      if (ops_ + n >= period_) {
        drain_one_by_one(n);
        return;
      }
      for (std::uint32_t k = 0; k < n; ++k) {
        auto& h = n_->hook(pending_[k]);
        ++h.batch_hits;
        ++h.batch_left;
      }
      for (std::uint32_t k = 0; k < n; ++k) {
        const detail::index_t i = pending_[k];
        auto& h = n_->hook(i);
        if (--h.batch_left != 0) continue;  // not this entry's last hit in the batch
        const std::uint32_t f = h.freq;
        const std::uint32_t g = std::min<std::uint32_t>(f + h.batch_hits, k_max_freq);
        h.batch_hits = 0;
        unlink(i, f);
        h.freq = static_cast<std::uint16_t>(g);
        link(i, g);
      }
      ops_ += n;
    }

    void drain_one_by_one(std::uint32_t n) noexcept {
      for (std::uint32_t k = 0; k < n; ++k) {
        if (k + 4 < pending_count_) n_->prefetch(pending_[k + 4]);
        apply(pending_[k]);
      }
    }

    void link(detail::index_t i, std::uint32_t f) noexcept {
      buckets_[f].push_front(*n_, i);
      nonempty_[f / 64] |= std::uint64_t{1} << (f % 64);
    }
    void unlink(detail::index_t i, std::uint32_t f) noexcept {
      buckets_[f].remove(*n_, i);
      if (buckets_[f].empty()) nonempty_[f / 64] &= ~(std::uint64_t{1} << (f % 64));
    }
    void bump(detail::index_t i) noexcept {
      std::uint16_t& f = n_->hook(i).freq;
      if (f >= k_max_freq) {
        buckets_[f].move_to_front(*n_, i);
        return;
      }
      unlink(i, f);
      ++f;
      link(i, f);
    }
    void tick() noexcept {
      if (++ops_ < period_) return;
      ops_ = 0;
      age();
    }
    void age() noexcept {
      for (std::uint32_t f = 2; f <= k_max_freq; ++f) {
        if (buckets_[f].empty()) continue;
        const std::uint32_t g = f / 2;
        for (detail::index_t i = buckets_[f].head(); i != detail::npos; i = n_->hook(i).ln.next) {
          n_->hook(i).freq = static_cast<std::uint16_t>(g);
        }
        buckets_[g].splice_front(*n_, buckets_[f]);
        nonempty_[f / 64] &= ~(std::uint64_t{1} << (f % 64));
        nonempty_[g / 64] |= std::uint64_t{1} << (g % 64);
      }
    }

    Nodes* n_;
    std::array<detail::index_list, k_max_freq + 1> buckets_{};
    std::array<std::uint64_t, 4> nonempty_{};
    std::uint64_t ops_ = 0;
    std::uint64_t period_;
    std::uint32_t pending_count_ = 0;
    std::array<detail::index_t, k_buffer> pending_;
  };
};

static_assert(eviction_policy<lfu>);

}  // namespace cachet
