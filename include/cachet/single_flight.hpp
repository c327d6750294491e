// cachet/single_flight.hpp — at most one load per key in flight.
//
// Purpose: the stampede guard under every loading pattern, usable on its own. When many threads
// miss the same key at once, the first (the leader) runs the load; the others (followers) wait for
// it without spinning and all receive the same result: the value, or the same exception rethrown.
// Nothing is remembered after the load completes, so a failed load is retried by the next caller.
// load_all() does the same for a batch of keys: it waits for the keys already in flight and loads
// all the others in one bulk call that it leads, so one SQL `WHERE id IN (...)` serves the batch
// and every thread that asks for one of its keys meanwhile.
//
// Thread safety: all members are thread-safe. The load runs on the leader's thread with no lock of
// this object held; loads of different keys never wait for each other. Followers block in
// std::shared_future::wait (a futex), optionally bounded by options::follower_timeout (per call:
// load_all() waits at most that long in all, however many keys it follows). detach() lets a writer
// cut a key's flight loose so later callers load afresh. load_all()
// publishes the results of the keys it leads before it waits for any other thread's load, so two
// overlapping batches cannot wait for each other. load_async() parks no thread: it joins a flight
// with a continuation, or starts one on an executor, and the continuation runs on the thread that
// completes the flight.
//
// Exception safety: load() rethrows the load's exception to the leader and every follower of that
// flight: the same exception object, shared through std::exception_ptr. (ThreadSanitizer cannot see
// libstdc++'s reference count on it, so threads reading what() of the shared object while another
// thread releases it can be reported as a race; it is not one. Under TSan, read the message before
// the exception_ptr's last copy is dropped, or on one thread.) It throws recursive_load_error when
// the calling thread is itself loading the same key through this object (a loader that loads its
// own key would otherwise deadlock), and load_timeout_error when a follower's wait exceeds
// follower_timeout (the flight continues). It may throw std::bad_alloc; the flight's bookkeeping is
// then left unchanged. load_all() is the same per key: a bulk call's exception reaches every flight
// it led; whatever happens, every flight it started is completed (value or exception) and retired,
// so no follower is left waiting.
//
// Stats: loads, failures, followers, timeouts, total load time, and p50 / p99 load latency from a
// lock-free log-linear histogram (detail/latency_histogram.hpp: reports within +6.25% of the true
// percentile, never below it). A bulk call counts as one load.
//
// Example:
//   cachet::single_flight<std::string, std::string> flights;
//   auto v = flights.load("user:42", [&] { return db.query("user:42"); });  // one query per key
//   std::vector<std::string> ids = {"user:1", "user:2", "user:1"};
//   auto rows = flights.load_all(ids, [&](std::span<const std::string> missing) {
//     return cachet::load_all_from<std::string, std::string>(db_loader, missing);  // one query
//   });  // rows[i] answers ids[i]
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
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cachet/detail/latency_histogram.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/executor.hpp"
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

// An executor destroyed the task of a load_async() flight without running it; the flight's waiters
// get this instead of an answer.
class load_dropped_error : public std::runtime_error {
 public:
  load_dropped_error()
      : std::runtime_error("cachet: the executor destroyed a load task without running it") {}
};

// The upper bounds, in nanoseconds, of the load-duration histogram in single_flight_stats (and of
// the Prometheus buckets, in seconds: 10 us to 10 s).
inline constexpr std::array<std::uint64_t, 19> load_duration_bounds_ns = {
    10'000,        25'000,        50'000,        100'000,       250'000,
    500'000,       1'000'000,     2'500'000,     5'000'000,     10'000'000,
    25'000'000,    50'000'000,    100'000'000,   250'000'000,   500'000'000,
    1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};

