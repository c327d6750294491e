// read_through's background refresh: refresh_after_write queues one reload per key on the user's
// executor and serves the current value meanwhile; refresh() / refresh_all() reload on demand and
// return futures; the cache waits for its tasks before it goes. Driven by a manual clock and a
// queue executor the test runs by hand.
#include <atomic>
#include <cachet/executor.hpp>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
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
  struct gated_table {
    table* t;
    std::function<void()> during;
    std::optional<int> load(const int& k) {
      std::optional<int> v = t->load(k);
      if (during) std::exchange(during, nullptr)();
      return v;
    }
  };
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
  struct pool {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<cachet::task> q;
    bool stop = false;
    std::thread worker{[this] {
      for (;;) {
        cachet::task t;
        {
          std::unique_lock<std::mutex> g(mu);
          cv.wait(g, [&] { return stop || !q.empty(); });
          if (q.empty()) return;
          t = std::move(q.front());
          q.pop_front();
        }
        t();
      }
    }};
    ~pool() {
      {
        std::lock_guard<std::mutex> g(mu);
        stop = true;
      }
      cv.notify_all();
      worker.join();
    }
  };
  pool p;
  auto submit = [&p](cachet::task&& t) {
    {
      std::lock_guard<std::mutex> g(p.mu);
      p.q.push_back(std::move(t));
    }
    p.cv.notify_one();
  };
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
    using pool_cache = cachet::read_through<store, counting&, decltype(submit)>;
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
