// cachet/tiered_store.hpp over a real Redis: L1 = sharded_store on a manual clock, L2 =
// redis_store<std::string, std::string> on a redis-server of the test's own (redis_server.hpp).
#include <cachet/clock.hpp>
#include <cachet/redis/redis_store.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tiered_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <tuple>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using cachet_test::redis_server;
using l1_type = cachet::sharded_store<std::string, std::string, cachet::lru, cachet::manual_clock>;
using l2_type = cachet::redis_store<std::string, std::string>;
using tiered = cachet::tiered_store<l1_type, l2_type>;

static_assert(cachet::store<tiered>);

tiered make(const redis_server& server, const cachet::manual_clock& clock) {
  cachet::redis_options o = server.options();
  o.key_prefix = "t:";
  o.breaker.failures_to_open = 1000;  // every call below tries the network
  return tiered(
      {.l1_ttl = 5s},
      std::tuple{cachet::store_options<std::string, std::string>{.max_entries = 64}, clock},
      std::tuple{o});
}

}  // namespace

TEST_CASE("tiered_store over redis: a round trip through both tiers", "[redis][tiered]") {
  redis_server server;
  cachet::manual_clock clock;
  tiered t = make(server, clock);

  REQUIRE(t.put("a", "1") == cachet::put_result::inserted);
  CHECK(server.raw({"GET", "t:a"}).str == "1");
  CHECK(t.l1().peek("a") == "1");
  CHECK(t.get("a") == "1");  // from L1

  REQUIRE(server.raw({"SET", "t:b", "2"}).str == "OK");  // written by another process
  CHECK(t.get("b") == "2");                              // from Redis, promoted
  CHECK(t.l1().peek("b") == "2");
  CHECK_FALSE(t.get("c"));

  CHECK(t.erase("a"));
  CHECK(server.raw({"GET", "t:a"}).nil());
  CHECK_FALSE(t.get("a"));

  const cachet::tiered_stats st = t.stats();
  CHECK(st.l1_hits == 1);
  CHECK(st.l2_hits == 1);
  CHECK(st.misses == 2);
  CHECK(st.promotions == 1);
}

TEST_CASE("tiered_store over redis: with Redis down, L1 hits are served and misses are misses",
          "[redis][tiered]") {
  redis_server server;
  cachet::manual_clock clock;
  tiered t = make(server, clock);
  REQUIRE(t.put("a", "1") == cachet::put_result::inserted);
  server.kill();

  CHECK(t.get("a") == "1");  // L1
  std::optional<std::string> missed;
  CHECK_NOTHROW(missed = t.get("b"));
  CHECK_FALSE(missed);
  CHECK(t.put("c", "3") == cachet::put_result::rejected_unavailable);
  CHECK_FALSE(t.l1().peek("c"));  // a refused write leaves no L1 copy
  CHECK_FALSE(t.get("c"));

  clock.advance(5s);  // the L1 copy of "a" expires; Redis cannot answer
  CHECK_NOTHROW(missed = t.get("a"));
  CHECK_FALSE(missed);
  CHECK(t.stats().l1_hits == 1);
}
