// Exception safety against hostile user types and callbacks: a hash, a key equality and a value
// copy that throw on demand, a throwing weigher, a throwing removal listener and a throwing
// erase_if predicate. sharded_store.hpp promises the strong guarantee for get/contains/erase/put
// against the first three, and a complete, consistent state when a listener throws. Also
// std::bad_alloc after removals (alloc_failure.hpp): what was removed is reported.
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "alloc_failure.hpp"

namespace {

struct hash_error : std::runtime_error {
  hash_error() : std::runtime_error("hash") {}
};
struct eq_error : std::runtime_error {
  eq_error() : std::runtime_error("key equality") {}
};
struct copy_error : std::runtime_error {
  copy_error() : std::runtime_error("copy") {}
};
struct weigher_error : std::runtime_error {
  weigher_error() : std::runtime_error("weigher") {}
};
struct listener_error : std::runtime_error {
  listener_error() : std::runtime_error("listener") {}
};
struct predicate_error : std::runtime_error {
  predicate_error() : std::runtime_error("predicate") {}
};

// Switches, set by `armed` for one scope. Single-threaded tests only.
bool g_throw_hash = false;
bool g_throw_eq = false;
bool g_throw_copy = false;
long g_live_values = 0;  // fragile objects alive: catches leaks and double destruction

class armed {
 public:
  explicit armed(bool& flag) : flag_(flag) { flag_ = true; }
  ~armed() { flag_ = false; }
  armed(const armed&) = delete;
  armed& operator=(const armed&) = delete;

 private:
  bool& flag_;
};

struct hostile_hash {  // not avalanching, not transparent
  std::size_t operator()(int k) const {
    if (g_throw_hash) throw hash_error();
    return std::hash<int>{}(k);
  }
};

struct hostile_eq {
  bool operator()(int a, int b) const {
    if (g_throw_eq) throw eq_error();
    return a == b;
  }
};

// A value whose copy throws on demand; its move never throws (the store requires that).
class fragile {
 public:
  explicit fragile(int v, std::uint32_t w = 1) : v_(v), w_(w) { ++g_live_values; }
  fragile(const fragile& o) : v_(o.v_), w_(o.w_) {
    if (g_throw_copy) throw copy_error();
    ++g_live_values;
  }
  fragile(fragile&& o) noexcept : v_(o.v_), w_(o.w_) { ++g_live_values; }
  fragile& operator=(const fragile& o) {
    if (g_throw_copy) throw copy_error();
    v_ = o.v_;
    w_ = o.w_;
    return *this;
  }
  fragile& operator=(fragile&& o) noexcept {
    v_ = o.v_;
    w_ = o.w_;
    return *this;
  }
  ~fragile() { --g_live_values; }

  int v() const noexcept { return v_; }
  std::uint32_t weight() const noexcept { return w_; }

