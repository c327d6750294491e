// Tests for cachet/detail/latency_histogram.hpp: the bucket layout, the documented error bound
// against exact nearest-rank percentiles of a seeded sample, and the edge cases.
#include <algorithm>
#include <array>
#include <atomic>
#include <cachet/detail/latency_histogram.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

namespace {

using cachet::detail::latency_histogram;

constexpr std::uint64_t k_max = std::numeric_limits<std::uint64_t>::max();

// The exact nearest-rank q-quantile of a sorted sample: the value of rank ceil(q * n), in [1, n].
std::uint64_t nearest_rank(const std::vector<std::uint64_t>& sorted, double q) {
  const auto n = static_cast<double>(sorted.size());
  const double r = std::clamp(std::ceil(q * n), 1.0, n);
  return sorted[static_cast<std::size_t>(r) - 1];
}

// The documented bound: never below the exact value, less than 6.25% above it.
bool within_bound(std::uint64_t reported, std::uint64_t exact) {
  return reported >= exact && reported - exact <= exact / 16;
}

}  // namespace

TEST_CASE("latency_histogram: buckets tile the whole uint64 range, each narrower than 1/16",
          "[latency_histogram]") {
  REQUIRE(latency_histogram::lowest_of(0) == 0);
  REQUIRE(latency_histogram::highest_of(latency_histogram::k_buckets - 1) == k_max);
  for (std::size_t i = 0; i < latency_histogram::k_buckets; ++i) {
    const std::uint64_t lo = latency_histogram::lowest_of(i);
    const std::uint64_t hi = latency_histogram::highest_of(i);
    INFO("bucket " << i << " [" << lo << ", " << hi << "]");
    REQUIRE(lo <= hi);
    REQUIRE(latency_histogram::index_of(lo) == i);
    REQUIRE(latency_histogram::index_of(hi) == i);
    REQUIRE(hi - lo <= lo / 16);  // the relative error bound, per bucket
    if (i + 1 < latency_histogram::k_buckets) {
      REQUIRE(hi + 1 == latency_histogram::lowest_of(i + 1));  // no gap, no overlap
    }
  }
  for (std::uint64_t v = 0; v < 32; ++v) {
    REQUIRE(latency_histogram::highest_of(latency_histogram::index_of(v)) == v);  // exact
  }
}

TEST_CASE("latency_histogram: an empty histogram reports 0", "[latency_histogram]") {
  latency_histogram h;
  REQUIRE(h.count() == 0);
  for (double q : {0.0, 0.5, 0.99, 1.0}) REQUIRE(h.percentile(q) == 0);
}

TEST_CASE("latency_histogram: one value is every percentile", "[latency_histogram]") {
  const std::uint64_t v =
      GENERATE(std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{31}, std::uint64_t{32},
               std::uint64_t{1000}, std::uint64_t{123'456'789}, std::uint64_t{1} << 63, k_max);
  latency_histogram h;
  h.record(v);
  REQUIRE(h.count() == 1);
  for (double q : {-1.0, 0.0, 0.01, 0.5, 0.99, 1.0, 2.0, std::nan("")}) {
    INFO("value " << v << ", q " << q);
    REQUIRE(within_bound(h.percentile(q), v));
  }
  if (v < 32) REQUIRE(h.percentile(0.5) == v);
  if (v == k_max) REQUIRE(h.percentile(0.5) == k_max);  // the top bucket ends at the top
}

TEST_CASE("latency_histogram: 0 ns and huge values share a histogram", "[latency_histogram]") {
  latency_histogram h;
  h.record(0);
  h.record(0);
  h.record(k_max);
  REQUIRE(h.percentile(0.0) == 0);
  REQUIRE(h.percentile(0.5) == 0);       // rank 2 of 3
  REQUIRE(h.percentile(0.67) == k_max);  // rank 3 of 3
  REQUIRE(h.percentile(1.0) == k_max);
}

TEST_CASE("latency_histogram: percentiles of a log-uniform sample are within the bound",
          "[latency_histogram]") {
  // Seeded, so deterministic; the bound holds for any sample. Values from 1 ns to ~2^44 ns (~5 h),
  // log-uniform, as load latencies spread over orders of magnitude.
  const std::size_t n =
      GENERATE(std::size_t{1}, std::size_t{7}, std::size_t{100}, std::size_t{100'000});
  std::mt19937_64 rng(0xcac4e7 + n);
  std::uniform_real_distribution<double> log2_of(0.0, 44.0);
  latency_histogram h;
  std::vector<std::uint64_t> sample(n);
  for (auto& v : sample) {
    v = static_cast<std::uint64_t>(std::exp2(log2_of(rng)));
    h.record(v);
  }
  std::sort(sample.begin(), sample.end());
  REQUIRE(h.count() == n);
  for (double q : {0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0}) {
    const std::uint64_t exact = nearest_rank(sample, q);
    const std::uint64_t got = h.percentile(q);
    INFO("n " << n << ", q " << q << ": exact " << exact << ", reported " << got);
    REQUIRE(within_bound(got, exact));
  }
}

TEST_CASE("latency_histogram: records from many threads are all counted", "[latency_histogram]") {
  latency_histogram h;
  constexpr int k_threads = 4;
  constexpr int k_each = 10'000;
  std::atomic<std::uint64_t> p50_seen{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < k_each; ++i) h.record(static_cast<std::uint64_t>(1000 * (t + 1) + i));
    });
  }
  // A reader meanwhile: weakly consistent, but never torn or out of range.
  threads.emplace_back([&] {
    for (int i = 0; i < 100; ++i) p50_seen.store(h.percentile(0.5), std::memory_order_relaxed);
  });
  for (auto& th : threads) th.join();
  REQUIRE(h.count() == std::uint64_t{k_threads} * k_each);
  REQUIRE(p50_seen.load() <= 4000 + k_each + (4000 + k_each) / 16);
}

TEST_CASE("latency_histogram: cumulative counts under Prometheus-style bounds", "[histogram]") {
  latency_histogram h;
  const std::array<std::uint64_t, 3> bounds = {1'000, 10'000, 100'000};
  std::array<std::uint64_t, 3> le{};
  CHECK(h.cumulative(bounds, le) == 0);
  CHECK(le == std::array<std::uint64_t, 3>{0, 0, 0});
  h.record(5);        // exact bucket
  h.record(900);      // its bucket is [896, 927]: under 1,000
  h.record(995);      // its bucket is [992, 1,023], past 1,000: counted under 10,000, not 1,000
  h.record(50'000);   // under 100,000
  h.record(200'000);  // above every bound: only in the total (+Inf)
  CHECK(h.cumulative(bounds, le) == 5);
  CHECK(le == std::array<std::uint64_t, 3>{2, 3, 4});
  // The rule, value by value: counted under b exactly when its bucket's upper bound is <= b.
  for (std::uint64_t v : {5u, 900u, 995u, 50'000u, 200'000u}) {
    const std::uint64_t top = latency_histogram::highest_of(latency_histogram::index_of(v));
    CHECK(top >= v);
    CHECK(top - v <= v / 16);
  }
}
