#include <cachet/eviction/s3fifo.hpp>
#include <deque>

#include "model_modern.hpp"

using cachet::removal_cause;
using namespace cachet_test;

// The per-entry cost the header documents: two 32-bit links and the policy's byte(s).
static_assert(sizeof(cachet::s3fifo::hook) == 12);

namespace {
std::vector<int> evicted(recorder<int, int>& rec) { return rec.take_keys(removal_cause::evicted); }
std::vector<int> range(int from, int to) {  // [from, to)
  std::vector<int> v;
  for (int k = from; k < to; ++k) v.push_back(k);
  return v;
}
}  // namespace

// Capacity 10: small's target is 1 entry, the ghost holds 9 hashes.
TEST_CASE("s3fifo: keys hit twice in small move to main; a returning key goes to main",
          "[s3fifo]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::s3fifo> s({.max_entries = 10, .shards = 1, .on_removal = rec.listener()},
                              clock);
  for (int k = 1; k <= 10; ++k) s.put(k, k);  // all in small
  s.get(1);
  s.get(1);       // 1: freq 2
  s.get(2);       // 2: freq 1, one hit short
  s.put(11, 11);  // small's tail: 1 moves to main, 2 is evicted into the ghost
  REQUIRE(evicted(rec) == std::vector<int>{2});
  s.put(2, 2);  // evicts 3 from small; 2 was in the ghost: straight to main
  REQUIRE(evicted(rec) == std::vector<int>{3});
  for (int k = 12; k < 20; ++k) s.put(k, k);  // evicts 4..11 from small
  REQUIRE(evicted(rec) == range(4, 12));
  s.put(20, 20);  // evicts 12: 2 is in main (had it gone to small, it would go here)
  REQUIRE(evicted(rec) == std::vector<int>{12});
  REQUIRE(s.get(1) == 1);
  REQUIRE(s.get(2) == 2);
}

// Capacity 4: small's target is 1 entry, the ghost holds 3 hashes.
TEST_CASE("s3fifo: main is a CLOCK with a 2-bit counter", "[s3fifo]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::s3fifo> s({.max_entries = 4, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 1; k <= 4; ++k) s.put(k, k);
  for (int k = 1; k <= 4; ++k) {
    s.get(k);
    s.get(k);
  }
  s.put(5, 5);  // 1..4 move to main with freq 0 (main, head first: 4 3 2 1); small is empty, so
                // main's tail goes: evicts 1
  REQUIRE(evicted(rec) == std::vector<int>{1});
  s.get(2);                              // 2: freq 1
  for (int i = 0; i < 5; ++i) s.get(3);  // 3: freq 3 (the cap)
  s.put(6, 6);                           // evicts 5 from small (into the ghost)
  s.put(7, 7);                           // evicts 6 from small
  REQUIRE(evicted(rec) == std::vector<int>{5, 6});
  s.get(7);
  s.get(7);
  // 7 moves to main (7 4 3 2); 2 is reinserted with freq 0 (2 7 4 3), 3 with freq 2 (3 2 7 4);
  // evicts 4.
  s.put(8, 8);
  REQUIRE(evicted(rec) == std::vector<int>{4});
  s.get(8);
  s.get(8);
  s.put(9, 9);  // 8 to main (8 3 2 7); evicts 7 (freq 0)
  REQUIRE(evicted(rec) == std::vector<int>{7});
  s.put(10, 10);  // small (9) at its target: evicts 9
  s.get(10);
  s.get(10);
  s.put(11, 11);  // 10 to main (10 8 3 2); 2 freq 0: evicts 2
  REQUIRE(evicted(rec) == std::vector<int>{9, 2});
  s.get(11);
  s.get(11);
  s.put(12, 12);  // 11 to main (11 10 8 3); 3 freq 2 -> 1 (3 11 10 8); 8 freq 0: evicts 8
  REQUIRE(evicted(rec) == std::vector<int>{8});
  // 3's 7 hits counted as 3: it has survived passes at 8 and 12 and survives one more (freq 1 -> 0
  // at 15), then leaves at the fourth, where 7 counted hits would keep it for four more.
  for (int k = 13; k <= 18; ++k) {
    s.get(k - 1);
    s.get(k - 1);
    s.put(k, k);  // k - 1 moves to main; main's oldest unhit entry leaves
  }
  REQUIRE(evicted(rec) == std::vector<int>{10, 11, 12, 13, 14, 3});
}

