// cachet/origin_limiter.hpp — a cold or unreachable cache must not take the database down:
// at most N loads in flight to the origin, a bounded queue with a deadline, and a clear error
// (or a stale value) for the rest.
//
// Purpose: single-flight merges the misses of one key; a cold cache misses on thousands of keys
// at once, and every one becomes a query. origin_limiter bounds how many loads run at once; a load
// beyond the bound waits in a queue of at most max_queue loads for at most max_wait, and is then
// shed: it throws cachet::origin_overloaded instead of piling onto the database. One limiter can
// be shared by every cache over the same database. It is attached by wrapping the loader or source
// of any pattern in limited_loader:
//
//   cachet::origin_limiter db_limit({.max_in_flight = 32, .max_queue = 512,
//                                    .max_wait = std::chrono::milliseconds(50)});
//   cachet::cache_aside<store_t> users(...);
//   auto load_user = cachet::limited_loader(db_limit, user_loader{&db});
//   users.get_or_load(42, load_user);                      // throws origin_overloaded when shed
//   cachet::read_through<store_t, decltype(load_user)> products(
//       {.ttl = 1min, .stale_if_error = 10min}, load_user);  // shed: serves the stale value
//
// A shed load is a failed load to the pattern: nothing is cached, the caller and the callers that
// joined its flight get the exception, and read_through with stale_if_error serves the stale value
// it still holds instead (counted as a stale-if-error serve). A bulk load_all() call holds one
// permit (it is one query). Writes (store, store_all, erase of a Source) pass through unlimited.
//
// Thread safety: every member may be called from any thread. Waiting loads wake in no particular
// order; a new load never overtakes a waiting one (it queues behind it while anyone waits).
// Blocking: acquire() waits at most max_wait (real time, std::chrono::steady_clock) on a mutex and
// condition variable; a permit's release takes the mutex briefly.
// Exception safety: the constructor throws cachet::invalid_option naming a bad option; acquire()
// throws origin_overloaded; nothing else throws but what the wrapped loader throws.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "cachet/detail/latency_histogram.hpp"
#include "cachet/options.hpp"

namespace cachet {

struct origin_limiter_options {
  // Loads that may run at once, in [1, 2^20].
  std::size_t max_in_flight = 16;
  // Loads that may wait for one, in [0, 2^24]: beyond that a load is shed at once. 0: no queue.
  std::size_t max_queue = 256;
  // The longest a load waits in the queue before it is shed, in [0, 1 hour]. 0: never wait.
  std::chrono::nanoseconds max_wait = std::chrono::milliseconds(100);
};

// Counters of an origin_limiter (each exact; the snapshot is taken under its mutex).
struct origin_limiter_stats {
  std::uint64_t admitted = 0;         // loads that got a permit (at once or after waiting)
  std::uint64_t queued = 0;           // loads that had to wait (admitted or shed)
  std::uint64_t shed_queue_full = 0;  // loads shed at once: max_queue were waiting
  std::uint64_t shed_timeout = 0;     // loads shed after waiting max_wait
  std::uint64_t in_flight = 0;        // permits held now
  std::uint64_t peak_in_flight = 0;   // the most held at once so far
  std::uint64_t waiting = 0;          // loads waiting now
  std::uint64_t wait_p50_nanos = 0;   // queue wait of the loads that waited (admitted or shed);
  std::uint64_t wait_p99_nanos = 0;   // histogram bucket bounds, at most 6.25% above
};

// A load shed by an origin_limiter. what() says why.
class origin_overloaded : public std::runtime_error {
 public:
  enum class reason : std::uint8_t { queue_full, timeout };
  explicit origin_overloaded(reason r)
      : std::runtime_error(r == reason::queue_full
                               ? "cachet: origin overloaded: the load queue is full"
                               : "cachet: origin overloaded: no load slot within max_wait"),
        reason_(r) {}
  reason why() const noexcept { return reason_; }

 private:
  reason reason_;
};

class origin_limiter {
 public:
  // Validates `opts` (throws invalid_option naming the first bad one).
  explicit origin_limiter(origin_limiter_options opts) : opts_(validated(opts)) {}
  origin_limiter(const origin_limiter&) = delete;
  origin_limiter& operator=(const origin_limiter&) = delete;

  // A held load slot; released when destroyed.
  class permit {
   public:
    permit(permit&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
    permit& operator=(permit&&) = delete;
    permit(const permit&) = delete;
    ~permit() {
      if (l_ != nullptr) l_->release();
    }

   private:
    friend class origin_limiter;
    explicit permit(origin_limiter* l) noexcept : l_(l) {}
    origin_limiter* l_;
  };

