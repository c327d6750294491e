// What hot_key_shield costs per get, in the worst case for it: over a local sharded_store (over
// Redis a get is a round trip of tens of microseconds, and a shielded hot key skips it). One
// thread, 100,000 keys in the store, one of them shielded; ns per get, the median of 5 rounds,
// each against a direct get of the same store in the same run (bench/RESULTS.md, "Hot-key
// shield"). Not built by CMake:
//   g++ -std=c++20 -O3 -DNDEBUG -Iinclude bench/shield_bench.cpp -o /tmp/shield_bench
//       $(pkg-config --libs libxxhash) -labsl_hash -labsl_city -labsl_low_level_hash
//       -labsl_raw_hash_set -lpthread   (one command line)
#include <algorithm>
#include <cachet/sharded_store.hpp>
#include <cachet/shield.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {
using clk = std::chrono::steady_clock;
using store_t = cachet::sharded_store<std::uint64_t, std::uint64_t>;
volatile std::uint64_t sink;

template <class F>
double median_ns(std::uint64_t n, F f) {
  std::vector<double> v;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = clk::now();
    f();
    v.push_back(std::chrono::duration<double, std::nano>(clk::now() - t0).count() /
                static_cast<double>(n));
  }
  std::sort(v.begin(), v.end());
  return v[2];
}
}  // namespace

int main() {
  constexpr std::uint64_t k_keys = 100'000, k_n = 2'000'000;
  cachet::hot_key_shield<store_t> shield({.min_share = 0.2, .ttl = std::chrono::hours(1)},
                                         store_t::options_type{.max_entries = 2 * k_keys});
  for (std::uint64_t i = 0; i < k_keys; ++i) shield.store().put(i, i);
  // Make key 7 hot for one window, then let the window roll (a 1 s window on the steady clock).
  const auto start = clk::now();
  while (clk::now() - start < std::chrono::milliseconds(1100)) shield.get(7);
  shield.get(7);
  if (shield.shielded_keys().size() != 1) {
    std::printf("key 7 was not shielded\n");
    return 1;
  }
  store_t& direct = shield.store();
  const double direct_hot = median_ns(k_n, [&] {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *direct.get(7);
    sink = s;
  });
  const double shield_hot = median_ns(k_n, [&] {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *shield.get(7);
    sink = s;
  });
  const double direct_cold = median_ns(k_n, [&] {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *direct.get((i * 2654435761u) % k_keys);
    sink = s;
  });
  const double shield_cold = median_ns(k_n, [&] {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *shield.get((i * 2654435761u) % k_keys);
    sink = s;
  });
  std::printf("ns per get, one thread (shield / direct in this run)\n");
  std::printf("  the shielded key: direct %.1f, shield %.1f (%.2fx)\n", direct_hot, shield_hot,
              shield_hot / direct_hot);
  std::printf("  other keys (random of 100,000): direct %.1f, shield %.1f (%.2fx)\n", direct_cold,
              shield_cold, shield_cold / direct_cold);
}
