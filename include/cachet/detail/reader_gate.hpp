// cachet/detail/reader_gate.hpp — a shard's lock, through which hits pass without writing any line
// that another core writes (issue 15).
//
// Purpose: every hit used to take its shard's lock, so every core reading the hottest key wrote the
// same cache line, and two threads read slower than one. With the gate, a reader announces itself
// on its own stripe (one atomic add on a line that threads on other stripes never write), checks
// that no writer holds the shard, reads the table and the node in place, and leaves (a second add
// on the same line). A writer takes the lock, raises the writer flag and waits until every stripe
// shows no reader inside; from then until it unlocks, no reader is inside and none enters, so the
// shard's data is the writer's alone, as under a plain mutex. A reader that finds the flag raised
// leaves at once and takes the lock like a writer (the store's locked path).
//
//   reader_gate g(stripes);
//   reader_gate::ticket t;
//   if (g.enter(t, /*claim=*/true)) {          // inside: nothing changes the shard
//     ... read; copy the value ...
//     if (t.last) {...}                          // t claimed the stripe's last ring slot
//     g.leave_hit(t, node_index);                // records the hit for the policy, counts it
//   } else {
//     std::lock_guard<reader_gate> lock(g);     // a writer is in: the locked path
//   }
//
// The policy hears of hits through a ring of k_ring slots per stripe: the enter that claims a slot
// and the leave that fills it are inside the reader's section, so a writer, which waits for every
// section to end, always finds the ring complete; it hands every recorded index to the drain
// callback (set at construction) before it changes anything, so an index handed over names the
// entry that was hit, still in place. A reader that took a stripe's last slot drains the rings
// itself after leaving, under the lock but without excluding readers (drain_if_free()): such a
// drain stops at a slot claimed and not yet filled and leaves it to the next one. A full ring drops
// the hit for the policy (still counted as a hit): under contention a policy sees a sample of the
// hits; with one thread, a ring is drained the moment its last slot is taken, so nothing is dropped
// and the policy sees every hit, in order, before any write.
//
// Thread safety: enter/leave_*, hits() and the drain callback's registration before use are for any
// thread; lock()/try_lock()/unlock() are a mutex's (not recursive:
// a thread inside a read section must leave it before it locks). Exception safety: the constructor
// throws std::bad_alloc; nothing else throws (the drain callback must not).
//
// IMPLEMENTATION DETAILS
// A stripe is two cache lines: its `state` word (bits 0-15: readers inside; 16-31: ring tail, the
// claims so far mod 2^16; 32-63: hits, folded into a 64-bit total before they wrap) and `head` (the
// next slot a drain delivers) on the first, its k_ring 32-bit slots on the second. A thread picks
// its stripe with read_buffer's per-thread probe.
//
//   enter:  state += 1 reader (+ 1 tail when claiming)   [seq_cst RMW]
//           writer flag == 0?                               [seq_cst load]  else leave: out
//   leave:  slot[tail % k_ring] = index (if the claim was within the ring) [release]
//           state += 1 hit - 1 reader                       [release RMW]
//   lock:   lock word 0 -> writer [seq_cst CAS]; each stripe: wait for 0 readers [seq_cst
//           loads], drain it
//   unlock: lock word -> 0 [release exchange]; wake a sleeper if one may wait
//
// Why a writer and a reader never overlap: the reader's RMW and flag load and the writer's CAS
// of the lock word and stripe loads are all seq_cst, so in their single total order either the
// reader's RMW comes first (the writer's scan sees the reader and waits for its leave) or the
// writer's store does (the reader's load sees the flag and leaves without reading). The leave's
// release and the scan's acquire order the reader's reads before the writer's writes; the unlock's
// release exchange of the lock word and a later reader's load order the writer's writes before that
// reader's reads. ThreadSanitizer sees these edges (no fences).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

#include "cachet/detail/spin_mutex.hpp"

