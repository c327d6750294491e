// read_through's work on the executor. Background refresh: refresh_after_write queues one reload
// per key on the user's executor and serves the current value meanwhile; refresh() / refresh_all()
// reload on demand and return futures; the cache waits for its tasks before it goes. Loading that
// parks no thread: get_async (callback and future) and get_co (C++20 coroutines). Driven by a
// manual clock and a queue executor the test runs by hand.
#include <atomic>
#include <cachet/executor.hpp>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "alloc_failure.hpp"

using namespace std::chrono_literals;

namespace {

// Keeps the tasks it is given until the test runs (or drops) them.
struct queue_executor {
  std::shared_ptr<std::deque<cachet::task>> tasks = std::make_shared<std::deque<cachet::task>>();
  void operator()(cachet::task&& t) const { tasks->push_back(std::move(t)); }
  std::size_t size() const { return tasks->size(); }
  void run_all() const {
    while (!tasks->empty()) {
      cachet::task t = std::move(tasks->front());
      tasks->pop_front();
      t();
    }
  }
};

// `threads` workers run the tasks posted to it, in order; the destructor lets them finish what is
// queued, then joins them. submitter is its executor.
class thread_pool {
 public:
  explicit thread_pool(int threads) {
    for (int i = 0; i < threads; ++i) {
      workers_.emplace_back([this] {
        for (;;) {
          cachet::task t;
          {
            std::unique_lock<std::mutex> g(mu_);
            cv_.wait(g, [&] { return stop_ || !q_.empty(); });
            if (q_.empty()) return;
            t = std::move(q_.front());
            q_.pop_front();
          }
          t();
        }
      });
    }
  }
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& w : workers_) w.join();
  }
  void post(cachet::task t) {
    {
      std::lock_guard<std::mutex> g(mu_);
      q_.push_back(std::move(t));
    }
    cv_.notify_one();
  }
  struct submitter {
    thread_pool* pool;
    void operator()(cachet::task&& t) const { pool->post(std::move(t)); }
  };

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<cachet::task> q_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// A source whose rows the test changes; counts loads; can be told to fail.
struct table {
  std::map<int, int> rows;
  int loads = 0;
  bool fail = false;
  std::optional<int> load(const int& k) {
    ++loads;
    if (fail) throw std::runtime_error("origin down");
    auto it = rows.find(k);
    if (it == rows.end()) return std::nullopt;
    return it->second;
  }
};

// A table whose load runs `during` once, after it has read the row: a write that lands while a
// load is inside the source.
struct gated_table {
  table* t;
  std::function<void()> during;
  std::optional<int> load(const int& k) {
    std::optional<int> v = t->load(k);
    if (during) std::exchange(during, nullptr)();
    return v;
  }
};

using store = cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock>;
using cache = cachet::read_through<store, table&, queue_executor>;

template <class C = cache>
typename C::options opts() {
  return {.max_entries = 64, .ttl = 10s, .xfetch_beta = 0.0, .refresh_after_write = 4s};
}

// What most tests start from: a manual clock, a table holding row 1 = 10, a queue executor.
struct fixture {
  cachet::manual_clock clock;
  table db{{{1, 10}}};
  queue_executor ex;
};

}  // namespace

TEST_CASE_METHOD(fixture,
                 "refresh_after_write: an old value is served at once and reloaded once, on the "
                 "executor",
                 "[read_through][refresh]") {
  cache c(opts(), db, clock, ex);
  CHECK(c.get(1) == 10);
  CHECK(db.loads == 1);
  clock.advance(3s);
  CHECK(c.get(1) == 10);
  CHECK(ex.size() == 0);  // not old enough
  db.rows[1] = 11;
  clock.advance(1s);
  CHECK(c.get(1) == 10);  // old enough: the current value, and a reload queued
  CHECK(c.get(1) == 10);  // one reload per key, however many reads
  CHECK(ex.size() == 1);
  CHECK(db.loads == 1);  // nothing loaded on the reader's thread
  ex.run_all();
  CHECK(db.loads == 2);
  CHECK(c.get(1) == 11);
  CHECK(c.stats().background_refreshes == 1);
  CHECK(ex.size() == 0);  // the reloaded value is young again
  clock.advance(4s);
  CHECK(c.get(1) == 11);
  CHECK(ex.size() == 1);  // and the next period queues the next reload
  ex.run_all();
  CHECK(c.stats().background_refreshes == 2);
}

