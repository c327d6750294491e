// cachet/eviction/s3fifo.hpp — S3-FIFO: a small probationary FIFO, a main FIFO and a ghost FIFO.
//
// Purpose: most keys of real workloads are requested once and never again ("one-hit wonders").
// S3-FIFO (Yang, Zhang, Qiu, Yue, Rashmi, "FIFO queues are all you need for cache eviction",
// SOSP 2023) lets new keys prove themselves in a small FIFO, promotes the ones hit there to a large
// main FIFO run as a 2-bit CLOCK, and remembers the hashes of recently demoted keys in a ghost FIFO
// so a key that comes back soon goes straight to main. Scan- and one-hit-resistant where LRU and
// SIEVE are not, and a hit only bumps a small counter: nothing is relinked on the hit path.
//
// Rules (s3fifo_policy<SmallPercent, MoveThreshold, FreqCap>), the paper's Algorithm 1 as
// libCacheSim's original S3-FIFO (S3FIFOv0.c, the SOSP artifact) implements it:
//   - Each entry has a counter `freq`: 0 on insert; a hit (get) or an update (a put over a present
//     key, which keeps the entry's place) adds 1, saturating at FreqCap.
//   - A new key goes to the head of main if its hash is in the ghost (and leaves the ghost), else
//     to the head of small.
//   - To pick a victim, with n = the entries held (the capacity, when an entry-bounded store is
//     full) and small_target = max(1, floor(n x SmallPercent / 100)):
//       if |small| >= small_target, take small's tail t repeatedly: if freq(t) >= MoveThreshold,
//       move t to main's head with freq 0; else t is the victim, and its hash goes into the ghost
//       when it leaves. If small empties this way, or |small| < small_target, take main's tail t
//       repeatedly: if freq(t) > 0, reinsert it at main's head with freq - 1; else t is the victim.
//   - The ghost holds at most floor(capacity x (100 - SmallPercent) / 100) hashes (main's share),
//     oldest dropped first; a hash already there is not added again. An entry erased or expired
//     outside eviction leaves its queue without entering the ghost.
//   - As in libCacheSim, a new key's ghost lookup happens before the evictions that make room for
//     it: the hashes of entries evicted from small by a put are added after the put's own lookup.
//
// Defaults, s3fifo = s3fifo_policy<10, 2, 3>, are libCacheSim's (small-size-ratio=0.10,
// move-to-main-threshold=2, a 2-bit counter): small is 10% of the entries; a key must be hit twice
// while in small to be promoted, so keys touched once or twice never displace main; a main entry
// survives at most 3 passes of the CLOCK hand without hits. With these, a one-shard store
// reproduces libCacheSim's S3-FIFO hit ratios on the LIRS and ARC OLTP traces to within rounding;
// MoveThreshold = 1 (promote on any hit) does not (better on some traces, worse on loops).
//
// A store bounded by weight only (no max_entries) measures small's share against the entries it
// holds when it evicts, and lets the ghost's bound follow (100 - SmallPercent)% of the most entries
// it has held.
//
// IMPLEMENTATION DETAILS: small and main are index-linked lists through the hook; the hook's queue
// flag says which one an entry is in. The ghost (detail::hash_ghost below) is a FIFO of 32-bit key
// hashes kept as a doubly linked list in an array of 12-byte slots, plus a linear-probing table of
// 4-byte slot indices at most half full (backward-shift deletion, no tombstones), so lookup,
// insert, removal from the middle (a ghost hit) and dropping the oldest are all O(1). Its arrays
// grow by doubling as hashes arrive, up to its bound, so an idle store does not pay for a full
// ghost. A 32-bit hash collision may send a new key to main as if it had returned: harmless, and
// rare (ghost size / 2^32 per insert). The hashes of small-queue victims wait in a 4-slot buffer
// until the next insert has looked itself up (this is the ordering rule above).
//
// Hit cost: one byte compared and, below the cap, incremented. Inserts and evictions are O(1)
// amortised: each promotion or reinsertion a victim search performs was paid for by a hit.
// Allocation: never on a hit; an insert may grow the ghost (std::bad_alloc there is swallowed and
// the ghost stops growing: it then forgets its oldest hashes sooner).
//
// Thread safety: used only under the shard lock (see eviction.hpp). Exception safety: no member
// throws (the ghost's growth swallows std::bad_alloc, see above).
// Memory: 12 bytes per entry in the hook (links, counter, queue flag); the ghost 20 to 28 bytes per
// remembered hash (12-byte slot + 2 to 4 table slots of 4 bytes), at most 0.9 per entry of
// capacity with the default: 18 to 25 bytes per entry of capacity once the ghost is full.
// Example:
//   cachet::sharded_store<std::string, std::string, cachet::s3fifo> s({.max_entries = 100'000});
//   cachet::sharded_store<std::string, int, cachet::s3fifo_policy<20, 1>> t({.max_entries = 1000});
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cachet/eviction.hpp"

