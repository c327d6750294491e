// Tests for cachet::hash: transparency over string types, distinctness, the quality of the integer
// mixer in the bits the store uses, and the mixing the store applies to user hashes that do not
// declare `is_avalanching`.
#include <array>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace {

template <class H>
concept declares_avalanching = requires {
  typename H::is_avalanching;
};
template <class H>
concept declares_transparent = requires {
  typename H::is_transparent;
};

// Pearson's chi-square statistic of `counts` against a uniform expectation.
template <std::size_t N>
double chi_square(const std::array<std::uint64_t, N>& counts, double expected) {
  double chi = 0;
  for (std::uint64_t c : counts) {
    const double d = static_cast<double>(c) - expected;
    chi += d * d / expected;
  }
  return chi;
}

// Bounds at which a uniform sample lands outside with probability below 1e-9 (each side), so a
// correct mixer under any per-process seed essentially never fails, while a poor one fails by
// orders of magnitude (an identity hash scores ~4 million on the high bits and exactly 0 on the low
// bits).
constexpr double k_chi63_low = 15.0, k_chi63_high = 160.0;  // 64 buckets: 63 degrees of freedom
constexpr double k_chi1023_low = 770.0, k_chi1023_high = 1330.0;  // 1024 buckets: 1023 degrees

// Distribution of `h` over 2^16 sequential integers, in the high 6 bits (the store's pick among 64
// shards) and the low 10 bits (the table's placement).
template <class T, class H>
void check_spread_of_sequential(H h, T first) {
  std::array<std::uint64_t, 64> high{};
  std::array<std::uint64_t, 1024> low{};
  constexpr std::uint64_t n = std::uint64_t{1} << 16;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t x =
        static_cast<std::uint64_t>(h(static_cast<T>(first + static_cast<T>(i))));
    ++high[x >> 58];
    ++low[x & 1023];
  }
  const double chi_high = chi_square(high, n / 64.0);
  const double chi_low = chi_square(low, n / 1024.0);
  INFO("chi-square of the high 6 bits: " << chi_high << ", of the low 10 bits: " << chi_low);
  CHECK(chi_high > k_chi63_low);
  CHECK(chi_high < k_chi63_high);
  CHECK(chi_low > k_chi1023_low);
  CHECK(chi_low < k_chi1023_high);
}

// An identity hash, as std::hash<int> is on libstdc++, that does not claim to avalanche.
struct identity {
  std::size_t operator()(int k) const noexcept {
    return static_cast<std::size_t>(static_cast<unsigned>(k));
  }
};

// A fixed hash that names its seed: the store must seed its policies from it.
struct caller_seeded {
  using is_avalanching = void;
  std::uint64_t salt;
  std::uint64_t operator()(int k) const noexcept {
    return cachet::detail::mix64(static_cast<std::uint64_t>(k) + salt);
  }
  std::uint64_t seed() const noexcept { return salt; }
};

// An identity hash that claims to avalanche: the store must trust it and not mix.
struct identity_avalanching {
  using is_avalanching = void;
  std::uint64_t operator()(int k) const noexcept {
    return static_cast<std::uint64_t>(static_cast<unsigned>(k));
  }
};

}  // namespace

TEST_CASE("hash: the string hash is transparent", "[hash]") {
  const cachet::hash<std::string> h;
  STATIC_REQUIRE(declares_transparent<cachet::hash<std::string>>);
  STATIC_REQUIRE(declares_avalanching<cachet::hash<std::string>>);
  STATIC_REQUIRE(declares_transparent<cachet::hash<std::string_view>>);
  for (const char* s :
       {"", "a", "user:42", "a somewhat longer key that goes past sixteen bytes",
        "a key longer than one hundred and twenty-eight bytes so that xxh3 takes its long-input "
        "path, "
        "which starts at two hundred and forty bytes; this sentence keeps going to get there."}) {
    const std::string str(s);
    const std::string_view sv(str);
    INFO("key: \"" << str << '"');
    CHECK(h(str) == h(sv));
    CHECK(h(str) == h(s));
    CHECK(h(str) == cachet::hash<std::string_view>{}(sv));
    CHECK(h(str) == cachet::string_hash{}(str));
    CHECK(h(str) == cachet::hash<std::string>{}(std::string(s)));  // stable within the process
  }
  // Embedded NUL bytes are part of a std::string's key.
  const std::string with_nul("ab\0cd", 5);
  CHECK(h(with_nul) == h(std::string_view(with_nul)));
  CHECK(h(with_nul) != h(std::string("ab")));
}

TEST_CASE("hash: different strings hash differently", "[hash]") {
  const cachet::hash<std::string> h;
  std::unordered_set<std::uint64_t> seen;
  std::size_t n = 0;
  for (int i = 0; i < 20000; ++i) {
    seen.insert(h("key:" + std::to_string(i)));
    ++n;
  }
  // Keys differing in one bit, one byte, or only in length.
  std::string base(64, 'x');
  for (std::size_t pos = 0; pos < base.size(); ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string k = base;
      k[pos] = static_cast<char>(k[pos] ^ (1 << bit));
      seen.insert(h(k));
      ++n;
    }
  }
  for (std::size_t len = 0; len <= 64; ++len) {
    seen.insert(h(std::string_view(base).substr(0, len)));
    ++n;
  }
  // 64-bit hashes of ~20,000 keys collide with probability ~1e-11.
  CHECK(seen.size() == n);
}