TEST_CASE_METHOD(fixture, "refresh_after_write: a failed reload keeps the value and is counted",
                 "[read_through][refresh]") {
  cache c(opts(), db, clock, ex);
  CHECK(c.get(1) == 10);
  clock.advance(5s);
  db.fail = true;
  CHECK(c.get(1) == 10);
  ex.run_all();
  CHECK(c.stats().refresh_failures == 1);
  CHECK(c.get(1) == 10);  // kept; and the key may be queued again
  CHECK(ex.size() == 1);
  db.fail = false;
  db.rows[1] = 12;
  ex.run_all();
  CHECK(c.get(1) == 12);
}

TEST_CASE("refresh_after_write: a reload that began before an invalidate() does not land",
          "[read_through][refresh][consistency]") {
  // The queued reload reads the old row; the row changes and invalidate() runs while the reload is
  // inside its load; what it read must not be cached.
  cachet::manual_clock clock;
  table db;
  db.rows[1] = 10;
  gated_table gate{&db, nullptr};
  queue_executor ex;
  using gated_cache = cachet::read_through<store, gated_table&, queue_executor>;
  gated_cache c(opts<gated_cache>(), gate, clock, ex);
  CHECK(c.get(1) == 10);
  clock.advance(5s);
  CHECK(c.get(1) == 10);
  REQUIRE(ex.size() == 1);
  gate.during = [&] {
    db.rows[1] = 11;
    c.invalidate(1);
  };
  ex.run_all();
  CHECK(c.get(1) == 11);  // not the 10 the reload read
}

TEST_CASE("refresh: reloads on demand and returns futures", "[read_through][refresh]") {
  cachet::manual_clock clock;
  table db;
  db.rows = {{1, 10}, {2, 20}};
  using inline_cache = cachet::read_through<store, table&>;  // inline_executor
  inline_cache c(opts<inline_cache>(), db, clock);
  CHECK(c.get(1) == 10);
  db.rows[1] = 11;
  std::future<std::optional<int>> f = c.refresh(1);  // fresh, but reloaded all the same
  CHECK(f.get() == 11);
  CHECK(c.get(1) == 11);
  db.rows.erase(2);
  std::vector<int> keys{1, 2};
  auto all = c.refresh_all(std::span<const int>(keys));
  REQUIRE(all.size() == 2);
  CHECK(all[0].get() == 11);
  CHECK(all[1].get() == std::nullopt);
  db.fail = true;
  std::future<std::optional<int>> failed = c.refresh(1);
  CHECK_THROWS_WITH(failed.get(), Catch::Contains("origin down"));
  CHECK(c.get(1) == 11);  // kept
  CHECK(c.stats().refresh_failures == 1);
}

TEST_CASE_METHOD(fixture,
                 "refresh: a task the executor drops breaks its promise and releases the cache",
                 "[read_through][refresh]") {
  std::future<std::optional<int>> f;
  {
    cache c(opts(), db, clock, ex);
    c.get(1);
    clock.advance(5s);
    c.get(1);  // queues a refresh_after_write reload
    f = c.refresh(1);
    CHECK(ex.size() == 2);
    ex.tasks->clear();  // dropped unrun: ~read_through must not wait for them
  }
  CHECK_THROWS_AS(f.get(), std::future_error);
}

TEST_CASE("refresh_after_write: an executor that refuses counts a failure, the read succeeds",
          "[read_through][refresh]") {
  cachet::manual_clock clock;
  table db;
  db.rows[1] = 10;
  auto refuse = [](cachet::task&&) { throw std::runtime_error("queue full"); };
  using refusing_cache = cachet::read_through<store, table&, decltype(refuse)>;
  refusing_cache c(opts<refusing_cache>(), db, clock, refuse);
  CHECK(c.get(1) == 10);
  clock.advance(5s);
  CHECK(c.get(1) == 10);
  CHECK(c.stats().refresh_failures == 1);
  clock.advance(1s);
  CHECK(c.get(1) == 10);  // not marked as queued: it tries again
  CHECK(c.stats().refresh_failures == 2);
}

