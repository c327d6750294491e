// cachet/single_flight.hpp — at most one load per key in flight.
//
// Purpose: the stampede guard under every loading pattern, usable on its own. When many threads
// miss the same key at once, the first (the leader) runs the load; the others (followers) wait for
// it without spinning and all receive the same result: the value, or the same exception rethrown.
// Nothing is remembered after the load completes, so a failed load is retried by the next caller.
//
// Thread safety: all members are thread-safe. The load runs on the leader's thread with no lock of
// this object held; loads of different keys never wait for each other. Followers block in
// std::shared_future::wait (a futex), optionally bounded by options::follower_timeout.
//
// Exception safety: load() rethrows the load's exception to the leader and every follower of that
// flight: the same exception object, shared through std::exception_ptr. (ThreadSanitizer cannot see
// libstdc++'s reference count on it, so threads reading what() of the shared object while another
// thread releases it can be reported as a race; it is not one. Under TSan, read the message before
// the exception_ptr's last copy is dropped, or on one thread.) It throws recursive_load_error when
// the calling thread is itself loading the same key through this object (a loader that loads its
// own key would otherwise deadlock), and load_timeout_error when a follower's wait exceeds
// follower_timeout (the flight continues). It may throw std::bad_alloc; the flight's bookkeeping is
// then left unchanged.
//
// Example:
//   cachet::single_flight<std::string, std::string> flights;
//   auto v = flights.load("user:42", [&] { return db.query("user:42"); });  // one query per key
#pragma once

#include <absl/container/flat_hash_map.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>

#include "cachet/hash.hpp"
#include "cachet/options.hpp"

namespace cachet {

// A loader tried to load a key that its own thread is already loading through the same object.
class recursive_load_error : public std::logic_error {
 public:
  recursive_load_error()
      : std::logic_error("cachet: recursive load: a loader tried to load the key it is loading") {}
};

// A follower waited longer than single_flight's follower_timeout; the load goes on.
class load_timeout_error : public std::runtime_error {
 public:
  load_timeout_error()
      : std::runtime_error("cachet: timed out waiting for another thread's load of this key") {}
};

struct single_flight_stats {
  std::uint64_t loads = 0;          // loads run (by leaders)
  std::uint64_t load_failures = 0;  // loads that threw
  std::uint64_t coalesced = 0;      // callers served by another thread's load (followers)
  std::uint64_t timeouts = 0;       // followers that gave up waiting
  std::uint64_t load_nanos = 0;     // total time spent in loads
};

template <class K, class V, class Hash = cachet::hash<K>, class KeyEqual = std::equal_to<>>
class single_flight {
 public:
  struct options {
    // How long a follower waits for the leader's load before load_timeout_error; 0 = no limit.
    std::chrono::nanoseconds follower_timeout{0};
  };

  single_flight() : single_flight(options{}) {}
  explicit single_flight(options opts) : opts_(opts) {
    if (opts_.follower_timeout < std::chrono::nanoseconds::zero()) {
      throw invalid_option("follower_timeout",
                           "is negative: must be >= 0 (0 = wait without limit)");
    }
  }
  single_flight(const single_flight&) = delete;
  single_flight& operator=(const single_flight&) = delete;

  // Returns load() for `key`, running it only if no load of `key` is in flight; otherwise waits for
  // that load and returns (or rethrows) its result. `load` is called with no argument and returns
  // something convertible to std::optional<V>.
  template <class F>
  std::optional<V> load(const K& key, F&& load) {
    shard& s = shard_for(key);
    std::promise<std::optional<V>> promise;
    bool leader = false;
    const std::shared_ptr<flight> f = join_or_start(s, key, promise, leader);
    if (!leader) return follow(*f);
    lead(s, key, f, promise, std::forward<F>(load));
    return f->result.get();  // the value, or the load's exception rethrown
  }

