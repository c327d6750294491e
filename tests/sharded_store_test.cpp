// The conformance suite: one set of behaviours every backend must show, run over every backend.
// Part 1: semantics, stats, capacity and expiry; part 2 is sharded_store_more_test.cpp.
#include <algorithm>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>

#include "support.hpp"

using cachet::put_result;
using cachet::removal_cause;
using namespace cachet_test;
using std::chrono::seconds;

TEMPLATE_TEST_CASE("store: get, put, replace, erase, contains", "[store]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<TestType> s({.max_entries = 100, .on_removal = rec.listener()}, clock);
  REQUIRE(s.empty());
  REQUIRE_FALSE(s.get(1));
  REQUIRE(s.put(1, 10) == put_result::inserted);
  REQUIRE(s.get(1) == 10);
  REQUIRE(s.contains(1));
  REQUIRE(s.put(1, 11) == put_result::replaced);
  REQUIRE(s.get(1) == 11);
  REQUIRE(s.size() == 1);
  REQUIRE(s.erase(1));
  REQUIRE_FALSE(s.erase(1));
  REQUIRE_FALSE(s.contains(1));
  REQUIRE(s.empty());
  const auto events = rec.take();
  REQUIRE(events == std::vector<removal_event<int, int>>{{1, 10, removal_cause::replaced},
                                                         {1, 11, removal_cause::explicit_erase}});
}

TEMPLATE_TEST_CASE("store: stats add up", "[store][stats]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  int_store<TestType> s({.max_entries = 64, .shards = 4}, clock);
  std::mt19937_64 rng(42);
  std::uint64_t gets = 0, puts = 0, hits = 0;
  for (int i = 0; i < 5000; ++i) {
    const int k = static_cast<int>(rng() % 200);
    if (rng() % 2) {
      ++gets;
      hits += s.get(k).has_value();
    } else {
      ++puts;
      s.put(k, i);
    }
  }
  const auto st = s.stats();
  REQUIRE(st.gets() == gets);
  REQUIRE(st.hits == hits);
  REQUIRE(st.hits + st.misses == gets);
  REQUIRE(st.puts() == puts);
  REQUIRE(st.size == s.size());
  REQUIRE(st.weight == st.size);
  REQUIRE(st.inserts == st.size + st.evictions + st.expirations + st.explicit_removals);
  if constexpr (std::is_same_v<TestType, cachet::no_eviction>) {
    REQUIRE(st.evictions == 0);
    REQUIRE(st.rejections > 0);
  } else {
    REQUIRE(st.rejections == 0);
    REQUIRE(st.evictions > 0);
  }
  REQUIRE(st.hit_ratio() == Approx(static_cast<double>(hits) / static_cast<double>(gets)));
}

TEMPLATE_TEST_CASE("store: size never exceeds capacity", "[store][capacity]", CACHET_ALL_BACKENDS) {
  auto shards = GENERATE(1, 2, 8);
  auto capacity = GENERATE(8, 37, 100);
  cachet::manual_clock clock;
  int_store<TestType> s({.max_entries = static_cast<std::size_t>(capacity),
                         .shards = static_cast<std::size_t>(shards)},
                        clock);
  std::mt19937_64 rng(7);
  std::size_t max_seen = 0;
  for (int i = 0; i < 3000; ++i) {
    const int k = static_cast<int>(rng() % 500);
    switch (rng() % 4) {
      case 0:
        s.put(k, i);
        break;
      case 1:
        s.put(k, i, seconds(1 + rng() % 5));
        break;
      case 2:
        s.get(k);
        break;
      default:
        clock.advance(seconds(1));
        break;
    }
    REQUIRE(s.size() <= s.capacity());
    max_seen = std::max(max_seen, s.size());
  }
  if constexpr (!std::is_same_v<TestType, cachet::no_eviction>) {
    // Shards fill unevenly, but an evicting store runs full once every shard has seen enough keys.
    REQUIRE(max_seen >= static_cast<std::size_t>(capacity) * 3 / 4);
  }
}

TEMPLATE_TEST_CASE("store: entries expire on the manual clock", "[store][ttl]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<TestType> s(
      {.max_entries = 100, .default_ttl = seconds(10), .on_removal = rec.listener()}, clock);
  s.put(1, 1);                     // default TTL: 10 s
  s.put(2, 2, seconds(5));         // explicit TTL
  s.put(3, 3, cachet::no_expiry);  // never
  clock.advance(seconds(5) - std::chrono::nanoseconds(1));
  REQUIRE(s.get(2) == 2);  // one nanosecond before its deadline
  clock.advance(std::chrono::nanoseconds(1));
  REQUIRE_FALSE(s.get(2));  // at the deadline
  REQUIRE(s.get(1) == 1);
  clock.advance(seconds(5));
  REQUIRE_FALSE(s.contains(1));
  clock.advance(std::chrono::hours(24 * 365));
  REQUIRE(s.get(3) == 3);
  REQUIRE(s.size() == 1);
  REQUIRE(rec.take() == std::vector<removal_event<int, int>>{{2, 2, removal_cause::expired},
                                                             {1, 1, removal_cause::expired}});
  const auto st = s.stats();
  REQUIRE(st.expirations == 2);
  REQUIRE(st.misses == 1);  // get(2) after expiry; contains() does not count
}

