// Test support for the access patterns as one family (tests/patterns/*_test.cpp): a source of
// truth whose loads can be held open, a store wrapper that runs a test's hook just before or after
// one of its operations, and one adapter per pattern behind a common interface, so a suite can be
// written once and run over cache_aside, read_through, write_through and write_back (as Caffeine's
// CacheSpec runs one suite over every cache kind).
//
//   table            the source of truth: rows by key, load counters, a failure switch and a gate
//                    that holds loads open after they read their row (so a load "began before" a
//                    write the test then makes). Shared by reference through source_handle /
//                    bulk_source_handle, the Loader and Source the patterns are given.
//   paused_store<S>  meets cachet::store by forwarding every member to S (rebind_value too, and
//                    constructible from S's arguments, so read_through's rebound store is one too);
//                    before and after each get/peek/put/put_if/erase it reports the operation to
//                    store_hook, which runs an armed test action once, on that thread: the way to
//                    hold a fill "just after it was stored", a write just before it changes the
//                    store, or to run another read right after a miss.
//   *_adapter        read(k), write(k, v), remove(k) (and read_all(keys) where the pattern has
//                    get_all) over one pattern built on paused_store<sharded_store<int, int>> and a
//                    manual_clock. write() is "the source first, then the pattern's write":
//                    cache_aside and read_through update the table and invalidate; write_through
//                    put()s in invalidate or update mode (its Source updates the table); write_back
//                    put()s (its flusher does).
//   async_call<T>    runs one call on its own thread and keeps its result or exception, so the
//                    main thread makes every assertion (Catch2's are not thread-safe).
//
// Nothing here decides correctness by time: waits are cachet_test::await-style loops or condition
// variables with a one-minute deadlock guard, and every TTL runs on a manual_clock.
#pragma once

#include <algorithm>
#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/clock.hpp>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/single_flight.hpp>
#include <cachet/store.hpp>
#include <cachet/write_back.hpp>
#include <cachet/write_through.hpp>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../support.hpp"

namespace cachet_patterns {

using namespace std::chrono_literals;
using cachet_test::await;

// The one-minute guard every wait here gives up after (a broken guard fails, it does not hang).
inline constexpr std::chrono::seconds k_deadlock_guard{60};

// ---------------------------------------------------------------------------------------------
// The source of truth.

class table {
 public:
  // A key no load is filtered on (hold_next's default).
  static constexpr int k_any = -1;

  // --- rows (what a Source's store/erase change, and what loads read)
  void store(int k, int v) {
    std::lock_guard<std::mutex> g(mu_);
    rows_[k] = v;
    ++stores_;
  }
  void erase(int k) {
    std::lock_guard<std::mutex> g(mu_);
    rows_.erase(k);
    ++erases_;
  }
  std::optional<int> row(int k) const {
    std::lock_guard<std::mutex> g(mu_);
    auto it = rows_.find(k);
    if (it == rows_.end()) return std::nullopt;
    return it->second;
  }
  std::map<int, int> rows() const {
    std::lock_guard<std::mutex> g(mu_);
    return rows_;
  }

  // --- counters
  int loads() const { return loads_.load(); }            // load() calls
  int bulk_loads() const { return bulk_loads_.load(); }  // load_all() calls
  int all_loads() const { return loads() + bulk_loads(); }
  int stores() const {
    std::lock_guard<std::mutex> g(mu_);
    return stores_;
  }
  // The key lists load_all() was called with, in order.
  std::vector<std::vector<int>> batches() const {
    std::lock_guard<std::mutex> g(mu_);
    return batches_;
  }

  // --- failure: while set, every load (after reading and after the gate) throws
  // std::runtime_error("db down").
  void set_fail(bool f) { fail_.store(f); }

  // --- jitter: loads yield a few times at random after reading their row, to widen the window
  // between a load's read and its fill (the history checker).
  void set_jitter(bool j) { jitter_.store(j); }