namespace cachet {

namespace detail {

// A bounded FIFO set of 32-bit hashes (see the IMPLEMENTATION DETAILS above). Not thread-safe.
class hash_ghost {
 public:
  // Largest bound: keeps every table index in 32 bits (and the ghost under 30 GB).
  static constexpr std::size_t k_max_limit = std::size_t{1} << 30;

  // The most hashes held (capped at k_max_limit); pushing past it drops the oldest. Lowering it
  // below size() takes effect as hashes are pushed. Does not allocate.
  void set_limit(std::size_t limit) noexcept { limit_ = std::min(limit, k_max_limit); }
  std::size_t limit() const noexcept { return limit_; }
  std::size_t size() const noexcept { return size_; }
  // Bytes held by the arrays (for tests and memory accounting).
  std::size_t allocated_bytes() const noexcept {
    return slots_.capacity() * sizeof(slot) + table_.capacity() * sizeof(std::uint32_t);
  }

  bool contains(std::uint32_t h) const noexcept { return find(h) != k_empty; }

  // Removes h if present; returns whether it was.
  bool erase(std::uint32_t h) noexcept {
    const std::uint32_t p = find(h);
    if (p == k_empty) return false;
    const std::uint32_t s = table_[p];
    erase_at(p);
    unlink(s);
    release(s);
    return true;
  }

  // Adds h as the newest hash, unless it is present (its place is kept) or the limit is 0. Drops
  // the oldest at the limit. May allocate to grow (at most to the limit); when that fails, reuses
  // the oldest hash's slot instead.
  void push(std::uint32_t h) noexcept {
    if (limit_ == 0 || find(h) != k_empty) return;
    while (size_ >= limit_) drop_oldest();
    if (free_ == npos && !grow()) {
      if (size_ == 0) return;  // out of memory before the first slot: remember nothing
      drop_oldest();
    }
    const std::uint32_t s = free_;
    free_ = slots_[s].next;
    slots_[s] = slot{h, npos, head_};
    if (head_ != npos)
      slots_[head_].prev = s;
    else
      tail_ = s;
    head_ = s;
    ++size_;
    insert_index(s);
  }

  // Forgets every hash; keeps the arrays and the limit.
  void clear() noexcept {
    std::fill(table_.begin(), table_.end(), k_empty);
    head_ = tail_ = npos;
    size_ = 0;
    free_ = npos;
    for (std::size_t s = slots_.size(); s-- > 0;) release(static_cast<std::uint32_t>(s));
  }

 private:
  static constexpr std::uint32_t k_empty = npos;
  struct slot {
    std::uint32_t hash;
    std::uint32_t prev;  // toward the newest
    std::uint32_t next;  // toward the oldest; the free list's link when unused
  };

  std::uint32_t home(std::uint32_t h) const noexcept {
    return static_cast<std::uint32_t>((h * 0x9E3779B1u) >> shift_);  // Fibonacci hashing
  }
  std::uint32_t mask() const noexcept { return static_cast<std::uint32_t>(table_.size() - 1); }

