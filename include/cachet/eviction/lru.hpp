// cachet/eviction/lru.hpp — least recently used.
//
// Purpose: evicts the entry of the shard that was read or written longest ago. The safe default
// when recency predicts reuse (sessions, user profiles); weak against one-off scans, which flush
// it.
//
// Order: a hit (get) and an update (put over an existing key) make the entry the most recent; an
// insert is the most recent. Exact per shard: with one shard this is textbook LRU.
//
// Hit cost: a hit only appends the entry's index to a 64-slot per-shard buffer (under the shard
// lock the lookup already holds). The buffer is applied in one pass when it fills, and before
// anything that depends on the order (an insert, update, removal or victim choice), so the order
// the policy acts on is exactly LRU. Applying a batch walks it newest first and moves each entry
// once however often it appears (hot keys repeat within a batch), where relinking on every hit
// would touch three list nodes per hit.
//
// Under concurrency (docs/store.md, "How a hit runs"), the store's reader gate records only a
// sample of the hits; a hit left out sets the entry's second-chance bit instead
// (on_access_sampled_out, from a reader, atomically), and victim() moves an entry whose bit is set
// to the front once, clearing it, instead of evicting it: a CLOCK-style second chance for the hits
// the order did not see. Since those hits still count, the gate samples lru 16 times more sparsely
// than the other recording policies (sampled_out_shift = 4: one hit in 64 with two threads): with
// two threads that read 1.39x the hits per second of one in four (GetPut, Zipf) at the same hit
// ratio (bench/RESULTS.md, "A sparser sample for lru"). With one reading thread nothing is left out
// and the order is exactly LRU.
//
// Thread safety: used under the shard lock (see eviction.hpp); on_access_sampled_out() from readers
// inside the store's gate, and drain() in a gate drain while they read: both touch `mark` through
// std::atomic_ref. Memory: 12 bytes per entry.
// Example: cachet::sharded_store<std::string, std::string, cachet::lru> s({.max_entries = 1000});
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "cachet/eviction.hpp"

namespace cachet {

struct lru {
  // Under concurrency the store's gate records one hit in 16 of its usual sample; the others set
  // the second-chance bit (on_access_sampled_out).
  static constexpr std::uint32_t sampled_out_shift = 4;
  struct hook {
    detail::link ln;
    // Bits 0-30: the drain pass that last moved this entry; bit 31 (k_chance): hit while the store
    // sampled its hits, not yet given its second chance.
    std::uint32_t mark = 0;
  };

  static constexpr std::uint32_t k_buffer = 64;
  static constexpr std::uint32_t k_chance = std::uint32_t{1} << 31;

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = false;
    shard_policy(Nodes* n, const policy_init&) noexcept : n_(n) {}
    void on_insert(detail::index_t i) noexcept {
      drain();
      list_.push_front(*n_, i);
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
      list_.move_to_front(*n_, i);
    }
    void on_remove(detail::index_t i) noexcept {
      drain();
      list_.remove(*n_, i);
    }
    // From a reader inside the store's gate: a hit the gate did not record. The bit is set once
    // (a set bit is left alone, so a hot entry's line stays clean).
    void on_access_sampled_out(detail::index_t i) noexcept {
      std::atomic_ref<std::uint32_t> m(n_->hook(i).mark);
      if ((m.load(std::memory_order_relaxed) & k_chance) == 0) {
        m.fetch_or(k_chance, std::memory_order_relaxed);
      }
    }
    detail::index_t victim() noexcept {
      drain();
      // Second chances: each entry at the tail with its bit set goes to the front, cleared; after
      // a full turn every bit is clear.
      for (std::size_t turn = list_.size(); turn-- > 0;) {
        const detail::index_t t = list_.tail();
        std::atomic_ref<std::uint32_t> m(n_->hook(t).mark);
        const std::uint32_t v = m.load(std::memory_order_relaxed);
        if ((v & k_chance) == 0) return t;
        m.store(v & ~k_chance, std::memory_order_relaxed);
        list_.move_to_front(*n_, t);
      }
      return list_.tail();
    }
    void clear() noexcept {
      list_ = {};
      pending_count_ = 0;
    }
    // The eviction order (coldest first: least recent first) or its reverse, for hottest() /
    // coldest(): f(i) per entry while it returns true.
    template <class F>
    void walk(bool coldest_first, F&& f) {
      drain();
      list_.walk(*n_, coldest_first, f);
    }

   private:
    // Applies the buffered hits as if each had moved its entry to the front when it happened: the
    // final order puts the entries hit in this batch first, by their last hit, newest first.
    void drain() noexcept {
      if (pending_count_ == 0) return;
      if (++epoch_ == k_chance) {  // marks would be ambiguous after wrapping: reset them all
        for (detail::index_t i = list_.head(); i != detail::npos; i = n_->hook(i).ln.next) {
          std::atomic_ref<std::uint32_t>(n_->hook(i).mark).store(0, std::memory_order_relaxed);
        }
        epoch_ = 1;
      }
      detail::index_list moved;
      for (std::uint32_t k = pending_count_; k-- > 0;) {
        if (k >= 4) n_->prefetch(pending_[k - 4]);
        const detail::index_t i = pending_[k];
        auto& h = n_->hook(i);
        std::atomic_ref<std::uint32_t> m(h.mark);  // readers may set k_chance meanwhile
        const std::uint32_t v = m.load(std::memory_order_relaxed);
        if ((v & ~k_chance) == epoch_) continue;  // a newer hit of this entry was already applied
        // The second-chance bit stays (victim() alone clears it), so a hot entry's bit is set
        // once, not after every drain. A reader's set racing this store may be lost: a hint.
        m.store((v & k_chance) | epoch_, std::memory_order_relaxed);
        list_.remove(*n_, i);
        moved.push_back(*n_, i);
      }
      list_.splice_front(*n_, moved);
      pending_count_ = 0;
    }

    Nodes* n_;
    detail::index_list list_;
    std::uint32_t epoch_ = 0;
    std::uint32_t pending_count_ = 0;
    std::array<detail::index_t, k_buffer> pending_;
  };
};

static_assert(eviction_policy<lru>);

}  // namespace cachet
