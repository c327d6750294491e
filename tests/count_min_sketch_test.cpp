#include <algorithm>
#include <cachet/detail/count_min_sketch.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

using cachet::detail::count_min_sketch;

namespace {

// Distinct, well-spread 32-bit key hashes (as the store would pass).
std::vector<std::uint32_t> key_hashes(std::size_t n, std::uint64_t seed) {
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::vector<std::uint32_t> out;
  std::map<std::uint32_t, bool> seen;
  while (out.size() < n) {
    const std::uint32_t h = rng();
    if (!seen[h]) {
      seen[h] = true;
      out.push_back(h);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("sketch: sizes to the next power of two, 8 bytes per word, 64-byte aligned", "[sketch]") {
  CHECK(count_min_sketch::words_for(0) == 8);  // one 64-byte block at least
  CHECK(count_min_sketch::words_for(1) == 8);
  CHECK(count_min_sketch::words_for(9) == 16);
  CHECK(count_min_sketch::words_for(1000) == 1024);
  CHECK(count_min_sketch::words_for(1024) == 1024);
  CHECK(count_min_sketch::words_for(1025) == 2048);
  count_min_sketch s(1000, 1);
  CHECK(s.words() == 1024);
  CHECK(s.bytes() == 8192);
  CHECK(s.sample_size() == 10'000);
  CHECK(count_min_sketch(1000, 1, 3).sample_size() == 3'000);
  // A floor on the width (w_tinylfu's small caches): the table never narrows below it, rounded up
  // to a power of two, while the halving period still follows the entries.
  count_min_sketch floored(100, 1, 10, 512);
  CHECK(floored.words() == 512);
  CHECK(floored.sample_size() == 1'000);
  floored.resize(2000);
  CHECK(floored.words() == 2048);
  floored.resize(10);
  CHECK(floored.words() == 512);
  CHECK(floored.sample_size() == 100);
  CHECK(count_min_sketch(100, 1, 10, 300).words() == 512);
  CHECK(count_min_sketch(1, 1, 10, 0).words() == 8);
  count_min_sketch empty;
  CHECK(empty.bytes() == 0);
  CHECK_FALSE(empty.increment(42));
  CHECK(empty.estimate(42) == 0);
}

TEST_CASE("sketch: a lone key counts exactly and saturates at 15", "[sketch]") {
  count_min_sketch s(1024, 7);
  for (std::uint32_t k = 1; k <= 15; ++k) {
    REQUIRE(s.increment(0xC0FFEE));
    REQUIRE(s.estimate(0xC0FFEE) == k);
  }
  // All four counters are at 15: nothing moves, and that is not an addition.
  const auto before = s.additions();
  CHECK_FALSE(s.increment(0xC0FFEE));
  CHECK(s.estimate(0xC0FFEE) == 15);
  CHECK(s.additions() == before);
  CHECK(s.estimate(0xBEEF) == 0);
}

TEST_CASE("sketch: estimates never undercount before a halving", "[sketch]") {
  // 4,000 keys with skewed counts in a sketch sized for 1,024 entries, with the halving pushed out.
  count_min_sketch s(1024, 3, /*sample_factor=*/1000);
  const auto keys = key_hashes(4000, 11);
  std::map<std::uint32_t, std::uint32_t> truth;
  std::mt19937 rng(5);
  for (int n = 0; n < 40'000; ++n) {
    // Zipf-like: key i with probability ~ 1/(i+1).
    const double u = std::uniform_real_distribution<>(0, 1)(rng);
    const auto i = static_cast<std::size_t>(std::pow(4000.0, u)) - 1;
    const std::uint32_t h = keys[std::min<std::size_t>(i, keys.size() - 1)];
    s.increment(h);
    ++truth[h];
  }
  REQUIRE(s.additions() < s.sample_size());
  double over = 0;
  for (const auto& [h, c] : truth) {
    const std::uint32_t want = std::min<std::uint32_t>(c, 15);
    REQUIRE(s.estimate(h) >= want);
    over += s.estimate(h) - want;
  }
  // Count-min error: the mean overestimate stays small (4 rows, 16 counters per word).
  CHECK(over / static_cast<double>(truth.size()) < 1.0);
}

TEST_CASE("sketch: halving after sample_size additions", "[sketch]") {
  // Expected 1 entry: sample 10, so a lone key halves on its 10th addition.
  count_min_sketch s(1, 9);
  REQUIRE(s.sample_size() == 10);
  for (int k = 0; k < 9; ++k) s.increment(77);
  REQUIRE(s.estimate(77) == 9);
  REQUIRE(s.additions() == 9);
  s.increment(77);  // 10 -> halved to 5
  CHECK(s.estimate(77) == 5);
  // The four counters were even (10), so no odd remainder was lost: additions 10 / 2.
  CHECK(s.additions() == 5);

  SECTION("explicit halve floors every counter and discounts the lost odd halves") {
    count_min_sketch t(4096, 2, 1000);
    const auto keys = key_hashes(3, 21);
    for (int k = 0; k < 13; ++k) t.increment(keys[0]);
    for (int k = 0; k < 6; ++k) t.increment(keys[1]);
    t.increment(keys[2]);
    REQUIRE(t.estimate(keys[0]) == 13);
    REQUIRE(t.estimate(keys[1]) == 6);
    REQUIRE(t.estimate(keys[2]) == 1);
    REQUIRE(t.additions() == 20);
    t.halve();
    CHECK(t.estimate(keys[0]) == 6);
    CHECK(t.estimate(keys[1]) == 3);
    CHECK(t.estimate(keys[2]) == 0);
    // 8 odd counters (four each for 13 and 1): (20 - 8 / 4) / 2 = 9.
    CHECK(t.additions() == 9);
  }
}

TEST_CASE("sketch: periodic halving keeps a stream's old favourite from outranking it",
          "[sketch]") {
  // Sample 100 additions. Key a is hot early, then key b is hot; after the halvings b ranks above.
  count_min_sketch s(10, 4);
  const auto keys = key_hashes(2, 8);
  for (int k = 0; k < 60; ++k) s.increment(keys[0]);  // saturates at 15 after 15 additions
  for (int k = 0; k < 300; ++k) {
    s.increment(keys[1]);
    s.increment(keys[1] ^ static_cast<std::uint32_t>(k + 1) * 0x9E3779B9u);  // background noise
  }
  CHECK(s.estimate(keys[1]) > s.estimate(keys[0]));
  CHECK(s.estimate(keys[0]) <= 3);
}

TEST_CASE("sketch: deterministic for a seed, seed-dependent across seeds", "[sketch]") {
  const auto keys = key_hashes(3000, 13);
  auto fill = [&](std::uint64_t seed) {
    count_min_sketch s(256, seed);  // crowded: 3,000 keys in 256 words, halving every 2,560
    std::mt19937 rng(1);
    for (int n = 0; n < 20'000; ++n) s.increment(keys[rng() % keys.size()]);
    std::vector<std::uint32_t> est;
    for (auto h : keys) est.push_back(s.estimate(h));
    return est;
  };
  CHECK(fill(42) == fill(42));
  CHECK(fill(42) != fill(43));
}

TEST_CASE("sketch: clear and resize forget every count", "[sketch]") {
  count_min_sketch s(64, 1);
  for (int k = 0; k < 5; ++k) s.increment(123);
  REQUIRE(s.estimate(123) == 5);
  s.clear();
  CHECK(s.estimate(123) == 0);
  CHECK(s.additions() == 0);
  s.increment(123);
  REQUIRE(s.try_resize(5000));
  CHECK(s.words() == 8192);
  CHECK(s.sample_size() == 50'000);
  CHECK(s.estimate(123) == 0);
}

TEST_CASE("sketch: increment(hash, times) is exactly `times` increments in a row", "[sketch]") {
  // A crowded sketch (keys share counters, many saturate) with a short sample, so runs cross
  // halvings, start and stop at saturation, and meet counters other keys raised.
  const auto keys = key_hashes(400, 31);
  count_min_sketch one_step(8, 5, 3);  // 8 words, halving every 24 additions
  count_min_sketch one_by_one(8, 5, 3);
  std::mt19937 rng(17);
  std::uint64_t halvings_crossed = 0, saturated_runs = 0;
  for (int op = 0; op < 3000; ++op) {
    const std::uint32_t h = keys[rng() % 40];  // 40 keys: hot enough to saturate
    const std::uint64_t times = 1 + rng() % (op % 3 == 0 ? 60 : 5);
    const std::uint64_t before = one_by_one.additions();
    std::uint64_t added = 0;
    for (std::uint64_t t = 0; t < times; ++t) added += one_by_one.increment(h) ? 1 : 0;
    halvings_crossed += one_by_one.additions() < before + added ? 1 : 0;
    saturated_runs += added < times ? 1 : 0;
    REQUIRE(one_step.increment(h, times) == added);
    REQUIRE(one_step.additions() == one_by_one.additions());
    for (const auto k : keys) REQUIRE(one_step.estimate(k) == one_by_one.estimate(k));
  }
  CHECK(halvings_crossed > 100);  // the cases that matter were exercised
  CHECK(saturated_runs > 100);
  CHECK(one_step.increment(keys[0], 0) == 0);
}