struct single_flight_stats {
  std::uint64_t loads = 0;          // loads run (by leaders); a bulk load_all call counts once
  std::uint64_t load_failures = 0;  // loads that threw
  std::uint64_t coalesced = 0;      // callers (per key) served by another thread's load
  std::uint64_t timeouts = 0;       // followers that gave up waiting
  std::uint64_t load_nanos = 0;     // total time spent in loads
  // Median and 99th percentile of one load's duration, 0 before the first load. Each is the upper
  // bound of a histogram bucket: at least the true percentile and less than 6.25% above it.
  std::uint64_t load_p50_nanos = 0;
  std::uint64_t load_p99_nanos = 0;
  // Callers of load(key, current, load) that led a flight and found the answer already there
  // (current() had it: another thread's load finished just before), so ran no load. With
  // `loads` and `coalesced`, every caller of load() is counted once.
  std::uint64_t answered = 0;
  // A histogram of load durations: load_le[j] loads took at most load_duration_bounds_ns[j]
  // (cumulative, each duration rounded up to its bucket's bound: at most 6.25%), of
  // load_histogram_count in all (the same snapshot; `loads` is read apart and may differ by the
  // loads finishing meanwhile).
  std::array<std::uint64_t, load_duration_bounds_ns.size()> load_le{};
  std::uint64_t load_histogram_count = 0;
};

template <class K, class V, class Hash = cachet::hash<K>, class KeyEqual = std::equal_to<>>
class single_flight {
 public:
  struct options {
    // How long a follower waits for the leader's load before load_timeout_error; 0 = no limit.
    std::chrono::nanoseconds follower_timeout{0};
    // Told of each load's duration and outcome (cachet/recorder.hpp); empty: nothing is called.
    recorder_ref recorder{};
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
    return this->load(key, no_answer, std::forward<F>(load));
  }

  // load() that first looks for an answer that no longer needs loading: as the leader, before
  // loading, calls `current()`, which returns something convertible to
  // std::optional<std::optional<V>>. If it holds an answer (say, the value another thread's load
  // cached just after this caller missed), that answer is returned and goes to any followers, and
  // no load runs or is counted; otherwise `load` runs as in load(). Checking inside the flight
  // closes the race where a caller that missed reaches load() just after another thread's load of
  // the same key retired, which would load the key a second time. Such a caller is counted in
  // `answered`. An exception from `current` reaches this caller and the followers, like one from
  // `load`, but is not counted as a load failure.
  template <class Current, class F>
  std::optional<V> load(const K& key, Current&& current, F&& load) {
    shard& s = shard_for(key);
    std::promise<std::optional<V>> promise;
    bool leader = false;
    const std::shared_ptr<flight> f = join_or_start(s, key, promise, leader);
    if (!leader) return follow(*f);
    if (lead_unless_answered(s, key, f, promise, std::forward<Current>(current),
                             std::forward<F>(load)) == led::answered) {
      answered_.fetch_add(1, std::memory_order_relaxed);
    }
    return f->result.get();  // the value, or the exception rethrown
  }

  // Runs `load` as the leader for `key` and returns true if no load of `key` is in flight; returns
  // false at once, without waiting, if one is. For refresh-ahead: one refresh per key, and nobody
  // waits for it. An exception from `load` reaches this caller (and any followers that joined).
  template <class F>
  bool try_lead(const K& key, F&& load) {
    return try_lead(key, no_answer, std::forward<F>(load));
  }

  // try_lead() for a refresh that may have become unnecessary: as the leader, before loading,
  // calls `current()`, which returns something convertible to std::optional<std::optional<V>>.
  // If it holds an answer (say, the value another thread's refresh just stored), that answer goes
  // to any followers, no load runs or is counted, and the call returns false; otherwise `load`
  // runs as in try_lead() and the call returns true. Checking inside the flight closes the race
  // where a reader that saw the old value reaches try_lead() just after another refresh retired.
  // An exception from `current` reaches this caller and the followers, like one from `load`, but
  // is not counted as a load failure.
  template <class Current, class F>
  bool try_lead(const K& key, Current&& current, F&& load) {
    shard& s = shard_for(key);
    {
      std::lock_guard<std::mutex> g(s.mu);
      if (s.flights.contains(key)) return false;
    }
    std::promise<std::optional<V>> promise;
    bool leader = false;
    const std::shared_ptr<flight> f = join_or_start(s, key, promise, leader);
    if (!leader) return false;  // another thread started one in between
    const led outcome = lead_unless_answered(s, key, f, promise, std::forward<Current>(current),
                                             std::forward<F>(load));
    f->result.get();  // rethrows a failure
    return outcome == led::loaded;
  }