 private:
  int v_;
  std::uint32_t w_;
};
static_assert(std::is_nothrow_move_constructible_v<fragile> &&
              !std::is_nothrow_copy_constructible_v<fragile>);

using store_t = cachet::sharded_store<int, fragile, cachet::lru, cachet::manual_clock, hostile_hash,
                                      hostile_eq>;
using options_t = cachet::store_options<int, fragile>;

// Everything observable about a store, for before/after comparisons.
struct observed {
  std::size_t size = 0;
  cachet::cache_stats stats;
  std::map<int, int> contents;  // via for_each
  std::size_t visits = 0;       // for_each calls (a duplicate visit would show here)
};

observed observe(store_t& s) {
  observed o;
  o.size = s.size();
  o.stats = s.stats();
  s.for_each([&o](const int& k, const fragile& v) {
    o.contents[k] = v.v();
    ++o.visits;
  });
  return o;
}

void check_same(const observed& a, const observed& b) {
  CHECK(a.size == b.size);
  CHECK(a.contents == b.contents);
  CHECK(a.visits == b.visits);
  CHECK(a.stats.hits == b.stats.hits);
  CHECK(a.stats.misses == b.stats.misses);
  CHECK(a.stats.inserts == b.stats.inserts);
  CHECK(a.stats.updates == b.stats.updates);
  CHECK(a.stats.rejections == b.stats.rejections);
  CHECK(a.stats.evictions == b.stats.evictions);
  CHECK(a.stats.expirations == b.stats.expirations);
  CHECK(a.stats.explicit_removals == b.stats.explicit_removals);
  CHECK(a.stats.cleared == b.stats.cleared);
  CHECK(a.stats.size == b.stats.size);
  CHECK(a.stats.weight == b.stats.weight);
}

// The store's own invariants, whatever happened before. size() counts expired entries not yet
// reclaimed, which for_each skips: pass may_hold_expired when the clock passed some deadline.
void check_consistent(store_t& s, bool may_hold_expired = false) {
  const observed o = observe(s);
  CHECK(o.visits == o.contents.size());
  if (may_hold_expired) {
    CHECK(o.size >= o.contents.size());
  } else {
    CHECK(o.size == o.contents.size());
  }
  CHECK(o.stats.size == o.size);
  CHECK(o.stats.inserts == o.size + o.stats.evictions + o.stats.expirations +
                               o.stats.explicit_removals + o.stats.cleared);
  for (const auto& [k, v] : o.contents) {
    INFO("key " << k);
    CHECK(s.contains(k));
  }
}

// Fills keys 0..n-1 with values 100+k.
void fill(store_t& s, int n) {
  for (int k = 0; k < n; ++k) REQUIRE(s.put(k, fragile(100 + k)) == cachet::put_result::inserted);
}

}  // namespace

