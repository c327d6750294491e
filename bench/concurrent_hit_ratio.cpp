// Hit ratio of a store read by several threads at once: a trace (a Zipf 0.99 stream over 2^20
// keys, or ARC-format block lines on stdin) is cut into chunks of 256 accesses, dealt round-robin
// to THREADS threads; each access is a get, and a miss puts the key. With one thread the policy
// hears of every hit; with more, the store's reader gate records a sample of them
// (docs/store.md, "How a hit runs"): the difference is what the sampling costs (bench/RESULTS.md,
// "Hits through a reader gate"). Not built by CMake:
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude -Ibench bench/concurrent_hit_ratio.cpp -o chr
//       $(pkg-config --libs libxxhash) -labsl_hash -labsl_city -labsl_low_level_hash
//       -labsl_raw_hash_set -lpthread   (one command line)
//   ./chr lru 16384 2                   # POLICY CAPACITY THREADS: lru, lfu, sieve, s3fifo,
//                                       # w_tinylfu, w_tinylfu_adaptive
//   zstd -dc ../shared/traces/arc-OLTP.lis.zst | ./chr lru 50000 2 -
#include <atomic>
#include <cachet/eviction/lfu.hpp>
#include <cachet/eviction/lru.hpp>
#include <cachet/eviction/s3fifo.hpp>
#include <cachet/eviction/sieve.hpp>
#include <cachet/eviction/w_tinylfu.hpp>
#include <cachet/sharded_store.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "zipf.hpp"

namespace {
std::vector<std::uint64_t> keys;

template <class P>
double run(std::size_t cap, unsigned threads) {
  cachet::sharded_store<std::uint64_t, std::uint64_t, P> s({.max_entries = cap});
  std::atomic<std::uint64_t> hits{0};
  constexpr std::size_t k_chunk = 256;
  const std::size_t chunks = (keys.size() + k_chunk - 1) / k_chunk;
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::uint64_t h = 0;
      for (std::size_t c = t; c < chunks; c += threads) {
        const std::size_t end = std::min(keys.size(), (c + 1) * k_chunk);
        for (std::size_t i = c * k_chunk; i < end; ++i) {
          if (s.get(keys[i])) {
            ++h;
          } else {
            s.put(keys[i], keys[i]);
          }
        }
      }
      hits += h;
    });
  }
  for (auto& t : ts) t.join();
  return 100.0 * static_cast<double>(hits.load()) / static_cast<double>(keys.size());
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s POLICY CAPACITY THREADS [zipf|-]\n", argv[0]);
    return 2;
  }
  const std::string p = argv[1];
  const std::size_t cap = std::strtoul(argv[2], nullptr, 10);
  const unsigned threads = static_cast<unsigned>(std::atoi(argv[3]));
  const std::string src = argc > 4 ? argv[4] : "zipf";
  if (src == "zipf") {
    cachet_bench::zipf_generator zipf(std::size_t{1} << 20);
    cachet_bench::splitmix64 rng(7);
    keys.resize(std::size_t{1} << 23);
    for (auto& k : keys) k = cachet_bench::mix64(zipf(rng));
  } else {
    std::uint64_t a, n, x, y;
    while (std::cin >> a >> n >> x >> y) {
      for (std::uint64_t b = 0; b < n; ++b) keys.push_back(a + b);
    }
  }
  double r = -1;
  if (p == "lru")
    r = run<cachet::lru>(cap, threads);
  else if (p == "lfu")
    r = run<cachet::lfu>(cap, threads);
  else if (p == "sieve")
    r = run<cachet::sieve>(cap, threads);
  else if (p == "s3fifo")
    r = run<cachet::s3fifo>(cap, threads);
  else if (p == "w_tinylfu")
    r = run<cachet::w_tinylfu>(cap, threads);
  else if (p == "w_tinylfu_adaptive")
    r = run<cachet::w_tinylfu_adaptive>(cap, threads);
  if (r < 0) {
    std::fprintf(stderr, "unknown policy %s\n", p.c_str());
    return 2;
  }
  std::printf("%s cap=%zu threads=%u hit%%=%.2f\n", p.c_str(), cap, threads, r);
}
