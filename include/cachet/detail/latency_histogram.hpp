// cachet/detail/latency_histogram.hpp — a fixed-size, lock-free histogram of durations in
// nanoseconds, for percentiles of load latency.
//
// IMPLEMENTATION DETAILS
// The layout is HdrHistogram's (Gil Tene, https://hdrhistogram.org; "HdrHistogram: A High Dynamic
// Range Histogram", AbstractHistogram.java) with 4 sub-bucket bits and the whole uint64_t range:
//   - values 0..31 get one bucket each (exact);
//   - every power-of-two range [2^m, 2^(m+1)) with m >= 5 is cut into 16 equal sub-buckets of width
//     2^(m-4).
// That is 32 + 59 * 16 = 976 buckets, one std::atomic<std::uint64_t> each (7.8 KiB), fixed at
// construction: nothing is allocated, ever. A bucket's width is at most 1/16 of its lowest value,
// so any value in it is within 6.25% of any other.
//
// record(ns) is one relaxed fetch_add on the value's bucket: no lock, no CAS loop, and no shared
// total counter (percentile() sums the buckets), so recording threads only contend when their
// values share a bucket. The bucket index is a bit_width and two shifts.
//
// percentile(q) uses the nearest-rank definition: with n values recorded, the value of rank
// ceil(q * n) in sorted order (rank 1 for q <= 0, rank n for q >= 1). It reports the *upper bound*
// of the bucket holding that value (HdrHistogram's highestEquivalentValue, as its
// getValueAtPercentile does), so for the exact nearest-rank value x the report r satisfies
//   x <= r <= x + x / 16   (integer division; r == x below 32 ns),
// i.e. it never under-reports and over-reports by less than 6.25%. Reading while other threads
// record is weakly consistent: counts only grow, and the answer is a percentile of some set of
// values recorded between the call's start and its end.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace cachet::detail {

class latency_histogram {
 public:
  // Sub-buckets per power of two, as a bit count: 4 bits = 16 sub-buckets = 6.25% relative error.
  static constexpr unsigned k_sub_bits = 4;
  static constexpr std::uint64_t k_sub_buckets = std::uint64_t{1} << k_sub_bits;
  // Values below this get a bucket each.
  static constexpr std::uint64_t k_exact_below = 2 * k_sub_buckets;
  static constexpr std::size_t k_buckets =
      static_cast<std::size_t>(k_exact_below + (64 - k_sub_bits - 1) * k_sub_buckets);

  // Counts one duration. Thread-safe, wait-free, noexcept: one relaxed fetch_add.
  void record(std::uint64_t nanos) noexcept {
    counts_[index_of(nanos)].fetch_add(1, std::memory_order_relaxed);
  }

  // Durations recorded so far (weakly consistent while others record).
  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
    return n;
  }

  // The q-quantile (q in [0, 1]; 0.5 = median, 0.99 = p99) of the recorded durations, in
  // nanoseconds: the upper bound of the bucket holding the nearest-rank value (see above), or 0
  // when nothing was recorded. q <= 0 (or NaN) gives the smallest value's bucket, q >= 1 the
  // largest's. Reads every bucket: O(k_buckets), no allocation.
  std::uint64_t percentile(double q) const noexcept {
    const std::uint64_t n = count();
    if (n == 0) return 0;
    std::uint64_t rank = 1;
    if (q >= 1.0) {
      rank = n;
    } else if (q > 0.0) {
      const double r = std::ceil(q * static_cast<double>(n));
      rank = r < 1.0 ? 1 : (r >= static_cast<double>(n) ? n : static_cast<std::uint64_t>(r));
    }
    std::uint64_t seen = 0;
    std::size_t last = 0;
    for (std::size_t i = 0; i < k_buckets; ++i) {
      const std::uint64_t c = counts_[i].load(std::memory_order_relaxed);
      if (c == 0) continue;
      last = i;
      seen += c;
      if (seen >= rank) return highest_of(i);
    }
    return highest_of(last);  // unreachable: counts only grow between the two passes
  }

  // For Prometheus histogram buckets: out[j] = how many recorded durations fall in buckets whose
  // upper bound is <= bounds[j] (bounds ascending), and the total. A duration is counted under
  // the first bound at or above its bucket's upper bound, so under a bound b it is never above b
  // and may be up to 6.25% below b and counted under the next bound instead. One pass over the
  // buckets; weakly consistent while others record (the total and every out[j] come from the same
  // reads, so they are consistent with each other).
  template <std::size_t N>
  std::uint64_t cumulative(const std::array<std::uint64_t, N>& bounds,
                           std::array<std::uint64_t, N>& out) const noexcept {
    out.fill(0);
    std::uint64_t total = 0;
    std::size_t j = 0;
    for (std::size_t i = 0; i < k_buckets; ++i) {
      while (j < N && highest_of(i) > bounds[j]) out[j++] = total;
      total += counts_[i].load(std::memory_order_relaxed);
    }
    while (j < N) out[j++] = total;
    return total;
  }

  // The bucket a value falls in.
  static constexpr std::size_t index_of(std::uint64_t v) noexcept {
    if (v < k_exact_below) return static_cast<std::size_t>(v);
    const unsigned m = static_cast<unsigned>(std::bit_width(v)) - 1;  // 2^m <= v < 2^(m+1), m >= 5
    const unsigned shift = m - k_sub_bits;
    return static_cast<std::size_t>((m - k_sub_bits + 1) * k_sub_buckets +
                                    ((v >> shift) - k_sub_buckets));
  }

  // The smallest and the largest value that fall in bucket i.
  static constexpr std::uint64_t lowest_of(std::size_t i) noexcept {
    if (i < k_exact_below) return i;
    const std::uint64_t m = i / k_sub_buckets + k_sub_bits - 1;
    const std::uint64_t sub = i % k_sub_buckets;
    return (k_sub_buckets + sub) << (m - k_sub_bits);
  }
  static constexpr std::uint64_t highest_of(std::size_t i) noexcept {
    if (i < k_exact_below) return i;
    const std::uint64_t m = i / k_sub_buckets + k_sub_bits - 1;
    return lowest_of(i) + ((std::uint64_t{1} << (m - k_sub_bits)) - 1);
  }

 private:
  std::array<std::atomic<std::uint64_t>, k_buckets> counts_{};
};

static_assert(latency_histogram::k_buckets == 976);
static_assert(latency_histogram::index_of(~std::uint64_t{0}) == latency_histogram::k_buckets - 1);
static_assert(latency_histogram::highest_of(latency_histogram::k_buckets - 1) == ~std::uint64_t{0});

}  // namespace cachet::detail
