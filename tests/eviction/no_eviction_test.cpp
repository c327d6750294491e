#include <cachet/eviction/no_eviction.hpp>

#include "model.hpp"

using cachet::put_result;
using cachet::removal_cause;
using namespace cachet_test;

TEST_CASE("no_eviction: a full store refuses new keys and evicts nothing", "[no_eviction]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::no_eviction> s({.max_entries = 2, .shards = 1, .on_removal = rec.listener()},
                                   clock);
  REQUIRE(s.put(1, 1) == put_result::inserted);
  REQUIRE(s.put(2, 2, std::chrono::seconds(1)) == put_result::inserted);
  REQUIRE(s.put(3, 3) == put_result::rejected_full);
  REQUIRE_FALSE(s.contains(3));
  REQUIRE(s.put(1, 11) == put_result::replaced);  // replacing a present key still works
  REQUIRE(s.get(1) == 11);
  REQUIRE(s.stats().rejections == 1);
  REQUIRE(rec.take_keys(removal_cause::evicted).empty());
  clock.advance(std::chrono::seconds(1));  // 2 expires: its slot is reclaimed for the next key
  REQUIRE(s.put(3, 3) == put_result::inserted);
  REQUIRE(rec.take_keys(removal_cause::expired) == std::vector<int>{2});
  REQUIRE(s.size() == 2);
}

TEST_CASE("no_eviction: matches the reference model", "[no_eviction][model]") {
  run_standard_models<cachet::no_eviction, no_eviction_rules>();
}