namespace cachet::detail {

// The calling thread's gate stripe number: threads are numbered in the order they first read
// through any gate, so the first N threads land on N different stripes of an N-stripe gate (a
// random pick put two threads on one stripe half the time with two stripes). A thread that finds
// another reader inside its stripe takes the next unused number (gate_move_thread()), so two
// threads that keep meeting drift apart, as Caffeine's striped buffers rehash a thread's probe.
inline std::atomic<std::uint32_t> gate_next_number{1};
// 0: not numbered yet. Constant-initialised, so reading it needs no thread_local init guard.
inline thread_local std::uint32_t tl_gate_number = 0;
inline void gate_move_thread() noexcept {
  tl_gate_number = gate_next_number.fetch_add(1, std::memory_order_relaxed);
}
inline std::uint32_t gate_thread_number() noexcept {
  if (tl_gate_number == 0) [[unlikely]]
    gate_move_thread();
  return tl_gate_number;
}

class reader_gate {
 public:
  static constexpr std::uint32_t k_ring = 16;
  static constexpr std::uint32_t k_none = 0xFFFFFFFFu;  // leave_hit(): nothing to record
  static constexpr std::size_t k_max_stripes = 64;

  // What enter() hands to leave_*(): the stripe, and the ring slot claimed.
  struct ticket {
    void* stripe = nullptr;
    std::uint32_t tail = 0;  // the claim's ring position (mod 2^16)
    std::uint32_t room = 0;  // free slots when claimed, this one included (0: none, dropped)
    bool claimed = false;
    bool last = false;  // this claim took the ring's last free slot: drain after leaving
  };

  using drain_fn = void (*)(void* context, std::uint32_t index) noexcept;

  // `stripes`: a power of two in [1, k_max_stripes]. `fn(context, index)` receives every recorded
  // index at a drain.
  reader_gate(std::size_t stripes, drain_fn fn, void* context)
      : mask_(stripes - 1), fn_(fn), ctx_(context), stripes_(std::make_unique<stripe[]>(stripes)) {}
  reader_gate(const reader_gate&) = delete;
  reader_gate& operator=(const reader_gate&) = delete;

  // The default stripe count: twice the next power of two >= the hardware threads, in [2, 32]
  // (a writer reads every stripe's line; twice the cores leaves room for threads that come and
  // go, since stripes are dealt out in thread order).
  static std::size_t default_stripes() noexcept {
    const std::size_t hw = std::max<std::size_t>(1, std::thread::hardware_concurrency());
    return std::min<std::size_t>(2 * std::bit_ceil(hw), 32);
  }

