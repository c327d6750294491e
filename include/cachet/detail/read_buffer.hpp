// cachet/detail/read_buffer.hpp — lossy striped buffers through which readers tell an eviction
// policy about hits without taking its lock (Caffeine's read buffer).
//
// Purpose: a hit must not write a cache line that other cores write, yet the policy (under the
// shard lock) wants to hear of it. Readers record a 32-bit entry (a node index, a hash) into one
// of several small rings with one CAS on that ring's own line; whoever holds the owner's lock
// drains the rings into the policy. A full ring drops the record: a policy can afford to miss a
// hit under contention; correctness must never depend on one.
//
//   read_buffer<> buf;
//   if (buf.record(node_index) == read_buffer_result::full && shard_lock.try_lock()) {
//     buf.drain([&](std::uint32_t i) noexcept { policy.on_hit(i); });
//     shard_lock.unlock();
//   }
//
// Thread safety: record(), dropped(), pending() and the accessors are thread-safe. drain() may run
// concurrently with record() but with no other drain(): the caller serialises drains (under the
// owner's lock). Exception safety: the constructor throws std::invalid_argument for a bad stripe
// count, or std::bad_alloc; nothing else throws, except what the consumer given to drain()
// throws, after which the buffer is consistent (the entry being consumed counts as delivered).
//
// IMPLEMENTATION DETAILS
// Layout: `stripes` rings (a power of two; by default the next power of two >= the hardware
// threads, at most 64), each of `Slots` 32-bit slots (16 by default: 64 bytes) beside its write
// counter `tail`, read counter `head` and a drop counter, aligned to 64 bytes, so that threads on
// different stripes share no line. A thread picks its stripe by a thread-local probe (one per
// thread, shared by every buffer, as Caffeine's Striped64-style probe) and rehashes the probe
// (xorshift) when it loses a CAS, so threads that collide drift apart.
//
// record(v), per Caffeine's BoundedBuffer ring: read tail (relaxed), head (acquire); if
// tail - head >= Slots the ring is full: count a drop and return `full` (the caller should
// drain). Else CAS tail -> tail + 1 (relaxed); the winner owns slot tail % Slots and stores v
// there (release); a loser counts a drop, rehashes and returns `contended`. Counters are 32-bit
// and compared modulo 2^32.
//
// drain(consumer), one at a time: for each ring, from head up to tail (acquire), load the slot
// (acquire). An empty slot (k_empty) is one claimed by a CAS whose store has not landed yet: the
// ring stops there and the next drain resumes from it. Else the slot is reset to k_empty
// (relaxed), head moves past it, and the entry goes to the consumer; head is published (release)
// before the ring is left. A producer only claims slot tail % Slots after its acquire load of
// head showed that the drainer had moved past the previous use of that slot, so its store lands
// after the reset and can never be lost or overwrite an undelivered entry.
//
// What a drain guarantees (the "exactly once" the tests check):
//   - every delivered entry is a value some record() call returned `recorded` for; entries are
//     32-bit atomics, so never torn;
//   - each `recorded` call's value is delivered exactly once by the drains that follow it (a
//     drain that races the store delivers it, or a later one does), never twice;
//   - on one ring, entries come out in the order their CASes won: with one thread and at most
//     Slots records between drains, exactly the recorded sequence;
//   - every record() is exactly one of: delivered, dropped (full or contended; counted), pending
//     (claimed, not yet drained): delivered + dropped() + pending() == calls, once the producers
//     have stopped.
// Under concurrency a policy thus sees a sample of the hits: the dropped ones are lost, and hits
// on different rings reach it in ring order, not time order.
//
// Cost: a record is two loads, a CAS and a store on the thread's ring line (a dropped record: two
// loads and an atomic add); nothing is shared with threads on other rings. A drain reads every
// ring's head line: O(stripes + delivered).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

namespace cachet::detail {

enum class read_buffer_result {
  recorded,   // stored; a later drain delivers it
  full,       // dropped: the thread's ring is full, a drain is due
  contended,  // dropped: another thread won the ring's slot; the thread moved to another ring
};

// The calling thread's stripe probe: a nonzero xorshift state, seeded once per thread.
inline thread_local std::uint32_t tl_read_buffer_probe = 0;

inline std::uint32_t read_buffer_probe() noexcept {
  std::uint32_t p = tl_read_buffer_probe;
  if (p == 0) {  // first use on this thread: seed from the thread's id and its TLS address
    std::uint64_t h = std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
                      reinterpret_cast<std::uintptr_t>(&tl_read_buffer_probe);
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    p = static_cast<std::uint32_t>(h) | 1;
    tl_read_buffer_probe = p;
  }
  return p;
}

inline void read_buffer_rehash_probe() noexcept {
  std::uint32_t p = read_buffer_probe();
  p ^= p << 13;
  p ^= p >> 17;
  p ^= p << 5;
  tl_read_buffer_probe = p != 0 ? p : 1;
}

template <std::size_t Slots = 16>
class read_buffer {
  static_assert(Slots >= 2 && std::has_single_bit(Slots) && Slots <= (std::size_t{1} << 16),
                "read_buffer: Slots (per stripe) must be a power of two in [2, 65536]");

 public:
  // The one value that cannot be recorded: it marks an empty slot (slab.hpp's npos).
  static constexpr std::uint32_t k_empty = std::numeric_limits<std::uint32_t>::max();
  static constexpr std::size_t k_slots_per_stripe = Slots;
  static constexpr std::size_t k_max_auto_stripes = 64;
  static constexpr std::size_t k_max_stripes = 1024;