TEST_CASE("hash: the integer hash mixes sequential integers in the bits the store uses", "[hash]") {
  STATIC_REQUIRE(declares_avalanching<cachet::hash<int>>);
  STATIC_REQUIRE(declares_avalanching<cachet::hash<std::uint64_t>>);
  SECTION("std::uint64_t from 0") {
    check_spread_of_sequential<std::uint64_t>(cachet::hash<std::uint64_t>{}, 0);
  }
  SECTION("int from -32768") { check_spread_of_sequential<int>(cachet::hash<int>{}, -32768); }
  SECTION("std::uint32_t from 2^32 - 2^15 (wrapping)") {
    check_spread_of_sequential<std::uint32_t>(cachet::hash<std::uint32_t>{}, 0xFFFF8000u);
  }
  SECTION("std::uint64_t with a stride of 2^32 (only high input bits change)") {
    const cachet::hash<std::uint64_t> h;
    check_spread_of_sequential<std::uint64_t>([h](std::uint64_t i) { return h(i << 32); }, 0);
  }
  SECTION("the test itself rejects an unmixed hash") {
    // Guard against a vacuous test: the identity must fail both bounds that matter.
    std::array<std::uint64_t, 64> high{};
    std::array<std::uint64_t, 1024> low{};
    for (std::uint64_t i = 0; i < (1u << 16); ++i) {
      ++high[std::hash<std::uint64_t>{}(i) >> 58];
      ++low[std::hash<std::uint64_t>{}(i)&1023];
    }
    CHECK_FALSE(chi_square(high, 1024.0) < k_chi63_high);
    CHECK_FALSE(chi_square(low, 64.0) > k_chi1023_low);
  }
}

TEST_CASE("hash: the integer hash is a bijection on distinct inputs", "[hash]") {
  const cachet::hash<std::uint64_t> h;
  std::unordered_set<std::uint64_t> seen;
  for (std::uint64_t i = 0; i < 50000; ++i) seen.insert(h(i * 0x10001ULL));
  CHECK(seen.size() == 50000);
  CHECK(h(12345) == cachet::hash<std::uint64_t>{}(12345));
}

TEST_CASE("hash: a user hash without is_avalanching still spreads keys over shards", "[hash]") {
  // std::hash<int> is the identity on libstdc++: sequential ints have all-zero high 32 bits, so
  // without the store's mixer every key would land in shard 0 (capacity 1024 / 16 = 64 entries).
  STATIC_REQUIRE_FALSE(declares_avalanching<std::hash<int>>);
  cachet::sharded_store<int, int, cachet::no_eviction, cachet::steady_clock, std::hash<int>,
                        std::equal_to<>>
      s({.max_entries = 16 * 64, .shards = 16});
  REQUIRE(s.shard_count() == 16);
  std::size_t stored = 0;
  for (int k = 0; k < 1024; ++k) stored += cachet::stored(s.put(k, k)) ? 1 : 0;
  INFO("stored " << stored << " of 1024");
  CHECK(s.size() == stored);
  CHECK(s.size() > 900);
  for (int k = 0; k < 1024; k += 97) {
    if (s.contains(k)) CHECK(s.get(k) == k);
  }
}

TEST_CASE("hash: a user hash declaring is_avalanching is used unmixed", "[hash]") {
  // The identity claims to avalanche, so the store must take its high bits as the shard pick: all
  // small keys share shard 0, which holds 1024 / 16 = 64 entries.
  cachet::sharded_store<int, int, cachet::no_eviction, cachet::steady_clock, identity_avalanching,
                        std::equal_to<>>
      s({.max_entries = 16 * 64, .shards = 16});
  for (int k = 0; k < 1024; ++k) s.put(k, k);
  CHECK(s.size() == 64);
  CHECK(s.stats().rejections == 1024 - 64);
}

TEST_CASE("hash: keys chosen against a user hash cannot be aimed at one shard", "[hash]") {
  // The attack: the user hash is the identity and the store's mixer is public, so an attacker
  // picks keys offline whose mixed top 6 bits are 0, all of shard 0's 256 entries of 16,384. With
  // an unkeyed mix64 these 2,000 keys evict 1,744 times while 63 shards stay empty; keyed by the
  // process seed they spread like any keys (~31 per shard, never near 256).
  std::vector<int> keys;
  for (int k = 0; keys.size() < 2000; ++k) {
    if ((cachet::detail::mix64(static_cast<std::uint64_t>(k)) >> 58) == 0) keys.push_back(k);
  }
  cachet::sharded_store<int, int, cachet::lru, cachet::steady_clock, identity> s(
      {.max_entries = 16384, .shards = 64});
  for (int k : keys) s.put(k, k);
  INFO("evictions: " << s.stats().evictions);
  CHECK(s.stats().evictions == 0);
  CHECK(s.size() == keys.size());
}

TEST_CASE("hash: a hash that names its seed seeds the store's policies", "[hash]") {
  // random draws its victims from the policy seed: the same hash seed gives the same victims, and
  // another gives others (with the process seed in both, the two sequences would be equal).
  auto victims = [](std::uint64_t seed) {
    std::vector<int> out;
    cachet::sharded_store<int, int, cachet::random, cachet::steady_clock, caller_seeded> s(
        {.max_entries = 16,
         .shards = 1,
         .on_removal = [&out](const int& k, const int&,
                              cachet::removal_cause) { out.push_back(k); }},
        {}, caller_seeded{seed});
    for (int k = 0; k < 200; ++k) s.put(k, k);
    return out;
  };
  REQUIRE(victims(1).size() == 184);
  CHECK(victims(1) == victims(1));
  CHECK(victims(1) != victims(2));
}
