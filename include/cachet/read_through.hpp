// cachet/read_through.hpp — the read-through pattern: the cache loads from the source on a miss.
//
// Purpose: callers ask the cache; the cache asks the user's Loader when it has nothing, caches the
// answer for a TTL and serves it to everyone. Built in, the defences against what makes
// read-through caches cause outages:
//   - single-flight loads: N threads missing one key cause one load; a failed load reaches every
//     waiter and caches nothing;
//   - XFetch refresh-ahead (xfetch.hpp): shortly before an entry expires, one reader (chosen by
//     chance, more likely the nearer the expiry and the slower the load) reloads it while every
//     other reader keeps getting the current value, so a hot key never expires under load;
//   - negative caching: "no such key" can be remembered for a short negative_ttl, so a flood of
//     requests for missing keys does not reach the database (counted apart, as negative_hits);
//   - TTL jitter, so entries loaded together do not expire together;
//   - invalidate() for writers, with the same guarantee as cache_aside: a read that starts after
//     invalidate() has returned never gets the row it replaced, neither from the cache nor from a
//     load (or refresh) that began before it (docs/consistency.md). Stale serving (below) serves
//     values past their TTL by design, within its windows, but never one an invalidate() removed;
//     a refresh that finds the row gone removes the entry.
//   - stale-while-revalidate: for a grace period after the TTL, readers get the stale value at
//     once while one of them refreshes it (inline, on that reader's thread: no thread is started);
//     a refresh, this one or XFetch's, first checks inside its single-flight that the cached
//     value is still the one its reader saw, so a value is refreshed once, not again by a reader
//     that saw it just before the first refresh finished;
//   - stale-if-error: for a bound after the TTL, a failing load is answered with the stale value.
//   - bulk reads: get_all(keys) serves the cached keys and loads all the others in one call of the
//     Loader's load_all() (see source.hpp; a Loader without one is called once per key), sharing
//     single-flight with get(): a key some other thread is loading is waited for, not reloaded,
//     and other threads asking for a key of the batch wait for the batch.
//   - loads that park no thread: get_async(key, done) and its future form, and co_await
//     get_co(key) for coroutines, join the key's flight or start its load on the executor; a
//     load_timeout stops any waiter from waiting longer than that.
//
// Thread safety: all members are thread-safe. The loader runs on a caller's thread with no cache
// lock held; different keys load in parallel. A reader that wins the XFetch draw (or refreshes a
// stale value) runs the refresh itself: it pays the load's latency and gets what it loaded
// (std::nullopt if the row is gone); nobody else waits for it.
//
// Exception safety: get() rethrows the loader's exception to every caller waiting on that load and
// caches nothing; get_all() does the same for a failed bulk load (all its keys fail together). A
// failing early refresh does not fail the read that ran it: the current value is returned and
// refresh_failures is counted.
//
// Example:
//   auto load_user = [&db](int id) { return db.find_user(id); };   // std::optional<User>
//   cachet::read_through<cachet::sharded_store<int, User>, decltype(load_user)> users(
//       {.max_entries = 100'000, .ttl = std::chrono::minutes(5), .negative_ttl =
//       std::chrono::seconds(10)}, load_user);
//   std::optional<User> u = users.get(42);
//   std::vector<int> ids = {1, 2, 3};
//   std::vector<std::optional<User>> us = users.get_all(ids);  // us[i] answers ids[i]
#pragma once

#include <absl/container/flat_hash_set.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/clock.hpp"
#include "cachet/detail/deadline_timer.hpp"
#include "cachet/detail/guarded_loader.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/executor.hpp"
#include "cachet/hash.hpp"
#include "cachet/options.hpp"
#include "cachet/single_flight.hpp"
#include "cachet/source.hpp"
#include "cachet/store.hpp"
#include "cachet/xfetch.hpp"

namespace cachet {

struct read_through_stats {
  std::uint64_t hits = 0;             // served a cached value
  std::uint64_t misses = 0;           // found nothing cached (and loaded, or waited for a load)
  std::uint64_t negative_hits = 0;    // served a cached "absent"
  std::uint64_t early_refreshes = 0;  // XFetch refreshes run before expiry
  // Early or stale-while-revalidate refreshes whose load threw (the read still succeeded).
  std::uint64_t refresh_failures = 0;
  std::uint64_t stale_serves = 0;           // stale values served while one reader refreshed
  std::uint64_t stale_if_error_serves = 0;  // stale values served because a load threw
  single_flight_stats loads;                // loads run, failed, coalesced; time spent loading
  // refresh_after_write refreshes run on the executor (failures count in refresh_failures).
  std::uint64_t background_refreshes = 0;
};

template <class Store, class Loader, class Executor = inline_executor>
class read_through {
 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  using clock_type = typename Store::clock_type;
  using executor_type = Executor;
  static_assert(check_store<Store>());
  static_assert(check_loader<Loader, key_type, mapped_type>());
  static_assert(executor<Executor>,
                "cachet::read_through: Executor must be callable with a cachet::task&& "
                "(see executor.hpp)");