  // The default stripe count: the next power of two >= the hardware threads, in [1, 64].
  static std::size_t default_stripes() noexcept {
    const std::size_t hw = std::max<std::size_t>(1, std::thread::hardware_concurrency());
    return std::min(std::bit_ceil(hw), k_max_auto_stripes);
  }

  // `stripes`: 0 for default_stripes(), else a power of two in [1, 1024]. Each stripe costs
  // about 64 + 4 x Slots bytes, rounded up to 64. Throws std::invalid_argument naming the option,
  // or std::bad_alloc.
  explicit read_buffer(std::size_t stripes = 0)
      : stripe_count_(stripes == 0 ? default_stripes() : stripes) {
    if (!std::has_single_bit(stripe_count_) || stripe_count_ > k_max_stripes) {
      throw std::invalid_argument("cachet::detail::read_buffer: stripes is " +
                                  std::to_string(stripes) +
                                  "; allowed: 0 (automatic) or a power of two in [1, 1024]");
    }
    stripes_ = std::make_unique<stripe[]>(stripe_count_);
  }

  read_buffer(const read_buffer&) = delete;
  read_buffer& operator=(const read_buffer&) = delete;

  // Records `v` (not k_empty) for the next drain, or drops it. Lock-free, never blocks; writes
  // only the calling thread's stripe.
  read_buffer_result record(std::uint32_t v) noexcept {
    assert(v != k_empty && "read_buffer::record: k_empty cannot be recorded");
    stripe& s = stripes_[read_buffer_probe() & (stripe_count_ - 1)];
    std::uint32_t tail = s.tail.load(std::memory_order_relaxed);
    const std::uint32_t head = s.head.load(std::memory_order_acquire);
    if (tail - head >= Slots) {
      s.dropped.fetch_add(1, std::memory_order_relaxed);
      return read_buffer_result::full;
    }
    if (!s.tail.compare_exchange_strong(tail, tail + 1, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
      s.dropped.fetch_add(1, std::memory_order_relaxed);
      read_buffer_rehash_probe();
      return read_buffer_result::contended;
    }
    s.slots[tail & (Slots - 1)].store(v, std::memory_order_release);
    return read_buffer_result::recorded;
  }

  // Hands every recorded entry that has landed to consumer(std::uint32_t), stripe by stripe, in
  // each stripe's order. Only one drain at a time (the caller's lock serialises them); producers
  // may record meanwhile. Returns how many entries it delivered.
  template <class Consumer>
  std::size_t drain(Consumer&& consumer) {
#ifndef NDEBUG
    const bool was_draining = draining_.exchange(true, std::memory_order_acquire);
    assert(!was_draining && "read_buffer::drain: two drains at once (take the owner's lock)");
    struct debug_reset {
      std::atomic<bool>& flag;
      ~debug_reset() { flag.store(false, std::memory_order_release); }
    } reset_flag{draining_};
#endif
    std::size_t delivered = 0;
    for (std::size_t i = 0; i < stripe_count_; ++i) {
      stripe& s = stripes_[i];
      // Publishes head when the ring is left, also if the consumer throws.
      struct head_publisher {
        stripe& s;
        std::uint32_t head;
        ~head_publisher() { s.head.store(head, std::memory_order_release); }
      } h{s, s.head.load(std::memory_order_relaxed)};
      const std::uint32_t tail = s.tail.load(std::memory_order_acquire);
      while (h.head != tail) {
        std::atomic<std::uint32_t>& slot = s.slots[h.head & (Slots - 1)];
        const std::uint32_t v = slot.load(std::memory_order_acquire);
        if (v == k_empty) break;  // claimed, not stored yet: the next drain takes it
        slot.store(k_empty, std::memory_order_relaxed);
        ++h.head;
        ++delivered;
        consumer(v);
      }
    }
    return delivered;
  }

  // Records dropped so far (full or contended), summed over the stripes. Relaxed: exact once the
  // producers have stopped.
  std::uint64_t dropped() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < stripe_count_; ++i) {
      n += stripes_[i].dropped.load(std::memory_order_relaxed);
    }
    return n;
  }

  // Records claimed and not yet drained, summed over the stripes. Exact when nobody records or
  // drains.
  std::size_t pending() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < stripe_count_; ++i) {
      const stripe& s = stripes_[i];
      n += s.tail.load(std::memory_order_acquire) - s.head.load(std::memory_order_acquire);
    }
    return n;
  }

  std::size_t stripes() const noexcept { return stripe_count_; }
  static constexpr std::size_t capacity_per_stripe() noexcept { return Slots; }

 private:
  struct alignas(64) stripe {
    stripe() noexcept {
      for (auto& slot : slots) slot.store(k_empty, std::memory_order_relaxed);
    }
    std::atomic<std::uint32_t> tail{0};     // claims: producers CAS it
    std::atomic<std::uint32_t> head{0};     // written by the drainer only
    std::atomic<std::uint64_t> dropped{0};  // records this stripe dropped
    std::array<std::atomic<std::uint32_t>, Slots> slots;
  };

  std::size_t stripe_count_;
  std::unique_ptr<stripe[]> stripes_;
#ifndef NDEBUG
  std::atomic<bool> draining_{false};
#endif
};

}  // namespace cachet::detail