  // --- load time: each load advances `clock` by `d` after reading (XFetch measures loads on the
  // store's clock; with a manual_clock a load otherwise takes no time at all).
  void advance_on_load(cachet::manual_clock clock, std::chrono::nanoseconds d) {
    std::lock_guard<std::mutex> g(mu_);
    load_clock_ = clock;
    load_time_ = d;
  }

  // --- the gate. The next `n` loads (of `key`, or of any key) are held after they read their row
  // until release(). A bulk load counts as one load and is held if any of its keys matches.
  void hold_next(int n = 1, int key = k_any) {
    std::lock_guard<std::mutex> g(gate_mu_);
    hold_budget_ = n;
    hold_key_ = key;
  }
  // Loads parked at the gate now.
  int held() const {
    std::lock_guard<std::mutex> g(gate_mu_);
    return parked_;
  }
  // Waits (deadlock guard) until at least n loads are parked.
  bool await_held(int n = 1) const {
    std::unique_lock<std::mutex> lk(gate_mu_);
    return gate_cv_.wait_for(lk, k_deadlock_guard, [&] { return parked_ >= n; });
  }
  // Lets every parked load go on, and holds no more.
  void release() {
    {
      std::lock_guard<std::mutex> g(gate_mu_);
      hold_budget_ = 0;
      ++generation_;
    }
    gate_cv_.notify_all();
  }
  // Whether a parked load gave up waiting (a test that forgot to release, or a hang).
  bool gate_timed_out() const { return gate_timed_out_.load(); }

  // One load of `k`, as a Source's load() does it: count, read, maybe hold, maybe fail.
  std::optional<int> load(int k) {
    ++loads_;
    std::optional<int> v = row(k);
    after_read({k});
    if (fail_.load()) throw std::runtime_error("db down");
    return v;
  }

  // One bulk load: the rows of `keys` that exist, as (key, value) pairs.
  std::vector<std::pair<int, int>> load_all(std::span<const int> keys) {
    ++bulk_loads_;
    std::vector<std::pair<int, int>> out;
    {
      std::lock_guard<std::mutex> g(mu_);
      batches_.emplace_back(keys.begin(), keys.end());
      for (int k : keys) {
        auto it = rows_.find(k);
        if (it != rows_.end()) out.emplace_back(k, it->second);
      }
    }
    after_read(std::vector<int>(keys.begin(), keys.end()));
    if (fail_.load()) throw std::runtime_error("db down");
    return out;
  }

 private:
  // The load time, the jitter and the gate, for a load of `keys` that has read its rows.
  void after_read(const std::vector<int>& keys) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (load_clock_) load_clock_->advance(load_time_);
    }
    if (jitter_.load()) {
      const std::uint64_t r = cachet::detail::mix64(jitter_counter_.fetch_add(1) + 0x9E37ULL);
      if (r % 4 == 0) {
        for (std::uint64_t i = 0; i < 8 + (r >> 8) % 64; ++i) std::this_thread::yield();
      }
    }
    std::unique_lock<std::mutex> lk(gate_mu_);
    if (hold_budget_ <= 0) return;
    const bool match =
        hold_key_ == k_any || std::find(keys.begin(), keys.end(), hold_key_) != keys.end();
    if (!match) return;
    --hold_budget_;
    ++parked_;
    gate_cv_.notify_all();
    const std::uint64_t gen = generation_;
    if (!gate_cv_.wait_for(lk, k_deadlock_guard, [&] { return generation_ != gen; })) {
      gate_timed_out_.store(true);
    }
    --parked_;
  }

  mutable std::mutex mu_;
  std::map<int, int> rows_;
  int stores_ = 0;
  int erases_ = 0;
  std::vector<std::vector<int>> batches_;
  std::optional<cachet::manual_clock> load_clock_;
  std::chrono::nanoseconds load_time_{0};
  std::atomic<int> loads_{0};
  std::atomic<int> bulk_loads_{0};
  std::atomic<bool> fail_{false};
  std::atomic<bool> jitter_{false};
  std::atomic<std::uint64_t> jitter_counter_{0};

  mutable std::mutex gate_mu_;
  mutable std::condition_variable gate_cv_;
  int hold_budget_ = 0;
  int hold_key_ = k_any;
  int parked_ = 0;
  std::uint64_t generation_ = 0;
  std::atomic<bool> gate_timed_out_{false};
};

