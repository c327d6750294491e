// The conformance suite, part 2 (part 1 is sharded_store_test.cpp; the suite is split in two so
// that the two halves, the heaviest translation units of the tests, compile in parallel): bulk
// operations, listeners, heterogeneous lookup, owning value types, sharding, TTLs of any
// duration; then pinning, bounds changed at run time, and the eviction and rejection listeners
// (in this file rather than their own, as each file that instantiates the store over every
// backend costs CI about a minute across its four builds).
#include <algorithm>
#include <atomic>
#include <cachet/cachet.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
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

// ---- sharded_store::pin / unpin: a pinned entry is never evicted, counts against the bounds,
// follows its entry (kept by a put in place, dropped with the entry), and the pin bound leaves
// room.

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

// ---- sharded_store::set_max_entries / set_max_weight: bounds changed on a live store, over every
// backend; shrinking evicts down to the new bound, growing takes effect at once.

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

// ---- sharded_store's eviction listener (store_options::on_eviction: under the shard lock, as the
// entry leaves) and rejection listener (store_options::on_rejection: refused writes).

namespace {

struct heard {
  int key;
  int value;
  cachet::removal_cause cause;
  bool under_lock;  // true: on_eviction; false: on_removal
};

}  // namespace

TEMPLATE_TEST_CASE("on_eviction: hears evictions and expirations, before on_removal", "[listeners]",
                   cachet::lru, cachet::fifo, cachet::sieve, cachet::s3fifo, cachet::ttl,
                   cachet::lfu, cachet::random) {
  cachet::manual_clock clock;
  std::vector<heard> log;
  cachet_test::int_store<TestType> s({.max_entries = 2,
                                      .shards = 1,
                                      .on_removal =
                                          [&](const int& k, const int& v, cachet::removal_cause c) {
                                            log.push_back({k, v, c, false});
                                          },
                                      .on_eviction =
                                          [&](const int& k, const int& v, cachet::removal_cause c) {
                                            log.push_back({k, v, c, true});
                                          }},
                                     clock);
  s.put(1, 10, 5s);
  s.put(2, 20);
  s.put(2, 21);  // replaced: not an eviction
  s.erase(2);    // explicit: not an eviction
  clock.advance(5s);
  CHECK_FALSE(s.get(1).has_value());  // expired
  REQUIRE(log.size() == 4);
  CHECK((log[0].cause == cachet::removal_cause::replaced && !log[0].under_lock));
  CHECK((log[1].cause == cachet::removal_cause::explicit_erase && !log[1].under_lock));
  CHECK((log[2].key == 1 && log[2].value == 10 && log[2].cause == cachet::removal_cause::expired &&
         log[2].under_lock));
  CHECK((log[3].key == 1 && log[3].cause == cachet::removal_cause::expired && !log[3].under_lock));

  log.clear();
  s.put(3, 30);
  s.put(4, 40);
  s.put(5, 50);  // full: one of 3 and 4 is evicted
  REQUIRE(log.size() == 2);
  CHECK((log[0].cause == cachet::removal_cause::evicted && log[0].under_lock));
  CHECK((log[1].cause == cachet::removal_cause::evicted && !log[1].under_lock));
  CHECK(log[0].key == log[1].key);
  CHECK(log[0].value == log[0].key * 10);
  CHECK_FALSE(s.contains(log[0].key));

  log.clear();
  s.clear();  // cleared: not an eviction
  for (const heard& h : log) CHECK_FALSE(h.under_lock);
}

