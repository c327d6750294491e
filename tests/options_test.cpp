// Tests for store_options validation, put()'s TTL argument, weight bounds and the default shard
// count.
#include <bit>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using int_store = cachet::sharded_store<int, int>;
using int_options = cachet::store_options<int, int>;
using str_store = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;
using str_options = cachet::store_options<int, std::string>;

std::uint32_t length_weigher(const int&, const std::string& v) {
  return static_cast<std::uint32_t>(v.size());
}

// Constructs an int_store from `opts` and requires it to throw invalid_option naming `option`, with
// a message that starts as documented and contains every fragment of `range` (the allowed range).
void require_invalid(const int_options& opts, std::string_view option,
                     std::initializer_list<std::string_view> range) {
  bool threw = false;
  try {
    int_store s(opts);
  } catch (const cachet::invalid_option& e) {
    threw = true;
    const std::string what = e.what();
    INFO("what(): " << what);
    CHECK(e.option() == option);
    CHECK(what.rfind("cachet: option '" + std::string(option) + "'", 0) == 0);
    for (std::string_view frag : range) {
      INFO("expected fragment: " << frag);
      CHECK(what.find(frag) != std::string::npos);
    }
  }
  INFO("expected cachet::invalid_option for option " << option);
  CHECK(threw);
}

int_options with_weight(std::size_t max_entries, std::uint64_t max_weight, std::size_t shards) {
  int_options o;
  o.max_entries = max_entries;
  o.max_weight = max_weight;
  o.shards = shards;
  o.weigher = [](const int&, const int&) -> std::uint32_t { return 1; };
  return o;
}

}  // namespace

TEST_CASE("options: invalid_option is a std::invalid_argument", "[options]") {
  REQUIRE_THROWS_AS(int_store(int_options{}), std::invalid_argument);
  REQUIRE_THROWS_AS(int_store(int_options{}), cachet::invalid_option);
}

TEST_CASE("options: each invalid option is rejected by name with its allowed range", "[options]") {
  SECTION("max_entries 0 without max_weight") {
    require_invalid({.max_entries = 0}, "max_entries", {"[1, "});
    require_invalid({.max_entries = 0, .shards = 4}, "max_entries", {"[1, "});
  }
  SECTION("shards not a power of two") {
    require_invalid({.max_entries = 1000, .shards = 3}, "shards", {"power of two", "[1, 65536]"});
    require_invalid({.max_entries = 1000, .shards = 6}, "shards", {"power of two", "[1, 65536]"});
  }
  SECTION("shards above 65536") {
    require_invalid({.max_entries = 1u << 20, .shards = 131072}, "shards", {"[1, 65536]"});
  }
  SECTION("shards above max_entries") {
    require_invalid({.max_entries = 4, .shards = 8}, "shards", {"max_entries", "4"});
    require_invalid({.max_entries = 1, .shards = 2}, "shards", {"max_entries"});
  }
  SECTION("negative default_ttl") {
    require_invalid({.max_entries = 10, .default_ttl = std::chrono::nanoseconds(-1)}, "default_ttl",
                    {">= 0"});
    require_invalid({.max_entries = 10, .default_ttl = -std::chrono::hours(1)}, "default_ttl",
                    {">= 0"});
  }
  SECTION("ttl_jitter outside [0, 1)") {
    require_invalid({.max_entries = 10, .ttl_jitter = -0.1}, "ttl_jitter", {"[0, 1)"});
    require_invalid({.max_entries = 10, .ttl_jitter = 1.0}, "ttl_jitter", {"[0, 1)"});
    require_invalid({.max_entries = 10, .ttl_jitter = 1.5}, "ttl_jitter", {"[0, 1)"});
    require_invalid({.max_entries = 10, .ttl_jitter = std::numeric_limits<double>::quiet_NaN()},
                    "ttl_jitter", {"[0, 1)"});
    require_invalid({.max_entries = 10, .ttl_jitter = std::numeric_limits<double>::infinity()},
                    "ttl_jitter", {"[0, 1)"});
  }
  SECTION("max_weight without weigher") {
    require_invalid({.max_entries = 10, .max_weight = 100}, "max_weight", {"weigher"});
    require_invalid({.max_weight = 100}, "max_weight", {"weigher"});
  }
  SECTION("weigher without max_weight") {
    int_options o{.max_entries = 10};
    o.weigher = [](const int&, const int&) -> std::uint32_t { return 1; };
    require_invalid(o, "weigher", {"max_weight", "[shards, 2^64)"});
  }
  SECTION("max_weight below the shard count") {
    require_invalid(with_weight(0, 3, 4), "max_weight", {"shard count", "4"});
    require_invalid(with_weight(100, 1, 2), "max_weight", {"shard count"});
  }
}