// A Loader and Source over a table (copyable: the patterns take theirs by value).
struct source_handle {
  table* t;
  std::optional<int> load(const int& k) { return t->load(k); }
  void store(const int& k, const int& v) { t->store(k, v); }
  void erase(const int& k) { t->erase(k); }
};

// The same with load_all(): a BulkLoader, for read_through::get_all.
struct bulk_source_handle : source_handle {
  std::vector<std::pair<int, int>> load_all(std::span<const int> keys) { return t->load_all(keys); }
};

static_assert(cachet::source<source_handle, int, int>);
static_assert(cachet::bulk_loader<bulk_source_handle, int, int>);

// ---------------------------------------------------------------------------------------------
// store_hook: one armed action, run right after a store operation that matches.

enum class store_op { get, peek, put, put_if, erase };

inline const char* to_string(store_op op) {
  switch (op) {
    case store_op::get:
      return "get";
    case store_op::peek:
      return "peek";
    case store_op::put:
      return "put";
    case store_op::put_if:
      return "put_if";
    case store_op::erase:
      return "erase";
  }
  return "?";
}

struct store_event {
  store_op op;
  std::int64_t key;  // the key, for integral keys (-1 otherwise)
  // True for the report made before the operation is forwarded to the wrapped store (`ok` is
  // then false); false for the one made after it returned.
  bool before;
  // After: get/peek found a value; put/put_if stored the value; erase removed a live entry.
  bool ok;
  std::thread::id thread;
};

// Process-wide hooks (Catch2 runs test cases one after another). arm(when, action) adds a
// one-shot hook: the first report of any paused_store for which when(event) is true disarms that
// hook and runs action(event) on the reporting thread, with no store lock held: before the
// operation is forwarded, or after it returned. So an action may block (to hold a fill just after
// it was stored, or a write just before it changes the store) or call the pattern (its calls
// report too, and may fire other hooks, never the running one). `when` runs under the hooks'
// mutex: keep it cheap. Several hooks may be armed at once; arm() returns the one it added.
class store_hook {
 public:
  using when_fn = std::function<bool(const store_event&)>;
  using action_fn = std::function<void(const store_event&)>;
  using id = std::size_t;

  static id arm(when_fn when, action_fn action) {
    std::lock_guard<std::mutex> g(st().mu);
    st().hooks.push_back(hook{std::move(when), std::move(action), false});
    st().armed.fetch_add(1);
    return st().hooks.size() - 1;
  }
  // Disarms every hook (hook_scope does this when a test ends).
  static void disarm() {
    std::lock_guard<std::mutex> g(st().mu);
    st().hooks.clear();
    st().armed.store(0);
  }
  static bool armed() { return st().armed.load(std::memory_order_acquire) > 0; }
  // Whether hook `h`'s action has started.
  static bool fired(id h) {
    std::lock_guard<std::mutex> g(st().mu);
    return h < st().hooks.size() && st().hooks[h].fired;
  }

  static void notify(const store_event& e) {
    if (!armed()) return;
    action_fn action;
    {
      std::lock_guard<std::mutex> g(st().mu);
      for (hook& h : st().hooks) {
        if (h.fired || !h.when || !h.when(e)) continue;
        h.fired = true;
        action = std::move(h.action);
        h.when = nullptr;
        h.action = nullptr;
        st().armed.fetch_sub(1);
        break;
      }
    }
    if (action) action(e);
  }