TEST_CASE("hostile: a throwing hash leaves the store unchanged", "[hostile]") {
  {
    cachet::manual_clock clock;
    store_t s({.max_entries = 8, .shards = 4}, clock);
    // Fill to capacity, so a put of a new key would have to evict.
    int k = 0;
    while (s.size() < 8) {
      s.put(k, fragile(100 + k));
      ++k;
    }
    const observed before = observe(s);
    REQUIRE(before.size == 8);
    {
      armed a(g_throw_hash);
      CHECK_THROWS_AS(s.get(0), hash_error);
      CHECK_THROWS_AS(s.get(1000), hash_error);
      CHECK_THROWS_AS(s.contains(0), hash_error);
      CHECK_THROWS_AS(s.erase(0), hash_error);
      CHECK_THROWS_AS(s.put(0, fragile(-1)), hash_error);
      CHECK_THROWS_AS(s.put(1000, fragile(-1)), hash_error);
      CHECK_THROWS_AS(s.put(1001, fragile(-1), std::chrono::seconds(1)), hash_error);
    }
    check_same(before, observe(s));
    // Still fully usable.
    CHECK(s.put(1000, fragile(7)) == cachet::put_result::inserted);
    CHECK(s.get(1000)->v() == 7);
    check_consistent(s);
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: a throwing key equality leaves the store unchanged", "[hostile]") {
  {
    cachet::manual_clock clock;
    store_t s({.max_entries = 4, .shards = 1}, clock);
    fill(s, 4);
    const observed before = observe(s);
    {
      armed a(g_throw_eq);
      // Each key is present, so the lookup must compare it with the stored key.
      for (int k = 0; k < 4; ++k) {
        INFO("key " << k);
        CHECK_THROWS_AS(s.get(k), eq_error);
        CHECK_THROWS_AS(s.contains(k), eq_error);
        CHECK_THROWS_AS(s.erase(k), eq_error);
        CHECK_THROWS_AS(s.put(k, fragile(-1)), eq_error);
        CHECK_THROWS_AS(s.put(k, fragile(-1), std::chrono::seconds(1)), eq_error);
      }
    }
    check_same(before, observe(s));
    // The LRU order did not change either: key 0 is still the oldest and goes first.
    CHECK(s.put(10, fragile(10)) == cachet::put_result::inserted);
    CHECK_FALSE(s.contains(0));
    CHECK(s.contains(1));
    check_consistent(s);
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: an expired entry is not reclaimed by an operation whose key equality throws",
          "[hostile]") {
  {
    cachet::manual_clock clock;
    store_t s({.max_entries = 4, .shards = 1}, clock);
    REQUIRE(s.put(1, fragile(1), std::chrono::seconds(1)) == cachet::put_result::inserted);
    clock.advance(std::chrono::seconds(2));
    const observed before = observe(s);  // for_each skips the expired entry; size() still counts it
    REQUIRE(before.size == 1);
    {
      armed a(g_throw_eq);
      CHECK_THROWS_AS(s.get(1), eq_error);
      CHECK_THROWS_AS(s.contains(1), eq_error);
      CHECK_THROWS_AS(s.erase(1), eq_error);
      CHECK_THROWS_AS(s.put(1, fragile(2)), eq_error);
    }
    check_same(before, observe(s));
    CHECK_FALSE(s.get(1).has_value());
    CHECK(s.size() == 0);
    CHECK(s.stats().expirations == 1);
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: a throwing value copy in get leaves the store unchanged", "[hostile]") {
  {
    cachet::manual_clock clock;
    store_t s({.max_entries = 2, .shards = 1}, clock);
    fill(s, 2);  // LRU order, oldest first: 0, 1
    const observed before = observe(s);
    {
      armed a(g_throw_copy);
      CHECK_THROWS_AS(s.get(0), copy_error);
    }
    const observed after = observe(s);
    CHECK(after.contents == before.contents);
    CHECK(after.size == before.size);
    // Strong guarantee against the value's copy: a get whose copy throws counts no hit ...
    CHECK(after.stats.hits == before.stats.hits);
    check_same(before, after);
    // ... and does not refresh the entry in the policy: key 0 is still the LRU victim.
    CHECK(s.put(2, fragile(2)) == cachet::put_result::inserted);
    CHECK_FALSE(s.contains(0));
    CHECK(s.contains(1));
  }
  CHECK(g_live_values == 0);
}

TEST_CASE(
    "hostile: a throwing value copy in put (at the call) or iteration leaves the store unchanged",
    "[hostile]") {
  {
    cachet::manual_clock clock;
    // Room for every key in either shard: hostile_hash is re-mixed under the process seed, so
    // which shard a key lands in changes from run to run.
    store_t s({.max_entries = 16, .shards = 2}, clock);
    fill(s, 8);
    const observed before = observe(s);
    const fragile lvalue(-5);
    {
      armed a(g_throw_copy);
      CHECK_THROWS_AS(s.put(0, lvalue), copy_error);
      CHECK_THROWS_AS(s.put(100, lvalue), copy_error);
      int visited = 0;
      CHECK_THROWS_AS(s.for_each([&visited](const int&, const fragile&) { ++visited; }),
                      copy_error);
      CHECK(visited == 0);  // the copies are taken before the visits
      int tested = 0;
      CHECK_THROWS_AS(s.erase_if([&tested](const int&, const fragile&) {
        ++tested;
        return true;
      }),
                      copy_error);
      CHECK(tested == 0);
    }
    check_same(before, observe(s));
    // The moves still work while copies are forbidden.
    {
      armed a(g_throw_copy);
      CHECK(s.put(0, fragile(42)) == cachet::put_result::replaced);
      CHECK(s.erase(1));
      CHECK(s.contains(2));
    }
    CHECK(s.get(0)->v() == 42);
    check_consistent(s);
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: a throwing weigher makes put throw and changes nothing", "[hostile]") {
  {
    bool throw_weigher = false;
    options_t o{.max_weight = 10, .shards = 1};
    o.weigher = [&throw_weigher](const int&, const fragile& v) -> std::uint32_t {
      if (throw_weigher) throw weigher_error();
      return v.weight();
    };
    cachet::manual_clock clock;
    store_t s(o, clock);
    REQUIRE(s.put(1, fragile(1, 5)) == cachet::put_result::inserted);
    REQUIRE(s.put(2, fragile(2, 5)) == cachet::put_result::inserted);  // full by weight
    const observed before = observe(s);
    {
      armed a(throw_weigher);
      CHECK_THROWS_AS(s.put(3, fragile(3, 5)), weigher_error);    // would evict
      CHECK_THROWS_AS(s.put(1, fragile(-1, 1)), weigher_error);   // would update
      CHECK_THROWS_AS(s.put(2, fragile(-2, 50)), weigher_error);  // too heavy
      CHECK_THROWS_AS(s.put(4, fragile(4, 1), std::chrono::seconds(1)), weigher_error);
    }
    check_same(before, observe(s));
    CHECK(s.get(1)->v() == 1);
    CHECK(s.get(2)->v() == 2);
    check_consistent(s);
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: a throwing removal listener propagates after the operation completed",
          "[hostile]") {
  {
    struct call {
      int key;
      int value;
      cachet::removal_cause cause;
    };
    std::vector<call> calls;
    bool throw_listener = false;
    options_t o{.max_entries = 2, .shards = 1};
    o.on_removal = [&](const int& k, const fragile& v, cachet::removal_cause c) {
      calls.push_back({k, v.v(), c});
      if (throw_listener) throw listener_error();
    };
    cachet::manual_clock clock;
    store_t s(o, clock);
    REQUIRE(s.put(1, fragile(1)) == cachet::put_result::inserted);
    REQUIRE(s.put(2, fragile(2)) == cachet::put_result::inserted);

    SECTION("an evicting put inserted the new key") {
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(s.put(3, fragile(3)), listener_error);
      }
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].key == 1);
      CHECK(calls[0].cause == cachet::removal_cause::evicted);
      CHECK_FALSE(s.contains(1));
      CHECK(s.get(2)->v() == 2);
      CHECK(s.get(3)->v() == 3);
      const auto st = s.stats();
      CHECK(st.inserts == 3);
      CHECK(st.evictions == 1);
      CHECK(st.size == 2);
    }
    SECTION("a replacing put stored the new value") {
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(s.put(1, fragile(11)), listener_error);
      }
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].key == 1);
      CHECK(calls[0].value == 1);
      CHECK(calls[0].cause == cachet::removal_cause::replaced);
      CHECK(s.get(1)->v() == 11);
      CHECK(s.stats().updates == 1);
      CHECK(s.size() == 2);
    }
    SECTION("erase removed the key") {
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(s.erase(1), listener_error);
      }
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].cause == cachet::removal_cause::explicit_erase);
      CHECK_FALSE(s.contains(1));
      CHECK_FALSE(s.erase(1));
      CHECK(s.stats().explicit_removals == 1);
      CHECK(s.size() == 1);
    }
    SECTION("a get that finds an expired entry reclaimed it and counted the miss") {
      REQUIRE(s.put(1, fragile(5), std::chrono::seconds(1)) == cachet::put_result::replaced);
      calls.clear();
      clock.advance(std::chrono::seconds(1));
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(s.get(1), listener_error);
      }
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].value == 5);
      CHECK(calls[0].cause == cachet::removal_cause::expired);
      CHECK(s.size() == 1);
      const auto st = s.stats();
      CHECK(st.misses == 1);
      CHECK(st.hits == 0);
      CHECK(st.expirations == 1);
    }
    SECTION("a contains that finds an expired entry reclaimed it") {
      REQUIRE(s.put(2, fragile(6), std::chrono::seconds(1)) == cachet::put_result::replaced);
      calls.clear();
      clock.advance(std::chrono::seconds(1));
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(s.contains(2), listener_error);
      }
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].cause == cachet::removal_cause::expired);
      CHECK(s.size() == 1);
      CHECK(s.stats().expirations == 1);
    }
    check_consistent(s);
    // The store works normally afterwards.
    calls.clear();
    const bool full = s.size() == 2;
    CHECK(s.put(7, fragile(7)) == cachet::put_result::inserted);
    CHECK(s.get(7)->v() == 7);
    CHECK(calls.size() == (full ? 1u : 0u));  // an eviction is reported to the (now quiet) listener
  }
  CHECK(g_live_values == 0);
}