TEMPLATE_TEST_CASE("store: a put renews the deadline; a put over an expired entry inserts",
                   "[store][ttl]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<TestType> s({.max_entries = 10, .on_removal = rec.listener()}, clock);
  s.put(1, 1, seconds(5));
  clock.advance(seconds(4));
  REQUIRE(s.put(1, 2, seconds(5)) == put_result::replaced);
  clock.advance(seconds(4));
  REQUIRE(s.get(1) == 2);
  clock.advance(seconds(1));
  REQUIRE(s.put(1, 3) == put_result::inserted);  // the old one had expired
  REQUIRE(rec.take() == std::vector<removal_event<int, int>>{{1, 1, removal_cause::replaced},
                                                             {1, 2, removal_cause::expired}});
  REQUIRE(s.get(1) == 3);
}

TEMPLATE_TEST_CASE("store: cleanup and the write sweep reclaim expired entries", "[store][ttl]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  int_store<TestType> s({.max_entries = 1000, .shards = 1}, clock);
  for (int k = 0; k < 100; ++k) s.put(k, k, seconds(1));
  for (int k = 100; k < 150; ++k) s.put(k, k);
  clock.advance(seconds(1));
  REQUIRE(s.size() == 150);  // expired but not yet reclaimed
  SECTION("cleanup() reclaims all of them at once") {
    REQUIRE(s.cleanup() == 100);
    REQUIRE(s.size() == 50);
    REQUIRE(s.cleanup() == 0);
  }
  SECTION("writes reclaim them a few slots at a time") {
    // Each insert examines 4 slots: 150 slots are covered by 38 inserts.
    for (int k = 1000; k < 1038; ++k) s.put(k, k);
    REQUIRE(s.stats().expirations == 100);
    REQUIRE(s.size() == 50 + 38);
  }
}

TEMPLATE_TEST_CASE("store: TTL jitter shortens TTLs within the fraction", "[store][ttl]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  int_store<TestType> s({.max_entries = 1000, .default_ttl = seconds(100), .ttl_jitter = 0.5},
                        clock);
  for (int k = 0; k < 400; ++k) s.put(k, k);
  auto live = [&] {
    int n = 0;
    for (int k = 0; k < 400; ++k) n += s.contains(k);
    return n;
  };
  clock.advance(seconds(50));
  REQUIRE(live() == 400);  // no TTL is cut by half or more
  clock.advance(seconds(25));
  const int mid = live();  // uniform cut: about half are gone; 400 coin flips never land 0 or 400
  REQUIRE(mid > 100);
  REQUIRE(mid < 300);
  clock.advance(seconds(25));
  REQUIRE(live() == 0);  // none outlives its TTL
}

// ---- hottest() / coldest(): the eviction order, quiet

#define CACHET_ORDERED_BACKENDS                                                             \
  cachet::lru, cachet::lfu, cachet::fifo, cachet::sieve, cachet::s3fifo, cachet::w_tinylfu, \
      cachet::w_tinylfu_adaptive

namespace {
template <class P>
using ordered_store = cachet::sharded_store<int, int, P, cachet::manual_clock>;

std::vector<int> keys_of(const std::vector<std::pair<int, int>>& entries) {
  std::vector<int> keys;
  for (const auto& [k, v] : entries) {
    CHECK(v == k * 10);  // the value that goes with the key
    keys.push_back(k);
  }
  return keys;
}
}  // namespace

TEST_CASE("coldest / hottest: the policy's order, exactly, with one shard", "[store][order]") {
  cachet::manual_clock clock;
  const auto fill = [](auto& s) {
    for (int k = 1; k <= 5; ++k) s.put(k, k * 10);
  };
  SECTION("lru: least recent first") {
    ordered_store<cachet::lru> s({.max_entries = 5, .shards = 1}, clock);
    fill(s);
    s.get(2);
    s.get(4);
    CHECK(keys_of(s.coldest(10)) == std::vector<int>{1, 3, 5, 2, 4});
    CHECK(keys_of(s.hottest(2)) == std::vector<int>{4, 2});
  }
  SECTION("fifo: oldest insert first, reads do not count") {
    ordered_store<cachet::fifo> s({.max_entries = 5, .shards = 1}, clock);
    fill(s);
    s.get(2);
    CHECK(keys_of(s.coldest(5)) == std::vector<int>{1, 2, 3, 4, 5});
  }
  SECTION("lfu: lowest count first, least recent first within a count") {
    ordered_store<cachet::lfu> s({.max_entries = 5, .shards = 1}, clock);
    fill(s);
    for (int i = 0; i < 3; ++i) s.get(3);
    s.get(1);
    s.get(5);
    CHECK(keys_of(s.coldest(5)) == std::vector<int>{2, 4, 1, 5, 3});
  }
  SECTION("sieve: unvisited from the hand, then visited") {
    ordered_store<cachet::sieve> s({.max_entries = 5, .shards = 1}, clock);
    fill(s);
    s.get(2);
    s.get(4);
    CHECK(keys_of(s.coldest(5)) == std::vector<int>{1, 3, 5, 2, 4});
    s.put(6, 60);  // evicts 1; the hand stays where it stopped
    CHECK_FALSE(s.contains(1));
    CHECK(keys_of(s.coldest(5)) == std::vector<int>{3, 5, 6, 2, 4});
    CHECK(keys_of(s.hottest(5)) == std::vector<int>{4, 2, 6, 5, 3});
  }
}