 private:
  struct hook {
    when_fn when;
    action_fn action;
    bool fired;
  };
  struct state {
    std::mutex mu;
    std::atomic<int> armed{0};  // hooks armed and not fired
    std::vector<hook> hooks;
  };
  static state& st() {
    static state s;
    return s;
  }
};

// Matches an operation of `op` on `key`, on the thread `t`, reported before or after it.
inline store_hook::when_fn on(std::thread::id t, store_op op, std::int64_t key, bool before) {
  return [=](const store_event& e) {
    return e.thread == t && e.op == op && e.key == key && e.before == before;
  };
}

// Disarms the hook when a test leaves its scope, passing or failing.
struct hook_scope {
  hook_scope() = default;
  hook_scope(const hook_scope&) = delete;
  hook_scope& operator=(const hook_scope&) = delete;
  ~hook_scope() { store_hook::disarm(); }
};

// A latch a hook action parks on: the action calls hold(), the test sees held() and resumes it.
class pause_point {
 public:
  void hold() {
    std::unique_lock<std::mutex> lk(mu_);
    held_ = true;
    cv_.notify_all();
    if (!cv_.wait_for(lk, k_deadlock_guard, [&] { return resumed_; })) timed_out_ = true;
  }
  bool held() const {
    std::lock_guard<std::mutex> g(mu_);
    return held_;
  }
  void resume() {
    {
      std::lock_guard<std::mutex> g(mu_);
      resumed_ = true;
    }
    cv_.notify_all();
  }
  bool timed_out() const {
    std::lock_guard<std::mutex> g(mu_);
    return timed_out_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  bool resumed_ = false;
  bool timed_out_ = false;
};

// ---------------------------------------------------------------------------------------------
// paused_store: a cachet::store that forwards to Inner and reports each operation to store_hook.

template <class Inner>
class paused_store {
 public:
  using inner_type = Inner;
  using key_type = typename Inner::key_type;
  using mapped_type = typename Inner::mapped_type;
  using clock_type = typename Inner::clock_type;
  using hasher = typename Inner::hasher;
  using key_equal = typename Inner::key_equal;
  using size_type = typename Inner::size_type;
  using options_type = typename Inner::options_type;

  template <class V2>
  using rebind_value = paused_store<typename Inner::template rebind_value<V2>>;

  // Constructed from whatever Inner is constructed from (store_options, clock, hash, equality).
  template <class... Args>
  requires std::constructible_from<Inner, Args&&...>
  explicit paused_store(Args&&... args) : inner_(std::forward<Args>(args)...) {}

  paused_store(const paused_store&) = delete;
  paused_store& operator=(const paused_store&) = delete;

  std::optional<mapped_type> get(const key_type& key) {
    report_before(store_op::get, key_of(key));
    std::optional<mapped_type> v = inner_.get(key);
    report_after(store_op::get, key_of(key), v.has_value());
    return v;
  }
  std::optional<mapped_type> peek(const key_type& key) {
    report_before(store_op::peek, key_of(key));
    std::optional<mapped_type> v = inner_.peek(key);
    report_after(store_op::peek, key_of(key), v.has_value());
    return v;
  }
  bool contains(const key_type& key) { return inner_.contains(key); }

  cachet::put_result put(key_type key, mapped_type value) {
    const std::int64_t k = key_of(key);
    report_before(store_op::put, k);
    const cachet::put_result r = inner_.put(std::move(key), std::move(value));
    report_after(store_op::put, k, cachet::stored(r));
    return r;
  }
  cachet::put_result put(key_type key, mapped_type value, std::chrono::nanoseconds ttl) {
    const std::int64_t k = key_of(key);
    report_before(store_op::put, k);
    const cachet::put_result r = inner_.put(std::move(key), std::move(value), ttl);
    report_after(store_op::put, k, cachet::stored(r));
    return r;
  }

