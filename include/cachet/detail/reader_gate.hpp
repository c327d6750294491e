// cachet/detail/reader_gate.hpp — a shard's lock, through which hits pass without writing any line
// that another core writes (issue 15).
//
// Purpose: every hit used to take its shard's lock, so every core reading the hottest key wrote the
// same cache line, and two threads read slower than one. With the gate, a reader announces itself
// on its own stripe of the gate (a line no other reader writes), checks that no writer holds the
// shard, reads the table and the node in place, and leaves. A writer takes the lock, raises the
// writer flag and waits until every stripe shows no reader inside; from then until it unlocks, no
// reader is inside and none enters, so the shard's data is the writer's alone, as under a plain
// mutex. A reader that finds the flag raised leaves at once and takes the lock like a writer (the
// store's locked path).
//
//   reader_gate g(stripes, deliver, context);
//   reader_gate::ticket t;
//   if (g.enter(t)) {                            // inside: nothing changes the shard
//     ... read; copy the value ...
//     if (g.leave_hit(t, g.sample() ? node_index : reader_gate::k_none)) g.drain_if_free(t);
//     // or, the key absent: if (!g.leave_absent(t)) { a guest: count the miss under the lock }
//   } else {
//     std::lock_guard<reader_gate> lock(g);     // a writer is in: the locked path
//   }
//
// Owners and guests. A thread takes one of 64 process-wide gate ids the first time it reads through
// any gate and gives it back when it exits. On a gate of S stripes, the thread with id k < S owns
// stripe k: it alone writes the stripe's reader flag, ring and hit count, so entering costs one
// atomic exchange and leaving plain stores. Any other thread (an id >= S, or none left) is a guest
// on some stripe: it enters and leaves with an atomic add on the stripe's guest word and counts its
// hits there; it has no ring, and hands a recorded hit to the drain callback itself, before it
// leaves, if the lock is free (else the hit is dropped for the policy).
//
// Hits for the policy. An owner records the index of an entry it hit in its stripe's ring of k_ring
// slots. A ring is emptied into the drain callback (set at construction) by its owner, after a
// leave that filled it, when the lock is free (drain_if_free(), which holds the lock without
// excluding readers and touches only the owner's ring); and by every writer, for every stripe,
// once no reader is inside and before it changes anything, so an index handed over names the entry
// that was hit, still in place. A full ring drops hits (still counted as hits) until it is drained.
// With R stripes recording (measured at the drains), sample() lets one hit in 2^(ceil(log2 R) + 1)
// be recorded, so the policy's work per second stays about one thread's; a gate built with
// `sparse` = k records 2^k times fewer still (for a policy that learns of the other hits in
// another way: lru's second-chance bit). With one stripe, every hit is recorded and delivered in
// order, before any write: the policy sees exactly what it would under a plain lock.
//
// Misses. An owner that found its key absent leaves with leave_absent(), which counts the miss on
// its stripe; a guest's miss is left to its caller (under the lock). What a miss tells the policy
// goes through drain_then(): the owner, outside, takes the lock as a drain if it is free, empties
// its ring first (so the policy hears the miss after the thread's earlier hits), then calls it.
//
// Thread safety: enter/leave_*/drain_if_free/drain_then, sample(), hits() and misses() are for
// any thread; a ticket is its thread's. lock()/try_lock()/unlock() are a mutex's (not recursive:
// a thread inside a read section must leave it before it locks). Exception safety: the
// constructor throws std::bad_alloc; nothing else throws (the drain callback, and drain_then's
// function, must not).
//
// IMPLEMENTATION DETAILS
// A stripe is one cache line: the owner's flag `inside`, the ring's `tail` (claims so far, owner)
// and `head` (delivered so far, drains), both mod 2^16, the guest word (readers inside: bits
// 0-15; hits: 16-63), the owner's hit and miss counts, and the k_ring slots.
//
//   owner enter:  inside = 1                                   [seq_cst exchange]
//                 writer flag == 0?                            [seq_cst load]  else inside = 0: out
//   owner leave:  slot[tail % k_ring] = index, tail + 1 (if recorded and room) ; hits + 1  [plain]
//                 inside = 0                                   [release store]
//   owner absent: misses + 1 [plain]; inside = 0 [release store]
//   guest enter:  guest += 1 reader [seq_cst RMW]; writer flag == 0? [seq_cst load] else out
//   guest leave:  if recorded: lock word 0 -> drainer [CAS], deliver, unlock (else drop)
//                 guest += 1 hit - 1 reader                    [release RMW]
//   lock:   lock word 0 -> writer [seq_cst CAS]; each used stripe: wait until inside == 0 and no
//           guest is inside [seq_cst loads], then empty its ring
//   unlock: lock word -> 0 [release exchange]; wake a sleeper if one may wait
//
// Why a writer and a reader never overlap: the reader's write to its stripe and flag load, and the
// writer's CAS of the lock word and stripe loads, are all seq_cst, so in their single total order
// either the reader's write comes first (the writer's scan sees the reader and waits for its leave)
// or the writer's CAS does (the reader's load sees the flag and leaves without reading). A stripe
// enters the writers' scan (the `used_` mask) before its first reader's write. The leave's release
// and the scan's acquire order the reader's reads (and ring writes) before the writer's writes;
// the unlock's release exchange and a later reader's load order the writer's writes before that
// reader's reads. A ring has one producer (its owner, inside a read section) and consumers that
// hold the lock (a writer, after the owner left; the owner itself, outside a section), so its
// slots need no atomics. ThreadSanitizer sees these edges (no fences).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