  // The table position holding h's slot, or k_empty.
  std::uint32_t find(std::uint32_t h) const noexcept {
    if (size_ == 0) return k_empty;
    for (std::uint32_t p = home(h);; p = (p + 1) & mask()) {
      const std::uint32_t s = table_[p];
      if (s == k_empty) return k_empty;
      if (slots_[s].hash == h) return p;
    }
  }
  void insert_index(std::uint32_t s) noexcept {
    std::uint32_t p = home(slots_[s].hash);
    while (table_[p] != k_empty) p = (p + 1) & mask();
    table_[p] = s;
  }
  // Backward-shift deletion: moves later members of the probe run into the hole when that keeps
  // them reachable from their home position.
  void erase_at(std::uint32_t hole) noexcept {
    for (std::uint32_t j = hole;;) {
      j = (j + 1) & mask();
      const std::uint32_t s = table_[j];
      if (s == k_empty) break;
      const std::uint32_t k = home(slots_[s].hash);
      const bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
      if (stays) continue;
      table_[hole] = s;
      hole = j;
    }
    table_[hole] = k_empty;
  }
  void unlink(std::uint32_t s) noexcept {
    const slot& x = slots_[s];
    if (x.prev != npos)
      slots_[x.prev].next = x.next;
    else
      head_ = x.next;
    if (x.next != npos)
      slots_[x.next].prev = x.prev;
    else
      tail_ = x.prev;
    --size_;
  }
  void release(std::uint32_t s) noexcept {
    slots_[s].next = free_;
    free_ = s;
  }
  void drop_oldest() noexcept {
    const std::uint32_t s = tail_;
    erase_at(find(slots_[s].hash));
    unlink(s);
    release(s);
  }
  // Doubles the slot array (16 at first), capped at the limit, and rebuilds the table at twice that
  // size. Returns false, changing nothing, when full-grown or out of memory.
  bool grow() noexcept {
    const std::size_t old_n = slots_.size();
    const std::size_t n = std::min<std::size_t>(limit_, std::max<std::size_t>(16, old_n * 2));
    if (n <= old_n) return false;
    const std::size_t t = std::bit_ceil(n * 2);
    try {
      std::vector<slot> slots(n);
      std::vector<std::uint32_t> table(t, k_empty);
      std::copy(slots_.begin(), slots_.end(), slots.begin());
      slots_.swap(slots);
      table_.swap(table);
    } catch (...) {
      return false;
    }
    shift_ = 32 - std::countr_zero(t);
    for (std::size_t s = n; s-- > old_n;) release(static_cast<std::uint32_t>(s));
    for (std::uint32_t s = head_; s != npos; s = slots_[s].next) insert_index(s);
    return true;
  }

  std::vector<slot> slots_;
  std::vector<std::uint32_t> table_;  // slot index or k_empty; a power of two in size
  int shift_ = 32;
  std::uint32_t head_ = npos;  // newest
  std::uint32_t tail_ = npos;  // oldest
  std::uint32_t free_ = npos;
  std::size_t size_ = 0;
  std::size_t limit_ = 0;
};

}  // namespace detail

template <unsigned SmallPercent = 10, unsigned MoveThreshold = 2, unsigned FreqCap = 3>
struct s3fifo_policy {
  static_assert(SmallPercent >= 1 && SmallPercent <= 99,
                "cachet::s3fifo_policy: SmallPercent (small FIFO's share) must be in [1, 99]");
  static_assert(FreqCap >= 1 && FreqCap <= 255,
                "cachet::s3fifo_policy: FreqCap (the hit counter's cap) must be in [1, 255]");
  static_assert(MoveThreshold >= 1 && MoveThreshold <= FreqCap,
                "cachet::s3fifo_policy: MoveThreshold (hits in small to reach main) must be in "
                "[1, FreqCap]");

  static constexpr unsigned small_percent = SmallPercent;
  static constexpr unsigned move_threshold = MoveThreshold;
  static constexpr unsigned freq_cap = FreqCap;

  struct hook {
    detail::link ln;
    std::uint8_t freq = 0;
    std::uint8_t in_main = 0;  // 0: small FIFO, 1: main FIFO
  };

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = false;

    // Sets the ghost's bound from the shard's capacity; allocates nothing until hashes arrive.
    shard_policy(Nodes* n, const policy_init& init) noexcept : n_(n), capacity_(init.capacity) {
      if (capacity_ != 0) ghost_.set_limit(ghost_bound(capacity_));
    }
    // The store's set_max_entries(): the ghost's bound follows (it trims as hashes arrive).
    void set_capacity(std::size_t capacity) noexcept {
      if (capacity_ == 0) return;
      capacity_ = capacity;
      ghost_.set_limit(ghost_bound(capacity_));
    }

