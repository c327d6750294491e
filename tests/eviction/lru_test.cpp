#include <cachet/eviction/lru.hpp>

#include "fake_nodes.hpp"
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

TEST_CASE("lru: a hit the store's gate sampled out gives its entry one second chance",
          "[lru][gate]") {
  // Under concurrency the reader gate records a sample of the hits; a reader marks an entry whose
  // hit was left out (on_access_sampled_out), and victim() moves a marked entry to the front once
  // instead of evicting it (docs/store.md, "How a hit runs").
  using policy = cachet::lru::shard_policy<fake_nodes<cachet::lru>>;
  fake_nodes<cachet::lru> n;
  n.hooks.resize(4);
  n.hashes.resize(4);
  policy p(&n, {});
  for (cachet::detail::index_t i = 0; i < 4; ++i) p.on_insert(i);  // most recent first: 3 2 1 0
  REQUIRE(p.victim() == 0);
  p.on_access_sampled_out(0);
  p.on_access_sampled_out(1);
  p.on_access_sampled_out(1);  // twice is one chance
  CHECK(p.victim() == 2);      // 0 and 1 went to the front, unmarked: 1 0 3 2
  p.on_remove(2);
  CHECK(p.victim() == 3);
  p.on_remove(3);
  CHECK(p.victim() == 0);  // their chance is spent
  // A recorded hit leaves the mark in place: it is spent only where the tail is chosen.
  p.on_access_sampled_out(0);
  p.on_access(0);  // order 0 1, 0 still marked
  p.on_access_sampled_out(1);
  CHECK(p.victim() == 1);  // 1 to the front (1 0), then 0 (0 1): a full turn, 1 is the tail
  p.on_remove(1);
  p.on_access_sampled_out(0);
  CHECK(p.victim() == 0);  // the only one left: marked, goes round once, chosen
  // Every entry marked: one full turn clears them all and the oldest is chosen.
  for (cachet::detail::index_t i = 1; i < 4; ++i) p.on_insert(i);  // 3 2 1 0
  for (cachet::detail::index_t i = 0; i < 4; ++i) p.on_access_sampled_out(i);
  CHECK(p.victim() == 0);
}
