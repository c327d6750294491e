// Tests of cachet/origin_limiter.hpp. Loads are held at a gate, so how many are in flight, waiting
// or shed is decided by the test, not by timing; the one timeout test sheds a load whose wait
// cannot end otherwise (the permits it waits for are held until after it returns).
#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/clock.hpp>
#include <cachet/origin_limiter.hpp>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;

// A loader whose loads block until open(); counts loads running at once.
struct gated_origin {
  std::mutex mu;
  std::condition_variable cv;
  bool open = true;
  int running = 0;
  int peak = 0;
  int started = 0;

  std::optional<std::string> load(const int& k) {
    std::unique_lock<std::mutex> l(mu);
    ++started;
    ++running;
    peak = std::max(peak, running);
    cv.notify_all();
    cv.wait_for(l, std::chrono::minutes(1), [&] { return open; });
    --running;
    return std::string("row") + std::to_string(k);
  }
  void close() {
    std::lock_guard<std::mutex> l(mu);
    open = false;
  }
  void release() {
    std::lock_guard<std::mutex> l(mu);
    open = true;
    cv.notify_all();
  }
  bool wait_started(int n) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::minutes(1), [&] { return started >= n; });
  }
};

// Forwards to a gated_origin it does not own (limited_loader keeps its loader by value).
struct origin_ref {
  gated_origin* o;
  std::optional<std::string> load(const int& k) { return o->load(k); }
};

template <class F>
bool eventually(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("origin_limiter: options are validated, naming the option", "[origin_limiter]") {
  CHECK_THROWS_WITH(cachet::origin_limiter({.max_in_flight = 0}), Catch::Contains("max_in_flight"));
  CHECK_THROWS_WITH(cachet::origin_limiter({.max_queue = (std::size_t{1} << 24) + 1}),
                    Catch::Contains("max_queue"));
  CHECK_THROWS_WITH(cachet::origin_limiter({.max_wait = -1ms}), Catch::Contains("max_wait"));
}

TEST_CASE("origin_limiter: beyond max_in_flight loads queue; beyond max_queue they are shed",
          "[origin_limiter]") {
  cachet::origin_limiter limit({.max_in_flight = 2, .max_queue = 1, .max_wait = 1min});
  gated_origin db;
  db.close();
  auto loader = cachet::limited_loader(limit, origin_ref{&db});
  std::vector<std::optional<std::string>> got(3);
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; ++i) ts.emplace_back([&, i] { got[i] = loader.load(i); });
  REQUIRE(db.wait_started(2));
  ts.emplace_back([&] { got[2] = loader.load(2); });  // waits in the queue
  REQUIRE(eventually([&] { return limit.stats().waiting == 1; }));

  // Two running, one waiting: the next is shed at once.
  try {
    loader.load(3);
    FAIL("not shed");
  } catch (const cachet::origin_overloaded& e) {
    CHECK(e.why() == cachet::origin_overloaded::reason::queue_full);
  }
  CHECK(db.started == 2);  // the shed load never reached the origin
  db.release();
  for (std::thread& t : ts) t.join();
  for (int i = 0; i < 3; ++i) CHECK(got[i] == std::string("row") + std::to_string(i));
  const cachet::origin_limiter_stats st = limit.stats();
  CHECK(st.admitted == 3);
  CHECK(st.queued == 1);
  CHECK(st.shed_queue_full == 1);
  CHECK(st.shed_timeout == 0);
  CHECK(st.peak_in_flight == 2);
  CHECK(st.in_flight == 0);
  CHECK(db.peak == 2);
}

TEST_CASE("origin_limiter: a load that waits max_wait is shed", "[origin_limiter]") {
  cachet::origin_limiter limit({.max_in_flight = 1, .max_queue = 4, .max_wait = 1ms});
  gated_origin db;
  db.close();
  auto loader = cachet::limited_loader(limit, origin_ref{&db});
  std::thread holder([&] { loader.load(1); });
  REQUIRE(db.wait_started(1));
  try {
    loader.load(2);  // the only permit is held until after this returns
    FAIL("not shed");
  } catch (const cachet::origin_overloaded& e) {
    CHECK(e.why() == cachet::origin_overloaded::reason::timeout);
  }
  db.release();
  holder.join();
  const cachet::origin_limiter_stats st = limit.stats();
  CHECK(st.shed_timeout == 1);
  CHECK(st.queued == 1);
  CHECK(st.wait_p50_nanos >= 1'000'000);  // it waited its max_wait
}

TEST_CASE(
    "origin_limiter: through cache_aside a shed load throws and caches nothing; "
    "read_through with stale_if_error serves the stale row",
    "[origin_limiter]") {
  cachet::origin_limiter limit({.max_in_flight = 1, .max_queue = 0, .max_wait = 0ns});
  gated_origin db;
  auto loader = cachet::limited_loader(limit, origin_ref{&db});

  using store_t = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::cache_aside<store_t> aside(store_t::options_type{.max_entries = 16, .shards = 1}, clock);
  cachet::read_through<store_t, decltype(loader)> rt(
      {.max_entries = 16, .ttl = 10s, .xfetch_beta = 0, .stale_if_error = 1h}, loader, clock);
  REQUIRE(rt.get(7) == "row7");  // cached while the origin is free
  clock.advance(10s);            // expired: the next read must load

  db.close();
  std::thread holder([&] { aside.get_or_load(1, loader); });  // holds the only slot
  REQUIRE(db.wait_started(2));                                // rt's load of 7 was the first
  CHECK_THROWS_AS(aside.get_or_load(2, loader), cachet::origin_overloaded);
  CHECK_FALSE(aside.store().contains(2));
  CHECK(rt.get(7) == "row7");  // shed, and served stale
  CHECK(rt.stats().stale_if_error_serves == 1);
  db.release();
  holder.join();
  CHECK(aside.get_or_load(2, loader) == "row2");  // a free slot: loaded now
  CHECK(limit.stats().shed_queue_full == 2);
}

TEST_CASE("origin_limiter: many threads never run more than max_in_flight loads",
          "[origin_limiter]") {
  cachet::origin_limiter limit({.max_in_flight = 3, .max_queue = 64, .max_wait = 1min});
  gated_origin db;
  auto loader = cachet::limited_loader(limit, origin_ref{&db});
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (loader.load(t * 1000 + i)) ok.fetch_add(1);
      }
    });
  }
  for (std::thread& t : ts) t.join();
  CHECK(ok == 8 * 200);
  CHECK(db.peak <= 3);
  CHECK(limit.stats().peak_in_flight <= 3);
  CHECK(limit.stats().admitted == 8 * 200);
}