  // Returns one answer per key of `keys`, in order, loading each distinct key at most once:
  //   - a key with a load already in flight (another thread's load() or load_all()) is waited for,
  //     as a follower (counted in `coalesced`), like load() does;
  //   - all the other distinct keys become flights led by this caller and are loaded by ONE call
  //     `bulk(led)`, with `led` a std::span<const K> of those keys (first-occurrence order, no
  //     duplicates). It must return something convertible to std::vector<std::optional<V>> with
  //     one answer per key of `led`, in the same order (cachet::load_all_from() builds that from a
  //     BulkLoader's rows). It is not called when every key is in flight already.
  // Other threads that ask for a led key while `bulk` runs wait for it and get its answer. The
  // led flights are completed (and retired) before this caller waits for anyone else's.
  // Throws: recursive_load_error, before loading anything, if the calling thread is itself loading
  // one of the keys through this object; what `bulk` throws (also delivered to every follower of
  // the led keys; a result of the wrong length is reported as std::length_error the same way);
  // the exception of a followed load, or load_timeout_error; std::bad_alloc. In every case, every
  // flight this call started has been completed and retired by the time it returns. (If V's move
  // constructor throws while the answers are published, this caller gets that exception, the
  // followers of the key being moved get std::future_error(broken_promise) and those of the keys
  // after it the same exception. V's move should not throw; sharded_store requires that anyway.)
  // Allocates the result and per-call bookkeeping.
  template <class F>
  std::vector<std::optional<V>> load_all(std::span<const K> keys, F&& bulk) {
    std::vector<std::optional<V>> out(keys.size());
    if (keys.empty()) return out;

    // Distinct keys, in first-occurrence order; slot_of[i] is the slot answering keys[i].
    std::vector<std::size_t> slot_of(keys.size());
    std::vector<batch_slot> slots;
    {
      absl::flat_hash_map<K, std::size_t, Hash, KeyEqual> seen;
      seen.reserve(keys.size());
      for (std::size_t i = 0; i < keys.size(); ++i) {
        auto [it, inserted] = seen.try_emplace(keys[i], slots.size());
        if (inserted) slots.push_back(batch_slot{i, {}, nullptr, false});
        slot_of[i] = it->second;
      }
    }
    // Refuse a recursive load before starting any flight: flights led by this thread are up this
    // thread's stack, so none can start or end before the join below.
    for (const batch_slot& b : slots) {
      shard& s = shard_for(keys[b.first]);
      std::lock_guard<std::mutex> g(s.mu);
      auto it = s.flights.find(keys[b.first]);
      if (it != s.flights.end() &&
          it->second->leader.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
        throw recursive_load_error();
      }
    }

    // Join the flights in progress; start (and lead) the others.
    std::size_t joined = 0;
    try {
      for (; joined < slots.size(); ++joined) {
        batch_slot& b = slots[joined];
        b.f = join_or_start(shard_for(keys[b.first]), keys[b.first], b.promise, b.leader);
      }
    } catch (...) {
      complete_led(keys, slots, joined, std::current_exception());
      throw;
    }

    // Lead: one bulk call for every key nobody else was loading, its answers published at once.
    std::exception_ptr led_error = lead_batch(keys, slots, std::forward<F>(bulk));
    if (led_error) std::rethrow_exception(led_error);

    // Follow: wait for the loads of other threads, then answer each key from its flight (get()
    // rethrows a followed load's exception). follower_timeout bounds the whole call, not each key.
    const std::optional<std::chrono::steady_clock::time_point> deadline = follower_deadline();
    for (batch_slot& b : slots) {
      if (!b.leader) await_flight(*b.f, deadline);
    }
    for (std::size_t i = 0; i < keys.size(); ++i) out[i] = slots[slot_of[i]].f->result.get();
    return out;
  }