#include "cachet/detail/spin_mutex.hpp"

namespace cachet::detail {

// ---- gate ids: a thread's stripe number, the same on every gate
// Bit k: id k is held by a live thread.
inline std::atomic<std::uint64_t> gate_ids_taken{0};
// Guest numbers, dealt out in order to threads without an id.
inline std::atomic<std::uint32_t> gate_next_guest{0};
// The calling thread's tag: 0 not asked yet; k + 1 for id k; k_guest_tag + n for guest number n.
// Constant-initialised, so reading it needs no thread_local init guard.
inline thread_local std::uint32_t tl_gate_tag = 0;
inline constexpr std::uint32_t k_guest_tag = 1u << 16;

// Gives the thread's id back when the thread ends. Touched only when the id is taken, so the hit
// path never meets its init guard.
struct gate_id_holder {
  std::uint32_t id = 0xFFFFFFFFu;
  ~gate_id_holder() {
    if (id == 0xFFFFFFFFu) return;
    // From now on this thread (its later thread_local destructors) reads as a guest.
    tl_gate_tag = k_guest_tag + (gate_next_guest.fetch_add(1, std::memory_order_relaxed) & 0xFFFF);
    gate_ids_taken.fetch_and(~(std::uint64_t{1} << id), std::memory_order_release);
  }
};
inline thread_local gate_id_holder tl_gate_holder;

[[gnu::noinline]] inline std::uint32_t gate_take_tag() noexcept {
  std::uint64_t m = gate_ids_taken.load(std::memory_order_relaxed);
  while (m != ~std::uint64_t{0}) {
    const std::uint64_t bit = ~m & (m + 1);  // the lowest free id
    if (gate_ids_taken.compare_exchange_weak(m, m | bit, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
      const auto id = static_cast<std::uint32_t>(std::countr_zero(bit));
      tl_gate_holder.id = id;
      return tl_gate_tag = id + 1;
    }
  }
  return tl_gate_tag =
             k_guest_tag + (gate_next_guest.fetch_add(1, std::memory_order_relaxed) & 0xFFFF);
}
inline std::uint32_t gate_thread_tag() noexcept {
  const std::uint32_t t = tl_gate_tag;
  return t != 0 ? t : gate_take_tag();
}
// For tests: the calling thread's gate id, or -1 for a guest.
inline int gate_thread_id() noexcept {
  const std::uint32_t t = gate_thread_tag();
  return t < k_guest_tag ? static_cast<int>(t - 1) : -1;
}

class reader_gate {
 public:
  static constexpr std::uint32_t k_ring = 8;
  static constexpr std::uint32_t k_none = 0xFFFFFFFFu;  // leave_hit(): nothing to record
  static constexpr std::size_t k_max_stripes = 64;
  static constexpr std::uint32_t k_max_sparse = 16;

  struct stripe;
  // What enter() hands to leave_*(): the stripe, and whether the thread owns it.
  struct ticket {
    stripe* s = nullptr;
    bool owner = false;
  };

  // Receives recorded indices, oldest first, `n` of them (1 to k_ring).
  using drain_fn = void (*)(void* context, const std::uint32_t* indices, std::uint32_t n) noexcept;

  // `stripes`: a power of two in [1, k_max_stripes]. `fn(context, indices, n)` receives every
  // recorded index at a drain, a stripe's at a time. `sparse` (at most k_max_sparse): while
  // several stripes record, one hit in 2^sparse of the usual sample is recorded.
  // (The writers' scan is a 64-bit mask of stripes, and ids pick stripes with the mask.)
  reader_gate(std::size_t stripes, drain_fn fn, void* context, std::uint32_t sparse = 0)
      : mask_(stripes - 1),
        sparse_(sparse),
        fn_(fn),
        ctx_(context),
        stripes_(std::make_unique<stripe[]>(stripes)) {
    assert(std::has_single_bit(stripes) && stripes <= k_max_stripes);
    assert(sparse <= k_max_sparse);
  }
  reader_gate(const reader_gate&) = delete;
  reader_gate& operator=(const reader_gate&) = delete;

  // The default stripe count: twice the next power of two >= the hardware threads, in [8, 32]
  // (64 bytes each per shard). Threads beyond it read as guests.
  static std::size_t default_stripes() noexcept {
    const std::size_t hw = std::max<std::size_t>(1, std::thread::hardware_concurrency());
    return std::clamp<std::size_t>(2 * std::bit_ceil(hw), 8, 32);
  }

  // ---- readers
  // Whether this hit should be recorded for the policy: every one while a single stripe records,
  // a sample when several do.
  [[gnu::always_inline]] bool sample() const noexcept {
    const std::uint32_t shift = sample_shift_.load(std::memory_order_relaxed);
    if (shift == 0) [[likely]]
      return true;
    thread_local std::uint32_t tick = 0;
    return (++tick & ((std::uint32_t{1} << shift) - 1)) == 0;
  }
  // Enters a read section. True: inside, no writer holds the gate until leave_*(). False: a
  // writer holds it; the reader is already out.
  [[gnu::always_inline]] bool enter(ticket& t) noexcept {
    const std::uint32_t id = gate_thread_tag() - 1;
    if (id > mask_) [[unlikely]]
      return enter_guest(t, id);
    stripe& s = stripes_[id];
    mark_used(id);
    t.s = &s;
    t.owner = true;
    s.inside.exchange(1, std::memory_order_seq_cst);
    if ((lock_.load(std::memory_order_seq_cst) & k_writer) != 0) [[unlikely]] {
      s.inside.store(0, std::memory_order_release);
      return false;
    }
    return true;
  }
  // Leaves after a hit: records `index` (unless k_none; owners only) and counts the hit. True:
  // the ring is full, call drain_if_free(t).
  [[gnu::always_inline]] bool leave_hit(ticket& t, std::uint32_t index) noexcept {
    stripe& s = *t.s;
    if (!t.owner) [[unlikely]] {
      leave_guest_hit(s, index);
      return false;
    }
    bool full = false;
    if (index != k_none) {
      const std::uint16_t tail = s.tail.load(std::memory_order_relaxed);
      const std::uint32_t used =
          static_cast<std::uint16_t>(tail - s.head.load(std::memory_order_relaxed));
      if (used < k_ring) {
        s.slots[tail & (k_ring - 1)] = index;
        s.tail.store(static_cast<std::uint16_t>(tail + 1), std::memory_order_relaxed);
      }
      full = used + 1 >= k_ring;
    }
    s.hits.store(s.hits.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    s.inside.store(0, std::memory_order_release);
    return full;
  }
  // Leaves after finding the key absent. An owner counts the miss (misses()) and returns true; a
  // guest counts nothing and returns false (it then takes the lock like a writer, and the caller
  // counts the miss there).
  [[gnu::noinline]] bool leave_absent(ticket& t) noexcept {
    if (t.owner) [[likely]] {
      stripe& s = *t.s;
      s.misses.store(s.misses.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      s.inside.store(0, std::memory_order_release);
      return true;
    }
    t.s->guest.fetch_sub(k_guest_reader, std::memory_order_release);
    return false;
  }
  // For an owner that has left (after leave_hit() or leave_absent()): if no one holds the lock,
  // holds it as a drain (readers go on, writers wait), empties the caller's ring, calls f() and
  // returns true; else returns false and f() is not called. For what a miss tells the policy:
  // with one thread the lock is always free, and f() comes after every hit the thread recorded
  // before it.
  template <class F>
  bool drain_then(ticket& t, F&& f) noexcept {
    std::uint32_t expected = 0;
    if (!lock_.compare_exchange_strong(expected, k_drainer, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return false;
    }
    stripe& s = *t.s;
    if (drain_stripe(s) != 0) count_drain(s);
    f();
    unlock();
    return true;
  }
  // Leaves without counting anything (the entry had expired, or a writer came: the caller goes on
  // under the lock).
  [[gnu::always_inline]] void leave_miss(ticket& t) noexcept {
    if (t.owner) [[likely]] {
      t.s->inside.store(0, std::memory_order_release);
    } else {
      t.s->guest.fetch_sub(k_guest_reader, std::memory_order_release);
    }
  }
  // After a leave_hit() that returned true: empties the caller's ring if no one holds the lock
  // (else the ring stays full, and drops hits, until the next drain).
  void drain_if_free(ticket& t) noexcept {
    drain_then(t, []() noexcept {});
  }

  // ---- writers (BasicLockable): exclusive, readers drained first
  void lock() noexcept {
    std::uint32_t expected = 0;
    if (!lock_.compare_exchange_strong(expected, k_writer, std::memory_order_seq_cst,
                                       std::memory_order_relaxed)) {
      lock_slow();
    }
    exclude();
  }
  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    if (!lock_.compare_exchange_strong(expected, k_writer, std::memory_order_seq_cst,
                                       std::memory_order_relaxed)) {
      return false;
    }
    exclude();
    return true;
  }
  void unlock() noexcept {
    if ((lock_.exchange(0, std::memory_order_release) & k_sleepers) != 0) futex_wake_one(lock_);
  }

  // Hits counted by leave_hit(), all stripes together.
  std::uint64_t hits() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t k = 0; k <= mask_; ++k) {
      n += stripes_[k].hits.load(std::memory_order_relaxed) +
           (stripes_[k].guest.load(std::memory_order_relaxed) >> k_guest_hit_shift);
    }
    return n;
  }
  // Misses counted by leave_absent(), all stripes together.
  std::uint64_t misses() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t k = 0; k <= mask_; ++k)
      n += stripes_[k].misses.load(std::memory_order_relaxed);
    return n;
  }
  // For tests: hits are recorded one in 2^sample_shift().
  std::uint32_t sample_shift() const noexcept {
    return sample_shift_.load(std::memory_order_relaxed);
  }
  // For tests, with no reader inside: hits recorded and not yet drained, all stripes together.
  std::size_t pending() const noexcept {
    std::size_t n = 0;
    for (std::size_t k = 0; k <= mask_; ++k) {
      n += static_cast<std::uint16_t>(stripes_[k].tail.load(std::memory_order_acquire) -
                                      stripes_[k].head.load(std::memory_order_relaxed));
    }
    return n;
  }