TEST_CASE("s3fifo: an erase leaves small without entering the ghost", "[s3fifo]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::s3fifo> s({.max_entries = 4, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 1; k <= 5; ++k) s.put(k, k);  // evicts 1 into the ghost
  REQUIRE(evicted(rec) == std::vector<int>{1});
  REQUIRE(s.erase(2));
  s.put(2, 2);  // room; 2 is not in the ghost: small (3 4 5 2)
  s.put(6, 6);  // evicts 3
  s.put(1, 1);  // evicts 4; 1 is in the ghost: main
  s.put(7, 7);  // evicts 5
  s.put(8, 8);  // evicts 2: it is in small (had the erase put it in the ghost, 6 would go)
  REQUIRE(evicted(rec) == std::vector<int>{3, 4, 5, 2});
  REQUIRE(s.contains(1));
}

TEST_CASE("s3fifo: a new key is looked up in the ghost before its evictions add to it",
          "[s3fifo]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::s3fifo> s({.max_entries = 10, .shards = 1, .on_removal = rec.listener()},
                              clock);
  for (int k = 100; k < 119; ++k) s.put(k, k);  // evicts 100..108: the ghost is full, 100 oldest
  REQUIRE(evicted(rec) == range(100, 109));
  // Evicts 109 into the full ghost. Added first, it would push 100 out and 100 would go to small;
  // libCacheSim (and the paper) look 100 up first: it goes to main.
  s.put(100, 100);
  REQUIRE(evicted(rec) == std::vector<int>{109});
  for (int k = 201; k <= 210; ++k) s.put(k, k);  // evicts 110..118, then 201 (not 100)
  REQUIRE(evicted(rec) == [] {
    auto v = range(110, 119);
    v.push_back(201);
    return v;
  }());
  REQUIRE(s.contains(100));
}

TEST_CASE("s3fifo: a hot set survives a scan of one-time keys", "[s3fifo]") {
  cachet::manual_clock clock;
  int_store<cachet::s3fifo> s({.max_entries = 100, .shards = 1}, clock);
  for (int k = 0; k < 50; ++k) s.put(k, k);
  for (int k = 0; k < 50; ++k) {
    s.get(k);
    s.get(k);
  }
  for (int k = 1000; k < 3000; ++k) s.put(k, k);
  for (int k = 0; k < 50; ++k) REQUIRE(s.contains(k));
}

TEST_CASE("s3fifo: parameters change the promotion rule and the small share", "[s3fifo]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  // 50% small: with 4 entries, small's target is 2. Promotion after 1 hit.
  int_store<cachet::s3fifo_policy<50, 1, 3>> s(
      {.max_entries = 4, .shards = 1, .on_removal = rec.listener()}, clock);
  for (int k = 1; k <= 4; ++k) s.put(k, k);
  s.get(1);
  s.put(5, 5);  // small 1 2 3 4: 1 (one hit) moves to main, 2 goes
  REQUIRE(evicted(rec) == std::vector<int>{2});
  s.put(6, 6);  // small 3 4 5 (3 >= 2): evicts 3
  s.put(7, 7);  // small 4 5 6: evicts 4
  REQUIRE(evicted(rec) == std::vector<int>{3, 4});
  s.get(5);
  s.put(8, 8);    // small 5 6 7: 5 to main; evicts 6
  s.put(9, 9);    // small 7 8 (2 >= 2): evicts 7
  s.put(10, 10);  // small 8 9: evicts 8
  REQUIRE(evicted(rec) == std::vector<int>{6, 7, 8});
  s.put(11, 11);  // small 9 10: evicts 9; main (5 1) untouched
  REQUIRE(evicted(rec) == std::vector<int>{9});
  REQUIRE(s.contains(1));
  REQUIRE(s.contains(5));
}