  // load() that parks no thread: `then(result)` runs once with the flight's outcome, a
  // `const std::shared_future<std::optional<V>>&` that is ready (get() gives the answer or
  // rethrows the load's exception). If a load of `key` is in flight, the call joins it (counted in
  // `coalesced`) and `then` runs when it completes; otherwise the caller leads a new flight and
  // hands `start` (called with a cachet::task, like an executor) the task that runs it: `current`,
  // then `load` if current() had no answer, exactly as load() runs them, on whatever thread the
  // task runs on. `current` and `load` are moved into the task; they must own what they use.
  //
  // `then` runs on the thread that completes the flight (the task's thread, or the thread of a
  // load() that leads it), or at once on the calling thread if the flight is already complete,
  // with no lock of this object held; it must not throw (std::terminate). If `start` throws (an
  // executor refusing the task), `then` gets that exception, like every other waiter of the
  // flight, and the flight is retired; if the task is destroyed unrun, they get
  // load_dropped_error. Throws only std::bad_alloc (and what Hash or KeyEqual throw), and then
  // `then` is not called. Followers of the flight that call load() block as usual; a loader that
  // load()s its own key on the task's thread gets recursive_load_error.
  template <class Current, class F, class Start, class Then>
  void load_async(const K& key, Current current, F load, Start&& start, Then then) {
    shard& s = shard_for(key);
    auto st = std::make_shared<async_lead>();
    bool leader = false;
    const std::shared_ptr<flight> f = join_or_start(s, key, st->promise, leader, std::thread::id{});
    if (!leader) {
      coalesced_.fetch_add(1, std::memory_order_relaxed);
      when_done(*f, waiter(f, std::move(then)));
      return;
    }
    try {
      when_done(*f, waiter(f, std::move(then)));
    } catch (...) {  // std::bad_alloc: settle the flight for its other waiters, then report it
      settle_unrun(s, key, f, *st, std::current_exception());
      throw;
    }
    // From here on `then` is registered: whatever happens reaches it through the flight.
    try {
      std::forward<Start>(start)(task(
          async_runner<Current, F>{this, &s, key, f, st, std::move(current), std::move(load)}));
    } catch (...) {  // refused: unless the task ran already, its waiters get the reason
      if (st->move(phase::starting, phase::claimed) || st->move(phase::orphaned, phase::claimed)) {
        settle_unrun(s, key, f, *st, std::current_exception());
      }
      return;
    }
    if (!st->move(phase::starting, phase::started) && st->move(phase::orphaned, phase::claimed)) {
      settle_unrun(s, key, f, *st, std::make_exception_ptr(load_dropped_error()));
    }
  }

