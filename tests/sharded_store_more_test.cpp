// The conformance suite, part 2 (part 1 is sharded_store_test.cpp; the suite is split in two so
// that the two halves, the heaviest translation units of the tests, compile in parallel): bulk
// operations, listeners, heterogeneous lookup, owning value types, sharding, and TTLs of any
// duration.
#include <algorithm>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support.hpp"

using cachet::put_result;
using cachet::removal_cause;
using namespace cachet_test;
using std::chrono::seconds;

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

TEMPLATE_TEST_CASE("store: peek reads without counting, and reclaims what expired", "[store]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<TestType> s({.max_entries = 100, .on_removal = rec.listener()}, clock);
  s.put(1, 10);
  s.put(2, 20, seconds(1));
  REQUIRE(s.peek(1) == 10);
  REQUIRE_FALSE(s.peek(3));
  clock.advance(seconds(1));
  REQUIRE_FALSE(s.peek(2));  // expired: not served, and reclaimed
  const cachet::cache_stats st = s.stats();
  CHECK(st.hits == 0);
  CHECK(st.misses == 0);
  CHECK(st.expirations == 1);
  CHECK(s.size() == 1);
  CHECK(rec.take() == std::vector<removal_event<int, int>>{{2, 20, removal_cause::expired}});
}

TEST_CASE("store: peek leaves the eviction order alone, where get would move the entry",
          "[store]") {
  for (const bool peek : {true, false}) {
    int_store<cachet::lru> s({.max_entries = 2, .shards = 1});
    s.put(1, 10);
    s.put(2, 20);
    REQUIRE((peek ? s.peek(1) : s.get(1)) == 10);
    s.put(3, 30);  // evicts the least recently used entry
    CHECK(s.contains(1) != peek);
    CHECK(s.contains(2) == peek);
  }
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

TEST_CASE("store: a ttl of any duration saturates instead of overflowing", "[store][ttl]") {
  using namespace std::chrono;
  cachet::manual_clock clock;
  int_store<cachet::lru> s({.max_entries = 100, .shards = 1}, clock);
  const auto keep = []() noexcept { return true; };
  // Each of these is past nanoseconds::max(): converted as std::chrono does, they would wrap.
  REQUIRE(s.put(1, 1, hours::max()) == put_result::inserted);
  REQUIRE(s.put(2, 2, years(1000)) == put_result::inserted);
  REQUIRE(s.put(3, 3, duration<double>(std::numeric_limits<double>::infinity())) ==
          put_result::inserted);
  REQUIRE(s.put_if(4, 4, hours::max(), keep) == put_result::inserted);
  REQUIRE(s.put(5, 5, seconds(1)) == put_result::inserted);
  REQUIRE(s.put(6, 6, duration<double, std::nano>(0.25)) == put_result::inserted);  // 1 ns
  clock.advance(years(100));
  for (int k = 1; k <= 4; ++k) CHECK(s.get(k) == k);
  CHECK_FALSE(s.get(5));
  CHECK_FALSE(s.get(6));
  clock.advance(nanoseconds::max());  // saturates: the end of time, not a time in the past
  for (int k = 1; k <= 4; ++k) CHECK(s.get(k) == k);
  // A ttl that is not positive is refused, whatever its type.
  CHECK_THROWS_AS(s.put(7, 7, hours(0)), std::invalid_argument);
  CHECK_THROWS_AS(s.put(7, 7, minutes(-1)), std::invalid_argument);
  CHECK_THROWS_AS(s.put(7, 7, duration<double>(std::nan(""))), std::invalid_argument);
  CHECK_THROWS_AS(s.put_if(7, 7, hours::min(), keep), std::invalid_argument);
  CHECK_FALSE(s.contains(7));
}

TEST_CASE("store: manual_clock saturates at the end of time and never wraps", "[store][ttl]") {
  using namespace std::chrono;
  cachet::manual_clock clock;
  int_store<cachet::lru> s({.max_entries = 100, .shards = 1}, clock);
  s.put(1, 1, seconds(1));
  s.put(2, 2, cachet::no_expiry);
  clock.advance(nanoseconds::max());
  CHECK(clock.now() == nanoseconds::max());
  clock.advance(nanoseconds::max());
  CHECK(clock.now() == nanoseconds::max());
  clock.advance(hours::max());  // any duration
  CHECK(clock.now() == nanoseconds::max());
  clock.advance(seconds(-1));  // never goes back
  CHECK(clock.now() == nanoseconds::max());
  CHECK_FALSE(s.get(1));  // its deadline passed
  CHECK(s.get(2) == 2);   // no deadline to pass
  CHECK(s.stats().expirations == 1);

  cachet::manual_clock other(seconds(5));
  other.set(hours::max());
  CHECK(other.now() == nanoseconds::max());
  other.set(seconds(1));  // earlier: ignored
  CHECK(other.now() == nanoseconds::max());
}