  // Runs `load` as the leader for `key` and returns true if no load of `key` is in flight; returns
  // false at once, without waiting, if one is. For refresh-ahead: one refresh per key, and nobody
  // waits for it. An exception from `load` reaches this caller (and any followers that joined).
  template <class F>
  bool try_lead(const K& key, F&& load) {
    shard& s = shard_for(key);
    {
      std::lock_guard<std::mutex> g(s.mu);
      if (s.flights.contains(key)) return false;
    }
    std::promise<std::optional<V>> promise;
    bool leader = false;
    const std::shared_ptr<flight> f = join_or_start(s, key, promise, leader);
    if (!leader) return false;  // another thread started one in between
    lead(s, key, f, promise, std::forward<F>(load));
    f->result.get();  // rethrows a failure
    return true;
  }

  // Number of loads in flight now (weakly consistent).
  std::size_t in_flight() const {
    std::size_t n = 0;
    for (const shard& s : shards_) {
      std::lock_guard<std::mutex> g(s.mu);
      n += s.flights.size();
    }
    return n;
  }

  single_flight_stats stats() const noexcept {
    return {loads_.load(std::memory_order_relaxed), load_failures_.load(std::memory_order_relaxed),
            coalesced_.load(std::memory_order_relaxed), timeouts_.load(std::memory_order_relaxed),
            load_nanos_.load(std::memory_order_relaxed)};
  }

 private:
  struct flight {
    explicit flight(std::shared_future<std::optional<V>> r)
        : result(std::move(r)), leader(std::this_thread::get_id()) {}
    std::shared_future<std::optional<V>> result;
    std::thread::id leader;
  };

  struct alignas(64) shard {
    mutable std::mutex mu;
    absl::flat_hash_map<K, std::shared_ptr<flight>, Hash, KeyEqual> flights;
  };

  shard& shard_for(const K& key) {
    return shards_[static_cast<std::size_t>(hash_(key)) % k_shards];
  }

  // The flight for `key`: an existing one, or a new one led by the caller (leader = true) whose
  // result comes from `promise`.
  std::shared_ptr<flight> join_or_start(shard& s, const K& key,
                                        std::promise<std::optional<V>>& promise, bool& leader) {
    std::lock_guard<std::mutex> g(s.mu);
    auto [it, inserted] = s.flights.try_emplace(key);
    if (inserted) {
      try {
        it->second = std::make_shared<flight>(promise.get_future().share());
      } catch (...) {
        s.flights.erase(it);
        throw;
      }
      leader = true;
    }
    return it->second;
  }

  // Runs the leader's load with no lock held, publishes its result or exception, counts it, and
  // retires the flight so the next caller loads afresh.
  template <class F>
  void lead(shard& s, const K& key, const std::shared_ptr<flight>& f,
            std::promise<std::optional<V>>& promise, F&& load) {
    const auto start = std::chrono::steady_clock::now();
    try {
      promise.set_value(std::forward<F>(load)());
    } catch (...) {
      load_failures_.fetch_add(1, std::memory_order_relaxed);
      promise.set_exception(std::current_exception());
    }
    loads_.fetch_add(1, std::memory_order_relaxed);
    load_nanos_.fetch_add(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - start)
                                       .count()),
        std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.flights.find(key);
    if (it != s.flights.end() && it->second == f) s.flights.erase(it);
  }

  std::optional<V> follow(flight& f) {
    if (f.leader == std::this_thread::get_id()) throw recursive_load_error();
    coalesced_.fetch_add(1, std::memory_order_relaxed);
    if (opts_.follower_timeout.count() > 0 &&
        f.result.wait_for(opts_.follower_timeout) != std::future_status::ready) {
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      throw load_timeout_error();
    }
    return f.result.get();
  }

  static constexpr std::size_t k_shards = 16;

  options opts_;
  Hash hash_;
  std::array<shard, k_shards> shards_;
  std::atomic<std::uint64_t> loads_{0}, load_failures_{0}, coalesced_{0}, timeouts_{0},
      load_nanos_{0};
};

}  // namespace cachet