  // A load slot: at once if one is free and nobody waits; else after waiting in the queue (at most
  // max_wait). Throws origin_overloaded when the queue is full or the wait runs out.
  permit acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    if (in_flight_ < opts_.max_in_flight && waiting_ == 0) return admit();
    if (waiting_ >= opts_.max_queue) {
      ++stats_.shed_queue_full;
      throw origin_overloaded(origin_overloaded::reason::queue_full);
    }
    ++waiting_;
    ++stats_.queued;
    const auto start = std::chrono::steady_clock::now();
    const bool got = cv_.wait_until(lock, detail_deadline(start),
                                    [this] { return in_flight_ < opts_.max_in_flight; });
    --waiting_;
    waits_.record(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::steady_clock::now() - start)
                                                 .count()));
    if (!got) {
      ++stats_.shed_timeout;
      if (in_flight_ < opts_.max_in_flight) cv_.notify_one();  // pass on a slot we saw too late
      throw origin_overloaded(origin_overloaded::reason::timeout);
    }
    return admit();
  }

  // f() while holding a permit; what f returns, or what it throws. Throws origin_overloaded
  // (without calling f) when shed.
  template <class F>
  decltype(auto) run(F&& f) {
    permit p = acquire();
    return std::forward<F>(f)();
  }

  origin_limiter_stats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    origin_limiter_stats s = stats_;
    s.in_flight = in_flight_;
    s.waiting = waiting_;
    s.wait_p50_nanos = waits_.percentile(0.5);
    s.wait_p99_nanos = waits_.percentile(0.99);
    return s;
  }

  const origin_limiter_options& options() const noexcept { return opts_; }

 private:
  static origin_limiter_options validated(origin_limiter_options o) {
    if (o.max_in_flight < 1 || o.max_in_flight > (std::size_t{1} << 20)) {
      throw invalid_option("max_in_flight",
                           "= " + std::to_string(o.max_in_flight) + ": must be in [1, 2^20]");
    }
    if (o.max_queue > (std::size_t{1} << 24)) {
      throw invalid_option("max_queue",
                           "= " + std::to_string(o.max_queue) + ": must be in [0, 2^24]");
    }
    if (o.max_wait < std::chrono::nanoseconds::zero() || o.max_wait > std::chrono::hours(1)) {
      throw invalid_option("max_wait", "must be in [0, 1 hour]");
    }
    return o;
  }

  std::chrono::steady_clock::time_point detail_deadline(
      std::chrono::steady_clock::time_point start) const noexcept {
    return start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(opts_.max_wait);
  }

  // Called with mu_ held and a slot free.
  permit admit() noexcept {
    ++in_flight_;
    ++stats_.admitted;
    if (in_flight_ > stats_.peak_in_flight) stats_.peak_in_flight = in_flight_;
    return permit(this);
  }

  void release() noexcept {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_;
    }
    cv_.notify_one();
  }

  const origin_limiter_options opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::size_t in_flight_ = 0;     // guarded by mu_
  std::size_t waiting_ = 0;       // guarded by mu_
  origin_limiter_stats stats_{};  // guarded by mu_ (in_flight, waiting, percentiles: computed)
  detail::latency_histogram waits_;
};

// A Loader (or Source) whose loads go through an origin_limiter: load(key) and, when the inner one
// has it, load_all(keys) each hold one permit; store, store_all and erase are passed through
// unlimited. Keeps the limiter by reference (it must outlive the wrapper) and the inner loader by
// value. Works with every pattern, as their Loader or Source.
template <class Inner>
class limited_loader {
 public:
  limited_loader(origin_limiter& limiter, Inner inner)
      : limiter_(&limiter), inner_(std::move(inner)) {}

  template <class K, class I = Inner>
  requires std::is_invocable_v<I&, const K&>
  auto load(const K& key) -> std::invoke_result_t<I&, const K&> {
    return limiter_->run([&] { return inner_(key); });
  }
  template <class K, class I = Inner>
  requires(!std::is_invocable_v<I&, const K&>) auto load(const K& key)
      -> decltype(std::declval<I&>().load(key)) {
    return limiter_->run([&] { return inner_.load(key); });
  }
  template <class K, class I = Inner>
  auto load_all(std::span<const K> keys) -> decltype(std::declval<I&>().load_all(keys)) {
    return limiter_->run([&] { return inner_.load_all(keys); });
  }
  template <class K, class V, class I = Inner>
  auto store(const K& key, const V& value) -> decltype(std::declval<I&>().store(key, value)) {
    return inner_.store(key, value);
  }
  template <class B, class I = Inner>
  auto store_all(B&& batch) -> decltype(std::declval<I&>().store_all(std::forward<B>(batch))) {
    return inner_.store_all(std::forward<B>(batch));
  }
  template <class K, class I = Inner>
  auto erase(const K& key) -> decltype(std::declval<I&>().erase(key)) {
    return inner_.erase(key);
  }

  Inner& inner() noexcept { return inner_; }
  origin_limiter& limiter() noexcept { return *limiter_; }

 private:
  origin_limiter* limiter_;
  Inner inner_;
};

}  // namespace cachet
