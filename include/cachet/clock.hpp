// cachet/clock.hpp — where a store gets the time: the `clock` concept, the default `steady_clock`
// and `manual_clock` for tests.
//
// Purpose: every deadline in cachet is an absolute time from an injectable clock, so expiry is
// testable without sleeping: a test holds a manual_clock, gives a copy to the store, and advances
// it. Stores default to coarse_steady_clock (see below for its trade-off against steady_clock).
//
// Thread safety: steady_clock and coarse_steady_clock are stateless. manual_clock copies share one
// atomic time; now(), advance() and set() may be called from any thread.
//
// Exception safety: manual_clock's constructor may throw std::bad_alloc; nothing else throws.
//
// Example:
//   cachet::manual_clock clock;
//   cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock> s({.max_entries = 10},
//   clock); s.put(1, 1, std::chrono::seconds(5)); clock.advance(std::chrono::seconds(5));   //
//   s.get(1) is now empty
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>

#include "cachet/detail/saturate.hpp"

#if defined(__linux__)
#include <time.h>
#endif

namespace cachet {

// A Clock is copyable and has now() -> std::chrono::nanoseconds: monotonic (never goes back) time
// since an arbitrary epoch. The store reads it only when a deadline is involved (a put with a TTL,
// a hit on an entry that has a deadline, the expiry sweep), never on a hit of an entry without one.
template <class C>
concept clock = std::copy_constructible<C> && requires(const C& c) {
  { c.now() } -> std::same_as<std::chrono::nanoseconds>;
};

// std::chrono::steady_clock: nanosecond resolution, about 25 ns per read on a TSC-clocked x86
// Linux. Use it when TTLs must be honoured to better than a few milliseconds.
struct steady_clock {
  std::chrono::nanoseconds now() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch());
  }
};

// The default. The same monotonic clock read at the kernel's tick granularity
// (CLOCK_MONOTONIC_COARSE on Linux: a few milliseconds of resolution, about 5 ns per read instead
// of 25). A hit on an entry with a TTL reads the clock, and 20 ns is most of a hit's cost, so the
// default trades TTL precision (an entry may be served up to one tick past its deadline, never
// removed early) for hit speed. Elsewhere it falls back to std::chrono::steady_clock.
struct coarse_steady_clock {
  std::chrono::nanoseconds now() const noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
#else
    return steady_clock{}.now();
#endif
  }
};

// A clock that moves only when told to. Copies share the same time. Starts at `start`.
class manual_clock {
 public:
  explicit manual_clock(std::chrono::nanoseconds start = std::chrono::nanoseconds(0))
      : t_(std::make_shared<std::atomic<std::int64_t>>(start.count())) {}

  std::chrono::nanoseconds now() const noexcept {
    return std::chrono::nanoseconds(t_->load(std::memory_order_acquire));
  }
  // Moves the time forward by d, any duration, stopping at nanoseconds::max() rather than wrapping
  // into the past: advance(std::chrono::hours::max()) makes every deadline pass, and the time then
  // stays at max. A d that is not positive does nothing (a clock never goes back).
  template <class Rep, class Period>
  void advance(std::chrono::duration<Rep, Period> d) noexcept {
    const std::int64_t step = detail::to_nanoseconds(d).count();
    if (step <= 0) return;
    std::int64_t cur = t_->load(std::memory_order_relaxed);
    while (!t_->compare_exchange_weak(cur, detail::saturating_add(cur, step),
                                      std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
  }
  // Sets the time to t (any duration since the epoch, clamped to nanoseconds) if t is later than
  // now; earlier times are ignored.
  template <class Rep, class Period>
  void set(std::chrono::duration<Rep, Period> t) noexcept {
    const std::int64_t target = detail::to_nanoseconds(t).count();
    std::int64_t cur = t_->load(std::memory_order_relaxed);
    while (cur < target && !t_->compare_exchange_weak(cur, target, std::memory_order_acq_rel)) {
    }
  }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> t_;
};

static_assert(clock<steady_clock>);
static_assert(clock<coarse_steady_clock>);
static_assert(clock<manual_clock>);

}  // namespace cachet
