// sharded_store::set_max_entries / set_max_weight: bounds changed on a live store, over every
// backend; shrinking evicts down to the new bound, growing takes effect at once.
#include <atomic>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

TEMPLATE_TEST_CASE("set_max_entries: shrink evicts down to the bound, grow lets it fill again",
                   "[resize]", CACHET_EVICTING_BACKENDS) {
  cachet::manual_clock clock;
  std::atomic<int> evicted{0};
  cachet_test::int_store<TestType> s({.max_entries = 400,
                                      .shards = 4,
                                      .on_removal =
                                          [&](const int&, const int&, cachet::removal_cause c) {
                                            if (c == cachet::removal_cause::evicted) ++evicted;
                                          }},
                                     clock);
  for (int k = 0; k < 400; ++k) s.put(k, k);
  const std::size_t full = s.size();
  REQUIRE(full > 300);  // a full shard evicted, or an admission policy refused, a few
  const int before = evicted.load();
  const std::uint64_t evictions_before = s.stats().evictions;
  s.set_max_entries(100);
  CHECK(s.capacity() == 100);
  CHECK(s.options().max_entries == 400);  // the options it was built with
  CHECK(s.size() <= 100);
  CHECK(static_cast<std::size_t>(evicted.load() - before) == full - s.size());
  CHECK(s.stats().evictions - evictions_before == full - s.size());
  for (int k = 1000; k < 2000; ++k) s.put(k, k);  // the policy keeps working at the new size
  CHECK(s.size() <= 100);
  s.set_max_entries(400);
  for (int k = 3000; k < 4000; ++k) {
    s.put(k, k);
    s.get(k);
    s.get(k);  // frequency for the admission policies
  }
  CHECK(s.size() > 100);
  CHECK(s.size() <= 400);
}

TEST_CASE("set_max_entries: invalid bounds name the option", "[resize][options]") {
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::lru> s({.max_entries = 64, .shards = 4}, clock);
  CHECK_THROWS_WITH(s.set_max_entries(65), Catch::Contains("max_entries"));  // above the ceiling
  CHECK_THROWS_WITH(s.set_max_entries(3), Catch::Contains("max_entries"));   // under the shards
  CHECK(s.capacity() == 64);
  CHECK_THROWS_WITH(s.set_max_weight(100), Catch::Contains("max_weight"));  // no weight bound
  cachet::sharded_store<int, std::string> w(
      {.max_weight = 100,
       .weigher = [](const int&,
                     const std::string& v) { return static_cast<std::uint32_t>(v.size()); },
       .shards = 1});
  CHECK_THROWS_WITH(w.set_max_entries(10), Catch::Contains("max_entries"));  // no entry bound
}

TEST_CASE("set_max_weight: shrink evicts by weight, grow has no ceiling", "[resize]") {
  cachet::sharded_store<int, std::string, cachet::lru> s(
      {.max_weight = 100,
       .weigher = [](const int&,
                     const std::string& v) { return static_cast<std::uint32_t>(v.size()); },
       .shards = 1});
  for (int k = 0; k < 10; ++k) s.put(k, std::string(10, 'x'));
  CHECK(s.stats().weight == 100);
  s.set_max_weight(35);
  CHECK(s.max_weight() == 35);
  CHECK(s.stats().weight <= 35);
  CHECK(s.size() == 3);
  CHECK(s.contains(9));  // lru: the most recent stay
  CHECK_FALSE(s.contains(0));
  s.set_max_weight(1000);
  for (int k = 20; k < 100; ++k) s.put(k, std::string(10, 'y'));
  CHECK(s.stats().weight == 800 + 30);
}

TEST_CASE("set_max_entries: pins over the new bound are released, then evicted", "[resize][pin]") {
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::lru> s(
      {.max_entries = 100, .shards = 1, .max_pinned_fraction = 0.5}, clock);
  for (int k = 0; k < 100; ++k) s.put(k, k);
  for (int k = 0; k < 50; ++k) REQUIRE(s.pin(k));
  s.set_max_entries(20);  // 10 pins allowed now
  CHECK(s.pinned_count() == 10);
  CHECK(s.size() <= 20);
  int pinned_present = 0;
  for (int k = 0; k < 50; ++k) pinned_present += s.is_pinned(k) ? 1 : 0;
  CHECK(pinned_present == 10);
  for (int k = 200; k < 400; ++k) s.put(k, k);
  CHECK(s.size() <= 20);
  for (int k = 0; k < 50; ++k) {
    if (s.is_pinned(k)) CHECK(s.contains(k));
  }
}

TEST_CASE("set_max_entries: resizing under concurrent load keeps the bound", "[resize][threads]") {
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::w_tinylfu_adaptive> s({.max_entries = 1024, .shards = 4}, clock);
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&, t] {
      for (int r = 0; r < 20000 && !stop.load(std::memory_order_relaxed); ++r) {
        const int k = (r * 31 + t * 7) % 3000;
        if (r % 3 == 0) {
          s.put(k, r);
        } else {
          s.get(k);
        }
      }
    });
  }
  const std::size_t sizes[] = {64, 1024, 128, 512, 1000, 256};
  for (int round = 0; round < 30; ++round) s.set_max_entries(sizes[round % 6]);
  stop = true;
  for (auto& w : workers) w.join();
  s.set_max_entries(256);  // quiescent: the bound holds exactly
  CHECK(s.size() <= 256);
  for (int k = 5000; k < 6000; ++k) s.put(k, k);
  CHECK(s.size() <= 256);
}