  struct options {
    // Entry bound and shard count of the underlying store (see store_options).
    std::size_t max_entries = 0;
    std::size_t shards = 0;
    // How long a loaded value is served: required, > 0; cachet::no_expiry (or any larger value)
    // for as long as it stays cached.
    std::chrono::nanoseconds ttl{0};
    // Each TTL is shortened by a uniformly random part of up to this fraction, in [0, 1).
    double ttl_jitter = 0.0;
    // How long "absent" (the loader returned std::nullopt) is remembered; 0 = not at all.
    std::chrono::nanoseconds negative_ttl{0};
    // XFetch's beta, >= 0: 1 is the paper's optimum, larger refreshes earlier, 0 turns it off.
    double xfetch_beta = 1.0;
    // Stale-while-revalidate: for this long after a value's TTL ends, readers are served the stale
    // value at once while one of them refreshes it; 0 = off.
    std::chrono::nanoseconds stale_while_revalidate{0};
    // Stale-if-error: for this long after a value's TTL ends, a load that throws is answered with
    // the stale value instead of the exception; 0 = off.
    std::chrono::nanoseconds stale_if_error{0};
    // Seed of the random draws for XFetch and jitter; 0 = a per-process random seed.
    std::uint64_t seed = 0;
    // Refresh-after-write: the first read of a value this old (measured back from its deadline,
    // so jitter brings it forward as it does the expiry) is served the value at once and queues
    // one reload of the key on the executor; until that lands, reads keep getting the value. In
    // (0, ttl), ttl finite; 0 = off. A failed reload keeps the value (refresh_failures).
    std::chrono::nanoseconds refresh_after_write{0};
    // How long a caller waits for a load another caller (or the executor) runs before it gets
    // load_timeout_error and stops waiting; the load goes on, and what it loads is still cached
    // unless an invalidate() came in between. Real time (steady_clock), not the cache's clock.
    // Applies to get() and get_all() followers and to every get_async / get_co waiter of a miss; a
    // caller that runs the load itself (a get() that leads, or get_async on the inline executor)
    // waits for it. Counted in stats().loads.timeouts. 0 = wait without limit.
    std::chrono::nanoseconds load_timeout{0};
    // Your own stats recorder (cachet/recorder.hpp): the store's hits, misses (a cached absence is
    // a hit) and removals, and each origin load. Empty: nothing is called.
    recorder_ref recorder{};
  };

  // `ex` runs the background refreshes (refresh_after_write, refresh()); see executor.hpp.
  read_through(options opts, Loader loader, clock_type clock = clock_type{},
               Executor ex = Executor{})
      : opts_(validated(opts)),
        loader_(std::forward<Loader>(loader)),  // Loader may be a reference type
        clock_(clock),
        store_(inner_options(opts_), clock),
        core_(typename guarded_loader_type::flights_type::options{opts_.load_timeout,
                                                                  opts_.recorder}),
        rng_(opts_.seed != 0 ? opts_.seed : detail::process_seed()),
        executor_(std::move(ex)) {}

  read_through(const read_through&) = delete;
  read_through& operator=(const read_through&) = delete;

  // Waits until every task this cache gave its executor has run or been destroyed (they refer to
  // it): an executor that keeps a task forever keeps this waiting.
  ~read_through() {
    std::unique_lock<std::mutex> g(tasks_mu_);
    tasks_done_.wait(g, [&] { return tasks_out_ == 0; });
  }