TEST_CASE("s3fifo: a weight-bounded store evicts as the entry-bounded one", "[s3fifo]") {
  // Unit weights: the weight bound is an entry bound, so both stores must make the same choices,
  // though the weight-only one sizes small and the ghost from the entries it holds.
  auto run = [](cachet::store_options<int, int> o) {
    cachet::manual_clock clock;
    recorder<int, int> rec;
    o.shards = 1;
    o.on_removal = rec.listener();
    int_store<cachet::s3fifo> s(std::move(o), clock);
    std::mt19937_64 rng(5);
    std::vector<int> out;
    for (int i = 0; i < 20000; ++i) {
      const int k = static_cast<int>(rng() % 300);
      const int kk = (rng() % 3 == 0) ? k % 40 : k;  // a hot subset
      if (!s.get(kk)) s.put(kk, i);
      if (rng() % 50 == 0) s.erase(static_cast<int>(rng() % 300));
    }
    for (auto& e : rec.take()) out.push_back(e.key * 4 + static_cast<int>(e.cause));
    return out;
  };
  const auto by_entries = run({.max_entries = 64});
  const auto by_weight =
      run({.max_weight = 64, .weigher = [](const int&, const int&) { return std::uint32_t{1}; }});
  REQUIRE(by_entries.size() > 1000);
  REQUIRE(by_entries == by_weight);
}

TEST_CASE("s3fifo: matches the reference model", "[s3fifo][model]") {
  run_exact_models<cachet::s3fifo, s3fifo_model<>>();
}

TEST_CASE("s3fifo: matches the reference model with other parameters", "[s3fifo][model]") {
  run_exact_models<cachet::s3fifo_policy<30, 1, 7>, s3fifo_model<30, 1, 7>>();
  run_exact_models<cachet::s3fifo_policy<25, 3, 3>, s3fifo_model<25, 3, 3>>();
}

TEST_CASE("s3fifo: store conformance (capacity bound after every operation)", "[s3fifo][store]") {
  check_store_bounds<cachet::s3fifo>();
  check_store_bounds<cachet::s3fifo_policy<50, 1, 1>>();
}

TEST_CASE("s3fifo: the ghost is a bounded FIFO set of hashes", "[s3fifo][ghost]") {
  cachet::detail::hash_ghost g;
  g.push(1);
  REQUIRE(g.size() == 0);  // limit 0: remembers nothing
  REQUIRE_FALSE(g.contains(1));
  g.set_limit(3);
  for (std::uint32_t h : {1u, 2u, 3u, 2u}) g.push(h);  // 2 again: kept in place
  REQUIRE(g.size() == 3);
  g.push(4);  // drops 1, the oldest
  REQUIRE_FALSE(g.contains(1));
  REQUIRE(g.contains(2));
  REQUIRE(g.erase(3));
  REQUIRE_FALSE(g.erase(3));
  g.push(5);  // room after the erase: nothing dropped
  REQUIRE(g.contains(2));
  REQUIRE(g.contains(4));
  REQUIRE(g.contains(5));
  g.push(6);  // drops 2
  REQUIRE_FALSE(g.contains(2));
  g.clear();
  REQUIRE(g.size() == 0);
  REQUIRE_FALSE(g.contains(4));
}

TEST_CASE("s3fifo: the ghost matches a deque under random operations", "[s3fifo][ghost]") {
  cachet::detail::hash_ghost g;
  std::deque<std::uint32_t> m;
  std::size_t limit = 1000;
  g.set_limit(limit);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200000; ++i) {
    // Hashes that crowd a few table positions as well as spread ones.
    const std::uint32_t h = rng() % 2 == 0 ? static_cast<std::uint32_t>(rng() % 3000)
                                           : static_cast<std::uint32_t>(rng() % 64) << 26;
    const auto r = rng() % 100;
    if (r < 55) {
      g.push(h);
      if (std::find(m.begin(), m.end(), h) == m.end()) {
        while (m.size() >= limit) m.pop_front();
        m.push_back(h);
      }
    } else if (r < 85) {
      auto it = std::find(m.begin(), m.end(), h);
      REQUIRE(g.erase(h) == (it != m.end()));
      if (it != m.end()) m.erase(it);
    } else if (r < 99) {
      REQUIRE(g.contains(h) == (std::find(m.begin(), m.end(), h) != m.end()));
    } else if (i % 7 == 0) {
      limit = 200 + rng() % 1200;  // moves the bound both ways
      g.set_limit(limit);
    }
    REQUIRE(g.size() == m.size());
  }
  for (auto h : m) REQUIRE(g.contains(h));
  REQUIRE(g.allocated_bytes() <= 1400 * 12 + 4096 * 4 + 4096 * 4);
}