  // The guarded fill.
  template <class Pred>
  requires std::is_nothrow_invocable_r_v<bool, Pred&> cachet::put_result put_if(key_type key,
                                                                                mapped_type value,
                                                                                Pred still_valid) {
    const std::int64_t k = key_of(key);
    report_before(store_op::put_if, k);
    const cachet::put_result r = inner_.put_if(std::move(key), std::move(value), still_valid);
    report_after(store_op::put_if, k, cachet::stored(r));
    return r;
  }
  template <class Pred>
  requires std::is_nothrow_invocable_r_v<bool, Pred&> cachet::put_result put_if(
      key_type key, mapped_type value, std::chrono::nanoseconds ttl, Pred still_valid) {
    const std::int64_t k = key_of(key);
    report_before(store_op::put_if, k);
    const cachet::put_result r = inner_.put_if(std::move(key), std::move(value), ttl, still_valid);
    report_after(store_op::put_if, k, cachet::stored(r));
    return r;
  }

  bool erase(const key_type& key) {
    report_before(store_op::erase, key_of(key));
    const bool erased = inner_.erase(key);
    report_after(store_op::erase, key_of(key), erased);
    return erased;
  }

  void clear() { inner_.clear(); }
  std::size_t cleanup() { return inner_.cleanup(); }
  std::size_t size() const noexcept { return inner_.size(); }
  bool empty() const noexcept { return inner_.empty(); }
  std::size_t capacity() const noexcept { return inner_.capacity(); }
  std::size_t shard_count() const noexcept { return inner_.shard_count(); }
  const options_type& options() const noexcept { return inner_.options(); }
  const clock_type& clock() const noexcept { return inner_.clock(); }
  auto stats() const noexcept { return inner_.stats(); }
  template <class F>
  void for_each(F&& f) {
    inner_.for_each(std::forward<F>(f));
  }
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    return inner_.erase_if(std::move(pred));
  }

  Inner& inner() noexcept { return inner_; }

 private:
  static std::int64_t key_of(const key_type& key) {
    if constexpr (std::is_integral_v<key_type>) {
      return static_cast<std::int64_t>(key);
    } else {
      return -1;
    }
  }
  static void report_before(store_op op, std::int64_t key) {
    if (!store_hook::armed()) return;
    store_hook::notify(store_event{op, key, true, false, std::this_thread::get_id()});
  }
  static void report_after(store_op op, std::int64_t key, bool ok) {
    if (!store_hook::armed()) return;
    store_hook::notify(store_event{op, key, false, ok, std::this_thread::get_id()});
  }

  Inner inner_;
};

using base_store = cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock>;
using test_store = paused_store<base_store>;

static_assert(cachet::store<base_store>);
static_assert(cachet::store<test_store>);
static_assert(cachet::store<test_store::rebind_value<std::string>>);

// ---------------------------------------------------------------------------------------------
// A call on its own thread.

