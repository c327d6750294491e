// cachet/detail/spin_mutex.hpp — the per-shard lock.
//
// IMPLEMENTATION DETAILS
// A shard's critical sections are short (one hash probe, a few pointer writes, a value copy), so a
// lock that spins briefly beats std::mutex, whose contended path parks the thread in the kernel at
// once; and it beats reader/writer locks, whose shared acquisition still writes one cache line per
// read and bounces it between cores. But a pure spinlock burns a core when the holder is
// descheduled, so after a bounded spin this lock sleeps on the atomic (C++20 wait/notify, a futex
// on Linux), as in Drepper's "Futexes Are Tricky" mutex #2: state 0 = free, 1 = held, 2 = held and
// someone may be sleeping.
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace cachet::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
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
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  void lock_slow() noexcept {
    for (int i = 0; i < k_spins; ++i) {
      cpu_relax();
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      if (s == 0 && state_.compare_exchange_weak(s, 1, std::memory_order_acquire,
                                                 std::memory_order_relaxed)) {
        return;
      }
      if (s == 2) break;  // others already sleep: queue behind them
    }
    // Mark "held, maybe waiters" and sleep until the holder's unlock wakes us.
    while (state_.exchange(2, std::memory_order_acquire) != 0)
      state_.wait(2, std::memory_order_relaxed);
  }

  static constexpr int k_spins = 128;
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