  // The value for `key`: cached, or loaded (once across all threads) and cached. std::nullopt when
  // the loader says the key does not exist (cached for negative_ttl). Rethrows a failed load.
  std::optional<mapped_type> get(const key_type& key) {
    std::optional<entry> e = store_.get(key);
    if (!e) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return core_.load(
          key, [&] { return fresh_now(key); }, [&] { return fill(key); });
    }
    if (!e->value) {
      negative_hits_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    const std::int64_t now = clock_.now().count();
    if (now < e->expiry_ns) {  // fresh
      hits_.fetch_add(1, std::memory_order_relaxed);
      if (opts_.xfetch_beta > 0.0) {
        if (std::optional<std::optional<mapped_type>> fresh = maybe_refresh_early(key, *e, now)) {
          return std::move(*fresh);
        }
      }
      if (refresh_lead_ != 0 && now >= e->expiry_ns - refresh_lead_) {
        schedule_refresh(key, e->expiry_ns, &background_refreshes_);
      }
      return std::move(e->value);
    }
    // Stale: kept past its TTL for stale-while-revalidate or stale-if-error.
    if (now < detail::saturating_add(e->expiry_ns, opts_.stale_while_revalidate.count())) {
      stale_serves_.fetch_add(1, std::memory_order_relaxed);
      // One reader refreshes, unless another one did since this one read `e`; that reader gets the
      // refreshed answer (std::nullopt if the row is gone), the others the stale value.
      if (std::optional<std::optional<mapped_type>> fresh = refresh_seen(key, *e)) {
        return std::move(*fresh);
      }
      return std::move(e->value);
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    try {
      return core_.load(
          key, [&] { return fresh_now(key); }, [&] { return fill(key); });
    } catch (...) {
      if (now >= detail::saturating_add(e->expiry_ns, opts_.stale_if_error.count())) throw;
      stale_if_error_serves_.fetch_add(1, std::memory_order_relaxed);
      return std::move(e->value);
    }
  }

  // get() that parks no thread: `done(std::optional<V> value, std::exception_ptr error)` runs
  // exactly once with the answer (error null), or with the load's exception (value empty).
  //   - A fresh hit, a cached absence, or a stale value within stale_while_revalidate answers at
  //     once, on this thread, before get_async returns; an XFetch draw, refresh_after_write or the
  //     stale value's reload is queued on the executor (once per key), never run here.
  //   - A miss joins the key's load in flight (another get_async's, or a get()'s), or queues a
  //     new one on the executor; `done` then runs on the thread that completes the load, with no
  //     lock held. With stale_if_error, a failed load within that bound answers with the stale
  //     value, as get() does.
  // So with the default inline_executor a miss loads on this thread before get_async returns, as
  // get() would; give the cache a pool (executor.hpp) for loads that never run on the caller. A
  // load the executor refuses or destroys unrun answers with its exception, or
  // load_dropped_error. Consistency is get()'s: a get_async that starts after invalidate()
  // returned never gets the row it replaced. `done` must not throw (std::terminate) and should
  // be quick: it runs on a loader's thread. Throws only std::bad_alloc, and then `done` is not
  // called.
  template <class Done>
  requires std::invocable<Done&, std::optional<mapped_type>, std::exception_ptr>
  void get_async(const key_type& key, Done done) {
    std::optional<entry> e = store_.get(key);
    if (e && !e->value) {
      negative_hits_.fetch_add(1, std::memory_order_relaxed);
      done(std::optional<mapped_type>(), std::exception_ptr());
      return;
    }
    const std::int64_t now = clock_.now().count();
    if (e && now < e->expiry_ns) {  // fresh
      hits_.fetch_add(1, std::memory_order_relaxed);
      if (opts_.xfetch_beta > 0.0 &&
          xfetch::should_refresh(e->expiry_ns - now, e->delta_ns, opts_.xfetch_beta,
                                 [&] { return uniform(); })) {
        schedule_refresh(key, e->expiry_ns, &early_refreshes_);
      } else if (refresh_lead_ != 0 && now >= e->expiry_ns - refresh_lead_) {
        schedule_refresh(key, e->expiry_ns, &background_refreshes_);
      }
      done(std::move(e->value), std::exception_ptr());
      return;
    }
    if (e && now < detail::saturating_add(e->expiry_ns, opts_.stale_while_revalidate.count())) {
      stale_serves_.fetch_add(1, std::memory_order_relaxed);
      schedule_refresh(key, e->expiry_ns, nullptr);
      done(std::move(e->value), std::exception_ptr());
      return;
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    std::optional<mapped_type> stale;  // served if the load fails, under stale_if_error
    if (e && now < detail::saturating_add(e->expiry_ns, opts_.stale_if_error.count())) {
      stale = std::move(e->value);
    }
    // With a load_timeout, the answer and the timer race for `done`: the first one calls it.
    std::shared_ptr<async_waiter<Done>> timed;
    if (opts_.load_timeout.count() != 0) {
      timed = std::make_shared<async_waiter<Done>>(std::move(done));
    }
    auto answer = [this, timed,
                   done = timed ? std::optional<Done>() : std::optional<Done>(std::move(done)),
                   stale = std::move(stale)](
                      const std::shared_future<std::optional<mapped_type>>& result) mutable {
      std::optional<mapped_type> v;
      std::exception_ptr error;
      try {
        v = result.get();
      } catch (...) {
        error = std::current_exception();
      }
      if (error && stale) {
        stale_if_error_serves_.fetch_add(1, std::memory_order_relaxed);
        v = std::move(stale);
        error = nullptr;
      }
      if (timed) {
        if (!timed->answered.exchange(true, std::memory_order_acq_rel)) {
          timed->done(std::move(v), std::move(error));
        }
      } else {
        (*done)(std::move(v), std::move(error));
      }
    };
    core_.load_async(
        key, [this, key] { return fresh_now(key); }, [this, key] { return fill(key); },
        [this, &key](task t) {
          submit(key, false, [t = std::move(t)](const key_type&) mutable { t(); });
        },
        std::move(answer));
    if (timed && !timed->answered.load(std::memory_order_acquire)) {
      // Still waiting: arm the timeout. If that fails, the waiter just waits without one.
      try {
        timer_.at(detail::saturating_after(std::chrono::steady_clock::now(), opts_.load_timeout),
                  task([this, timed] {
                    if (timed->answered.exchange(true, std::memory_order_acq_rel)) return;
                    async_timeouts_.fetch_add(1, std::memory_order_relaxed);
                    timed->done(std::optional<mapped_type>(),
                                std::make_exception_ptr(load_timeout_error()));
                  }));
      } catch (...) {
      }
    }
  }

  // get_async() as a future: ready with the answer, or holding the load's exception.
  std::future<std::optional<mapped_type>> get_async(const key_type& key) {
    auto p = std::make_shared<std::promise<std::optional<mapped_type>>>();
    std::future<std::optional<mapped_type>> answer = p->get_future();
    get_async(key, [p](std::optional<mapped_type> v, std::exception_ptr error) {
      if (error) {
        p->set_exception(std::move(error));
      } else {
        p->set_value(std::move(v));
      }
    });
    return answer;
  }

  // get_async() for C++20 coroutines, with any coroutine type whose promise does not restrict
  // co_await: `std::optional<V> v = co_await cache.get_co(key);` (rethrows the load's exception).
  // A coroutine that misses is suspended, not blocked, until the load completes; it then resumes
  // on the thread that completed the load, or, with get_co(key, resume_on), through the executor
  // `resume_on` (an event loop's post, say), which is handed a task that resumes it. A hit does
  // not suspend at all. The awaiter holds a copy of the key; co_await it once.
  auto get_co(const key_type& key) { return awaiter<inline_executor>(this, key, {}); }
  template <cachet::executor ResumeOn>
  auto get_co(const key_type& key, ResumeOn resume_on) {
    return awaiter<ResumeOn>(this, key, std::move(resume_on));
  }

  // One answer per key of `keys`, in order, as get() would give for each (std::nullopt: no such
  // key), but with every key that needs loading loaded in ONE call: the Loader's
  // load_all(missing keys) if it has one (see cachet::bulk_loader), else its load() for each key in
  // turn on this thread. Fresh cached values count as hits and cached absences as negative_hits;
  // everything else is a miss: keys that are not cached or whose value has expired, including
  // values that get() would serve stale (get_all waits for their reload; it draws no XFetch early
  // refresh). A missed key that another thread is loading already is waited for, not reloaded;
  // duplicate keys are loaded once. What is loaded is cached exactly as by get(): TTL with jitter,
  // absence for negative_ttl, nothing if an invalidate() raced with the load.
  // Throws what the load throws (every key of the bulk load fails together and nothing of it is
  // cached), except under stale_if_error when every missed key still has a value within that
  // bound: then those stale values are served (counted in stale_if_error_serves). Also
  // recursive_load_error / load_timeout_error as get(), and std::bad_alloc. Allocates the result
  // and per-call bookkeeping.
  std::vector<std::optional<mapped_type>> get_all(std::span<const key_type> keys) {
    std::vector<std::optional<mapped_type>> out(keys.size());
    std::vector<key_type> missed;
    std::vector<std::size_t> missed_at;             // missed[j] answers keys[missed_at[j]]
    std::vector<std::optional<mapped_type>> stale;  // missed[j]'s value within stale_if_error
    bool all_stale = true;  // every missed key has a value within stale_if_error
    const std::int64_t now = clock_.now().count();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      std::optional<entry> e = store_.get(keys[i]);
      if (e && !e->value) {
        negative_hits_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (e && now < e->expiry_ns) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        out[i] = std::move(e->value);
        continue;
      }
      misses_.fetch_add(1, std::memory_order_relaxed);
      missed.push_back(keys[i]);
      missed_at.push_back(i);
      if (e && now < detail::saturating_add(e->expiry_ns, opts_.stale_if_error.count())) {
        stale.push_back(std::move(e->value));
      } else {
        stale.emplace_back();
        all_stale = false;
      }
    }
    if (missed.empty()) return out;
    std::vector<std::optional<mapped_type>> loaded;
    try {
      loaded = core_.load_all(std::span<const key_type>(missed),
                              [&](std::span<const key_type> led) { return fill_all(led); });
    } catch (...) {
      if (!all_stale) throw;
      stale_if_error_serves_.fetch_add(missed.size(), std::memory_order_relaxed);
      loaded = std::move(stale);
    }
    for (std::size_t j = 0; j < missed.size(); ++j) out[missed_at[j]] = std::move(loaded[j]);
    return out;
  }

  // Call after the source's row for `key` changed: drops the cached entry; any load or refresh of
  // `key` in flight will not cache what it read, and reads that start after this returns do not
  // join it. Returns whether an entry was cached.
  bool invalidate(const key_type& key) {
    return core_.write(key, [&] { return store_.erase(key); });
  }

  // Reloads `key` on the executor whether or not it is cached or fresh, and caches the outcome as
  // a load would (not if an invalidate() comes after the reload began). A load of the key already
  // in flight is joined instead. The future gives the reloaded answer, or the load's exception
  // (the cached value is then kept; counted in refresh_failures), or std::future_error
  // (broken_promise) if the executor destroyed the task unrun. Throws what the executor throws
  // when it refuses the task, and std::bad_alloc.
  std::future<std::optional<mapped_type>> refresh(const key_type& key) {
    auto done = std::make_shared<std::promise<std::optional<mapped_type>>>();
    std::future<std::optional<mapped_type>> answer = done->get_future();
    submit(key, false, [this, done](const key_type& k) {
      try {
        done->set_value(core_.load(
            k, [] { return std::optional<std::optional<mapped_type>>(); },
            [&] { return fill(k); }));
      } catch (...) {
        refresh_failures_.fetch_add(1, std::memory_order_relaxed);
        done->set_exception(std::current_exception());
      }
    });
    return answer;
  }

  // refresh() of each key: result[i] answers keys[i] (one task per key; a key given twice is
  // reloaded once, as the second joins the first's flight if it is still running).
  std::vector<std::future<std::optional<mapped_type>>> refresh_all(std::span<const key_type> keys) {
    std::vector<std::future<std::optional<mapped_type>>> out;
    out.reserve(keys.size());
    for (const key_type& k : keys) out.push_back(refresh(k));
    return out;
  }

  // Entries cached now, "absent" entries included.
  std::size_t size() const noexcept { return store_.size(); }

  read_through_stats stats() const noexcept {
    single_flight_stats loads = core_.stats();
    loads.timeouts += async_timeouts_.load(std::memory_order_relaxed);
    return {hits_.load(std::memory_order_relaxed),
            misses_.load(std::memory_order_relaxed),
            negative_hits_.load(std::memory_order_relaxed),
            early_refreshes_.load(std::memory_order_relaxed),
            refresh_failures_.load(std::memory_order_relaxed),
            stale_serves_.load(std::memory_order_relaxed),
            stale_if_error_serves_.load(std::memory_order_relaxed),
            loads,
            background_refreshes_.load(std::memory_order_relaxed)};
  }

 private:
  // What the store holds per key: the value or "absent", when it stops being fresh, and how long
  // the load that produced it took (XFetch's delta).
  struct entry {
    std::optional<mapped_type> value;
    std::int64_t expiry_ns;
    std::int64_t delta_ns;
  };
  using inner_store = typename Store::template rebind_value<entry>;
  static_assert(check_store<inner_store>());
  using guarded_loader_type = detail::guarded_loader<key_type, mapped_type, typename Store::hasher,
                                                     typename Store::key_equal>;

  static options validated(options o) {
    if (o.ttl <= std::chrono::nanoseconds::zero()) {
      throw invalid_option("ttl", "must be positive: how long a loaded value is served");
    }
    if (o.negative_ttl < std::chrono::nanoseconds::zero()) {
      throw invalid_option("negative_ttl", "is negative: must be >= 0 (0 = absence not cached)");
    }
    if (!(o.ttl_jitter >= 0.0 && o.ttl_jitter < 1.0)) {
      throw invalid_option("ttl_jitter",
                           "= " + std::to_string(o.ttl_jitter) + ": must be in [0, 1)");
    }
    if (o.stale_while_revalidate < std::chrono::nanoseconds::zero()) {
      throw invalid_option("stale_while_revalidate", "is negative: must be >= 0 (0 = off)");
    }
    if (o.stale_if_error < std::chrono::nanoseconds::zero()) {
      throw invalid_option("stale_if_error", "is negative: must be >= 0 (0 = off)");
    }
    if (o.refresh_after_write < std::chrono::nanoseconds::zero() ||
        (o.refresh_after_write.count() != 0 &&
         (o.ttl == no_expiry || o.refresh_after_write >= o.ttl))) {
      throw invalid_option("refresh_after_write",
                           "must be 0 (off) or in (0, ttl) with a finite ttl: the age at which a "
                           "read queues a reload");
    }
    if (o.load_timeout < std::chrono::nanoseconds::zero()) {
      throw invalid_option("load_timeout", "is negative: must be >= 0 (0 = wait without limit)");
    }
    if (!(o.xfetch_beta >= 0.0 && std::isfinite(o.xfetch_beta))) {
      throw invalid_option("xfetch_beta",
                           "= " + std::to_string(o.xfetch_beta) + ": must be finite and >= 0");
    }
    return o;
  }

  static store_options<key_type, entry> inner_options(const options& o) {
    store_options<key_type, entry> s;
    s.max_entries = o.max_entries;
    s.shards = o.shards;
    s.recorder = o.recorder;
    return s;  // the store validates max_entries and shards
  }

  // Uniform in (0, 1], from a shared counter run through a mixer: draws happen only near expiry
  // and on fills, so the shared counter is off the common hit path.
  double uniform() noexcept {
    const std::uint64_t x = detail::mix64(rng_ + counter_.fetch_add(1, std::memory_order_relaxed));
    return static_cast<double>((x >> 11) + 1) * 0x1.0p-53;
  }

  // XFetch: with the probability for this gap, one reader refreshes `e` before it expires. Returns
  // the refreshed answer if this reader ran (or saw) a refresh, else nothing.
  std::optional<std::optional<mapped_type>> maybe_refresh_early(const key_type& key, const entry& e,
                                                                std::int64_t now) {
    const std::int64_t gap = e.expiry_ns - now;
    if (!xfetch::should_refresh(gap, e.delta_ns, opts_.xfetch_beta, [&] { return uniform(); })) {
      return std::nullopt;
    }
    return refresh_seen(key, e, &early_refreshes_);
  }

  // Refreshes `seen` (stale-while-revalidate, XFetch) in a flight nobody waits for, unless another
  // reader's refresh replaced it since this reader read it. Returns the answer the refresh (or
  // that replacement) gave, or nothing if another refresh of the key is running or this one
  // failed (counted in refresh_failures; the caller serves `seen`). `ran` counts refreshes run.
  std::optional<std::optional<mapped_type>> refresh_seen(
      const key_type& key, const entry& seen, std::atomic<std::uint64_t>* ran = nullptr) {
    std::optional<std::optional<mapped_type>> answer;
    try {
      const bool loaded = core_.try_lead(
          key,
          [&] {
            std::optional<std::optional<mapped_type>> now = refreshed_since(key, seen);
            answer = now;
            return now;
          },
          [&] {
            std::optional<mapped_type> v = fill(key);
            answer = v;
            return v;
          });
      if (loaded && ran) ran->fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
      refresh_failures_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    return answer;
  }

  // For a refresh about to run inside its flight: the key's answer now if the cached entry is no
  // longer `seen` (another refresh or a put replaced it since the caller read it), else nothing,
  // and the refresh goes ahead. Without this, a reader that read `seen` just before another
  // reader's refresh ended would refresh it a second time.
  std::optional<std::optional<mapped_type>> refreshed_since(const key_type& key,
                                                            const entry& seen) {
    std::optional<entry> now = store_.peek(key);
    if (!now || now->expiry_ns == seen.expiry_ns) return std::nullopt;
    return std::optional<std::optional<mapped_type>>(std::move(now->value));
  }

  // For a load about to run inside its flight: the key's answer if the store now holds a fresh
  // one (another thread's load cached it after this caller missed), else nothing, and the load
  // goes ahead. A stale entry (kept for stale-while-revalidate or stale-if-error) is no answer.
  std::optional<std::optional<mapped_type>> fresh_now(const key_type& key) {
    std::optional<entry> now = store_.peek(key);
    if (!now || clock_.now().count() >= now->expiry_ns) return std::nullopt;
    return std::optional<std::optional<mapped_type>>(std::move(now->value));
  }

  // The time loads are measured on (XFetch's delta). The default coarse clock ticks every few
  // milliseconds, which would round most loads down to 0 and silently turn refresh-ahead off, so
  // under it loads are timed with steady_clock. Any other clock (manual_clock in tests) is used as
  // it is.
  std::int64_t load_clock() const noexcept {
    if constexpr (std::is_same_v<clock_type, coarse_steady_clock>) {
      return steady_clock{}.now().count();
    } else {
      return clock_.now().count();
    }
  }

  // Loads `key` and caches the outcome, unless an invalidate() came after the load began.
  std::optional<mapped_type> fill(const key_type& key) {
    const auto ticket = core_.begin(key);
    const std::int64_t l0 = load_clock();
    std::optional<mapped_type> v = load_from<key_type, mapped_type>(loader_, key);
    cache(key, v, load_clock() - l0, clock_.now().count(), ticket);
    return v;
  }

  // Caches `v` (a value, or "absent") for `key`, loaded in `delta` ns and finished at `t1`, unless
  // a write came after `ticket`. A value is kept past its TTL for as long as it may be served
  // stale. An absence that is not to be cached (negative_ttl = 0) removes what is cached instead: a
  // refresh that finds the row gone must not leave the deleted row to be served stale.
  void cache(const key_type& key, const std::optional<mapped_type>& v, std::int64_t delta,
             std::int64_t t1, typename guarded_loader_type::ticket ticket) {
    const std::chrono::nanoseconds ttl = v ? jittered(opts_.ttl) : opts_.negative_ttl;
    if (ttl <= std::chrono::nanoseconds::zero()) {
      store_.erase(key);
      return;
    }
    const std::int64_t expiry = detail::saturating_add(t1, ttl.count());
    const std::chrono::nanoseconds keep =
        v ? std::chrono::nanoseconds(detail::saturating_add(ttl.count(), stale_window_.count()))
          : ttl;
    core_.fill(store_, key, entry{v, expiry, delta}, ticket, keep);
  }

  // fill() for a batch, inside the flights of `keys` (distinct): answers from the store the keys
  // another thread cached fresh since get_all() missed them (as get()'s flight does), loads the
  // rest in one load_all_from() call and caches each outcome, unless a write of that key came after
  // the load began. Every entry gets the batch's duration as its XFetch delta.
  std::vector<std::optional<mapped_type>> fill_all(std::span<const key_type> keys) {
    std::vector<std::optional<mapped_type>> out(keys.size());
    std::vector<key_type> to_load;
    std::vector<std::size_t> at;  // to_load[j] answers keys[at[j]]
    std::vector<typename guarded_loader_type::ticket> tickets;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (std::optional<std::optional<mapped_type>> now = fresh_now(keys[i])) {
        out[i] = std::move(*now);
        continue;
      }
      tickets.push_back(core_.begin(keys[i]));
      to_load.push_back(keys[i]);
      at.push_back(i);
    }
    if (to_load.empty()) return out;
    const std::int64_t l0 = load_clock();
    std::vector<std::optional<mapped_type>> vs =
        load_all_from<key_type, mapped_type, typename Store::hasher, typename Store::key_equal>(
            loader_, std::span<const key_type>(to_load));
    const std::int64_t delta = load_clock() - l0;
    const std::int64_t t1 = clock_.now().count();
    for (std::size_t j = 0; j < to_load.size(); ++j) {
      cache(to_load[j], vs[j], delta, t1, tickets[j]);
      out[at[j]] = std::move(vs[j]);
    }
    return out;
  }

  // A get_async caller's `done` with a load_timeout: called once, by the answer or the timer.
  template <class Done>
  struct async_waiter {
    explicit async_waiter(Done d) : done(std::move(d)) {}
    Done done;
    std::atomic<bool> answered{false};
  };

  // ---- coroutines (get_co)

  // What get_co() returns. The result and a one-shot flag live in the awaiter (the coroutine's
  // frame): get_async's callback and await_suspend each set the flag, and whichever comes second
  // goes on: the callback resumes the coroutine if await_suspend had returned already, and
  // await_suspend does not suspend if the answer came first (a hit, or a load that finished at
  // once).
  template <class ResumeOn>
  class awaiter {
   public:
    awaiter(read_through* cache, const key_type& key, ResumeOn resume_on)
        : cache_(cache), key_(key), resume_on_(std::move(resume_on)) {}
    awaiter(const awaiter&) = delete;
    awaiter& operator=(const awaiter&) = delete;

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> h) {
      cache_->get_async(key_, [this, h](std::optional<mapped_type> v, std::exception_ptr error) {
        value_ = std::move(v);
        error_ = std::move(error);
        if (arrived_.exchange(true, std::memory_order_acq_rel)) resume(h);
      });
      // Not to be touched after this exchange if it suspends: the callback may resume (and end)
      // the coroutine on another thread at once.
      return !arrived_.exchange(true, std::memory_order_acq_rel);
    }

    std::optional<mapped_type> await_resume() {
      if (error_) std::rethrow_exception(error_);
      return std::move(value_);
    }

   private:
    // Resumes `h` through resume_on; if that fails (it refuses the task, or std::bad_alloc),
    // resumes it here rather than lose it.
    void resume(std::coroutine_handle<> h) noexcept {
      if constexpr (std::is_same_v<ResumeOn, inline_executor>) {
        h.resume();
      } else {
        bool posted = false;
        try {
          resume_on_(task([h] { h.resume(); }));
          posted = true;
        } catch (...) {
        }
        if (!posted) h.resume();
      }
    }

    read_through* cache_;
    key_type key_;
    ResumeOn resume_on_;
    std::optional<mapped_type> value_;
    std::exception_ptr error_;
    std::atomic<bool> arrived_{false};
  };

