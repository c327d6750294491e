// cachet/eviction/ttl.hpp — evict the entry closest to expiry (Redis `volatile-ttl`, extended).
//
// Purpose: when deadlines encode how long data stays useful, drop first what would be dropped
// soonest anyway. Also reclaims expired entries first: an expired entry is always the earliest
// deadline.
//
// Order: entries with a deadline go first, earliest deadline first (equal deadlines: unspecified,
// deterministic order). Entries without a TTL go after every entry with one, oldest insert first
// (FIFO; an update keeps the place). An update that changes the deadline re-positions the entry,
// and one that adds or removes the TTL moves it between the two groups. Hits change nothing.
//
// IMPLEMENTATION DETAILS: a binary min-heap of node indices keyed by the node's deadline holds the
// entries with a TTL; each hook stores the entry's heap position (ln.prev) with ln.next =
// k_in_heap. Entries without a TTL sit in an index-linked FIFO list through the same two words.
// Insert, update and removal are O(log n) in the heap, O(1) in the list; victim() is O(1).
//
// Thread safety: used only under the shard lock. Memory: 12 bytes per entry (8 in the hook, 4 in
// the heap). The heap is allocated at construction for an entry-bounded shard (4 bytes per entry
// of capacity); with a weight bound only, it doubles when full in reserve(), which the store calls
// before a put changes anything, so running out of memory fails that put with std::bad_alloc
// (store unchanged) and never reaches the noexcept members.
// Example: cachet::sharded_store<int, int, cachet::ttl> s({.max_entries = 1000});
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cachet/eviction.hpp"

namespace cachet {

struct ttl {
  struct hook {
    detail::link ln;
  };

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = true;
    // The store calls on_update() when a read moves an entry's deadline (expire_after_access).
    static constexpr bool orders_by_deadline = true;
    shard_policy(Nodes* n, const policy_init& init) : n_(n), bounded_(init.capacity != 0) {
      if (bounded_) heap_.reserve(init.capacity);
    }
    // Room in the heap for one more entry, so that place() never allocates. The store calls this
    // before each put, where std::bad_alloc still changes nothing. An entry-bounded heap already
    // has room for every entry the shard can hold; otherwise the heap doubles when full.
    void reserve() {
      if (!bounded_ && heap_.size() == heap_.capacity()) {
        heap_.reserve(std::max<std::size_t>(8, 2 * heap_.capacity()));
      }
    }
    void on_insert(detail::index_t i) noexcept { place(i); }
    void on_access(detail::index_t) noexcept {}
    void on_update(detail::index_t i) noexcept {
      const bool in_heap = n_->hook(i).ln.next == k_in_heap;
      const bool wants_heap = n_->deadline(i) != detail::k_never;
      if (in_heap && wants_heap) {
        const std::size_t p = n_->hook(i).ln.prev;
        sift_down(sift_up(p));
      } else if (in_heap != wants_heap) {
        on_remove(i);
        place(i);
      }
    }
    void on_remove(detail::index_t i) noexcept {
      if (n_->hook(i).ln.next == k_in_heap) {
        heap_erase(n_->hook(i).ln.prev);
      } else {
        fifo_.remove(*n_, i);
      }
    }
    detail::index_t victim() noexcept {
      if (!heap_.empty()) return heap_.front();
      return fifo_.tail();
    }
    void clear() noexcept {
      heap_.clear();
      fifo_ = {};
    }

   private:
    static constexpr detail::index_t k_in_heap = detail::npos - 1;

    // The heap has room for every live entry (see reserve()): push_back does not allocate.
    void place(detail::index_t i) noexcept {
      if (n_->deadline(i) == detail::k_never) {
        fifo_.push_front(*n_, i);
        return;
      }
      n_->hook(i).ln.next = k_in_heap;
      heap_.push_back(i);
      set_pos(heap_.size() - 1);
      sift_up(heap_.size() - 1);
    }
    bool less(std::size_t a, std::size_t b) const noexcept {
      return n_->deadline(heap_[a]) < n_->deadline(heap_[b]);
    }
    void set_pos(std::size_t p) noexcept {
      n_->hook(heap_[p]).ln.prev = static_cast<detail::index_t>(p);
    }
    void swap_at(std::size_t a, std::size_t b) noexcept {
      std::swap(heap_[a], heap_[b]);
      set_pos(a);
      set_pos(b);
    }
    std::size_t sift_up(std::size_t p) noexcept {
      while (p > 0) {
        const std::size_t parent = (p - 1) / 2;
        if (!less(p, parent)) break;
        swap_at(p, parent);
        p = parent;
      }
      return p;
    }
    void sift_down(std::size_t p) noexcept {
      for (;;) {
        const std::size_t l = 2 * p + 1;
        if (l >= heap_.size()) return;
        std::size_t m = l;
        if (l + 1 < heap_.size() && less(l + 1, l)) m = l + 1;
        if (!less(m, p)) return;
        swap_at(p, m);
        p = m;
      }
    }
    void heap_erase(std::size_t p) noexcept {
      const std::size_t last = heap_.size() - 1;
      if (p != last) {
        swap_at(p, last);
        heap_.pop_back();
        sift_down(sift_up(p));
      } else {
        heap_.pop_back();
      }
    }

    Nodes* n_;
    bool bounded_;  // heap_ reserved to the shard's entry bound
    std::vector<detail::index_t> heap_;
    detail::index_list fifo_;
  };
};

static_assert(eviction_policy<ttl>);

}  // namespace cachet
