// cachet/eviction/lfu.hpp — least frequently used, with aging.
//
// Purpose: evicts the entry with the fewest accesses, so a popular entry survives a burst of
// one-off keys that would flush LRU. Good for skewed, stable popularity (catalogues,
// configuration); slow to adapt when popularity shifts, which aging bounds.
//
// Order: an insert starts at frequency 1; each hit or update adds 1, saturating at 255. The victim
// is the least recently used entry among those with the lowest frequency (ties break by recency).
// Aging: after every 10 x capacity inserts + hits in a shard (the sample period TinyLFU uses),
// every frequency is halved (1 stays 1), so an entry that was hot long ago cannot pin its place
// forever
// ("old-frequency pollution"). After halving, entries that merge into one frequency keep recency
// order within their old frequency, higher old frequencies ranking as more recent.
//
// IMPLEMENTATION DETAILS: O(1) frequency buckets (Shah, Mitra, Matani, "An O(1) algorithm for
// implementing the LFU cache eviction scheme", 2010): one index-linked list per frequency 1..255
// and a 256-bit map of the non-empty ones, so the victim is found with four find-first-set
// instructions at most. Aging walks every entry once per period: amortised O(1/10) per access.
//
// Hit cost: a hit appends the entry's index to a 64-slot per-shard buffer; the buffer is applied in
// order, with prefetching, when it fills and before anything that depends on the frequencies (an
// insert, update, removal or victim choice), so the policy acts on exact LFU order.
//
// Thread safety: used only under the shard lock. Memory: 12 bytes per entry (links + frequency).
// Example: cachet::sharded_store<std::string, int, cachet::lfu> s({.max_entries = 1000});
#pragma once

#include <array>
#include <bit>
#include <cstdint>

#include "cachet/eviction.hpp"

namespace cachet {

struct lfu {
  struct hook {
    detail::link ln;
    std::uint32_t freq = 0;
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
    // Applies buffered hits in the order they happened (frequencies and aging depend on it), with
    // the nodes prefetched a few hits ahead.
    void drain() noexcept {
      for (std::uint32_t k = 0; k < pending_count_; ++k) {
        if (k + 4 < pending_count_) n_->prefetch(pending_[k + 4]);
        apply(pending_[k]);
      }
      pending_count_ = 0;
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
      std::uint32_t& f = n_->hook(i).freq;
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
          n_->hook(i).freq = g;
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