TEST_CASE("options: valid configurations construct and work", "[options]") {
  auto check_works = [](int_store& s) {
    CHECK(s.put(1, 10) == cachet::put_result::inserted);
    CHECK(s.get(1) == 10);
    CHECK(s.size() == 1);
  };
  SECTION("minimal") {
    int_store s({.max_entries = 1});
    CHECK(s.shard_count() == 1);
    CHECK(s.capacity() == 1);
    check_works(s);
  }
  SECTION("shards equal to max_entries") {
    int_store s({.max_entries = 64, .shards = 64});
    CHECK(s.shard_count() == 64);
    check_works(s);
  }
  SECTION("the largest shard count") {
    int_store s({.max_entries = 65536, .shards = 65536});
    CHECK(s.shard_count() == 65536);
    check_works(s);
  }
  SECTION("jitter bounds") {
    int_store a({.max_entries = 10, .ttl_jitter = 0.0});
    int_store b({.max_entries = 10, .ttl_jitter = 0.999});
    check_works(a);
    check_works(b);
  }
  SECTION("default_ttl zero and positive") {
    int_store a({.max_entries = 10, .default_ttl = std::chrono::nanoseconds(0)});
    int_store b({.max_entries = 10, .default_ttl = std::chrono::seconds(1)});
    check_works(a);
    check_works(b);
  }
  SECTION("weight only, and weight with entries") {
    int_store a(with_weight(0, 100, 0));
    CHECK(a.max_weight() == 100);
    CHECK(a.capacity() == 0);
    check_works(a);
    int_store b(with_weight(10, 4, 4));
    CHECK(b.shard_count() == 4);
    check_works(b);
  }
}

TEST_CASE("options: put with a non-positive ttl throws invalid_argument and changes nothing",
          "[options]") {
  cachet::manual_clock clock;
  cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock> s(
      {.max_entries = 4, .shards = 1}, clock);
  REQUIRE(s.put(1, 1) == cachet::put_result::inserted);
  CHECK_THROWS_AS(s.put(1, 2, std::chrono::nanoseconds(0)), std::invalid_argument);
  CHECK_THROWS_AS(s.put(1, 3, std::chrono::nanoseconds(-1)), std::invalid_argument);
  CHECK_THROWS_AS(s.put(2, 3, -std::chrono::seconds(5)), std::invalid_argument);
  CHECK(s.get(1) == 1);
  CHECK_FALSE(s.contains(2));
  CHECK(s.size() == 1);
  const auto st = s.stats();
  CHECK(st.puts() == 1);
  // The smallest positive ttl and no_expiry are accepted.
  CHECK(s.put(3, 3, std::chrono::nanoseconds(1)) == cachet::put_result::inserted);
  CHECK(s.put(4, 4, cachet::no_expiry) == cachet::put_result::inserted);
  clock.advance(std::chrono::hours(24 * 365));
  CHECK_FALSE(s.get(3).has_value());
  CHECK(s.get(4) == 4);
}