TEST_CASE("on_eviction: runs under the shard lock, so the removal and the listener are one step",
          "[listeners][threads]") {
  // The listener keeps a side index in step with the store and stops at a gate. A reader of the
  // evicted key, started once the listener is inside, must not get its answer before the listener
  // returns: it waits on the shard lock the eviction holds. (Were the listener run after the lock,
  // the reader would see the key gone from the store while the side index still has it.)
  std::mutex mu;
  std::condition_variable cv;
  bool inside = false, open = false;
  std::set<int> side;
  std::atomic<int> seq{0};
  int listener_done = -1;
  cachet_test::int_store<cachet::fifo> s(
      {.max_entries = 1,
       .shards = 1,
       .on_removal = [](const int&, const int&, cachet::removal_cause) {},
       .on_eviction =
           [&](const int& k, const int&, cachet::removal_cause) {
             std::unique_lock<std::mutex> g(mu);
             inside = true;
             cv.notify_all();
             cv.wait(g, [&] { return open; });
             side.erase(k);
             listener_done = seq.fetch_add(1);
           }});
  s.put(1, 1);
  side.insert(1);
  std::thread writer([&] { s.put(2, 2); });  // evicts 1, stops in the listener
  {
    std::unique_lock<std::mutex> g(mu);
    const bool entered = cv.wait_for(g, 10s, [&] { return inside; });
    if (!entered) {  // no listener call: let the writer finish before failing
      open = true;
      g.unlock();
      writer.join();
      FAIL("the eviction listener was not called");
    }
  }
  std::atomic<int> reader_done{-1};
  std::optional<int> read;
  std::thread reader([&] {
    read = s.get(1);
    reader_done = seq.fetch_add(1);
  });
  // Give a broken store the chance to answer early (bounded; the correct one cannot answer).
  for (int i = 0; i < 200 && reader_done.load() < 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(reader_done.load() == -1);
  {
    std::lock_guard<std::mutex> g(mu);
    open = true;
  }
  cv.notify_all();
  writer.join();
  reader.join();
  CHECK(listener_done < reader_done.load());
  CHECK_FALSE(read.has_value());
  CHECK(side.empty());
}

TEST_CASE("on_rejection: hears refused writes with what they offered", "[listeners]") {
  struct refusal {
    int key;
    int value;
    cachet::put_result why;
  };
  std::vector<refusal> log;
  std::size_t size_seen = 0;
  cachet_test::int_store<cachet::no_eviction>* self = nullptr;
  cachet_test::int_store<cachet::no_eviction> s(
      {.max_entries = 2,
       .shards = 1,
       .on_rejection = [&](const int& k, const int& v, cachet::put_result r) {
         log.push_back({k, v, r});
         size_seen = self->size();  // outside the lock: may call the store
       }});
  self = &s;
  CHECK(s.put(1, 10) == cachet::put_result::inserted);
  CHECK(s.put(2, 20) == cachet::put_result::inserted);
  CHECK(s.put(3, 30) == cachet::put_result::rejected_full);
  REQUIRE(log.size() == 1);
  CHECK((log[0].key == 3 && log[0].value == 30 && log[0].why == cachet::put_result::rejected_full));
  CHECK(size_seen == 2);
  CHECK(s.put_if_absent(4, 40) == std::nullopt);
  CHECK(s.get_or_insert(5, 50) == 50);
  CHECK(s.compute(6, [](std::optional<int>) { return std::optional<int>(60); }) == std::nullopt);
  REQUIRE(log.size() == 4);
  CHECK((log[1].key == 4 && log[1].value == 40));
  CHECK((log[2].key == 5 && log[2].value == 50));
  CHECK((log[3].key == 6 && log[3].value == 60));
  // Not refusals: a write that replaces, a put_if whose condition is false, an insert that finds.
  CHECK(s.put(1, 11) == cachet::put_result::replaced);
  CHECK(s.put_if(2, 21, []() noexcept { return false; }) == cachet::put_result::rejected_stale);
  CHECK(s.put_if_absent(2, 22) == 20);
  CHECK(log.size() == 4);
}

TEST_CASE("on_rejection: a value too heavy for a shard", "[listeners]") {
  std::vector<cachet::put_result> log;
  cachet::sharded_store<int, std::string> s(
      {.max_weight = 8,
       .weigher = [](const int&,
                     const std::string& v) { return static_cast<std::uint32_t>(v.size()); },
       .shards = 1,
       .on_rejection =
           [&](const int&, const std::string& v, cachet::put_result r) {
             CHECK(v == "far too heavy");
             log.push_back(r);
           }});
  CHECK(s.put(1, "far too heavy") == cachet::put_result::rejected_too_heavy);
  REQUIRE(log.size() == 1);
  CHECK(log[0] == cachet::put_result::rejected_too_heavy);
}

// ---- a policy's shared_state (eviction.hpp): one per store, handed to every shard, built before
// the shards and destroyed after them.

namespace {

struct shared_record {
  std::size_t capacity = 0;
  std::uint64_t seed = 0;
  int shards_built = 0;
  int shards_alive = 0;
  int alive_at_destruction = -1;
  const void* first = nullptr;  // the state the first shard was given
  int other_states = 0;         // shards given another
};
shared_record* g_record = nullptr;

struct recording_state {
  recording_state(std::size_t capacity, std::uint64_t seed) {
    g_record->capacity = capacity;
    g_record->seed = seed;
  }
  ~recording_state() { g_record->alive_at_destruction = g_record->shards_alive; }
  recording_state(const recording_state&) = delete;
  recording_state& operator=(const recording_state&) = delete;
  int shards = 0;  // written by each shard as it is built
};

struct shared_fifo : cachet::fifo {
  using shared_state = recording_state;
  template <class Nodes>
  class shard_policy : public cachet::fifo::shard_policy<Nodes> {
   public:
    shard_policy(Nodes* n, const cachet::policy_init& init)
        : cachet::fifo::shard_policy<Nodes>(n, init),
          state(static_cast<recording_state*>(init.shared)) {
      ++state->shards;  // a null or dead state fails here (ASan)
      if (g_record->first == nullptr) g_record->first = state;
      if (g_record->first != state) ++g_record->other_states;
      ++g_record->shards_built;
      ++g_record->shards_alive;
    }
    ~shard_policy() {
      --state->shards;
      --g_record->shards_alive;
    }
    shard_policy(const shard_policy&) = delete;
    shard_policy& operator=(const shard_policy&) = delete;
    recording_state* state;
  };
};
static_assert(cachet::eviction_policy<shared_fifo>);

}  // namespace

TEST_CASE("sharded_store: a policy's shared_state is built once and shared by every shard",
          "[store][policy]") {
  shared_record record;
  g_record = &record;
  {
    cachet::sharded_store<int, int, shared_fifo> s({.max_entries = 4000, .shards = 16});
    CHECK(record.capacity == 4000);  // the store's bound, not a shard's
    CHECK(record.shards_built == 16);
    CHECK(record.shards_alive == 16);
    CHECK(record.other_states == 0);
    for (int k = 0; k < 5000; ++k) s.put(k, k);  // the shards work as fifo
    CHECK(s.size() <= 4000);
  }
  CHECK(record.shards_alive == 0);
  CHECK(record.alive_at_destruction == 0);  // destroyed after every shard
  g_record = nullptr;
}
