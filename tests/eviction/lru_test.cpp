#include <cachet/eviction/lru.hpp>

#include "model.hpp"

using cachet::removal_cause;
using namespace cachet_test;

TEST_CASE("lru: evicts the least recently read or written entry", "[lru]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::lru> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 10);
  s.put(2, 20);
  s.put(3, 30);
  REQUIRE(s.get(1) == 10);  // order, most recent first: 1 3 2
  s.put(4, 40);             // evicts 2
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{2});
  s.put(3, 31);  // an update is a use: 3 4 1
  s.put(5, 50);  // evicts 1
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{1});
  REQUIRE(s.contains(4));  // contains is not a use: 5 3 4
  s.put(6, 60);            // evicts 4
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{4});
  REQUIRE(s.erase(3));  // 6 5
  s.put(7, 70);         // room after the erase: no eviction
  REQUIRE(rec.take_keys(removal_cause::evicted).empty());
  s.put(8, 80);  // 8 7 6 5 -> evicts 5
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{5});
}

TEST_CASE("lru: an expired entry frees its slot instead of evicting a live one", "[lru]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::lru> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1);
  s.put(2, 2, std::chrono::seconds(1));
  s.put(3, 3);
  clock.advance(std::chrono::seconds(1));
  REQUIRE_FALSE(s.get(2));  // reclaimed on access
  s.put(4, 4);
  const auto events = rec.take();
  REQUIRE(events.size() == 1);
  REQUIRE(events[0].cause == removal_cause::expired);
  REQUIRE(s.size() == 3);
}

TEST_CASE("lru: more hits than the hit buffer holds are all applied", "[lru]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::lru> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1);
  s.put(2, 2);
  s.put(3, 3);
  s.get(1);
  for (std::uint32_t k = 0; k < 3 * cachet::lru::k_buffer; ++k) s.get(2);
  s.put(4, 4);  // order 2 1 3: evicts 3
  s.put(5, 5);  // evicts 1
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{3, 1});
}

TEST_CASE("lru: matches the reference model", "[lru][model]") {
  run_standard_models<cachet::lru, lru_rules>();
}