TEST_CASE("options: weight bounds", "[options]") {
  str_options o{.max_weight = 100, .shards = 1};
  o.weigher = length_weigher;
  cachet::manual_clock clock;
  str_store s(o, clock);
  REQUIRE(s.max_weight() == 100);

  auto total_weight_by_iteration = [&s] {
    std::uint64_t w = 0;
    s.for_each([&w](const int&, const std::string& v) { w += v.size(); });
    return w;
  };

  SECTION("a too-heavy entry is rejected, and removes the key's old entry") {
    CHECK(s.put(1, std::string(100, 'a')) ==
          cachet::put_result::inserted);  // exactly the bound fits
    CHECK(s.stats().weight == 100);
    CHECK(s.put(2, std::string(101, 'b')) == cachet::put_result::rejected_too_heavy);
    CHECK_FALSE(s.contains(2));
    CHECK(s.get(1) == std::string(100, 'a'));  // nothing evicted for a refused entry
    CHECK(s.put(1, std::string(150, 'c')) == cachet::put_result::rejected_too_heavy);
    CHECK_FALSE(s.contains(1));  // never serve a value older than a refused write
    CHECK(s.size() == 0);
    const auto st = s.stats();
    CHECK(st.weight == 0);
    CHECK(st.rejections == 2);
    CHECK(st.inserts == 1);
  }

  SECTION("entries are evicted to keep the weight within bounds") {
    CHECK(s.put(1, std::string(30, 'a')) == cachet::put_result::inserted);
    CHECK(s.put(2, std::string(30, 'b')) == cachet::put_result::inserted);
    CHECK(s.put(3, std::string(30, 'c')) == cachet::put_result::inserted);
    CHECK(s.stats().weight == 90);
    CHECK(s.put(4, std::string(30, 'd')) == cachet::put_result::inserted);  // evicts 1 (LRU)
    CHECK_FALSE(s.contains(1));
    CHECK(s.size() == 3);
    CHECK(s.stats().weight == 90);
    CHECK(s.stats().evictions == 1);
  }

  SECTION("an update that grows the weight evicts others") {
    CHECK(s.put(1, std::string(30, 'a')) == cachet::put_result::inserted);
    CHECK(s.put(2, std::string(30, 'b')) == cachet::put_result::inserted);
    CHECK(s.put(3, std::string(30, 'c')) == cachet::put_result::inserted);
    const auto r = s.put(3, std::string(50, 'C'));  // 30 + 30 + 50 > 100: the LRU entry (1) must go
    CHECK(cachet::stored(r));
    CHECK_FALSE(s.contains(1));
    CHECK(s.get(2) == std::string(30, 'b'));
    CHECK(s.get(3) == std::string(50, 'C'));
    CHECK(s.size() == 2);
    CHECK(s.stats().weight == 80);
    CHECK(s.stats().evictions == 1);
    // The key was present, so this is a replacement (an update in the stats), even though the old
    // entry had to be dropped and the new one inserted to make the weight fit.
    CHECK(r == cachet::put_result::replaced);
    CHECK(s.stats().updates == 1);
  }

  SECTION("an update that shrinks the weight is in place") {
    CHECK(s.put(1, std::string(60, 'a')) == cachet::put_result::inserted);
    CHECK(s.put(1, std::string(10, 'b')) == cachet::put_result::replaced);
    CHECK(s.stats().weight == 10);
    CHECK(s.put(2, std::string(90, 'c')) == cachet::put_result::inserted);
    CHECK(s.contains(1));
    CHECK(s.stats().weight == 100);
  }

  SECTION("random workload: weight never exceeds the bound at quiescent points") {
    std::mt19937_64 rng(0xC0FFEE);
    for (int op = 0; op < 4000; ++op) {
      const int key = static_cast<int>(rng() % 24);
      if (rng() % 5 == 0) {
        s.erase(key);
      } else {
        const std::size_t len = rng() % 121;  // 0 .. 120
        const bool existed = s.contains(key);
        const auto r = s.put(key, std::string(len, static_cast<char>('a' + key)));
        INFO("op " << op << " key " << key << " len " << len << " result " << cachet::to_string(r));
        if (len > 100) {
          REQUIRE(r == cachet::put_result::rejected_too_heavy);
          REQUIRE_FALSE(s.contains(key));
        } else {
          REQUIRE(cachet::stored(r));
          REQUIRE(s.get(key) == std::string(len, static_cast<char>('a' + key)));
          if (!existed) REQUIRE(r == cachet::put_result::inserted);
        }
      }
      const auto st = s.stats();
      REQUIRE(st.weight <= 100);
      REQUIRE(st.weight == total_weight_by_iteration());
      REQUIRE(st.size == s.size());
    }
  }
}