  // Detaches the load of `key` in flight, if any: it runs on and answers the callers that joined
  // it, but callers that come after detach() returns start (or join) a new flight. A writer calls
  // this after changing the row, so that no read starting after the write joins a load that may
  // have read the row before it. Blocks on one shard mutex, and only when that shard has a load in
  // flight; never waits for a load. Allocates nothing; throws only what Hash or KeyEqual throw.
  //
  // With no flight in the shard, detach() returns without the lock (writes to keys nobody is
  // loading cost one atomic load, not a mutex). A flight that starts while detach() runs may stay
  // attached; for a writer that bumped an invalidation ticket (seq_cst) before calling detach(),
  // that flight is one whose leader reads the ticket after registering it (join_or_start stores
  // `live` seq_cst before the leader's seq_cst ticket load), so it sees the write: of the two
  // orders, either detach() sees `live` != 0 or the leader sees the bump.
  void detach(const K& key) {
    shard& s = shard_for(key);
    if (s.live.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard<std::mutex> g(s.mu);
    s.flights.erase(key);
    s.live.store(s.flights.size(), std::memory_order_relaxed);
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

  // A snapshot of the counters (each exact, not atomic together). The percentiles scan the latency
  // histogram's 976 buckets a few times: microseconds, not free; no allocation, no lock.
  single_flight_stats stats() const noexcept {
    single_flight_stats s{loads_.load(std::memory_order_relaxed),
                          load_failures_.load(std::memory_order_relaxed),
                          coalesced_.load(std::memory_order_relaxed),
                          timeouts_.load(std::memory_order_relaxed),
                          load_nanos_.load(std::memory_order_relaxed),
                          latency_.percentile(0.5),
                          latency_.percentile(0.99),
                          answered_.load(std::memory_order_relaxed)};
    s.load_histogram_count = latency_.cumulative(load_duration_bounds_ns, s.load_le);
    return s;
  }

 private:
  struct flight {
    flight(std::shared_future<std::optional<V>> r, std::thread::id l)
        : result(std::move(r)), leader(l) {}
    std::shared_future<std::optional<V>> result;
    // The thread running the load (for recursive_load_error); none yet for a load_async() flight
    // whose task has not started.
    std::atomic<std::thread::id> leader;
    // load_async()'s waiters, run once `result` is ready (done), by the thread that completed it.
    std::mutex mu;
    bool done = false;
    std::vector<task> waiters;
  };

  // A load_async() leader's promise, settled once: by the task when it runs, or by whoever finds
  // the task refused or destroyed unrun. `phase` decides who: while `start` runs (starting), a
  // task destroyed unrun only marks itself orphaned, and load_async() settles the flight with
  // the executor's exception if `start` threw, load_dropped_error if it returned; after `start`
  // returned (started), the task's destructor settles it. Running the task claims it from either.
  enum class phase : int { starting, started, claimed, orphaned };
  struct async_lead {
    std::promise<std::optional<V>> promise;
    std::atomic<phase> at{phase::starting};
    // Moves `at` from `from` to `to`; false if it is elsewhere.
    bool move(phase from, phase to) noexcept {
      return at.compare_exchange_strong(from, to, std::memory_order_acq_rel);
    }
  };

  struct alignas(64) shard {
    mutable std::mutex mu;
    absl::flat_hash_map<K, std::shared_ptr<flight>, Hash, KeyEqual> flights;
    // flights.size(), written under `mu` and read without it by detach().
    std::atomic<std::size_t> live{0};
  };

  // One distinct key of a load_all() batch: keys[first] is the key; `promise` feeds `f` when this
  // caller leads it; `done` once that promise holds a value or an exception.
  struct batch_slot {
    std::size_t first;
    std::promise<std::optional<V>> promise;
    std::shared_ptr<flight> f;
    bool leader = false;
    bool done = false;
  };

  shard& shard_for(const K& key) {
    return shards_[static_cast<std::size_t>(hash_(key)) % k_shards];
  }

  // The flight for `key`: an existing one, or a new one led by the caller (leader = true) whose
  // result comes from `promise`.
  std::shared_ptr<flight> join_or_start(shard& s, const K& key,
                                        std::promise<std::optional<V>>& promise, bool& leader,
                                        std::thread::id leader_id = std::this_thread::get_id()) {
    std::lock_guard<std::mutex> g(s.mu);
    auto [it, inserted] = s.flights.try_emplace(key);
    if (inserted) {
      try {
        it->second = std::make_shared<flight>(promise.get_future().share(), leader_id);
      } catch (...) {
        s.flights.erase(it);
        throw;
      }
      // seq_cst, and before the leader takes its invalidation ticket: see detach().
      s.live.store(s.flights.size(), std::memory_order_seq_cst);
      leader = true;
    }
    return it->second;
  }

  // Runs `w` once `f` is complete: now if it is, else when it completes (release_waiters()).
  static void when_done(flight& f, task w) {
    {
      std::lock_guard<std::mutex> g(f.mu);
      if (!f.done) {
        f.waiters.push_back(std::move(w));
        return;
      }
    }
    w();
  }

  // Marks `f` complete and runs its load_async() waiters, with no lock held. Called once per
  // flight, after its result is ready and the flight is retired.
  static void release_waiters(flight& f) noexcept {
    std::vector<task> ws;
    {
      std::lock_guard<std::mutex> g(f.mu);
      f.done = true;
      ws.swap(f.waiters);
    }
    for (task& w : ws) w();
  }

  template <class Then>
  static task waiter(const std::shared_ptr<flight>& f, Then then) {
    return task([result = f->result, then = std::move(then)]() mutable { then(result); });
  }

  // Settles a load_async() flight whose task did not run (refused or destroyed): its waiters get
  // `error`. The caller has claimed it (async_lead::phase).
  void settle_unrun(shard& s, const K& key, const std::shared_ptr<flight>& f, async_lead& st,
                    std::exception_ptr error) noexcept {
    st.promise.set_exception(std::move(error));
    retire(s, key, f);
    release_waiters(*f);
  }

  // The task load_async() hands its `start`: leads the flight when run; settles it with
  // load_dropped_error when destroyed unrun.
  template <class Current, class F>
  struct async_runner {
    single_flight* self;
    shard* s;
    K key;
    std::shared_ptr<flight> f;
    std::shared_ptr<async_lead> st;
    Current current;
    F load;

    async_runner(single_flight* sf, shard* sh, const K& k, std::shared_ptr<flight> fl,
                 std::shared_ptr<async_lead> a, Current c, F l)
        : self(sf),
          s(sh),
          key(k),
          f(std::move(fl)),
          st(std::move(a)),
          current(std::move(c)),
          load(std::move(l)) {}
    async_runner(async_runner&&) noexcept = default;
    async_runner& operator=(async_runner&&) = delete;
    ~async_runner() {
      if (!st || st->move(phase::starting, phase::orphaned)) return;  // load_async() settles it
      if (st->move(phase::started, phase::claimed)) {
        self->settle_unrun(*s, key, f, *st, std::make_exception_ptr(load_dropped_error()));
      }
    }

    void operator()() {
      const std::shared_ptr<async_lead> a = std::move(st);  // run once; no settling on destruction
      if (!a->move(phase::starting, phase::claimed) && !a->move(phase::started, phase::claimed)) {
        return;
      }
      f->leader.store(std::this_thread::get_id(), std::memory_order_relaxed);
      if (self->lead_unless_answered(*s, key, f, a->promise, current, load) == led::answered) {
        self->answered_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };

  // The `current` of load() and try_lead() without one: never an answer, always load.
  static constexpr auto no_answer = [] { return std::optional<std::optional<V>>(); };

  // How a leader with a `current` settled its flight.
  enum class led { loaded, answered, check_threw };

  // The leader's part of load() and try_lead() with a `current`: publishes current()'s answer if
  // it has one, else runs the load (lead()); retires the flight either way. Whatever `current`
  // throws is published to the followers and leaves the flight retired, so f->result holds an
  // outcome in every case.
  template <class Current, class F>
  led lead_unless_answered(shard& s, const K& key, const std::shared_ptr<flight>& f,
                           std::promise<std::optional<V>>& promise, Current&& current, F&& load) {
    std::optional<std::optional<V>> answer;
    try {
      answer = std::forward<Current>(current)();
    } catch (...) {
      promise.set_exception(std::current_exception());
      retire(s, key, f);
      release_waiters(*f);
      return led::check_threw;
    }
    if (answer) {
      promise.set_value(std::move(*answer));
      retire(s, key, f);
      release_waiters(*f);
      return led::answered;
    }
    lead(s, key, f, promise, std::forward<F>(load));
    return led::loaded;
  }

  // Runs the leader's load with no lock held, publishes its result or exception, counts it, and
  // retires the flight so the next caller loads afresh.
  template <class F>
  void lead(shard& s, const K& key, const std::shared_ptr<flight>& f,
            std::promise<std::optional<V>>& promise, F&& load) {
    const auto start = std::chrono::steady_clock::now();
    bool failed = false;
    try {
      promise.set_value(std::forward<F>(load)());
    } catch (...) {
      failed = true;
      promise.set_exception(std::current_exception());
    }
    record_load(start, failed);
    retire(s, key, f);
    release_waiters(*f);
  }

  // load_all()'s leader part: loads the keys of the led slots in one `bulk` call with no lock held,
  // publishes each answer (or the failure, to every led slot still open), counts the load, and
  // retires the led flights. Returns the failure, or null: whatever goes wrong in the load reaches
  // the followers through the promises and the caller through the return value. (Only Hash or
  // KeyEqual throwing while the flights are retired escapes, as in lead().)
  template <class F>
  std::exception_ptr lead_batch(std::span<const K> keys, std::vector<batch_slot>& slots, F&& bulk) {
    std::size_t n_led = 0;
    for (const batch_slot& b : slots) n_led += b.leader ? 1 : 0;
    if (n_led == 0) return nullptr;
    std::exception_ptr error;
    bool called = false;
    const auto start = std::chrono::steady_clock::now();
    try {
      std::vector<K> led;  // unused when the caller leads every key of `keys` once
      std::span<const K> led_keys = keys;
      if (n_led != keys.size()) {
        led.reserve(n_led);
        for (const batch_slot& b : slots) {
          if (b.leader) led.push_back(keys[b.first]);
        }
        led_keys = std::span<const K>(led);
      }
      called = true;
      std::vector<std::optional<V>> results = std::forward<F>(bulk)(led_keys);
      if (results.size() != n_led) {
        throw std::length_error("cachet: single_flight::load_all: the bulk load returned " +
                                std::to_string(results.size()) + " results for " +
                                std::to_string(n_led) + " keys");
      }
      std::size_t j = 0;
      for (batch_slot& b : slots) {
        if (!b.leader) continue;
        // Marked first: if moving the value into the promise throws (a V whose move throws), the
        // promise cannot portably be completed any more (an exception escaping std::call_once:
        // libstdc++ PR 66146, TSan's pthread_once); its followers get broken_promise instead,
        // when `slots` is destroyed as load_all() leaves.
        b.done = true;
        b.promise.set_value(std::move(results[j++]));
      }
    } catch (...) {
      error = std::current_exception();
    }
    if (called) record_load(start, error != nullptr);
    complete_led(keys, slots, slots.size(), error);
    return error;
  }

  // Gives every led slot among the first `n` that is still open the exception `error`, then
  // retires every led flight among them.
  void complete_led(std::span<const K> keys, std::vector<batch_slot>& slots, std::size_t n,
                    const std::exception_ptr& error) {
    for (std::size_t i = 0; i < n; ++i) {
      batch_slot& b = slots[i];
      if (!b.leader) continue;
      if (!b.done) {
        b.promise.set_exception(error);
        b.done = true;
      }
      retire(shard_for(keys[b.first]), keys[b.first], b.f);
      release_waiters(*b.f);
    }
  }

  // Removes `f` from the map, if it is still `key`'s flight, so the next caller loads afresh.
  void retire(shard& s, const K& key, const std::shared_ptr<flight>& f) {
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.flights.find(key);
    if (it != s.flights.end() && it->second == f) s.flights.erase(it);
    s.live.store(s.flights.size(), std::memory_order_relaxed);
  }

  void record_load(std::chrono::steady_clock::time_point start, bool failed) noexcept {
    const auto nanos =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - start)
                                       .count());
    if (failed) load_failures_.fetch_add(1, std::memory_order_relaxed);
    loads_.fetch_add(1, std::memory_order_relaxed);
    load_nanos_.fetch_add(nanos, std::memory_order_relaxed);
    latency_.record(nanos);
    if (opts_.recorder) {
      opts_.recorder.load(std::chrono::nanoseconds(static_cast<std::int64_t>(nanos)), failed);
    }
  }

  // When a follower starting now must give up: follower_timeout from now (saturating), or never.
  std::optional<std::chrono::steady_clock::time_point> follower_deadline() const noexcept {
    if (opts_.follower_timeout.count() == 0) return std::nullopt;
    return detail::saturating_after(std::chrono::steady_clock::now(), opts_.follower_timeout);
  }

  // Waits, as a follower, until `f` has its result (recursive_load_error if this thread leads it;
  // load_timeout_error once `deadline` has passed).
  void await_flight(flight& f, std::optional<std::chrono::steady_clock::time_point> deadline) {
    if (f.leader.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
      throw recursive_load_error();
    }
    coalesced_.fetch_add(1, std::memory_order_relaxed);
    if (deadline && f.result.wait_until(*deadline) != std::future_status::ready) {
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      throw load_timeout_error();
    }
  }

  std::optional<V> follow(flight& f) {
    await_flight(f, follower_deadline());
    return f.result.get();
  }

  static constexpr std::size_t k_shards = 16;

  options opts_;
  Hash hash_;
  std::array<shard, k_shards> shards_;
  std::atomic<std::uint64_t> loads_{0}, load_failures_{0}, coalesced_{0}, timeouts_{0},
      load_nanos_{0}, answered_{0};
  detail::latency_histogram latency_;
};

}  // namespace cachet