    void on_insert(detail::index_t i) noexcept {
      const std::uint32_t h = n_->hash(i);
      const bool returning = ghost_.erase(h) || take_pending(h);
      flush_pending();
      auto& k = n_->hook(i);
      if (returning) {
        k.in_main = 1;
        main_.push_front(*n_, i);
      } else {
        small_.push_front(*n_, i);
      }
      if (capacity_ == 0) {
        const std::size_t bound = ghost_bound(small_.size() + main_.size());
        if (bound > ghost_.limit()) ghost_.set_limit(bound);
      }
    }
    void on_access(detail::index_t i) noexcept {
      std::uint8_t& f = n_->hook(i).freq;
      if (f < FreqCap) ++f;
    }
    // A hit from a reader inside the store's gate (detail/reader_gate.hpp): no writer runs
    // meanwhile; two readers raising the same counter at once may raise it once.
    void on_access_concurrent(detail::index_t i) noexcept {
      std::atomic_ref<std::uint8_t> f(n_->hook(i).freq);
      const std::uint8_t v = f.load(std::memory_order_relaxed);
      if (v < FreqCap) f.store(static_cast<std::uint8_t>(v + 1), std::memory_order_relaxed);
    }
    void on_update(detail::index_t i) noexcept { on_access(i); }
    void on_remove(detail::index_t i) noexcept {
      const auto& k = n_->hook(i);
      if (k.in_main != 0)
        main_.remove(*n_, i);
      else
        small_.remove(*n_, i);
      if (i == victim_) {
        victim_ = detail::npos;
        if (k.in_main == 0) defer_ghost(n_->hash(i));
      }
    }
    // Performs the promotions and reinsertions the rules call for and returns the entry to drop
    // (see the top of this file). Called again before that entry is removed, it returns it again.
    detail::index_t victim() noexcept {
      const std::size_t held = small_.size() + main_.size();
      if (held == 0) return detail::npos;
      const std::size_t small_target = std::max<std::size_t>(1, held * SmallPercent / 100);
      if (small_.size() >= small_target) {
        while (!small_.empty()) {
          const detail::index_t t = small_.tail();
          auto& k = n_->hook(t);
          if (k.freq < MoveThreshold) return victim_ = t;
          small_.remove(*n_, t);
          k.freq = 0;
          k.in_main = 1;
          main_.push_front(*n_, t);
        }
      }
      for (;;) {
        const detail::index_t t = main_.tail();
        auto& k = n_->hook(t);
        if (k.freq == 0) return victim_ = t;
        --k.freq;
        main_.move_to_front(*n_, t);
      }
    }
    // Queue order, coldest first: the small queue from its tail, then the main queue from its tail
    // (or the reverse), for hottest() / coldest(): f(i) per entry while it returns true. It does
    // not replay the second chances eviction gives (a small-queue entry seen again moves to main;
    // a main entry seen again goes round once more), so it is the order of the queues, not exactly
    // the order of eviction.
    template <class F>
    void walk(bool coldest_first, F&& f) {
      if (coldest_first) {
        if (small_.walk(*n_, true, f)) main_.walk(*n_, true, f);
      } else {
        if (main_.walk(*n_, false, f)) small_.walk(*n_, false, f);
      }
    }
    void clear() noexcept {
      small_ = {};
      main_ = {};
      ghost_.clear();
      pending_count_ = 0;
      victim_ = detail::npos;
    }

   private:
    static constexpr std::uint32_t k_pending = 4;

    static std::size_t ghost_bound(std::size_t entries) noexcept {
      return entries * (100 - SmallPercent) / 100;
    }
    // A small-queue victim's hash enters the ghost after the next insert's lookup (or now, when
    // the buffer is full: only a put that evicts more than k_pending entries gets there).
    void defer_ghost(std::uint32_t h) noexcept {
      if (pending_count_ == k_pending) {
        ghost_.push(pending_[0]);
        std::copy(pending_.begin() + 1, pending_.end(), pending_.begin());
        --pending_count_;
      }
      pending_[pending_count_++] = h;
    }
    bool take_pending(std::uint32_t h) noexcept {
      for (std::uint32_t k = 0; k < pending_count_; ++k) {
        if (pending_[k] == h) {
          std::copy(pending_.begin() + k + 1, pending_.begin() + pending_count_,
                    pending_.begin() + k);
          --pending_count_;
          return true;
        }
      }
      return false;
    }
    void flush_pending() noexcept {
      for (std::uint32_t k = 0; k < pending_count_; ++k) ghost_.push(pending_[k]);
      pending_count_ = 0;
    }

    Nodes* n_;
    std::size_t capacity_;
    detail::index_list small_;
    detail::index_list main_;
    detail::hash_ghost ghost_;
    detail::index_t victim_ = detail::npos;  // returned by victim(), not yet removed
    std::uint32_t pending_count_ = 0;
    std::array<std::uint32_t, k_pending> pending_{};
  };
};

// S3-FIFO with the paper's and libCacheSim's parameters: 10% small, promote at 2 hits, 2-bit
// counter.
using s3fifo = s3fifo_policy<>;

static_assert(eviction_policy<s3fifo>);

}  // namespace cachet