TEST_CASE(
    "hostile: a throwing listener skips later calls of the same operation, whose removals all "
    "happen",
    "[hostile]") {
  {
    int calls = 0;
    bool throw_listener = false;
    options_t o{.max_weight = 10, .shards = 1};
    o.weigher = [](const int&, const fragile& v) -> std::uint32_t { return v.weight(); };
    o.on_removal = [&](const int&, const fragile&, cachet::removal_cause) {
      ++calls;
      if (throw_listener) throw listener_error();
    };
    cachet::manual_clock clock;
    store_t s(o, clock);
    REQUIRE(s.put(1, fragile(1, 4)) == cachet::put_result::inserted);
    REQUIRE(s.put(2, fragile(2, 4)) == cachet::put_result::inserted);
    {
      armed a(throw_listener);
      CHECK_THROWS_AS(s.put(3, fragile(3, 9)), listener_error);  // must evict both 1 and 2
    }
    CHECK(calls == 1);
    CHECK_FALSE(s.contains(1));
    CHECK_FALSE(s.contains(2));
    CHECK(s.get(3)->v() == 3);
    const auto st = s.stats();
    CHECK(st.evictions == 2);
    CHECK(st.weight == 9);
    CHECK(st.size == 1);
    check_consistent(s);
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: a throwing listener in a multi-shard operation leaves it complete",
          "[hostile]") {
  {
    int calls = 0;
    bool throw_listener = false;
    options_t o{.max_entries = 256, .shards = 4};  // 64 a shard: the 40 keys never evict
    o.on_removal = [&](const int&, const fragile&, cachet::removal_cause) {
      ++calls;
      if (throw_listener) throw listener_error();
    };
    cachet::manual_clock clock;
    store_t s(o, clock);
    fill(s, 40);
    REQUIRE(s.size() == 40);

    SECTION("clear") {
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(s.clear(), listener_error);
      }
      CHECK(calls == 1);
      // The listener's exception propagates only after every shard is cleared.
      CHECK(s.size() == 0);
      CHECK(s.stats().cleared == 40);
    }
    SECTION("erase_if") {
      std::size_t erased = 0;
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(
            erased = s.erase_if([](const int& k, const fragile&) { return k % 2 == 0; }),
            listener_error);
      }
      CHECK(calls == 1);
      CHECK(erased == 0);  // never returned
      // The listener's exception propagates only after every shard's matching entries are erased.
      int even_left = 0;
      s.for_each([&even_left](const int& k, const fragile&) { even_left += (k % 2 == 0) ? 1 : 0; });
      CHECK(even_left == 0);
      CHECK(s.stats().explicit_removals == 20);
    }
    SECTION("cleanup") {
      // Give every entry a deadline that has passed.
      for (int k = 0; k < 40; ++k)
        REQUIRE(s.put(k, fragile(k), std::chrono::seconds(1)) == cachet::put_result::replaced);
      clock.advance(std::chrono::seconds(1));
      calls = 0;
      {
        armed a(throw_listener);
        CHECK_THROWS_AS(s.cleanup(), listener_error);
      }
      CHECK(calls == 1);
      // The listener's exception propagates only after every shard is swept.
      CHECK(s.size() == 0);
      CHECK(s.stats().expirations == 40);
      check_consistent(s, true);
    }
    if (s.stats().expirations == 0) check_consistent(s);
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: erase_if with a throwing predicate propagates and leaves the store consistent",
          "[hostile]") {
  {
    cachet::manual_clock clock;
    SECTION("one shard") {
      store_t s({.max_entries = 200, .shards = 1}, clock);
      fill(s, 150);  // more than one snapshot batch of 64
      int seen = 0;
      CHECK_THROWS_AS(s.erase_if([&seen](const int& k, const fragile& v) {
        if (++seen == 100) throw predicate_error();
        CHECK(v.v() == 100 + k);
        return k % 3 == 0;
      }),
                      predicate_error);
      check_consistent(s);
      const observed o = observe(s);
      CHECK(o.stats.explicit_removals == 150 - o.size);
      for (const auto& [k, v] : o.contents) CHECK(v == 100 + k);
      // Keys whose predicate was not reached, or said false, are all still there.
      for (int k = 0; k < 150; ++k) {
        if (k % 3 != 0) CHECK(s.contains(k));
      }
      // A later erase_if completes the work.
      CHECK(s.erase_if([](const int& k, const fragile&) { return k % 3 == 0; }) ==
            50 - o.stats.explicit_removals);
      CHECK(s.size() == 100);
      check_consistent(s);
    }
    SECTION("four shards") {
      store_t s({.max_entries = 1024, .shards = 4}, clock);  // 256 a shard: 200 keys never evict
      fill(s, 200);
      int seen = 0;
      CHECK_THROWS_AS(s.erase_if([&seen](const int&, const fragile&) {
        if (++seen == 120) throw predicate_error();
        return true;
      }),
                      predicate_error);
      check_consistent(s);
      const observed o = observe(s);
      CHECK(o.size + o.stats.explicit_removals == 200);
      CHECK(o.size >= 200 - 119);
      for (const auto& [k, v] : o.contents) CHECK(v == 100 + k);
    }
  }
  CHECK(g_live_values == 0);
}

