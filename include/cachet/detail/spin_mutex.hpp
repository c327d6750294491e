// cachet/detail/spin_mutex.hpp — the per-shard lock.
//
// IMPLEMENTATION DETAILS
// A shard's critical sections are short (one hash probe, a few pointer writes, a value copy), so a
// lock that spins briefly beats std::mutex, whose contended path parks the thread in the kernel at
// once; and it beats reader/writer locks, whose shared acquisition still writes one cache line per
// read and bounces it between cores. But a pure spinlock burns a core when the holder is
// descheduled, so after a bounded spin this lock sleeps on its word, as in Drepper's "Futexes Are
// Tricky" mutex #2: state 0 = free, 1 = held, 2 = held and someone may be sleeping.
//
// The spin backs off exponentially (1, 2, 4 .. 64 pauses between looks, about 1,000 pauses in
// all), so that waiters on a hot shard do not all pounce on the line the moment it is freed.
// The sleep is a futex on the lock word itself (Linux), not std::atomic::wait: libstdc++ 12's
// wait first yields the CPU (sched_yield) and counts its waiters in a process-wide table that
// every shard's lock shares, and with 16 threads reading skewed keys that made the store's
// throughput fall to half of 8 threads'. Elsewhere std::atomic::wait/notify_one stand in.
// bench/RESULTS.md, "Thread scaling on 16 cores", has the figures behind both choices.
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace cachet::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Sleeps while `word` holds `expected` (returns at once if it does not; may return spuriously).
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
#if defined(__linux__)
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                std::atomic<std::uint32_t>::is_always_lock_free);
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
#else
  word.wait(expected, std::memory_order_relaxed);
#endif
}

// Wakes one thread sleeping in futex_wait on `word`, if any.
inline void futex_wake_one(std::atomic<std::uint32_t>& word) noexcept {
#if defined(__linux__)
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr,
            nullptr, 0);
#else
  word.notify_one();
#endif
}

class spin_mutex {
 public:
  void lock() noexcept {
    std::uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return;
    }
    lock_slow();
  }

  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) futex_wake_one(state_);
  }

  // For tests: true while the lock is held and a waiter may be asleep (or about to sleep).
  bool has_sleepers() const noexcept { return state_.load(std::memory_order_relaxed) == 2; }

 private:
  void lock_slow() noexcept {
    for (std::uint32_t spent = 0, backoff = 1; spent < k_spin_budget;
         spent += backoff, backoff = backoff < k_max_backoff ? 2 * backoff : k_max_backoff) {
      for (std::uint32_t i = 0; i < backoff; ++i) cpu_relax();
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (s == 0 && state_.compare_exchange_weak(s, 1, std::memory_order_acquire,
                                                 std::memory_order_relaxed)) {
        return;
      }
      if (s == 2) break;  // others already sleep: queue behind them
    }
    // Mark "held, maybe waiters" and sleep until the holder's unlock wakes us.
    while (state_.exchange(2, std::memory_order_acquire) != 0) futex_wait(state_, 2);
  }

  static constexpr std::uint32_t k_spin_budget = 1024;  // pauses before sleeping
  static constexpr std::uint32_t k_max_backoff = 64;    // pauses between looks at most
  std::atomic<std::uint32_t> state_{0};
};

// A statistics counter written only under its shard's lock and read from anywhere: a relaxed load
// and store (no locked instruction), exact because writers are serialised by the lock.
class locked_counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::uint64_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

}  // namespace cachet::detail