TEST_CASE("options: the shard count bound is split so size() never exceeds max_entries",
          "[options]") {
  for (std::size_t shards : {std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{8}}) {
    for (std::size_t max_entries :
         {std::size_t{8}, std::size_t{13}, std::size_t{64}, std::size_t{100}}) {
      cachet::sharded_store<int, int> s({.max_entries = max_entries, .shards = shards});
      for (int k = 0; k < 1000; ++k) {
        s.put(k, k);
        REQUIRE(s.size() <= max_entries);
      }
      INFO("shards " << shards << " max_entries " << max_entries);
      CHECK(s.size() > 0);
    }
  }
}

TEST_CASE("options: the default shard count is a power of two with at least 256 entries per shard",
          "[options]") {
  for (std::size_t max_entries :
       {std::size_t{1}, std::size_t{2}, std::size_t{63}, std::size_t{64}, std::size_t{127},
        std::size_t{128}, std::size_t{1000}, std::size_t{4096}, std::size_t{100'000},
        std::size_t{10'000'000}}) {
    int_store s({.max_entries = max_entries});
    INFO("max_entries " << max_entries << " shard_count " << s.shard_count());
    CHECK(std::has_single_bit(s.shard_count()));
    CHECK(s.shard_count() <= std::max<std::size_t>(1, max_entries / 256));
    CHECK(s.shard_count() <= 1024);
    CHECK(s.options().shards == 0);
  }
  // Weight-only: the weight bound plays the part of max_entries.
  for (std::uint64_t max_weight : {std::uint64_t{1}, std::uint64_t{100}, std::uint64_t{1} << 20}) {
    int_store s(with_weight(0, max_weight, 0));
    INFO("max_weight " << max_weight << " shard_count " << s.shard_count());
    CHECK(std::has_single_bit(s.shard_count()));
    CHECK(s.shard_count() <= std::max<std::uint64_t>(1, max_weight / 256));
  }
}

TEST_CASE("options: default_ttl applies to put(key, value); no_expiry overrides it", "[options]") {
  cachet::manual_clock clock;
  cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock> s(
      {.max_entries = 16, .shards = 1, .default_ttl = std::chrono::seconds(10)}, clock);
  CHECK(s.put(1, 1) == cachet::put_result::inserted);                     // default: 10 s
  CHECK(s.put(2, 2, cachet::no_expiry) == cachet::put_result::inserted);  // never
  CHECK(s.put(3, 3, std::chrono::seconds(20)) == cachet::put_result::inserted);
  clock.advance(std::chrono::seconds(10) - std::chrono::nanoseconds(1));
  CHECK(s.get(1) == 1);
  clock.advance(std::chrono::nanoseconds(1));
  CHECK_FALSE(s.get(1).has_value());
  CHECK(s.get(3) == 3);
  clock.advance(std::chrono::seconds(10));
  CHECK_FALSE(s.get(3).has_value());
  clock.advance(std::chrono::hours(1000));
  CHECK(s.get(2) == 2);
}

TEST_CASE("options: ttl_jitter shortens each TTL by at most its fraction, never lengthens it",
          "[options]") {
  cachet::manual_clock clock;
  constexpr int n = 200;
  cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock> s(
      {.max_entries = 256, .shards = 1, .ttl_jitter = 0.5}, clock);
  for (int k = 0; k < n; ++k)
    REQUIRE(s.put(k, k, std::chrono::seconds(1)) == cachet::put_result::inserted);
  auto live = [&s] {
    int c = 0;
    s.for_each([&c](const int&, const int&) { ++c; });
    return c;
  };
  clock.advance(std::chrono::milliseconds(500));  // every TTL is more than half of 1 s
  CHECK(live() == n);
  clock.advance(std::chrono::milliseconds(400));  // at 0.9 s: P(no TTL drawn below 0.9 s) = 0.8^200
  const int at_900ms = live();
  CHECK(at_900ms < n);
  CHECK(at_900ms > 0);                            // P(all below 0.9 s) = 0.2^200
  clock.advance(std::chrono::milliseconds(100));  // at 1 s: none outlives its TTL
  CHECK(live() == 0);
  CHECK(s.cleanup() == static_cast<std::size_t>(n));
  CHECK(s.size() == 0);
}