TEST_CASE("refresh_after_write: options", "[read_through][refresh][options]") {
  cachet::manual_clock clock;
  table db;
  const auto option_of = [&](cache::options o) -> std::string {
    try {
      cache c(o, db, clock);
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return "(nothing thrown)";
  };
  cache::options o = opts();
  o.refresh_after_write = -1s;
  CHECK(option_of(o) == "refresh_after_write");
  o.refresh_after_write = 10s;  // not shorter than the ttl
  CHECK(option_of(o) == "refresh_after_write");
  o.ttl = cachet::no_expiry;
  o.refresh_after_write = 1s;
  CHECK(option_of(o) == "refresh_after_write");
}

TEST_CASE("refresh_after_write: a thread-pool executor; the cache waits for its tasks",
          "[read_through][refresh][threads]") {
  // One worker thread runs the tasks; readers hammer an old key. The cache is destroyed while
  // reloads may still be queued or running: its destructor waits (ASan / TSan check nothing
  // touches it afterwards).
  thread_pool p(1);
  const thread_pool::submitter submit{&p};
  cachet::manual_clock clock;
  std::atomic<int> loads{0};
  struct counting {
    std::atomic<int>* n;
    std::optional<int> load(const int& k) {
      n->fetch_add(1);
      return k;
    }
  };
  counting src{&loads};
  {
    using pool_cache = cachet::read_through<store, counting&, thread_pool::submitter>;
    pool_cache c(opts<pool_cache>(), src, clock, submit);
    for (int k = 0; k < 8; ++k) CHECK(c.get(k) == k);
    clock.advance(5s);
    std::atomic<int> wrong{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t) {
      readers.emplace_back([&] {
        for (int r = 0; r < 2000; ++r) {
          if (c.get(r % 8) != r % 8) wrong.fetch_add(1);
        }
      });
    }
    for (auto& r : readers) r.join();
    CHECK(wrong.load() == 0);
  }  // waits for the queued reloads
  CHECK(loads.load() >= 8);
  CHECK(loads.load() <= 8 + 3 * 2000);
}

TEST_CASE("refresh_after_write: destroying the cache waits for a reload still queued",
          "[read_through][refresh][threads]") {
  // A worker thread holds the queued reload until the test opens a gate. The cache is destroyed
  // on another thread meanwhile: that must not finish before the reload has run (it refers to the
  // cache), and the reload must run on a live cache (ASan would see otherwise).
  std::mutex mu;
  std::condition_variable cv;
  bool gate_open = false;
  std::deque<cachet::task> q;
  auto submit = [&](cachet::task&& t) {
    std::lock_guard<std::mutex> g(mu);
    q.push_back(std::move(t));
    cv.notify_all();
  };
  std::thread worker([&] {
    std::unique_lock<std::mutex> g(mu);
    cv.wait(g, [&] { return gate_open && !q.empty(); });
    cachet::task t = std::move(q.front());
    q.pop_front();
    g.unlock();
    t();
  });
  cachet::manual_clock clock;
  table db;
  db.rows[1] = 10;
  using gated = cachet::read_through<store, table&, decltype(submit)>;
  auto c = std::make_unique<gated>(opts<gated>(), db, clock, submit);
  CHECK(c->get(1) == 10);
  clock.advance(5s);
  CHECK(c->get(1) == 10);
  {
    std::lock_guard<std::mutex> g(mu);
    REQUIRE(q.size() == 1);
  }
  std::atomic<bool> destroyed{false};
  std::thread destroyer([&] {
    c.reset();
    destroyed = true;
  });
  // Give a destructor that does not wait the chance to finish (bounded; a correct one cannot).
  for (int i = 0; i < 200 && !destroyed.load(); ++i) std::this_thread::sleep_for(1ms);
  CHECK_FALSE(destroyed.load());
  {
    std::lock_guard<std::mutex> g(mu);
    gate_open = true;
  }
  cv.notify_all();
  worker.join();
  destroyer.join();
  CHECK(destroyed.load());
  CHECK(db.loads == 2);
}

TEST_CASE_METHOD(fixture, "refresh_after_write: a task that cannot be allocated undoes its mark",
                 "[read_through][refresh]") {
  // The task's allocation fails after the key was marked as queued and counted: both must be
  // undone, or the key would never be refreshed again and the destructor would wait forever.
  db.rows[2] = 20;
  cache c(opts(), db, clock, ex);
  CHECK(c.get(1) == 10);
  CHECK(c.get(2) == 20);
  clock.advance(5s);
  CHECK(c.get(2) == 20);  // a first queued refresh sizes the mark table
  ex.run_all();
  cachet_test::fail_next_allocation();
  CHECK(c.get(1) == 10);  // the read succeeds
  REQUIRE_FALSE(cachet_test::allocation_failure_pending());
  CHECK(ex.size() == 0);
  CHECK(c.stats().refresh_failures == 1);
  CHECK(c.get(1) == 10);
  CHECK(ex.size() == 1);  // not marked as queued any more: this read queues it
  ex.run_all();
  CHECK(c.stats().background_refreshes == 2);
}

// ---- get_async / get_co: loading that parks no thread

namespace {

// What a get_async callback was given; `calls` counts how often it ran.
struct answer {
  int calls = 0;
  std::optional<int> value;
  std::exception_ptr error;
  auto callback() {
    return [this](std::optional<int> v, std::exception_ptr e) {
      ++calls;
      value = v;
      error = std::move(e);
    };
  }
  std::string what() const {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "(no error)";
  }
};

template <class C = cache>
typename C::options async_opts() {
  return {.max_entries = 64, .ttl = 10s, .xfetch_beta = 0.0};
}

}  // namespace

TEST_CASE_METHOD(fixture, "get_async: a hit answers at once, on the caller's thread",
                 "[read_through][async]") {
  cache c(async_opts(), db, clock, ex);
  std::future<std::optional<int>> first = c.get_async(1);
  ex.run_all();
  CHECK(first.get() == 10);
  answer a;
  c.get_async(1, a.callback());
  CHECK(a.calls == 1);  // before get_async returned, nothing queued
  CHECK(a.value == 10);
  CHECK(ex.size() == 0);
  answer absent;
  c.get_async(2, absent.callback());
  ex.run_all();
  CHECK(absent.calls == 1);
  CHECK(absent.value == std::nullopt);
  CHECK_FALSE(absent.error);
  CHECK(c.stats().hits == 1);
  CHECK(c.stats().misses == 2);
}

TEST_CASE_METHOD(fixture,
                 "get_async: misses queue one load on the executor; every caller joins it and "
                 "is answered once when it lands",
                 "[read_through][async]") {
  cache c(async_opts(), db, clock, ex);
  answer a, b, d;
  c.get_async(1, a.callback());
  c.get_async(1, b.callback());
  CHECK(db.loads == 0);   // nothing loaded on the caller's thread
  CHECK(ex.size() == 1);  // one load for both
  CHECK(a.calls == 0);
  CHECK(b.calls == 0);
  std::future<std::optional<int>> f = c.get_async(1);
  CHECK(f.wait_for(0s) == std::future_status::timeout);
  ex.run_all();
  CHECK(db.loads == 1);
  CHECK(a.calls == 1);
  CHECK(b.calls == 1);
  CHECK(a.value == 10);
  CHECK(b.value == 10);
  CHECK(f.get() == 10);
  CHECK(c.stats().loads.loads == 1);
  CHECK(c.stats().loads.coalesced == 2);
  c.get_async(1, d.callback());  // cached now
  CHECK(d.calls == 1);
  CHECK(db.loads == 1);
}

TEST_CASE_METHOD(fixture,
                 "get_async: a failed load reaches every waiter, caches nothing and is retried",
                 "[read_through][async]") {
  cache c(async_opts(), db, clock, ex);
  db.fail = true;
  answer a, b;
  c.get_async(1, a.callback());
  c.get_async(1, b.callback());
  ex.run_all();
  CHECK(a.calls == 1);
  CHECK(b.calls == 1);
  CHECK(a.what() == "origin down");
  CHECK(b.what() == "origin down");
  CHECK_FALSE(a.value);
  CHECK(c.size() == 0);
  db.fail = false;
  std::future<std::optional<int>> f = c.get_async(1);
  ex.run_all();
  CHECK(f.get() == 10);
  CHECK(db.loads == 2);
}

TEST_CASE_METHOD(fixture, "get_async: stale_if_error answers a failed load with the stale value",
                 "[read_through][async]") {
  cache::options o = async_opts();
  o.stale_if_error = 5s;
  cache c(o, db, clock, ex);
  CHECK(c.get(1) == 10);  // ex is not used by a synchronous get
  clock.advance(11s);
  db.fail = true;
  answer a;
  c.get_async(1, a.callback());
  ex.run_all();
  CHECK(a.calls == 1);
  CHECK(a.value == 10);
  CHECK_FALSE(a.error);
  CHECK(c.stats().stale_if_error_serves == 1);
  clock.advance(5s);  // past the bound: the error itself
  answer b;
  c.get_async(1, b.callback());
  ex.run_all();
  CHECK(b.what() == "origin down");
}

TEST_CASE_METHOD(fixture,
                 "get_async: refresh_after_write, XFetch and stale-while-revalidate answer at once "
                 "and reload on the executor",
                 "[read_through][async]") {
  SECTION("refresh_after_write") {
    cache c(opts(), db, clock, ex);
    CHECK(c.get(1) == 10);
    clock.advance(5s);
    db.rows[1] = 11;
    answer a;
    c.get_async(1, a.callback());
    CHECK(a.value == 10);
    CHECK(ex.size() == 1);
    CHECK(db.loads == 1);
    ex.run_all();
    CHECK(c.stats().background_refreshes == 1);
    CHECK(c.get(1) == 11);
  }
  SECTION("stale_while_revalidate") {
    cache::options o = async_opts();
    o.stale_while_revalidate = 5s;
    cache c(o, db, clock, ex);
    CHECK(c.get(1) == 10);
    clock.advance(12s);
    db.rows[1] = 11;
    answer a;
    c.get_async(1, a.callback());
    CHECK(a.calls == 1);
    CHECK(a.value == 10);  // stale, at once
    CHECK(db.loads == 1);
    CHECK(ex.size() == 1);
    ex.run_all();
    CHECK(c.get(1) == 11);
    CHECK(c.stats().stale_serves == 1);
  }
  SECTION("XFetch") {
    table slow = db;
    struct timed {
      table* t;
      cachet::manual_clock* clock;
      std::optional<int> load(const int& k) {
        clock->advance(1s);  // a load that takes a second (XFetch's delta)
        return t->load(k);
      }
    } loader{&slow, &clock};
    using timed_cache = cachet::read_through<store, timed&, queue_executor>;
    timed_cache::options o = async_opts<timed_cache>();
    o.xfetch_beta = 1e9;  // every read near expiry draws a refresh
    timed_cache c(o, loader, clock, ex);
    CHECK(c.get(1) == 10);
    slow.rows[1] = 11;
    answer a;
    c.get_async(1, a.callback());
    CHECK(a.value == 10);
    CHECK(slow.loads == 1);
    CHECK(ex.size() == 1);
    ex.run_all();
    CHECK(c.stats().early_refreshes == 1);
    CHECK(c.get(1) == 11);
  }
}

TEST_CASE("get_async: a load that began before an invalidate() is not joined after it",
          "[read_through][async][consistency]") {
  // The queued load reads the old row; inside it, the row changes, invalidate() runs and a new
  // get_async starts. That one must not be answered from the load that read the old row.
  cachet::manual_clock clock;
  table db;
  db.rows[1] = 10;
  gated_table gate{&db, nullptr};
  queue_executor ex;
  using gated_cache = cachet::read_through<store, gated_table&, queue_executor>;
  gated_cache c(async_opts<gated_cache>(), gate, clock, ex);
  answer before, after;
  c.get_async(1, before.callback());
  gate.during = [&] {
    db.rows[1] = 11;
    c.invalidate(1);
    c.get_async(1, after.callback());
  };
  ex.run_all();
  CHECK(before.value == 10);  // it began before the write: either answer is allowed
  CHECK(after.calls == 1);
  CHECK(after.value == 11);
  CHECK(db.loads == 2);
  CHECK(c.get(1) == 11);  // and the first load's 10 was not cached
}

TEST_CASE("get_async: a synchronous get() waits for a queued load instead of loading again",
          "[read_through][async][threads]") {
  cachet::manual_clock clock;
  table db;
  db.rows[1] = 10;
  queue_executor ex;
  cache c(async_opts(), db, clock, ex);
  answer a;
  c.get_async(1, a.callback());
  std::optional<int> got;
  std::thread reader([&] { got = c.get(1); });
  // The reader joins the queued flight as a follower: wait (at most a minute, real time, as a
  // safety net; no timing is asserted) for it to get there.
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (c.stats().loads.coalesced == 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  CHECK(c.stats().loads.coalesced == 1);
  ex.run_all();
  reader.join();
  CHECK(got == 10);
  CHECK(a.value == 10);
  CHECK(db.loads == 1);
}

TEST_CASE("get_async: an executor that refuses or drops the load answers with an error",
          "[read_through][async]") {
  cachet::manual_clock clock;
  table db;
  db.rows[1] = 10;
  SECTION("refused: the executor's exception") {
    auto refuse = [](cachet::task&&) { throw std::runtime_error("queue full"); };
    using refusing_cache = cachet::read_through<store, table&, decltype(refuse)>;
    refusing_cache c(async_opts<refusing_cache>(), db, clock, refuse);
    answer a;
    c.get_async(1, a.callback());
    CHECK(a.calls == 1);
    CHECK(a.what() == "queue full");
    CHECK(c.get(1) == 10);  // the flight was retired: a synchronous get loads
  }
  SECTION("dropped: load_dropped_error") {
    queue_executor ex;
    cache c(async_opts(), db, clock, ex);
    answer a, b;
    c.get_async(1, a.callback());
    c.get_async(1, b.callback());
    ex.tasks->clear();
    CHECK(a.calls == 1);
    CHECK(b.calls == 1);
    CHECK_THROWS_AS(std::rethrow_exception(a.error), cachet::load_dropped_error);
    CHECK(db.loads == 0);
    std::future<std::optional<int>> f = c.get_async(1);
    ex.run_all();
    CHECK(f.get() == 10);
  }
}

TEST_CASE_METHOD(fixture, "get_async: std::bad_alloc throws and does not call back",
                 "[read_through][async]") {
  cache c(async_opts(), db, clock, ex);
  answer a;
  // The first allocation of a miss is the flight's shared state.
  cachet_test::fail_next_allocation();
  CHECK_THROWS_AS(c.get_async(1, a.callback()), std::bad_alloc);
  CHECK_FALSE(cachet_test::allocation_failure_pending());
  CHECK(a.calls == 0);
  CHECK(ex.size() == 0);
  c.get_async(1, a.callback());  // nothing was left in flight
  ex.run_all();
  CHECK(a.value == 10);
}

TEST_CASE_METHOD(fixture, "load_timeout: waiters stop waiting; the late load still fills the cache",
                 "[read_through][async][timeout]") {
  // The queued load does not run until the waiters have timed out (real time, 1 ms); the waits
  // below are bounded safety nets, not timing assertions.
  cache::options o = async_opts();
  o.load_timeout = 1ms;
  cache c(o, db, clock, ex);
  // Whatever fails below, the queued load is dropped before `c` goes (~read_through waits for it).
  struct drop_queued {
    queue_executor ex;
    ~drop_queued() { ex.tasks->clear(); }
  } on_exit{ex};
  std::future<std::optional<int>> a = c.get_async(1);
  std::future<std::optional<int>> b = c.get_async(1);
  REQUIRE(a.wait_for(60s) == std::future_status::ready);
  REQUIRE(b.wait_for(60s) == std::future_status::ready);
  CHECK_THROWS_AS(a.get(), cachet::load_timeout_error);
  CHECK_THROWS_AS(b.get(), cachet::load_timeout_error);
  std::optional<int> sync_answer;
  std::thread follower([&] {  // a get() that follows the same queued load times out too
    try {
      sync_answer = c.get(1);
    } catch (const cachet::load_timeout_error&) {
      sync_answer = -1;
    }
  });
  follower.join();
  CHECK(sync_answer == -1);
  CHECK(c.stats().loads.timeouts == 3);
  CHECK(db.loads == 0);
  SECTION("the late result is cached") {
    ex.run_all();
    CHECK(db.loads == 1);
    CHECK(c.get(1) == 10);
    CHECK(db.loads == 1);
  }
  SECTION("an invalidate() before it ran: it loads (and caches) the new row") {
    db.rows[1] = 11;
    c.invalidate(1);
    ex.run_all();
    CHECK(db.loads == 1);
    CHECK(c.get(1) == 11);
    CHECK(db.loads == 1);
  }
  // (A load that an invalidate() overtakes mid-load caches nothing: the same fill as every load,
  // shown for the executor's loads by "a load that began before an invalidate() ..." above.)
}

TEST_CASE_METHOD(fixture, "load_timeout: a load that answers in time is not timed out",
                 "[read_through][async][timeout]") {
  cache::options o = async_opts();
  o.load_timeout = 1h;
  cache c(o, db, clock, ex);
  std::future<std::optional<int>> a = c.get_async(1);
  ex.run_all();
  CHECK(a.get() == 10);
  CHECK(c.stats().loads.timeouts == 0);
  o.load_timeout = -1ms;
  CHECK_THROWS_WITH(cache(o, db, clock, ex), Catch::Contains("load_timeout"));
}

namespace {

// A minimal coroutine type: starts at once, runs to the end, frees itself.
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

// A one-thread event loop: post() queues, run_one() runs the next task on the caller's thread.
struct event_loop {
  std::shared_ptr<std::deque<cachet::task>> q = std::make_shared<std::deque<cachet::task>>();
  void operator()(cachet::task&& t) const { q->push_back(std::move(t)); }
};

}  // namespace

TEST_CASE_METHOD(fixture,
                 "get_co: a coroutine that misses is suspended until the load lands, then "
                 "resumed through the loop it asked for",
                 "[read_through][async][coroutine]") {
  db.rows[2] = 20;
  cache c(async_opts(), db, clock, ex);
  event_loop loop;
  std::vector<std::string> log;
  auto reader = [&](int key) -> detached {
    try {
      std::optional<int> v = co_await c.get_co(key, loop);
      log.push_back(std::to_string(key) + "=" + (v ? std::to_string(*v) : std::string("none")));
    } catch (const std::exception& e) {
      log.push_back(std::to_string(key) + "!" + e.what());
    }
  };
  reader(1);
  reader(1);
  reader(3);
  CHECK(log.empty());     // all three suspended
  CHECK(ex.size() == 2);  // one load per key
  ex.run_all();
  CHECK(log.empty());  // loaded, but resumed only through the loop
  CHECK(loop.q->size() == 3);
  while (!loop.q->empty()) {
    cachet::task t = std::move(loop.q->front());
    loop.q->pop_front();
    t();
  }
  CHECK(log == std::vector<std::string>{"1=10", "1=10", "3=none"});
  log.clear();
  reader(1);  // a hit does not suspend
  CHECK(log == std::vector<std::string>{"1=10"});
  CHECK(loop.q->empty());
  db.fail = true;
  auto plain = [&](int key) -> detached {  // resumed on the loading thread
    try {
      co_await c.get_co(key);
      log.push_back("no error");
    } catch (const std::exception& e) {
      log.push_back(e.what());
    }
  };
  log.clear();
  plain(2);
  CHECK(log.empty());
  ex.run_all();
  CHECK(log == std::vector<std::string>{"origin down"});
}

TEST_CASE("get_async / get_co: threads on a pool, every callback once, one load per flight",
          "[read_through][async][threads]") {
  // Four threads each start 500 get_async (and get_co) on 8 keys, loads run on two pool threads,
  // and invalidations run meanwhile. Every callback runs exactly once with the key's row; TSan
  // and ASan watch the flights, the waiters and the coroutine frames.
  struct rows {
    std::atomic<int> loads{0};
    std::optional<int> load(const int& k) {
      loads.fetch_add(1);
      return k * 10;
    }
  } src;
  thread_pool workers(2);
  std::atomic<int> calls{0}, wrong{0};
  {
    using pool_cache =
        cachet::read_through<cachet::sharded_store<int, int>, rows&, thread_pool::submitter>;
    pool_cache c({.max_entries = 64, .ttl = cachet::no_expiry, .xfetch_beta = 0.0}, src, {},
                 thread_pool::submitter{&workers});
    auto co_reader = [&](int key) -> detached {
      std::optional<int> v = co_await c.get_co(key);
      if (v != key * 10) wrong.fetch_add(1);
      calls.fetch_add(1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 500; ++i) {
          const int key = (i * 7 + t) % 8;
          if (i % 3 == 0) {
            co_reader(key);
          } else {
            c.get_async(key, [&, key](std::optional<int> v, std::exception_ptr e) {
              if (e || v != key * 10) wrong.fetch_add(1);
              calls.fetch_add(1);
            });
          }
          if (i % 50 == 0) c.invalidate(key);
        }
      });
    }
    for (std::thread& th : threads) th.join();
    // Bounded wait for the callbacks still pending on the pool.
    for (int i = 0; i < 2'000'000 && calls.load() < 2000; ++i) std::this_thread::yield();
  }  // ~read_through waits for the tasks it queued
  CHECK(calls.load() == 2000);
  CHECK(wrong.load() == 0);
  CHECK(src.loads.load() <= 2000);
}