TEST_CASE("hostile: entries removed before a std::bad_alloc are still reported", "[hostile]") {
  // Removed entries travel to the listener in a buffer that holds one entry in place and
  // allocates for the second: failing that allocation stops an operation after one removal,
  // which stays done and counted, so the listener must hear of it before the exception leaves.
  {
    struct call {
      int key;
      cachet::removal_cause cause;
      bool operator==(const call&) const = default;
    };
    std::vector<call> calls;
    bool fail_after_weighing = false;
    options_t o{.max_entries = 200, .max_weight = 200, .shards = 1};
    o.weigher = [&fail_after_weighing](const int&, const fragile& v) -> std::uint32_t {
      if (fail_after_weighing) cachet_test::fail_next_allocation();
      return v.weight();
    };
    o.on_removal = [&calls](const int& k, const fragile&, cachet::removal_cause c) {
      calls.push_back({k, c});
    };
    cachet::manual_clock clock;

    SECTION("put, while evicting to make room") {
      o.max_weight = 10;
      store_t s(o, clock);
      fill(s, 10);  // full by weight
      {
        armed a(fail_after_weighing);
        CHECK_THROWS_AS(s.put(100, fragile(100, 5)), std::bad_alloc);  // would evict 0 .. 4
      }
      CHECK_FALSE(cachet_test::allocation_failure_pending());
      CHECK(calls == std::vector<call>{{0, cachet::removal_cause::evicted}});
      CHECK(s.stats().evictions == 1);
      CHECK_FALSE(s.contains(0));
      CHECK_FALSE(s.contains(100));
      check_consistent(s);
    }
    SECTION("cleanup") {
      store_t s(o, clock);
      for (int k = 0; k < 3; ++k) s.put(k, fragile(k), std::chrono::seconds(1));
      s.put(3, fragile(3));
      clock.advance(std::chrono::seconds(1));
      CHECK_THROWS_AS((cachet_test::fail_next_allocation(), s.cleanup()), std::bad_alloc);
      CHECK_FALSE(cachet_test::allocation_failure_pending());
      REQUIRE(calls.size() == 1);  // one of 0, 1, 2: the sweep starts where puts left its hand
      CHECK(calls[0].key < 3);
      CHECK(calls[0].cause == cachet::removal_cause::expired);
      CHECK(s.stats().expirations == 1);
      check_consistent(s, true);
      calls.clear();
      CHECK(s.cleanup() == 2);  // the rest, now that memory is back
      CHECK(calls.size() == 2);
    }
    SECTION("erase_if") {
      store_t s(o, clock);
      fill(s, 100);  // two snapshot batches: 64, then 36
      int tested = 0;
      // Fails in the second batch, whose index list already has room from the first: the next
      // allocation is the removal buffer's.
      CHECK_THROWS_AS(s.erase_if([&tested](const int&, const fragile&) {
        if (++tested == 100) cachet_test::fail_next_allocation();
        return true;
      }),
                      std::bad_alloc);
      CHECK_FALSE(cachet_test::allocation_failure_pending());
      CHECK(calls.size() == 65);
      CHECK(s.stats().explicit_removals == 65);
      CHECK(s.size() == 35);
      check_consistent(s);
    }
  }
  cachet_test::cancel_allocation_failure();
  CHECK(g_live_values == 0);
}
