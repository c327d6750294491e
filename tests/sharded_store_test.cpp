// The conformance suite: one set of behaviours every backend must show, run over every backend.
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

TEMPLATE_TEST_CASE("store: clear, erase_if and for_each", "[store]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<TestType> s({.max_entries = 1000, .shards = 4, .on_removal = rec.listener()}, clock);
  for (int k = 0; k < 300; ++k) s.put(k, k * 10);
  s.put(1000, 0, seconds(1));
  clock.advance(seconds(1));  // 1000 is expired: for_each and erase_if must not see it

  std::map<int, int> seen;
  s.for_each([&](int k, int v) { REQUIRE(seen.emplace(k, v).second); });
  REQUIRE(seen.size() == 300);
  for (auto& [k, v] : seen) REQUIRE(v == k * 10);

  REQUIRE(s.erase_if([](int k, int) { return k % 3 == 0; }) == 100);
  REQUIRE(s.size() == 201);  // the expired entry is still there, unreclaimed
  REQUIRE_FALSE(s.contains(3));
  REQUIRE(s.contains(4));
  REQUIRE(rec.take_keys(removal_cause::explicit_erase).size() == 100);

  s.clear();
  REQUIRE(s.size() == 0);
  REQUIRE(s.stats().cleared == 201);
  const auto events = rec.take();
  REQUIRE(events.size() == 201);
  REQUIRE(std::all_of(events.begin(), events.end(),
                      [](auto& e) { return e.cause == removal_cause::cleared; }));
  // Usable after clear.
  REQUIRE(s.put(5, 5) == put_result::inserted);
  REQUIRE(s.get(5) == 5);
}

TEMPLATE_TEST_CASE("store: for_each may call back into the store", "[store]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  int_store<TestType> s({.max_entries = 1000, .shards = 2}, clock);
  for (int k = 0; k < 200; ++k) s.put(k, k);
  s.for_each([&](int k, int) { s.erase(k); });  // would deadlock if run under the shard lock
  REQUIRE(s.empty());
}

TEMPLATE_TEST_CASE("store: listener runs without the shard lock", "[store]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  using store_t = int_store<TestType>;
  store_t* self = nullptr;
  int reentered = 0;
  store_t s({.max_entries = 4,
             .shards = 1,
             .on_removal =
                 [&](int k, int, removal_cause) {
                   self->get(k);  // same shard: would deadlock under the lock
                   ++reentered;
                 }},
            clock);
  self = &s;
  s.put(1, 1);
  s.put(1, 2);
  s.erase(1);
  REQUIRE(reentered == 2);
}

namespace {

// A lookup type that std::string cannot be built from: if the store made a temporary key for a
// lookup, this would not compile.
struct name_view {
  std::string_view text;
};
struct name_hash {
  using is_transparent = void;
  using is_avalanching = void;
  std::uint64_t operator()(std::string_view s) const noexcept { return cachet::string_hash{}(s); }
  std::uint64_t operator()(const std::string& s) const noexcept {
    return (*this)(std::string_view(s));
  }
  std::uint64_t operator()(name_view n) const noexcept { return (*this)(n.text); }
};
struct name_eq {
  using is_transparent = void;
  bool operator()(const std::string& a, const std::string& b) const { return a == b; }
  bool operator()(const std::string& a, name_view b) const { return a == b.text; }
  bool operator()(name_view a, const std::string& b) const { return a.text == b; }
};

}  // namespace

TEMPLATE_TEST_CASE("store: heterogeneous lookup builds no temporary key", "[store]",
                   CACHET_ALL_BACKENDS) {
  SECTION("std::string keys looked up by std::string_view and const char*") {
    cachet::sharded_store<std::string, int, TestType> s({.max_entries = 100});
    const std::string long_key(100, 'k');  // beyond any small-string buffer
    s.put(long_key, 1);
    s.put("short", 2);
    REQUIRE(s.get(std::string_view(long_key)) == 1);
    REQUIRE(s.get("short") == 2);
    REQUIRE(s.contains(std::string_view("short")));
    REQUIRE(s.erase(std::string_view(long_key)));
    REQUIRE_FALSE(s.get(std::string_view(long_key)));
  }
  SECTION("a lookup type that cannot convert to the key type") {
    cachet::sharded_store<std::string, int, TestType, cachet::steady_clock, name_hash, name_eq> s(
        {.max_entries = 100});
    s.put("ada", 1);
    REQUIRE(s.get(name_view{"ada"}) == 1);
    REQUIRE_FALSE(s.get(name_view{"bob"}));
    REQUIRE(s.contains(name_view{"ada"}));
    REQUIRE(s.erase(name_view{"ada"}));
  }
}

TEMPLATE_TEST_CASE("store: values that own memory are moved, copied and freed correctly", "[store]",
                   CACHET_ALL_BACKENDS) {
  recorder<std::string, std::string> rec;
  cachet::sharded_store<std::string, std::string, TestType> s(
      {.max_entries = 50, .shards = 2, .on_removal = rec.listener()});
  std::map<std::string, std::string> last;
  for (int i = 0; i < 2000; ++i) {
    const std::string k = "key-" + std::to_string(i % 150) + std::string(40, 'x');
    const std::string v = "value-" + std::to_string(i) + std::string(60, 'y');
    if (cachet::stored(s.put(k, v))) last[k] = v;
  }
  s.for_each([&](const std::string& k, const std::string& v) { REQUIRE(last.at(k) == v); });
  const auto st = s.stats();
  REQUIRE(rec.take().size() == st.updates + st.evictions);
}

TEST_CASE("store: sharding splits capacity exactly", "[store][capacity]") {
  cachet::sharded_store<int, int, cachet::no_eviction> s({.max_entries = 10, .shards = 4});
  REQUIRE(s.shard_count() == 4);
  REQUIRE(s.capacity() == 10);
  int stored = 0;
  for (int k = 0; k < 10000; ++k) stored += cachet::stored(s.put(k, k));
  REQUIRE(stored == 10);  // shards of 3, 3, 2, 2
  REQUIRE(s.size() == 10);
}