  // ---- background work (refresh_after_write, refresh())

  // Gives the executor a task that runs work(key). Counted in tasks_out_ until the task has run or
  // been destroyed, so ~read_through() can wait for it. With `once_per_key`, nothing is queued
  // while a task for the key is queued or running (returns false then). Throws what the
  // executor throws (the task is then destroyed: the count and the mark are undone).
  template <class Work>
  bool submit(const key_type& key, bool once_per_key, Work work) {
    task_slot slot(key, once_per_key);  // copies the key before anything is counted
    {
      std::lock_guard<std::mutex> g(tasks_mu_);
      if (once_per_key && !queued_.insert(key).second) return false;
      ++tasks_out_;
      slot.owner = this;  // from here on its destructor undoes the two lines above
    }
    executor_(task([out = std::move(slot), work = std::move(work)]() mutable { work(out.key); }));
    return true;
  }

  // Owned by each task: undoes submit()'s count (and mark) when the task is done or destroyed.
  struct task_slot {
    task_slot(const key_type& k, bool m) : owner(nullptr), key(k), marked(m) {}
    task_slot(task_slot&& o) noexcept
        : owner(std::exchange(o.owner, nullptr)), key(std::move(o.key)), marked(o.marked) {}
    task_slot& operator=(task_slot&&) = delete;
    ~task_slot() {
      if (owner != nullptr) owner->task_finished(key, marked);
    }
    read_through* owner;
    key_type key;
    bool marked;
  };

