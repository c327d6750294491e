#include <cachet/eviction/sieve.hpp>

#include "model_modern.hpp"

using cachet::removal_cause;
using namespace cachet_test;

// The per-entry cost the header documents: two 32-bit links and the policy's byte(s).
static_assert(sizeof(cachet::sieve::hook) == 12);

namespace {
std::vector<int> evicted(recorder<int, int>& rec) { return rec.take_keys(removal_cause::evicted); }
}  // namespace

TEST_CASE("sieve: the hand clears visited bits from the tail toward the head", "[sieve]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::sieve> s({.max_entries = 4, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 1; k <= 4; ++k) s.put(k, k);  // queue, head first: 4 3 2 1
  s.get(1);
  s.get(3);
  s.put(5, 5);  // hand at the tail: 1 visited (cleared), 2 not: evicts 2; hand -> 3
  REQUIRE(evicted(rec) == std::vector<int>{2});
  s.put(6, 6);  // 3 visited (cleared), 4 not: evicts 4; hand -> 5
  REQUIRE(evicted(rec) == std::vector<int>{4});
  s.get(1);
  s.put(7, 7);  // hand at 5, unvisited: evicts 5 (new entries go quickly); hand -> 6
  REQUIRE(evicted(rec) == std::vector<int>{5});
  s.put(8, 8);  // evicts 6; hand -> 7, the entry newer than 6
  REQUIRE(evicted(rec) == std::vector<int>{6});
  // 3 (bit cleared) and 1 (visited) stay behind the hand while it chases the newcomers.
  REQUIRE(s.get(3) == 3);
  REQUIRE(s.get(1) == 1);
  REQUIRE(s.size() == 4);
}

TEST_CASE("sieve: the hand wraps from the head to the tail", "[sieve]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::sieve> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 1; k <= 3; ++k) s.put(k, k);  // 3 2 1
  for (int k = 1; k <= 3; ++k) s.get(k);     // all visited
  s.put(4, 4);  // clears 1, 2, 3, wraps to the tail: evicts 1; hand -> 2
  REQUIRE(evicted(rec) == std::vector<int>{1});
  s.put(5, 5);  // 2 (cleared) evicted; hand -> 3
  REQUIRE(evicted(rec) == std::vector<int>{2});
  s.get(5);
  s.put(6, 6);  // evicts 3; hand -> 4
  s.put(7, 7);  // evicts 4; hand -> 5
  s.put(8, 8);  // 5 visited (cleared), evicts 6; hand -> 7
  REQUIRE(evicted(rec) == std::vector<int>{3, 4, 6});
  s.put(9, 9);    // evicts 7; hand -> 8
  s.put(10, 10);  // evicts 8; hand -> 9
  s.put(11, 11);  // evicts 9; hand -> 10
  REQUIRE(evicted(rec) == std::vector<int>{7, 8, 9});
}

TEST_CASE("sieve: an erase under the hand moves it toward the head", "[sieve]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::sieve> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 1; k <= 3; ++k) s.put(k, k);
  s.get(1);
  s.put(4, 4);  // 1 cleared, evicts 2; hand -> 3; queue 4 3 1
  REQUIRE(evicted(rec) == std::vector<int>{2});
  REQUIRE(s.erase(3));  // under the hand: hand -> 4
  s.put(5, 5);          // room: queue 5 4 1
  REQUIRE(evicted(rec).empty());
  s.put(6, 6);  // from 4, unvisited: evicts 4 (a hand restarted at the tail would take 1)
  REQUIRE(evicted(rec) == std::vector<int>{4});
}

TEST_CASE("sieve: an update counts as a visit and keeps the place", "[sieve]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::sieve> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 1; k <= 3; ++k) s.put(k, k);  // 3 2 1
  s.put(1, 11);                              // visited, still the tail
  s.put(4, 4);                               // 1 cleared, evicts 2; hand -> 3
  REQUIRE(evicted(rec) == std::vector<int>{2});
  s.put(5, 5);  // evicts 3; hand -> 4
  s.put(6, 6);  // evicts 4; hand -> 5
  REQUIRE(evicted(rec) == std::vector<int>{3, 4});
  REQUIRE(s.get(1) == 11);
}

TEST_CASE("sieve: expired entries and clear() leave the hand usable", "[sieve]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::sieve> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1, std::chrono::nanoseconds(10));
  s.put(2, 2);
  s.put(3, 3);
  s.get(1);
  s.put(4, 4);  // 1 cleared, evicts 2; hand -> 3
  REQUIRE(evicted(rec) == std::vector<int>{2});
  clock.advance(std::chrono::nanoseconds(10));
  REQUIRE(s.cleanup() == 1);  // 1 expires (not under the hand)
  s.put(5, 5);
  s.put(6, 6);  // from 3: evicts 3
  REQUIRE(evicted(rec) == std::vector<int>{3});
  s.clear();
  rec.take();
  for (int k = 10; k < 14; ++k) s.put(k, k);  // starts over at the tail
  REQUIRE(evicted(rec) == std::vector<int>{10});
}

TEST_CASE("sieve: a visited working set survives a scan", "[sieve]") {
  cachet::manual_clock clock;
  int_store<cachet::sieve> s({.max_entries = 100, .shards = 1}, clock);
  for (int k = 0; k < 50; ++k) s.put(k, k);
  for (int k = 0; k < 50; ++k) s.get(k);
  for (int k = 1000; k < 1100; ++k) {  // one-time keys; the hot set is hit between them
    s.put(k, k);
    s.get(k % 50);
  }
  int kept = 0;
  for (int k = 0; k < 50; ++k) kept += s.contains(k) ? 1 : 0;
  REQUIRE(kept == 50);
}

TEST_CASE("sieve: matches the reference model", "[sieve][model]") {
  run_exact_models<cachet::sieve, sieve_model>();
}

TEST_CASE("sieve: store conformance (capacity bound after every operation)", "[sieve][store]") {
  check_store_bounds<cachet::sieve>();
}
