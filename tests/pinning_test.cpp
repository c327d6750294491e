// sharded_store::pin / unpin: a pinned entry is never evicted, counts against the bounds, follows
// its entry (kept by a put in place, dropped with the entry), and the pin bound leaves room.
#include <atomic>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

TEMPLATE_TEST_CASE("pin: a pinned entry outlives any amount of eviction pressure", "[pin]",
                   CACHET_EVICTING_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 20, .shards = 1}, clock);  // 2 pins
  for (int k = 1; k <= 20; ++k) REQUIRE(cachet::stored(s.put(k, k)));
  CHECK(s.pin(1));
  CHECK(s.pin(2));
  CHECK(s.pin(2));          // already pinned: still true
  CHECK_FALSE(s.pin(3));    // the shard's bound: floor(20 x 0.1)
  CHECK_FALSE(s.pin(999));  // no entry
  CHECK(s.pinned_count() == 2);
  for (int r = 0; r < 50; ++r) {
    for (int k = 100; k < 140; ++k) {
      s.put(k, k);
      s.get(k);
      CHECK(s.get(1) == 1);  // reads of a pinned entry reach it (and not the policy)
    }
  }
  CHECK(s.size() <= 20);  // pinned entries count against the bound
  CHECK(s.contains(1));
  CHECK(s.contains(2));
  CHECK(s.is_pinned(1));
  CHECK_FALSE(s.is_pinned(3));

  // Unpinned, an entry is an ordinary one again.
  CHECK(s.unpin(1));
  CHECK_FALSE(s.unpin(1));
  CHECK_FALSE(s.is_pinned(1));
  CHECK(s.pinned_count() == 1);
  if constexpr (!std::is_same_v<TestType, cachet::w_tinylfu> &&
                !std::is_same_v<TestType, cachet::w_tinylfu_adaptive>) {
    // (An admission policy may turn the newcomers away instead; the others must evict it.)
    for (int k = 1000; k < 3000 && s.contains(1); ++k) s.put(k, k);
    CHECK_FALSE(s.contains(1));
  }
  CHECK(s.contains(2));
}

TEMPLATE_TEST_CASE("pin: the pin follows its entry", "[pin]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 40, .shards = 1, .max_pinned_fraction = 0.5},
                                     clock);
  s.put(1, 10);
  s.put(2, 20, 5s);
  s.put(3, 30);
  REQUIRE(s.pin(1));
  REQUIRE(s.pin(2));
  REQUIRE(s.pin(3));
  CHECK(s.put(1, 11) == cachet::put_result::replaced);  // in place: still pinned
  CHECK(s.is_pinned(1));
  CHECK(s.get(1) == 11);
  CHECK(s.erase(3));
  CHECK(s.pinned_count() == 2);
  clock.advance(5s);  // pinned entries still expire
  CHECK_FALSE(s.get(2).has_value());
  CHECK(s.pinned_count() == 1);
  // The freed slots are reused by new entries, which are not pinned.
  s.put(4, 40);
  s.put(5, 50);
  CHECK_FALSE(s.is_pinned(4));
  CHECK_FALSE(s.is_pinned(5));
  s.clear();
  CHECK(s.pinned_count() == 0);
  s.put(1, 1);
  CHECK_FALSE(s.is_pinned(1));
}

TEST_CASE("pin: with a weight bound, pinned weight stays under its share", "[pin]") {
  cachet::sharded_store<int, std::string> s(
      {.max_weight = 100,
       .weigher = [](const int&,
                     const std::string& v) { return static_cast<std::uint32_t>(v.size()); },
       .shards = 1,
       .max_pinned_fraction = 0.2});  // 20 of 100
  s.put(1, std::string(10, 'a'));
  s.put(2, std::string(10, 'b'));
  s.put(3, std::string(1, 'c'));
  CHECK(s.pin(1));
  CHECK(s.pin(2));
  CHECK_FALSE(s.pin(3));  // 21 > 20
  // A put that makes a pinned entry too heavy for the share unpins it.
  CHECK(s.put(2, std::string(11, 'B')) == cachet::put_result::replaced);
  CHECK_FALSE(s.is_pinned(2));
  CHECK(s.is_pinned(1));
  CHECK(s.pin(3));  // 10 + 1
  // Pressure evicts around the pinned ones.
  for (int k = 10; k < 200; ++k) s.put(k, std::string(9, 'x'));
  CHECK(s.get(1) == std::string(10, 'a'));
  CHECK(s.get(3) == std::string(1, 'c'));
  CHECK(s.stats().weight <= 100);
}

TEST_CASE("pin: options", "[pin][options]") {
  using store = cachet_test::int_store<cachet::lru>;
  cachet::manual_clock clock;
  CHECK_THROWS_WITH((store({.max_entries = 8, .max_pinned_fraction = 1.0}, clock)),
                    Catch::Contains("max_pinned_fraction"));
  CHECK_THROWS_WITH((store({.max_entries = 8, .max_pinned_fraction = -0.1}, clock)),
                    Catch::Contains("max_pinned_fraction"));
  store off({.max_entries = 100, .max_pinned_fraction = 0.0}, clock);
  off.put(1, 1);
  CHECK_FALSE(off.pin(1));  // 0 disables pinning
}

TEST_CASE("pin: concurrent pins, unpins, reads, writes and erases keep the bounds",
          "[pin][threads]") {
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::lru> s(
      {.max_entries = 64, .shards = 2, .max_pinned_fraction = 0.25}, clock);
  constexpr int k_rounds = 3000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < k_rounds; ++r) {
        const int k = (r * 7 + t) % 96;
        switch ((r + t) % 5) {
          case 0:
            s.pin(k);
            break;
          case 1:
            s.unpin(k);
            break;
          case 2:
            s.get(k);
            break;
          case 3:
            s.put(k, r);
            break;
          default:
            if (r % 3 == 0) s.erase(k);
            break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(s.size() <= 64);
  CHECK(s.pinned_count() <= 16);  // 2 shards x floor(32 x 0.25)
  std::size_t pinned = 0;
  for (int k = 0; k < 96; ++k) {
    if (s.is_pinned(k)) {
      ++pinned;
      CHECK(s.contains(k));
    }
  }
  CHECK(pinned == s.pinned_count());
  // The policy still works on what is not pinned: a long run of new keys leaves only the pins.
  for (int k = 1000; k < 1500; ++k) s.put(k, k);
  for (int k = 0; k < 96; ++k) CHECK(s.contains(k) == s.is_pinned(k));
}
