#include <cachet/eviction/fifo.hpp>

#include "model.hpp"

using cachet::removal_cause;
using namespace cachet_test;

TEST_CASE("fifo: evicts in insertion order; hits and updates keep the place", "[fifo]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::fifo> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1);
  s.put(2, 2);
  s.put(3, 3);
  REQUIRE(s.get(1) == 1);
  s.put(1, 11);  // still the oldest
  s.put(4, 4);
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{1});
  REQUIRE(s.erase(3));
  s.put(5, 5);  // room: nothing evicted
  s.put(6, 6);  // queue 2 4 5 -> evicts 2
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{2});
  s.put(1, 1);  // evicts 4
  s.put(7, 7);  // evicts 5
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{4, 5});
}

TEST_CASE("fifo: matches the reference model", "[fifo][model]") {
  run_standard_models<cachet::fifo, fifo_rules>();
}
