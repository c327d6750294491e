// cachet/redis/redis_store.hpp, failure behaviour: a Redis that refuses writes (maxmemory), is
// down (kill -9), is stopped (SIGSTOP: timeouts), the circuit breaker on a manual clock, and
// pending invalidations. No sleep decides an outcome; every wait is bounded.
#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/redis/redis_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using cachet_test::redis_server;
using manual_store = cachet::redis_store<std::string, std::string, cachet::string_codec,
                                         cachet::string_codec, cachet::manual_clock>;

cachet::redis_options opts_for(const redis_server& s) {
  cachet::redis_options o = s.options();
  o.key_prefix = "t:";
  return o;
}

// Polls `done` every millisecond for at most `limit`; true if it held.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

long long used_memory(const redis_server& s) {
  const std::string info = s.raw({"INFO", "memory"}).str;
  const auto at = info.find("used_memory:");
  REQUIRE(at != std::string::npos);
  return std::stoll(info.substr(at + 12));
}

}  // namespace

TEST_CASE("redis_store: writes refused under maxmemory noeviction; reads still served", "[redis]") {
  redis_server server;
  cachet::manual_clock clock;
  manual_store s(opts_for(server), clock);
  REQUIRE(s.put("early", "kept") == cachet::put_result::inserted);
  REQUIRE(s.put("old", "old value") == cachet::put_result::inserted);
  server.raw({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
  server.raw({"CONFIG", "SET", "maxmemory", std::to_string(used_memory(server) + 256 * 1024)});

  const std::string big(64 * 1024, 'x');
  int refused_at = -1;
  for (int i = 0; i < 100 && refused_at < 0; ++i) {
    if (s.put(std::string("fill").append(std::to_string(i)), big) ==
        cachet::put_result::rejected_unavailable) {
      refused_at = i;
    }
  }
  REQUIRE(refused_at > 0);
  CHECK(s.stats().server_errors == 1);
  CHECK(s.stats().breaker == cachet::breaker_state::closed);
  CHECK(s.get("early") == "kept");
  CHECK(s.get("fill0") == big);

  // A refused put over a present key leaves no old value readable (it is DELeted: DEL is allowed
  // under OOM).
  CHECK(s.put("old", big) == cachet::put_result::rejected_unavailable);
  CHECK_FALSE(s.get("old"));
  CHECK(server.raw({"EXISTS", "t:old"}).integer == 0);
  CHECK(s.stats().pending_invalidations == 0);
  CHECK(s.stats().timeouts + s.stats().connection_errors == 0);
}

TEST_CASE("redis_store: a Redis that is down answers misses and refusals, never throws",
          "[redis]") {
  redis_server server;
  cachet::redis_options o = opts_for(server);
  o.breaker.failures_to_open = 1000;  // keep the breaker out of this test
  cachet::redis_store<std::string, std::string> s(o);
  REQUIRE(s.put("k", "v") == cachet::put_result::inserted);
  REQUIRE(s.get("k") == "v");  // a pooled connection now exists
  server.kill();               // writes to it raise SIGPIPE, which must not end the process

  CHECK_FALSE(s.get("k"));
  CHECK_FALSE(s.peek("k"));
  CHECK_FALSE(s.contains("k"));
  CHECK(s.put("k", "v2") == cachet::put_result::rejected_unavailable);
  CHECK(s.put_if("k", "v2", []() noexcept { return true; }) ==
        cachet::put_result::rejected_unavailable);
  CHECK_FALSE(s.erase("x"));
  const std::vector<std::string> keys{"a", "b"};
  CHECK(s.get_all(keys) == std::vector<std::optional<std::string>>(2));
  const std::vector<std::pair<std::string, std::string>> items{{"a", "1"}, {"b", "2"}};
  CHECK(s.put_all(items) ==
        std::vector<cachet::put_result>(2, cachet::put_result::rejected_unavailable));
  const auto st = s.stats();
  CHECK(st.connection_errors == 8);  // one per call
  CHECK(st.timeouts == 0);
  CHECK(st.misses == 3);  // get, and get_all's two keys; peek does not count
  // The failed put over "k", erase("x") and put_all's keys are pending invalidations.
  CHECK(st.pending_invalidations == 4);
}

TEST_CASE("redis_store: the breaker opens, fails fast, probes once, and closes on recovery",
          "[redis]") {
  redis_server server;
  cachet::manual_clock clock;
  cachet::redis_options o = opts_for(server);
  o.breaker = {.failures_to_open = 3, .open_for = 10s};
  manual_store s(o, clock);
  REQUIRE(s.put("k", "v") == cachet::put_result::inserted);
  server.kill();

  for (int i = 0; i < 3; ++i) CHECK_FALSE(s.get("k"));
  auto st = s.stats();
  CHECK(st.breaker == cachet::breaker_state::open);
  CHECK(st.breaker_opened == 1);
  CHECK(st.connection_errors == 3);
  const std::uint64_t connects = st.connect_attempts;

  // Open: every call fails at once, and nothing touches the network (no connect is attempted).
  for (int i = 0; i < 5; ++i) CHECK_FALSE(s.get("k"));
  CHECK(s.put("k", "v") == cachet::put_result::rejected_unavailable);
  st = s.stats();
  CHECK(st.fast_failures == 6);
  CHECK(st.connect_attempts == connects);
  CHECK(st.connection_errors == 3);

  // open_for later, Redis still down: one probe, which fails and re-opens the breaker.
  clock.advance(10s);
  CHECK_FALSE(s.get("k2"));
  st = s.stats();
  CHECK(st.connect_attempts == connects + 1);
  CHECK(st.breaker == cachet::breaker_state::open);
  CHECK(st.breaker_opened == 2);
  CHECK_FALSE(s.get("k2"));
  CHECK(s.stats().fast_failures == 7);

  // Redis is back (empty): the next probe succeeds and closes the breaker; the data path works.
  server.restart();
  clock.advance(10s);
  CHECK(s.put("k2", "back") == cachet::put_result::inserted);
  st = s.stats();
  CHECK(st.breaker == cachet::breaker_state::closed);
  CHECK(st.breaker_closed == 1);
  CHECK(s.get("k2") == "back");
}

// After a restart every pooled connection is dead. The first failure discards the idle ones, so
// the probe after open_for connects afresh and closes the breaker, instead of drawing one more dead
// connection from the pool and re-opening it for another open_for.
TEST_CASE("redis_store: after a restart, one probe closes the breaker (no dead pooled connection)",
          "[redis]") {
  redis_server server;
  cachet::manual_clock clock;
  cachet::redis_options o = opts_for(server);
  o.breaker = {.failures_to_open = 1, .open_for = 10s};
  o.command_timeout = 5000ms;
  manual_store s(o, clock);

  // Three idle connections: three gets blocked on a stopped server hold three at once.
  server.pause();
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) readers.emplace_back([&] { s.get("k"); });
  const bool three = eventually([&] { return s.stats().connect_attempts == 3; });
  server.resume();
  for (std::thread& t : readers) t.join();
  REQUIRE(three);

  server.restart();         // every connection in the pool is now dead
  CHECK_FALSE(s.get("k"));  // a dead connection: the breaker opens
  REQUIRE(s.stats().breaker == cachet::breaker_state::open);
  clock.advance(10s);
  CHECK(s.put("k", "back") == cachet::put_result::inserted);  // the probe, on a fresh connection
  const cachet::redis_stats st = s.stats();
  CHECK(st.breaker == cachet::breaker_state::closed);
  CHECK(st.breaker_opened == 1);
  CHECK(st.connect_attempts == 4);
}

// While the probe is in flight (blocked on a stopped server), every other call fails fast. The
// probe's timeout is long (5 s) and the server is resumed once the other calls are made, so the
// probe is still in flight however slowly this thread runs; it then succeeds and closes the
// breaker.
TEST_CASE("redis_store: a half-open breaker lets exactly one probe through", "[redis]") {
  redis_server server;
  cachet::manual_clock clock;
  cachet::redis_options o = opts_for(server);
  o.command_timeout = 5000ms;
  o.breaker = {.failures_to_open = 1, .open_for = 10s};
  manual_store s(o, clock);
  REQUIRE(s.put("k", "v") == cachet::put_result::inserted);
  server.kill();
  CHECK_FALSE(s.get("k"));
  REQUIRE(s.stats().breaker == cachet::breaker_state::open);
  server.restart();
  server.pause();
  clock.advance(10s);

  const auto before = s.stats();
  auto probe = std::async(std::launch::async, [&] { return s.get("k"); });
  REQUIRE(eventually([&] { return s.stats().breaker == cachet::breaker_state::half_open; }));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(s.get("k"));
  CHECK(s.put("k", "v") == cachet::put_result::rejected_unavailable);
  CHECK(s.stats().fast_failures == before.fast_failures + 6);
  server.resume();
  CHECK_FALSE(probe.get());  // answered by the restarted server, which lost "k" with the kill
  const auto after = s.stats();
  CHECK(after.connect_attempts == before.connect_attempts + 1);  // the probe's connection only
  CHECK(after.timeouts == 0);
  CHECK(after.breaker == cachet::breaker_state::closed);
  CHECK(after.breaker_closed == 1);
}

TEST_CASE("redis_store: a stopped Redis times out (counted as a timeout); resumed, it recovers",
          "[redis]") {
  redis_server server;
  cachet::redis_options o = opts_for(server);
  o.command_timeout = 100ms;
  cachet::redis_store<std::string, std::string> s(o);
  REQUIRE(s.put("k", "v") == cachet::put_result::inserted);
  server.pause();
  CHECK_FALSE(s.get("k"));
  CHECK(s.put("k2", "v") == cachet::put_result::rejected_unavailable);
  auto st = s.stats();
  CHECK(st.timeouts == 2);
  CHECK(st.connection_errors == 0);
  server.resume();
  CHECK(s.get("k") == "v");
  CHECK(s.stats().breaker == cachet::breaker_state::closed);
}

// The brief's scenario: erase fails on a stopped server; once it is back the key reads as a miss
// and the DEL is retried, so the key is gone from Redis too.
TEST_CASE("redis_store: an erase that timed out is retried; the key never reads stale", "[redis]") {
  redis_server server;
  cachet::redis_options o = opts_for(server);
  o.command_timeout = 100ms;
  cachet::redis_store<std::string, std::string> s(o);
  REQUIRE(s.put("k", "v1") == cachet::put_result::inserted);
  server.pause();
  CHECK_FALSE(s.erase("k"));
  CHECK(s.stats().pending_invalidations == 1);
  server.resume();
  CHECK_FALSE(s.get("k"));
  CHECK(s.stats().pending_invalidations == 0);
  CHECK(server.raw({"EXISTS", "t:k"}).integer == 0);
}

// Here the erase never reaches Redis (the breaker is open), so Redis keeps v1 after it returns:
// only the pending invalidation stands between a reader and v1.
TEST_CASE("redis_store: a pending invalidation hides the old value until its DEL succeeds",
          "[redis]") {
  redis_server server;
  cachet::manual_clock clock;
  cachet::redis_options o = opts_for(server);
  o.command_timeout = 100ms;
  o.breaker = {.failures_to_open = 1, .open_for = 10s};
  manual_store s(o, clock);
  REQUIRE(s.put("k", "v1") == cachet::put_result::inserted);
  REQUIRE(s.put("other", "o") == cachet::put_result::inserted);
  server.pause();
  CHECK_FALSE(s.get("other"));  // times out: the breaker opens
  server.resume();
  REQUIRE(s.stats().breaker == cachet::breaker_state::open);

  CHECK_FALSE(s.erase("k"));  // refused by the breaker: no DEL was sent
  CHECK(server.raw({"GET", "t:k"}).str == "v1");
  CHECK(s.stats().pending_invalidations == 1);

  SECTION("a read of the key: a miss, and it retries the DEL") {
    clock.advance(10s);
    CHECK_FALSE(s.get("k"));  // not v1, which Redis still held
    CHECK(s.stats().breaker == cachet::breaker_state::closed);
    CHECK(server.raw({"EXISTS", "t:k"}).integer == 0);
  }
  SECTION("the next successful call of another key drains it") {
    clock.advance(10s);
    CHECK(s.get("other") == "o");
    CHECK(s.stats().pending_invalidations == 0);
    CHECK(server.raw({"EXISTS", "t:k"}).integer == 0);
    CHECK_FALSE(s.get("k"));
  }
  SECTION("a successful put of the key replaces the pending DEL") {
    clock.advance(10s);
    CHECK(s.put("k", "v2") == cachet::put_result::inserted);
    CHECK(s.stats().pending_invalidations == 0);
    CHECK(s.get("k") == "v2");
  }
}

TEST_CASE("redis_store: invalidations beyond the pending bound are counted as lost", "[redis]") {
  redis_server server;
  cachet::manual_clock clock;
  cachet::redis_options o = opts_for(server);
  o.breaker = {.failures_to_open = 1, .open_for = 10s};
  o.max_pending_invalidations = 2;
  manual_store s(o, clock);
  server.kill();
  CHECK_FALSE(s.erase("a"));  // fails on the network, opens the breaker
  CHECK_FALSE(s.erase("b"));  // fails fast
  CHECK_FALSE(s.erase("a"));  // already pending: nothing lost
  CHECK_FALSE(s.erase("c"));  // no room
  const auto st = s.stats();
  CHECK(st.pending_invalidations == 2);
  CHECK(st.lost_invalidations == 1);
}

// kill -9 of Redis while a load is in flight: the load goes to the origin once, the readers that
// came meanwhile (missing in the dead Redis) wait for that load instead of loading themselves;
// while Redis stays down every miss is one origin load per key at a time; a restarted Redis is
// used again once the breaker's probe gets through.
TEST_CASE("cache_aside over redis_store: Redis killed during loads; origin loads stay one per key",
          "[redis]") {
  redis_server server;
  cachet::manual_clock clock;
  cachet::redis_options o = opts_for(server);
  o.breaker = {.failures_to_open = 2, .open_for = 10s};
  cachet::cache_aside<manual_store> cache(o, clock);

  std::mutex mu;
  std::condition_variable cv;
  bool in_load = false;
  bool release = false;
  std::atomic<int> origin{0};
  const auto gated = [&](const std::string& k) -> std::optional<std::string> {
    origin.fetch_add(1);
    std::unique_lock<std::mutex> l(mu);
    in_load = true;
    cv.notify_all();
    cv.wait_for(l, std::chrono::minutes(1), [&] { return release; });
    return std::string("row:") + k;
  };

  std::optional<std::string> first;
  std::thread leader([&] { first = cache.get_or_load("hot", gated); });
  {
    std::unique_lock<std::mutex> l(mu);
    REQUIRE(cv.wait_for(l, std::chrono::minutes(1), [&] { return in_load; }));
  }
  server.kill();  // mid-load
  std::vector<std::optional<std::string>> got(3);
  std::vector<std::thread> readers;
  for (auto& g : got) readers.emplace_back([&] { g = cache.get_or_load("hot", gated); });
  // Each reader missed in the dead Redis and now waits for the leader's load.
  const bool waiting = eventually([&] { return cache.load_stats().coalesced == 3; });
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  leader.join();
  for (std::thread& t : readers) t.join();
  REQUIRE(waiting);
  CHECK(first == "row:hot");
  for (const auto& g : got) CHECK(g == "row:hot");
  CHECK(origin == 1);  // one origin load for four callers

  // Still down (the breaker is open by now): each call is one load, never an exception.
  CHECK(cache.store().stats().breaker == cachet::breaker_state::open);
  CHECK(cache.get_or_load("hot", gated) == "row:hot");
  CHECK(origin == 2);

  // Back: after open_for the probe fills Redis, and the next read is served from it.
  server.restart();
  clock.advance(10s);
  CHECK(cache.get_or_load("hot", gated) == "row:hot");
  CHECK(origin == 3);
  CHECK(server.raw({"GET", "t:hot"}).str == "row:hot");
  CHECK(cache.get_or_load("hot", gated) == "row:hot");
  CHECK(origin == 3);
}