  // For tests: readers inside read sections now, all stripes together.
  std::uint32_t readers_inside() const noexcept {
    std::uint32_t n = 0;
    for (std::size_t k = 0; k <= mask_; ++k) {
      n += stripes_[k].inside.load(std::memory_order_acquire) +
           static_cast<std::uint32_t>(stripes_[k].guest.load(std::memory_order_acquire) & 0xFFFF);
    }
    return n;
  }

  struct alignas(64) stripe {              // one cache line
    std::atomic<std::uint32_t> inside{0};  // the owner is in a read section (owner writes)
    std::atomic<std::uint16_t> tail{0};    // slots claimed, mod 2^16 (owner writes)
    std::atomic<std::uint16_t> head{0};    // slots delivered, mod 2^16 (drains, under the lock)
    std::atomic<std::uint64_t> guest{0};   // guests inside (bits 0-15), their hits (16-63)
    std::atomic<std::uint64_t> hits{0};    // the owner's hits (owner writes)
    std::atomic<std::uint64_t> misses{0};  // the owner's misses counted inside (owner writes)
    std::uint32_t slots[k_ring];
  };
  static_assert(sizeof(stripe) == 64);

 private:
  static constexpr std::uint64_t k_guest_reader = 1;
  static constexpr unsigned k_guest_hit_shift = 16;
  static constexpr std::uint64_t k_guest_hit = std::uint64_t{1} << k_guest_hit_shift;
  static constexpr std::uint32_t k_sample_window = 16;  // owner drains per sampling decision

