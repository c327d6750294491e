#include <cachet/eviction/random.hpp>
#include <map>

#include "model.hpp"

using cachet::removal_cause;
using namespace cachet_test;

TEST_CASE("random: victims are uniform over the shard's entries", "[random]") {
  // 16 resident keys; each round inserts one newcomer, which evicts one of the 16 residents, then
  // erases the newcomer. Over 32000 rounds each resident should be picked ~2000 times.
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::random> s({.max_entries = 16, .shards = 1, .on_removal = rec.listener()},
                              clock);
  for (int k = 0; k < 16; ++k) s.put(k, k);
  std::map<int, int> picked;
  for (int round = 0; round < 32000; ++round) {
    s.put(1000, 0);
    auto victims = rec.take_keys(removal_cause::evicted);
    REQUIRE(victims.size() == 1);
    const int v = victims[0];
    REQUIRE(v < 16);
    ++picked[v];
    s.erase(1000);
    s.put(v, v);  // put the victim back: the same 16 residents again
    rec.take();
  }
  double chi2 = 0;
  for (int k = 0; k < 16; ++k) {
    const double d = picked[k] - 2000.0;
    chi2 += d * d / 2000.0;
  }
  // 15 degrees of freedom: P(chi2 > 60) < 1e-6. The generator is seeded per store, so this is also
  // deterministic.
  REQUIRE(chi2 < 60.0);
}

TEST_CASE("random: two stores with the same configuration evict the same sequence", "[random]") {
  auto run = [] {
    cachet::manual_clock clock;
    recorder<int, int> rec;
    int_store<cachet::random> s({.max_entries = 8, .shards = 1, .on_removal = rec.listener()},
                                clock);
    for (int k = 0; k < 100; ++k) s.put(k, k);
    return rec.take_keys(removal_cause::evicted);
  };
  const auto a = run();
  REQUIRE(a.size() == 92);
  REQUIRE(a == run());
}

TEST_CASE("random: matches the reference model", "[random][model]") {
  run_standard_models<cachet::random, random_rules>();
}
