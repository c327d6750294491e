// cachet/split_keys.hpp over a real Redis: a split key's write is one pipeline of SETs to its
// copies, its reads are GETs spread evenly over them, and the invalidation bus's names of the
// copies map back to the key, so a tiered_store over a split L2 drops its L1 copy when another
// instance writes the key.
#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/redis_store.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/split_keys.hpp>
#include <cachet/tiered_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <tuple>

#include "redis_server.hpp"

namespace {
using namespace std::chrono_literals;
using cachet_test::redis_server;
using remote_t = cachet::redis_store<std::string, std::string>;
using split_t = cachet::split_store<remote_t>;

cachet::redis_options conn_for(const redis_server& s) {
  cachet::redis_options o = s.options();
  o.key_prefix = "s:";
  o.default_ttl = std::chrono::minutes(10);
  return o;
}
cachet::split_options hot() {
  return {.copies = 4, .split = [](const std::string& k) { return k.starts_with("hot:"); }};
}
}  // namespace

TEST_CASE("split_store over Redis: one pipeline of SETs, GETs spread over the copies",
          "[redis][split]") {
  redis_server server;
  split_t s(hot(), conn_for(server));
  server.take_commands();  // start the log
  REQUIRE(s.put("hot:cfg", "v1") == cachet::put_result::inserted);
  std::map<std::string, int> gets;
  for (int i = 0; i < 40; ++i) CHECK(s.get("hot:cfg") == "v1");
  int sets = 0;
  for (const auto& c : server.take_commands()) {
    if (c[0] == "SET") ++sets;
    if (c[0] == "GET") ++gets[c[1]];
  }
  CHECK(sets == 4);
  REQUIRE(gets.size() == 4);
  for (const auto& [k, n] : gets) {
    INFO(k);
    CHECK(n == 10);
  }
  CHECK(
      server.raw({"EXISTS", "s:hot:cfg#0", "s:hot:cfg#1", "s:hot:cfg#2", "s:hot:cfg#3"}).integer ==
      4);
  CHECK(server.raw({"EXISTS", "s:hot:cfg"}).integer == 0);
  CHECK(s.key_from_redis("s:hot:cfg#3") == "hot:cfg");
  CHECK(s.key_from_redis("s:other#3") == "other#3");
  CHECK(s.erase("hot:cfg"));
  CHECK(
      server.raw({"EXISTS", "s:hot:cfg#0", "s:hot:cfg#1", "s:hot:cfg#2", "s:hot:cfg#3"}).integer ==
      0);
}

TEST_CASE("split_store over Redis: a tiered_store's L1 hears a write of the split key elsewhere",
          "[redis][split]") {
  redis_server server;
  using l1_t = cachet::sharded_store<std::string, std::string>;
  cachet::tiered_store<l1_t, split_t> tier({.l1_ttl = std::chrono::minutes(10)},
                                           std::tuple{l1_t::options_type{.max_entries = 100}},
                                           std::tuple{hot(), conn_for(server)});
  split_t& l2 = tier.l2();
  std::mutex mu;
  std::condition_variable cv;
  bool up = false;
  int heard = 0;
  tier.suspend_local();
  cachet::redis_invalidation_listener bus(conn_for(server), {},
                                          {.on_keys =
                                               [&](std::span<const std::string> names) {
                                                 for (const std::string& n : names) {
                                                   if (auto k = l2.key_from_redis(n)) {
                                                     tier.invalidate_local(*k);
                                                     std::lock_guard<std::mutex> l(mu);
                                                     if (*k == "hot:cfg") ++heard;
                                                     cv.notify_all();
                                                   }
                                                 }
                                               },
                                           .on_flush = [&] { tier.clear_local(); },
                                           .on_state =
                                               [&](bool u) {
                                                 u ? tier.resume_local() : tier.suspend_local();
                                                 std::lock_guard<std::mutex> l(mu);
                                                 up = u;
                                                 cv.notify_all();
                                               }});
  {
    std::unique_lock<std::mutex> l(mu);
    REQUIRE(cv.wait_for(l, 5s, [&] { return up; }));
  }
  split_t elsewhere(hot(), conn_for(server));
  REQUIRE(elsewhere.put("hot:cfg", "v1") == cachet::put_result::inserted);
  {
    std::unique_lock<std::mutex> l(mu);
    REQUIRE(cv.wait_for(l, 5s, [&] { return heard >= 4; }));  // one per copy
  }
  CHECK(tier.get("hot:cfg") == "v1");  // from Redis, promoted
  CHECK(tier.l1().peek("hot:cfg") == "v1");
  int mark = 0;
  {
    std::lock_guard<std::mutex> l(mu);
    mark = heard;
  }
  REQUIRE(cachet::stored(elsewhere.put("hot:cfg", "v2")));
  {
    std::unique_lock<std::mutex> l(mu);
    REQUIRE(cv.wait_for(l, 5s, [&] { return heard > mark; }));
  }
  CHECK_FALSE(tier.l1().peek("hot:cfg"));  // dropped at the first copy's invalidation
  // Once all four copies' invalidations are in, a read sees v2 (each copy holds it by then).
  {
    std::unique_lock<std::mutex> l(mu);
    REQUIRE(cv.wait_for(l, 5s, [&] { return heard >= mark + 4; }));
  }
  CHECK(tier.get("hot:cfg") == "v2");
}