TEMPLATE_TEST_CASE("coldest / hottest: reverse of each other, quiet, and coldest goes first",
                   "[store][order]", CACHET_ORDERED_BACKENDS) {
  cachet::manual_clock clock;
  ordered_store<TestType> s({.max_entries = 64, .shards = 1}, clock);
  for (int k = 0; k < 160; ++k) {  // evictions fill every queue (s3fifo's main, w_tinylfu's)
    s.put(k, k * 10);
    s.get((k * 7) % 160);
    s.get(k / 2);
  }
  const auto hits = s.stats().hits;
  const std::vector<int> cold = keys_of(s.coldest(64));
  std::vector<int> hot = keys_of(s.hottest(64));
  CHECK(s.stats().hits == hits);  // quiet: nothing counted
  REQUIRE(cold.size() == 64);
  CHECK(std::set<int>(cold.begin(), cold.end()).size() == 64);
  std::reverse(hot.begin(), hot.end());
  CHECK(cold == hot);
  CHECK(keys_of(s.coldest(64)) == cold);  // and nothing moved
  CHECK(keys_of(s.coldest(3)) == std::vector<int>(cold.begin(), cold.begin() + 3));
  CHECK(s.coldest(0).empty());
  if constexpr (std::is_same_v<TestType, cachet::lru> || std::is_same_v<TestType, cachet::fifo> ||
                std::is_same_v<TestType, cachet::lfu> || std::is_same_v<TestType, cachet::sieve>) {
    // For these the order is the eviction order itself: a new key evicts coldest().front().
    s.put(1000, 10000);
    CHECK_FALSE(s.contains(cold.front()));
    CHECK(s.size() == 64);
  }
}

TEMPLATE_TEST_CASE("coldest / hottest: shards interleaved, expired and pinned entries left out",
                   "[store][order]", CACHET_ORDERED_BACKENDS) {
  cachet::manual_clock clock;
  ordered_store<TestType> s({.max_entries = 400, .shards = 4}, clock);
  for (int k = 0; k < 100; ++k) s.put(k, k * 10);
  s.put(500, 5000, seconds(1));
  REQUIRE(s.pin(7));
  clock.advance(seconds(2));  // 500 expires, not yet reclaimed
  const std::vector<int> all = keys_of(s.coldest(1000));
  CHECK(all.size() == 99);  // not 500 (expired), not 7 (pinned)
  const std::set<int> distinct(all.begin(), all.end());
  CHECK(distinct.size() == 99);
  CHECK_FALSE(distinct.contains(500));
  CHECK_FALSE(distinct.contains(7));
  CHECK(s.hottest(10).size() == 10);
  CHECK(keys_of(s.coldest(4)) == std::vector<int>(all.begin(), all.begin() + 4));
}

TEST_CASE("coldest: the shards interleaved rank by rank", "[store][order]") {
  // fifo keeps each shard in insertion order; keys go in ascending, so each shard's order is its
  // keys ascending. for_each walks the shards one after another, each in slab order (ascending
  // here too), so a descent in its sequence is where the next shard starts.
  cachet::manual_clock clock;
  ordered_store<cachet::fifo> s({.max_entries = 400, .shards = 4}, clock);
  for (int k = 0; k < 100; ++k) s.put(k, k * 10);
  std::vector<std::vector<int>> shards(1);
  s.for_each([&](int k, int) {
    if (!shards.back().empty() && k < shards.back().back()) shards.emplace_back();
    shards.back().push_back(k);
  });
  REQUIRE(shards.size() == 4);
  std::vector<int> expected;
  for (std::size_t rank = 0; expected.size() < 100; ++rank) {
    for (const std::vector<int>& sh : shards) {
      if (rank < sh.size()) expected.push_back(sh[rank]);
    }
  }
  CHECK(keys_of(s.coldest(100)) == expected);
  CHECK(keys_of(s.coldest(6)) == std::vector<int>(expected.begin(), expected.begin() + 6));
}
