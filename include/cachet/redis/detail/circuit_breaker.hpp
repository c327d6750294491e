// cachet/redis/detail/circuit_breaker.hpp — stop calling a backend that keeps failing, and probe it
// once in a while.
//
// IMPLEMENTATION DETAILS
// The classic three-state breaker (Nygard, "Release It!", ch. 5; the same states as resilience4j's
// CircuitBreaker):
//
//        failures_to_open consecutive failures           open_for has passed: ONE caller probes
//   closed ─────────────────────────────────────▶ open ─────────────────────────────▶ half_open
//     ▲                                            ▲                                     │
//     └───────────── the probe succeeded ──────────┼──────── the probe failed ───────────┘
//                                                  (re-opened, open_for again)
//
// acquire() says how a call may proceed: `closed` (go ahead), `probe` (go ahead, you are the one
// probe of a half-open breaker) or `refused` (fail at once). The caller reports the outcome with
// the admit it was given. While half-open, every caller but the probe is refused, so a recovering
// Redis sees one connection attempt per open_for, not a stampede. Only the probe closes the
// breaker: a call admitted while closed that succeeds after the breaker opened says nothing about
// now. A probe that ends without an outcome (an exception, or a call that found nothing to send)
// is abandoned by `probe_guard`: the breaker goes back to open with its old opening time, so the
// next call probes at once; it cannot stay half-open forever.
//
// The state is one atomic read on the fast path (closed: no lock); transitions take a mutex.
// Failures in the closed state are counted in an atomic that any success resets. Time comes from
// the store's Clock, so tests drive open_for with a manual_clock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <utility>

#include "cachet/clock.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/redis/options.hpp"

namespace cachet::detail {

template <class Clock>
requires cachet::clock<Clock>
class circuit_breaker {
 public:
  enum class admit : std::uint8_t { closed, probe, refused };

  circuit_breaker(breaker_options opts, Clock clock) : opts_(opts), clock_(std::move(clock)) {}

  // How the next call may proceed. Never blocks on I/O; takes the mutex unless closed.
  admit acquire() noexcept {
    if (state_.load(std::memory_order_acquire) == breaker_state::closed) return admit::closed;
    std::lock_guard<std::mutex> g(mu_);
    switch (state_.load(std::memory_order_relaxed)) {
      case breaker_state::closed:
        return admit::closed;
      case breaker_state::half_open:
        return admit::refused;
      case breaker_state::open:
        if (clock_.now().count() < saturating_add(opened_at_, opts_.open_for.count())) {
          return admit::refused;
        }
        state_.store(breaker_state::half_open, std::memory_order_release);
        return admit::probe;
    }
    return admit::refused;
  }

  // The call admitted as `a` succeeded.
  void on_success(admit a) noexcept {
    if (a == admit::probe) {
      std::lock_guard<std::mutex> g(mu_);
      failures_.store(0, std::memory_order_relaxed);
      state_.store(breaker_state::closed, std::memory_order_release);
      closed_count_.fetch_add(1, std::memory_order_relaxed);
    } else if (a == admit::closed && failures_.load(std::memory_order_relaxed) != 0) {
      failures_.store(0, std::memory_order_relaxed);
    }
  }

  // The call admitted as `a` failed.
  void on_failure(admit a) noexcept {
    if (a == admit::refused) return;
    std::lock_guard<std::mutex> g(mu_);
    const breaker_state s = state_.load(std::memory_order_relaxed);
    if (a == admit::probe) {
      open_locked();
    } else if (s == breaker_state::closed &&
               failures_.fetch_add(1, std::memory_order_relaxed) + 1 >= opts_.failures_to_open) {
      open_locked();
    }
  }

  breaker_state state() const noexcept { return state_.load(std::memory_order_acquire); }
  std::uint64_t opened_count() const noexcept {
    return opened_count_.load(std::memory_order_relaxed);
  }
  std::uint64_t closed_count() const noexcept {
    return closed_count_.load(std::memory_order_relaxed);
  }

  // A probe admitted as `a` ended without an outcome: back to open, due for a probe now.
  void abandon(admit a) noexcept {
    if (a != admit::probe) return;
    std::lock_guard<std::mutex> g(mu_);
    state_.store(breaker_state::open, std::memory_order_release);
  }

  // Reports the outcome of one call; abandons a probe destroyed unreported.
  class probe_guard {
   public:
    probe_guard(circuit_breaker& b, admit a) noexcept : b_(&b), a_(a) {}
    probe_guard(const probe_guard&) = delete;
    probe_guard& operator=(const probe_guard&) = delete;
    ~probe_guard() { b_->abandon(a_); }
    void success() noexcept { report(true); }
    void failure() noexcept { report(false); }
    admit kind() const noexcept { return a_; }

   private:
    void report(bool ok) noexcept {
      if (a_ == admit::refused) return;
      ok ? b_->on_success(a_) : b_->on_failure(a_);
      a_ = admit::refused;  // reported: nothing left to do
    }
    circuit_breaker* b_;
    admit a_;
  };

 private:
  void open_locked() noexcept {
    failures_.store(0, std::memory_order_relaxed);
    opened_at_ = clock_.now().count();
    state_.store(breaker_state::open, std::memory_order_release);
    opened_count_.fetch_add(1, std::memory_order_relaxed);
  }

  const breaker_options opts_;
  Clock clock_;
  std::mutex mu_;
  std::atomic<breaker_state> state_{breaker_state::closed};
  std::atomic<std::uint32_t> failures_{0};
  std::int64_t opened_at_ = 0;  // guarded by mu_
  std::atomic<std::uint64_t> opened_count_{0};
  std::atomic<std::uint64_t> closed_count_{0};
};

}  // namespace cachet::detail