inline std::string message_of(const std::exception_ptr& e) {
  if (!e) return "(no exception)";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

// Runs f() on a new thread at once; keeps the value or the exception for the main thread.
template <class T>
class async_call {
 public:
  template <class F>
  explicit async_call(F f)
      : thread_([this, f = std::move(f)]() mutable {
          try {
            value_ = f();
          } catch (...) {
            error_ = std::current_exception();
          }
          done_.store(true);
        }) {}
  async_call(const async_call&) = delete;
  async_call& operator=(const async_call&) = delete;
  ~async_call() { join(); }

  bool done() const { return done_.load(); }
  std::thread::id id() const { return thread_.get_id(); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // After join(): the result, or its exception.
  const T& value() {
    join();
    return value_;
  }
  std::exception_ptr error() {
    join();
    return error_;
  }
  bool threw() { return error() != nullptr; }

 private:
  T value_{};
  std::exception_ptr error_;
  std::atomic<bool> done_{false};
  std::thread thread_;  // last: started once everything above exists
};

using read_call = async_call<std::optional<int>>;
using read_all_call = async_call<std::vector<std::optional<int>>>;

// ---------------------------------------------------------------------------------------------
// The adapters.

// What a test may tune; each adapter uses the fields that apply to it.
struct config {
  std::size_t max_entries = 64;
  std::size_t shards = 1;
  // read_through
  std::chrono::nanoseconds ttl = std::chrono::hours(1);
  std::chrono::nanoseconds negative_ttl{0};
  std::chrono::nanoseconds stale_while_revalidate{0};
  std::chrono::nanoseconds stale_if_error{0};
  double xfetch_beta = 0.0;
  std::uint64_t seed = 1;
  // write_back: nothing is flushed unless flush() is called.
  cachet::write_back_options write_back = lazy_write_back();

  static cachet::write_back_options lazy_write_back() {
    cachet::write_back_options o;
    o.max_batch = 1 << 20;
    o.max_dirty = 1 << 20;
    o.max_delay = std::chrono::hours(1);
    return o;
  }
};

inline cachet::store_options<int, int> store_options_of(const config& c) {
  cachet::store_options<int, int> o;
  o.max_entries = c.max_entries;
  o.shards = c.shards;
  return o;
}

class aside_adapter {
 public:
  using pattern_type = cachet::cache_aside<test_store>;
  static constexpr const char* name = "cache_aside";
  static constexpr bool has_bulk = false;
  static constexpr bool has_store = true;
  static constexpr bool buffers_writes = false;

  aside_adapter(table& t, cachet::manual_clock clock, const config& c = {})
      : t_(&t), p_(store_options_of(c), clock) {}

  std::optional<int> read(int k) { return p_.get_or_load(k, source_handle{t_}); }
  std::vector<std::optional<int>> read_all(std::span<const int> keys) { return each(keys); }
  void write(int k, int v) {
    t_->store(k, v);
    p_.invalidate(k);
  }
  void remove(int k) {
    t_->erase(k);
    p_.invalidate(k);
  }
  void flush() {}
  cachet::single_flight_stats load_stats() const { return p_.load_stats(); }
  std::size_t size() const { return p_.store().size(); }
  test_store& store() { return p_.store(); }
  pattern_type& pattern() { return p_; }

 private:
  std::vector<std::optional<int>> each(std::span<const int> keys) {
    std::vector<std::optional<int>> out;
    for (int k : keys) out.push_back(read(k));
    return out;
  }
  table* t_;
  pattern_type p_;
};

class read_through_adapter {
 public:
  using pattern_type = cachet::read_through<test_store, bulk_source_handle>;
  static constexpr const char* name = "read_through";
  static constexpr bool has_bulk = true;
  static constexpr bool has_store = false;
  static constexpr bool buffers_writes = false;

  read_through_adapter(table& t, cachet::manual_clock clock, const config& c = {})
      : t_(&t), p_(options_of(c), bulk_source_handle{{&t}}, clock) {}

  std::optional<int> read(int k) { return p_.get(k); }
  std::vector<std::optional<int>> read_all(std::span<const int> keys) { return p_.get_all(keys); }
  void write(int k, int v) {
    t_->store(k, v);
    p_.invalidate(k);
  }
  void remove(int k) {
    t_->erase(k);
    p_.invalidate(k);
  }
  void flush() {}
  cachet::single_flight_stats load_stats() const { return p_.stats().loads; }
  std::size_t size() const { return p_.size(); }
  pattern_type& pattern() { return p_; }

  static typename pattern_type::options options_of(const config& c) {
    typename pattern_type::options o;
    o.max_entries = c.max_entries;
    o.shards = c.shards;
    o.ttl = c.ttl;
    o.negative_ttl = c.negative_ttl;
    o.stale_while_revalidate = c.stale_while_revalidate;
    o.stale_if_error = c.stale_if_error;
    o.xfetch_beta = c.xfetch_beta;
    o.seed = c.seed;
    return o;
  }

 private:
  table* t_;
  pattern_type p_;
};

// Mode picks what write() does after the Source took the write: invalidate (the default) or
// update, which puts the written value and must drop a load in flight just as invalidate does.
template <cachet::write_mode Mode>
class basic_write_through_adapter {
 public:
  using pattern_type = cachet::write_through<test_store, source_handle>;
  static constexpr const char* name =
      Mode == cachet::write_mode::update ? "write_through (update)" : "write_through";
  static constexpr bool has_bulk = false;
  static constexpr bool has_store = true;
  static constexpr bool buffers_writes = false;

  basic_write_through_adapter(table& t, cachet::manual_clock clock, const config& c = {})
      : p_(source_handle{&t}, store_options_of(c), clock) {}

  std::optional<int> read(int k) { return p_.get(k); }
  std::vector<std::optional<int>> read_all(std::span<const int> keys) {
    std::vector<std::optional<int>> out;
    for (int k : keys) out.push_back(read(k));
    return out;
  }
  void write(int k, int v) { p_.put(k, v, Mode); }
  void remove(int k) { p_.erase(k); }
  void flush() {}
  cachet::single_flight_stats load_stats() { return p_.cache().load_stats(); }
  std::size_t size() { return p_.cache().store().size(); }
  test_store& store() { return p_.cache().store(); }
  pattern_type& pattern() { return p_; }

 private:
  pattern_type p_;
};

using write_through_adapter = basic_write_through_adapter<cachet::write_mode::invalidate>;
using write_through_update_adapter = basic_write_through_adapter<cachet::write_mode::update>;

class write_back_adapter {
 public:
  using pattern_type = cachet::write_back<test_store, source_handle>;
  static constexpr const char* name = "write_back";
  static constexpr bool has_bulk = false;
  static constexpr bool has_store = true;
  static constexpr bool buffers_writes = true;

  write_back_adapter(table& t, cachet::manual_clock clock, const config& c = {})
      : p_(source_handle{&t}, c.write_back, store_options_of(c), clock) {}

  std::optional<int> read(int k) { return p_.get(k); }
  std::vector<std::optional<int>> read_all(std::span<const int> keys) {
    std::vector<std::optional<int>> out;
    for (int k : keys) out.push_back(read(k));
    return out;
  }
  void write(int k, int v) { p_.put(k, v); }
  void write(int k, int v, std::chrono::nanoseconds ttl) { p_.put(k, v, ttl); }
  void remove(int k) { p_.erase(k); }
  void flush() { p_.flush(); }
  cachet::single_flight_stats load_stats() const { return p_.stats().loads; }
  std::size_t size() { return p_.store().size(); }
  test_store& store() { return p_.store(); }
  pattern_type& pattern() { return p_; }

 private:
  pattern_type p_;
};

#define CACHET_PATTERN_ADAPTERS                                                              \
  cachet_patterns::aside_adapter, cachet_patterns::read_through_adapter,                     \
      cachet_patterns::write_through_adapter, cachet_patterns::write_through_update_adapter, \
      cachet_patterns::write_back_adapter

// ---------------------------------------------------------------------------------------------
// Small helpers.

using opt_ints = std::vector<std::optional<int>>;

inline std::vector<int> ints(std::initializer_list<int> l) { return l; }

inline std::string show(const std::optional<int>& v) {
  return v ? std::to_string(*v) : std::string("nullopt");
}
inline std::string show(const opt_ints& vs) {
  std::string s = "{";
  for (std::size_t i = 0; i < vs.size(); ++i) s += (i ? ", " : "") + show(vs[i]);
  return s + "}";
}

// Waits until the call finished or at least `coalesced` callers are following a flight (the
// point where a read that joined an older load is parked on it).
template <class Adapter, class Call>
bool await_done_or_following(Adapter& p, Call& call, std::uint64_t coalesced) {
  return await([&] { return call.done() || p.load_stats().coalesced >= coalesced; });
}

}  // namespace cachet_patterns
