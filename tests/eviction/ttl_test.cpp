#include <cachet/eviction/ttl.hpp>

#include "model.hpp"

using cachet::removal_cause;
using namespace cachet_test;
using std::chrono::seconds;

TEST_CASE("ttl: evicts the soonest deadline first, then no-TTL entries oldest first", "[ttl]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::ttl> s({.max_entries = 4, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1);  // no TTL
  s.put(2, 2, seconds(30));
  s.put(3, 3);  // no TTL
  s.put(4, 4, seconds(10));
  s.put(5, 5);  // evicts 4 (deadline 10)
  s.put(6, 6);  // evicts 2 (deadline 30)
  s.put(7, 7);  // only no-TTL left: evicts 1, the oldest
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{4, 2, 1});
  s.put(3, 33, seconds(5));  // gains a TTL: now the first to go
  s.put(8, 8);
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{3});
  s.put(5, 55, seconds(50));
  s.put(6, 66, seconds(20));
  s.put(6, 66, cachet::no_expiry);  // drops its TTL: joins the no-TTL queue as the newest
  s.put(9, 9);                      // evicts 5 (the only deadline)
  s.put(10, 10);                    // no-TTL queue 7 8 6 9: evicts 7
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{5, 7});
}

TEST_CASE("ttl: an updated deadline re-positions the entry", "[ttl]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::ttl> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1, seconds(10));
  s.put(2, 2, seconds(20));
  s.put(3, 3, seconds(30));
  s.put(1, 1, seconds(40));  // now last
  s.put(4, 4, seconds(50));  // evicts 2
  s.put(5, 5, seconds(60));  // evicts 3
  s.put(6, 6, seconds(70));  // evicts 1
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{2, 3, 1});
}

TEST_CASE("ttl: an expired entry is the victim and is reported as expired", "[ttl]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::ttl> s({.max_entries = 2, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1, seconds(1));
  s.put(2, 2);
  clock.advance(seconds(2));
  s.put(3, 3);
  const auto events = rec.take();
  REQUIRE(events.size() == 1);
  REQUIRE(events[0].key == 1);
  REQUIRE(events[0].cause == removal_cause::expired);
  REQUIRE(s.stats().evictions == 0);
}

TEST_CASE("ttl: matches the reference model", "[ttl][model]") {
  run_standard_models<cachet::ttl, ttl_rules>();
}