  // The lock word: 0 free; k_writer: a writer holds it (readers stay out); k_drainer: an owner's
  // drain holds it (readers go on); k_sleepers: a thread may sleep on it. The seq_cst CAS that
  // sets k_writer is the writer's half of the handshake with enter().
  static constexpr std::uint32_t k_writer = 1, k_drainer = 2, k_sleepers = 4;

  // A stripe enters the writers' scan before its first reader's write (seq_cst both: a writer whose
  // scan missed the bit also misses that reader's write).
  [[gnu::always_inline]] void mark_used(std::uint32_t k) noexcept {
    const std::uint64_t bit = std::uint64_t{1} << k;
    if ((used_.load(std::memory_order_seq_cst) & bit) == 0) [[unlikely]]
      used_.fetch_or(bit, std::memory_order_seq_cst);
  }
  // enter() for a thread that owns no stripe of this gate (`id` is past the stripes, or a guest
  // number): a guest on stripe id mod stripes.
  [[gnu::noinline]] bool enter_guest(ticket& t, std::uint32_t id) noexcept {
    const std::uint32_t k = id & static_cast<std::uint32_t>(mask_);
    stripe& s = stripes_[k];
    mark_used(k);
    t.s = &s;
    t.owner = false;
    s.guest.fetch_add(k_guest_reader, std::memory_order_seq_cst);
    if ((lock_.load(std::memory_order_seq_cst) & k_writer) != 0) [[unlikely]] {
      s.guest.fetch_sub(k_guest_reader, std::memory_order_release);
      return false;
    }
    return true;
  }

