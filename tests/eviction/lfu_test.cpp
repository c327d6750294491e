#include <cachet/eviction/lfu.hpp>

#include "model.hpp"

using cachet::removal_cause;
using namespace cachet_test;

TEST_CASE("lfu: evicts the least frequently used, least recent among ties", "[lfu]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::lfu> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1);
  s.put(2, 2);
  s.put(3, 3);
  s.get(1);
  s.get(1);     // 1: freq 3
  s.get(2);     // 2: freq 2; 3: freq 1
  s.put(4, 4);  // evicts 3 (freq 1)
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{3});
  s.put(5, 5);  // 4 and 5 would tie at 1; 4 is the only freq-1 entry before 5 arrives: evicts 4
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{4});
  s.put(5, 55);  // update counts: 5 freq 2, 2 freq 2 (older in its bucket)
  s.put(6, 6);   // evicts 2: lowest freq 2, least recently bucketed
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{2});
}

TEST_CASE("lfu: aging lets a formerly hot entry go", "[lfu]") {
  // Capacity 2: the sample period is 20 inserts + hits.
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::lfu> s({.max_entries = 2, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1);
  for (int i = 0; i < 7; ++i) s.get(1);  // 1: freq 8 (ops 8)
  s.put(2, 2);
  for (int i = 0; i < 5; ++i) s.get(2);  // 2: freq 6 (ops 14)
  for (int i = 0; i < 6; ++i) s.get(2);  // 2: freq 12; op 20 halves: 1 -> 4, 2 -> 6
  for (int i = 0; i < 2; ++i) s.get(1);  // 1: freq 6, more recent than 2 in bucket 6
  s.put(3, 3);                           // victim: 2 (freq 6, older in bucket 6)
  // Without the halving, 1 (10 uses) would rank below 2 (12 uses) and be the victim here.
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{2});
  for (int i = 0; i < 6; ++i) s.get(3);  // 3: freq 7 > 1's halved 6
  s.put(4, 4);  // evicts 1, which has more raw uses (10) than 3 (7) but fewer since the halving
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{1});
}

TEST_CASE("lfu: more hits than the hit buffer holds are all counted", "[lfu]") {
  cachet::manual_clock clock;  // capacity 50: aging every 500 ops, never reached here
  recorder<int, int> rec;
  int_store<cachet::lfu> s({.max_entries = 50, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 0; k < 50; ++k) s.put(k, k);
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 49; ++k) s.get(k);  // every key but 49: 147 hits, buffer of 64
  }
  s.get(49);
  s.put(100, 100);  // 49 has freq 2, the rest 4: evicts 49
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{49});
}

TEST_CASE("lfu: matches the reference model", "[lfu][model]") {
  run_standard_models<cachet::lfu, lfu_rules>();
}

TEST_CASE("lfu: matches the reference model with a hot key that saturates", "[lfu][model]") {
  run_model<cachet::lfu, lfu_rules>(
      {.keys = 80, .capacity = 64, .ops = 20000, .hot_fraction = 0.6, .seed = 7});
}
