// cachet/eviction/sieve.hpp — SIEVE: one FIFO queue, a visited bit and a moving hand.
//
// Purpose: evicts like FIFO, but gives every entry that was hit since the hand last passed it one
// more round. Simpler and usually better than LRU on web and key-value workloads (Zhang, Yang, Yue,
// Vigfusson, Rashmi, "SIEVE is Simpler than LRU: an Efficient Turn-Key Eviction Algorithm for Web
// Caches", NSDI 2024), and a hit only sets a bit: nothing is relinked, so hits are cheap and never
// contend on list nodes.
//
// Order, exactly as the paper's Algorithm 1 (and libCacheSim's SIEVE): a new entry goes to the head
// of the queue with its bit clear. A hit (get) sets the entry's bit; so does an update (put over a
// present key), which keeps the entry's place. To pick a victim, the hand starts where it last
// stopped, or at the tail (the oldest entry) when it has none; while the entry under the hand has
// its bit set, the bit is cleared and the hand moves one entry toward the head, wrapping from the
// head back to the tail. The entry under the hand with a clear bit is the victim, and the hand is
// left on the entry just newer than it (none if the victim was the head). An entry removed for
// another reason (erase, expiry) while under the hand moves the hand the same way. With one shard
// this reproduces libCacheSim's SIEVE hit ratios on the LIRS and ARC traces to within rounding.
//
// Hit cost: one byte read, and one byte written only when the bit was clear. A victim search may
// clear many bits (O(n) worst case after a fully hit cache), O(1) amortised: each bit a search
// clears was set by a hit.
//
// Thread safety: used only under the shard lock (see eviction.hpp). Exception safety: no member
// throws. Memory: 12 bytes per entry (links + the bit), 4 bytes per shard for the hand.
// Example: cachet::sharded_store<std::string, std::string, cachet::sieve> s({.max_entries = 1000});
#pragma once

#include <atomic>
#include <cstdint>

#include "cachet/eviction.hpp"

namespace cachet {

struct sieve {
  struct hook {
    detail::link ln;  // prev = toward the head (newer), next = toward the tail (older)
    std::uint8_t visited = 0;
  };

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = false;
    shard_policy(Nodes* n, const policy_init&) noexcept : n_(n) {}

    void on_insert(detail::index_t i) noexcept { list_.push_front(*n_, i); }
    void on_access(detail::index_t i) noexcept {
      std::uint8_t& v = n_->hook(i).visited;
      if (v == 0) v = 1;  // skip the store when already set: a hot entry's line stays clean
    }
    // A hit from a reader inside the store's gate (detail/reader_gate.hpp): other readers may
    // set the same bit at the same time, no writer runs meanwhile; a set bit is left alone.
    void on_access_concurrent(detail::index_t i) noexcept {
      std::atomic_ref<std::uint8_t> v(n_->hook(i).visited);
      if (v.load(std::memory_order_relaxed) == 0) v.store(1, std::memory_order_relaxed);
    }
    void on_update(detail::index_t i) noexcept { on_access(i); }
    void on_remove(detail::index_t i) noexcept {
      if (i == hand_) hand_ = n_->hook(i).ln.prev;
      list_.remove(*n_, i);
    }
    // Clears the bits the hand passes and leaves the hand on the victim; on_remove(victim) then
    // steps it toward the head. Called twice without a removal, it returns the same entry.
    detail::index_t victim() noexcept {
      if (list_.empty()) return detail::npos;
      detail::index_t o = hand_ != detail::npos ? hand_ : list_.tail();
      for (;;) {
        auto& h = n_->hook(o);
        if (h.visited == 0) break;
        h.visited = 0;
        o = h.ln.prev != detail::npos ? h.ln.prev : list_.tail();
      }
      hand_ = o;
      return o;
    }
    void clear() noexcept {
      list_ = {};
      hand_ = detail::npos;
    }
    // The eviction order if nothing else happened (coldest first) or its reverse, for hottest() /
    // coldest(): f(i) per entry while it returns true. The hand evicts the unvisited entries it
    // meets and clears the others' bits, so the order is the unvisited entries from the hand
    // toward the head (wrapping to the tail), then the visited ones in the same order.
    template <class F>
    void walk(bool coldest_first, F&& f) {
      if (list_.empty()) return;
      const detail::index_t start = hand_ != detail::npos ? hand_ : list_.tail();
      // The hand's cycle, forwards (toward the head, wrapping) or backwards, over entries whose
      // bit is `bit`.
      const auto cycle = [&](bool forwards, std::uint8_t bit) {
        const detail::index_t first = forwards ? start : step(start, false);
        detail::index_t i = first;
        do {
          const detail::index_t next = step(i, forwards);
          if (n_->hook(i).visited == bit && !f(i)) return false;
          i = next;
        } while (i != first);
        return true;
      };
      if (coldest_first) {
        if (cycle(true, 0)) cycle(true, 1);
      } else {
        if (cycle(false, 1)) cycle(false, 0);
      }
    }

   private:
    // The hand's next position after `i` (toward the head, wrapping to the tail), or its previous.
    detail::index_t step(detail::index_t i, bool toward_head) const noexcept {
      const auto& ln = n_->hook(i).ln;
      if (toward_head) return ln.prev != detail::npos ? ln.prev : list_.tail();
      return ln.next != detail::npos ? ln.next : list_.head();
    }

    Nodes* n_;
    detail::index_list list_;
    detail::index_t hand_ = detail::npos;
  };
};

static_assert(eviction_policy<sieve>);

}  // namespace cachet
