#include <cachet/eviction/random.hpp>
#include <map>
#include <new>

#include "../alloc_failure.hpp"
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

TEST_CASE("random: two stores in one process with the same configuration evict the same sequence",
          "[random]") {
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

TEST_CASE(
    "random: with a weight bound only, an array that cannot grow fails the put, never "
    "terminates",
    "[random]") {
  // No entry bound, so the victim array grows with the entries. It used to grow inside the
  // noexcept on_insert, where std::bad_alloc calls std::terminate; now it grows in reserve(),
  // before the put changes anything. The first 248 puts take the table past its growth at 223
  // entries and the slab past its chunk at 240, so they have room for the 16 after them, which
  // cross the array's growth at 256; these are tried with their next allocation failing (armed by
  // the weigher, just before the store takes its lock): only the array can need memory there.
  cachet::manual_clock clock;
  recorder<int, int> rec;
  bool fail = false;
  int_store<cachet::random> s({.max_weight = 264,
                               .weigher = [&fail](const int&, const int&) -> std::uint32_t {
                                 if (fail) cachet_test::fail_next_allocation();
                                 return 1;
                               },
                               .shards = 1,
                               .on_removal = rec.listener()},
                              clock);
  for (int k = 0; k < 248; ++k) s.put(k, k);
  int failed = 0;
  for (int k = 248; k < 264; ++k) {
    INFO("key " << k);
    fail = true;
    try {
      s.put(k, k);
    } catch (const std::bad_alloc&) {
      ++failed;
      REQUIRE_FALSE(cachet_test::allocation_failure_pending());
      REQUIRE(s.size() == static_cast<std::size_t>(k));
      REQUIRE_FALSE(s.contains(k));
    }
    fail = false;
    cachet_test::cancel_allocation_failure();  // when the put needed no memory
    if (!s.contains(k)) REQUIRE(s.put(k, k) == cachet::put_result::inserted);
  }
  CHECK(failed > 0);
  CHECK(rec.take().empty());
  REQUIRE(s.size() == 264);
  for (int k = 0; k < 264; ++k) REQUIRE(s.contains(k));
  // The array still holds every entry once: 264 newcomers evict exactly one entry each.
  for (int k = 1000; k < 1264; ++k) s.put(k, k);
  CHECK(rec.take_keys(removal_cause::evicted).size() == 264);
  CHECK(s.size() == 264);
}