  // Under the lock: one more drain from stripe `s` in this sampling window.
  void count_drain(const stripe& s) noexcept {
    drained_ |= std::uint64_t{1} << (&s - stripes_.get());
    if (++drains_ == k_sample_window) {  // the stripes that drained lately: R
      set_sample(static_cast<std::uint32_t>(std::popcount(drained_)));
      drained_ = 0;
      drains_ = 0;
    }
  }
  // A guest's leave after a hit. A guest has no ring: still inside (so the entry stays in place),
  // it hands a recorded index to the drain callback itself if the lock is free, holding it as a
  // drain (readers go on, writers wait), and drops it otherwise.
  [[gnu::noinline]] void leave_guest_hit(stripe& s, std::uint32_t index) noexcept {
    if (index != k_none) {
      std::uint32_t expected = 0;
      if (lock_.compare_exchange_strong(expected, k_drainer, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        fn_(ctx_, &index, 1);
        count_drain(s);
        unlock();
      }
    }
    s.guest.fetch_add(k_guest_hit - k_guest_reader, std::memory_order_release);
  }

  void lock_slow() noexcept {
    for (std::uint32_t spent = 0, backoff = 1; spent < 1024;
         spent += backoff, backoff = backoff < 64 ? 2 * backoff : 64) {
      for (std::uint32_t i = 0; i < backoff; ++i) cpu_relax();
      std::uint32_t s = lock_.load(std::memory_order_relaxed);
      if (s == 0 && lock_.compare_exchange_weak(s, k_writer, std::memory_order_seq_cst,
                                                std::memory_order_relaxed)) {
        return;
      }
    }
    // Held, maybe with sleepers: take it as "writer, maybe sleepers" (so this thread's unlock
    // wakes the next), or sleep until the holder's unlock wakes us.
    while (lock_.exchange(k_writer | k_sleepers, std::memory_order_seq_cst) != 0) {
      futex_wait(lock_, k_writer | k_sleepers);
    }
  }

  // Holding the lock as a writer: waits out the readers inside each used stripe, then empties its
  // ring (one pass).
  void exclude() noexcept {
    std::uint32_t recording = 0;
    for (std::uint64_t m = used_.load(std::memory_order_seq_cst); m != 0; m &= m - 1) {
      stripe& s = stripes_[std::countr_zero(m)];
      if ((s.inside.load(std::memory_order_seq_cst) |
           (s.guest.load(std::memory_order_seq_cst) & 0xFFFF)) != 0) [[unlikely]] {
        wait_out(s);
      }
      if (s.tail.load(std::memory_order_relaxed) != s.head.load(std::memory_order_relaxed))
          [[unlikely]] {
        recording += drain_stripe(s);
      }
    }
    if (recording != 0) [[unlikely]]
      set_sample(recording);
  }
  // Waits until no reader is inside stripe `s` (a writer holds the lock: none can enter).
  [[gnu::noinline]] static void wait_out(stripe& s) noexcept {
    for (std::uint32_t spins = 0; s.inside.load(std::memory_order_seq_cst) != 0 ||
                                  (s.guest.load(std::memory_order_seq_cst) & 0xFFFF) != 0;
         ++spins) {
      if (spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // a reader inside may have lost its core
      }
    }
  }

  // Under the lock, with the stripe's owner outside a read section: delivers its ring. Returns 1
  // if it held anything.
  std::uint32_t drain_stripe(stripe& s) noexcept {
    const std::uint16_t tail = s.tail.load(std::memory_order_relaxed);
    const std::uint16_t head = s.head.load(std::memory_order_relaxed);
    if (tail == head) [[likely]]
      return 0;
    std::uint32_t got[k_ring];
    // <= k_ring: the owner claims only within the ring
    const std::uint32_t n = static_cast<std::uint16_t>(tail - head);
    for (std::uint32_t j = 0; j < n; ++j) got[j] = s.slots[(head + j) & (k_ring - 1)];
    s.head.store(tail, std::memory_order_relaxed);
    fn_(ctx_, got, n);
    return 1;
  }
  // With R stripes recording, readers record one hit in 2^(ceil(log2 R) + 1 + sparse). One
  // stripe: every hit.
  void set_sample(std::uint32_t recording) noexcept {
    const std::uint32_t shift =
        recording <= 1 ? 0
                       : static_cast<std::uint32_t>(std::bit_width(recording - 1)) + 1 + sparse_;
    if (sample_shift_.load(std::memory_order_relaxed) != shift) {
      sample_shift_.store(shift, std::memory_order_relaxed);
    }
  }

  std::atomic<std::uint32_t> lock_{0};
  std::atomic<std::uint32_t> sample_shift_{0};  // record one hit in 2^shift
  // Bit k: stripe k has had a reader; writers scan only these. Bits are only ever set.
  std::atomic<std::uint64_t> used_{0};
  const std::size_t mask_;
  const std::uint32_t sparse_;  // extra halvings of the sample while several stripes record
  const drain_fn fn_;
  void* const ctx_;
  std::uint64_t drained_ = 0;  // under the lock: stripes whose owners drained this window
  std::uint32_t drains_ = 0;   // under the lock: owner drains this window
  std::unique_ptr<stripe[]> stripes_;
};

}  // namespace cachet::detail
