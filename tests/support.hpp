// Test support: a removal listener that records events, the list of backends the conformance
// suites run over, and a hash that runs a callback between two steps of one call.
#pragma once

#include <atomic>
#include <cachet/cachet.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

namespace cachet_test {

template <class K, class V>
struct removal_event {
  K key;
  V value;
  cachet::removal_cause cause;
  friend bool operator==(const removal_event&, const removal_event&) = default;
};

// Records every removal; copies share the log, so one can go into store_options and one stay here.
template <class K, class V>
class recorder {
 public:
  recorder() : log_(std::make_shared<state>()) {}

  std::function<void(const K&, const V&, cachet::removal_cause)> listener() const {
    auto log = log_;
    return [log](const K& k, const V& v, cachet::removal_cause c) {
      std::lock_guard<std::mutex> g(log->mu);
      log->events.push_back({k, v, c});
    };
  }
  std::vector<removal_event<K, V>> take() {
    std::lock_guard<std::mutex> g(log_->mu);
    return std::exchange(log_->events, {});
  }
  std::vector<K> take_keys(cachet::removal_cause cause) {
    std::vector<K> keys;
    for (auto& e : take()) {
      if (e.cause == cause) keys.push_back(e.key);
    }
    return keys;
  }

 private:
  struct state {
    std::mutex mu;
    std::vector<removal_event<K, V>> events;
  };
  std::shared_ptr<state> log_;
};

// Waits (yielding) until pred() holds and returns true, or returns false after a minute, so a
// broken guard fails the test instead of hanging it. Only a deadlock guard: no assertion depends on
// how long anything takes. Called from worker threads, so it asserts nothing itself (Catch2's
// assertions are not thread-safe); callers record the outcome and the main thread checks it.
template <class Pred>
bool await(Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

template <class P>
using int_store = cachet::sharded_store<int, int, P, cachet::manual_clock>;

// A hash for int keys that runs a test's callback in place of the n-th hash computed from the
// time it is armed, on whatever thread computes it: the way to put a whole other operation
// exactly between two steps of one call, deterministically. A get() of a loading pattern hashes
// the key first for the store's lookup and then for the load's flight, so at_call(2, f) runs f
// after the call missed and before it joins a flight. One hook at a time.
struct hooked_hash {
  using is_avalanching = void;
  static void at_call(int n, std::function<void()> f) {
    hook() = std::move(f);
    countdown().store(n);
  }
  // Whether the armed hook has run.
  static bool fired() { return countdown().load() == 0 && !hook(); }
  std::uint64_t operator()(int k) const {
    if (countdown().load() > 0 && countdown().fetch_sub(1) == 1) {
      std::function<void()> f = std::move(hook());
      hook() = nullptr;
      f();
    }
    return cachet::hash<int>{}(k);
  }

 private:
  static std::atomic<int>& countdown() {
    static std::atomic<int> n{0};
    return n;
  }
  static std::function<void()>& hook() {
    static std::function<void()> f;
    return f;
  }
};

}  // namespace cachet_test

#define CACHET_ALL_BACKENDS                                                                 \
  cachet::lru, cachet::lfu, cachet::fifo, cachet::ttl, cachet::random, cachet::no_eviction, \
      cachet::sieve, cachet::s3fifo, cachet::w_tinylfu, cachet::w_tinylfu_adaptive
#define CACHET_EVICTING_BACKENDS                                                      \
  cachet::lru, cachet::lfu, cachet::fifo, cachet::ttl, cachet::random, cachet::sieve, \
      cachet::s3fifo, cachet::w_tinylfu, cachet::w_tinylfu_adaptive