  void task_finished(const key_type& key, bool marked) noexcept {
    std::lock_guard<std::mutex> g(tasks_mu_);
    if (marked) queued_.erase(key);
    if (--tasks_out_ == 0) tasks_done_.notify_all();
  }

  // refresh_after_write (and get_async's refreshes): the value that expires at `seen_expiry` is
  // due for a reload; queue one (none while one is queued or running for the key), counted in
  // `*ran` when it runs. A refusing executor counts a failure.
  void schedule_refresh(const key_type& key, std::int64_t seen_expiry,
                        std::atomic<std::uint64_t>* ran) {
    try {
      submit(key, true, [this, seen_expiry, ran](const key_type& k) {
        refresh_seen(k, entry{std::nullopt, seen_expiry, 0}, ran);
      });
    } catch (...) {  // the executor refused it, or std::bad_alloc: the read still succeeds
      refresh_failures_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  std::chrono::nanoseconds jittered(std::chrono::nanoseconds ttl) noexcept {
    if (opts_.ttl_jitter <= 0.0 || ttl == no_expiry) return ttl;
    const auto cut = static_cast<std::int64_t>(static_cast<double>(ttl.count()) * opts_.ttl_jitter *
                                               (1.0 - uniform()));
    return std::max(ttl - std::chrono::nanoseconds(cut), std::chrono::nanoseconds(1));
  }

  options opts_;
  std::chrono::nanoseconds stale_window_ =
      std::max(opts_.stale_while_revalidate, opts_.stale_if_error);
  Loader loader_;
  clock_type clock_;
  inner_store store_;
  guarded_loader_type core_;
  std::uint64_t rng_;
  std::atomic<std::uint64_t> counter_{0};
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, negative_hits_{0}, early_refreshes_{0},
      refresh_failures_{0}, stale_serves_{0}, stale_if_error_serves_{0}, background_refreshes_{0};
  // How long before a value's deadline refresh_after_write comes due (0 = off).
  std::int64_t refresh_lead_ =
      opts_.refresh_after_write.count() == 0 ? 0 : (opts_.ttl - opts_.refresh_after_write).count();
  Executor executor_;
  std::mutex tasks_mu_;
  std::condition_variable tasks_done_;
  std::size_t tasks_out_ = 0;  // tasks given to the executor, not yet run or destroyed
  absl::flat_hash_set<key_type, typename Store::hasher, typename Store::key_equal> queued_;
  std::atomic<std::uint64_t> async_timeouts_{0};  // get_async waiters that hit load_timeout
  // Fires get_async's load_timeout (its thread starts on first use). Last, so it is destroyed
  // first: its tasks refer to this cache.
  detail::deadline_timer timer_;
};

}  // namespace cachet