  // ---- readers
  // Whether this hit should be recorded for the policy: every one while a single stripe records,
  // a sample when several do (see drain()).
  [[gnu::always_inline]] bool sample() const noexcept {
    const std::uint32_t shift = sample_shift_.load(std::memory_order_relaxed);
    if (shift == 0) [[likely]]
      return true;
    thread_local std::uint32_t tick = 0;
    return (++tick & ((std::uint32_t{1} << shift) - 1)) == 0;
  }
  // Enters a read section (claiming a ring slot if `claim`). True: inside, no writer holds the
  // gate until leave_*(). False: a writer holds it; the reader is already out.
  [[gnu::always_inline]] bool enter(ticket& t, bool claim) noexcept {
    stripe& s = stripes_[gate_thread_number() & mask_];
    const std::uint64_t old =
        s.state.fetch_add(claim ? k_reader + k_tail : k_reader, std::memory_order_seq_cst);
    t.stripe = &s;
    t.claimed = claim;
    if ((old & 0xFFFF) != 0) [[unlikely]]
      gate_move_thread();  // another reader shares it
    if (claim) {
      t.tail = static_cast<std::uint32_t>(old >> 16) & 0xFFFF;
      const std::uint32_t used = (t.tail - s.head.load(std::memory_order_acquire)) & 0xFFFF;
      t.room = used < k_ring ? k_ring - used : 0;
      t.last = t.room == 1;
    }
    if ((lock_.load(std::memory_order_seq_cst) & k_writer) != 0) [[unlikely]] {
      leave_miss(t);
      return false;
    }
    return true;
  }
  // Leaves after a hit: records `index` (unless k_none) in the claimed slot, counts the hit.
  [[gnu::always_inline]] void leave_hit(ticket& t, std::uint32_t index) noexcept {
    stripe& s = *static_cast<stripe*>(t.stripe);
    if (t.claimed && t.room != 0) {
      s.slots[t.tail & (k_ring - 1)].store(index == k_none ? k_skip : index,
                                           std::memory_order_release);
    }
    const std::uint64_t old = s.state.fetch_add(k_hit - k_reader, std::memory_order_release);
    if ((old >> 63) != 0) [[unlikely]]
      t.last = true;  // the hit count is half way to wrapping
  }
  // Leaves without a hit (the key was absent or expired, or a writer came).
  [[gnu::always_inline]] void leave_miss(ticket& t) noexcept {
    stripe& s = *static_cast<stripe*>(t.stripe);
    if (t.claimed && t.room != 0) {
      s.slots[t.tail & (k_ring - 1)].store(k_skip, std::memory_order_release);
    }
    s.state.fetch_sub(k_reader, std::memory_order_release);
  }
  // After a leave whose ticket says `last`: drains the rings if no one holds the lock.
  void drain_if_free() noexcept {
    std::uint32_t expected = 0;
    if (!lock_.compare_exchange_strong(expected, k_drainer, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return;
    }
    drain(false);
    unlock();
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
    std::uint64_t n = folded_.load(std::memory_order_relaxed);
    for (std::size_t k = 0; k <= mask_; ++k) {
      n += stripes_[k].state.load(std::memory_order_relaxed) >> 32;
    }
    return n;
  }
  std::size_t stripes() const noexcept { return mask_ + 1; }
  // For tests: hits are recorded one in 2^sample_shift().
  std::uint32_t sample_shift() const noexcept {
    return sample_shift_.load(std::memory_order_relaxed);
  }
  // For tests: hits recorded and not yet drained, all stripes together (exact when no reader is
  // inside).
  std::size_t pending() const noexcept {
    std::size_t n = 0;
    for (std::size_t k = 0; k <= mask_; ++k) {
      const stripe& s = stripes_[k];
      const std::uint32_t used =
          (static_cast<std::uint32_t>(s.state.load(std::memory_order_acquire) >> 16) -
           s.head.load(std::memory_order_relaxed)) &
          0xFFFF;
      n += used < k_ring ? used : k_ring;
    }
    return n;
  }

 private:
  static constexpr std::uint64_t k_reader = 1, k_tail = std::uint64_t{1} << 16,
                                 k_hit = std::uint64_t{1} << 32;
  static constexpr std::uint32_t k_empty = 0xFFFFFFFFu;  // not filled (yet)
  static constexpr std::uint32_t k_skip = 0xFFFFFFFEu;   // filled with nothing to deliver

  struct alignas(64) stripe {
    std::atomic<std::uint64_t> state{0};
    std::atomic<std::uint32_t> head{0};
    bool passed_over = false;  // under the lock: a drain passed a claimed slot not yet filled
    alignas(64) std::atomic<std::uint32_t> slots[k_ring];
    stripe() noexcept {
      for (auto& x : slots) x.store(k_empty, std::memory_order_relaxed);
    }
  };

  // The lock word: 0 free; k_writer: a writer holds it (readers stay out); k_drainer: a reader's
  // drain holds it (readers go on); k_sleepers: a thread may sleep on it. The seq_cst CAS that
  // sets k_writer is the writer's half of the handshake with enter().
  static constexpr std::uint32_t k_writer = 1, k_drainer = 2, k_sleepers = 4;

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

  // Holding the lock as a writer: waits out the readers inside each stripe, then drains it (one
  // pass; one load of a stripe's state when no reader is inside and nothing was recorded).
  void exclude() noexcept {
    std::uint32_t recording = 0;
    for (std::size_t k = 0; k <= mask_; ++k) {
      stripe& s = stripes_[k];
      std::uint64_t state = s.state.load(std::memory_order_seq_cst);
      for (std::uint32_t spins = 0; (state & 0xFFFF) != 0; ++spins) {
        if (spins < 64) {
          cpu_relax();
        } else {
          std::this_thread::yield();  // a reader inside may have lost its core
        }
        state = s.state.load(std::memory_order_seq_cst);
      }
      recording += drain_stripe(s, state, true);
    }
    set_sample(recording);
  }

  // Under the lock. `exclusive`: no reader is inside, so every slot claimed within the ring is
  // filled (k_skip or an index), and the rings end empty. Otherwise a claimed slot not yet filled
  // is passed over (its hit is lost to the policy); its reader may fill it after this drain moved
  // past it, so the stripe is marked, and the next exclusive drain empties every slot of it: an
  // index left behind is never delivered after a write.
  void drain(bool exclusive) noexcept {
    std::uint32_t recording = 0;  // stripes with hits to deliver: about the readers present
    for (std::size_t k = 0; k <= mask_; ++k) {
      stripe& s = stripes_[k];
      recording += drain_stripe(s, s.state.load(std::memory_order_acquire), exclusive);
    }
    set_sample(recording);
  }
  // Drains one stripe whose state word read `state`; returns 1 if it had hits to deliver.
  std::uint32_t drain_stripe(stripe& s, std::uint64_t state, bool exclusive) noexcept {
    const std::uint32_t tail = static_cast<std::uint32_t>(state >> 16) & 0xFFFF;
    const std::uint32_t head = s.head.load(std::memory_order_relaxed);
    if (tail == head && (state >> 63) == 0 && !s.passed_over) [[likely]]
      return 0;
    if ((state >> 63) != 0) {  // fold the hits before they wrap (an RMW: no hit is lost)
      const std::uint64_t h = state >> 32;
      s.state.fetch_sub(h << 32, std::memory_order_relaxed);
      folded_.store(folded_.load(std::memory_order_relaxed) + h, std::memory_order_relaxed);
    }
    const std::uint32_t used = (tail - head) & 0xFFFF;
    const std::uint32_t n = used < k_ring ? used : k_ring;
    for (std::uint32_t j = 0; j < n; ++j) {
      std::atomic<std::uint32_t>& slot = s.slots[(head + j) & (k_ring - 1)];
      const std::uint32_t v = slot.load(std::memory_order_acquire);
      if (v == k_empty) {
        if (!exclusive) s.passed_over = true;
        continue;
      }
      slot.store(k_empty, std::memory_order_relaxed);
      if (v < k_skip) fn_(ctx_, v);
    }
    // Claims past the ring (used > k_ring) were dropped by their readers: pass them too.
    if (used != 0) s.head.store(tail, std::memory_order_release);
    if (exclusive && s.passed_over) {  // what late readers filled behind the head
      for (auto& slot : s.slots) slot.store(k_empty, std::memory_order_relaxed);
      s.passed_over = false;
    }
    return used != 0 ? 1 : 0;
  }
  // With R stripes recording, readers record one hit in 2^(ceil(log2 R) + 1): the policy's work
  // per second stays about one thread's. One stripe: every hit.
  void set_sample(std::uint32_t recording) noexcept {
    if (recording == 0) return;
    const std::uint32_t shift =
        recording <= 1 ? 0 : static_cast<std::uint32_t>(std::bit_width(recording - 1)) + 1;
    if (sample_shift_.load(std::memory_order_relaxed) != shift) {
      sample_shift_.store(shift, std::memory_order_relaxed);
    }
  }

  std::atomic<std::uint32_t> lock_{0};
  const std::size_t mask_;
  const drain_fn fn_;
  void* const ctx_;
  std::atomic<std::uint64_t> folded_{0};
  std::atomic<std::uint32_t> sample_shift_{0};  // record one hit in 2^shift (drain() sets it)  //
                                                // hits folded out of the stripes (under the lock)
  std::unique_ptr<stripe[]> stripes_;
};

}  // namespace cachet::detail
