// Gets per second and instructions per get on 64-bit keys, for cachet's lru, lfu, fifo, sieve and
// the hand-rolled mutex_lru (bench/baselines.hpp): GetPut's keys are the integers [0, 2^16), which
// mutex_lru's std::hash (the identity) spreads one per bucket; here the same Zipf 0.99 ranks are
// scrambled to 64-bit keys (bench/RESULTS.md, "A flat node block per bounded shard"). Fills 2^16
// keys into a store of 2^17 entries (default shards), then `rounds` passes of 2^20 gets (with
// RW=1 in the environment, every 4th operation is a put of the same key instead). With
// CAPACITY=n the store (and mutex_lru) holds n entries instead of 2^17: CAPACITY=65536 runs it
// full, as a cache in service runs (a few keys of fuller shards are evicted, so a few gets miss).
// With MISS=1 every get asks for a key that was never put (the same Zipf ranks, scrambled past the
// filled keys): the negative lookups of a service whose callers ask for rows that do not exist.
// Prints M gets/s on stderr. Not built by CMake:
//   g++ -std=c++20 -O3 -DNDEBUG -Iinclude -Ibench bench/scrambled_hits.cpp -o sh
//       $(pkg-config --libs libxxhash) -labsl_hash -labsl_city -labsl_low_level_hash
//       -labsl_raw_hash_set -lpthread   (one command line)
//   ./sh 20 lru            # wall clock; also lfu, fifo, sieve, mutex_lru; a third argument sets
//                          # the shard count
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null ./sh 2 lru   # and 0; the
//                          # difference over 2 x 2^20 gets is the instructions per get
#define CACHET_BENCH_STD_BASELINES_ONLY
#include <cachet/eviction/fifo.hpp>
#include <cachet/eviction/lfu.hpp>
#include <cachet/eviction/lru.hpp>
#include <cachet/eviction/sieve.hpp>
#include <cachet/sharded_store.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "baselines.hpp"
#include "zipf.hpp"

namespace {

template <class Cache>
long run(Cache& c, const std::vector<std::uint64_t>& keys, int rounds, bool writes) {
  for (std::uint64_t k = 0; k < 65536; ++k) c.put(cachet_bench::mix64(k), k);
  long sum = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r) {
    std::size_t j = 0;
    for (std::uint64_t k : keys) {
      if (writes && (++j & 3) == 3) {
        c.put(k, k);
        continue;
      }
      auto v = c.get(k);
      sum += v ? static_cast<long>(*v) : 0;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (rounds > 0) std::fprintf(stderr, "%.1f M/s\n", rounds * keys.size() / s / 1e6);
  return sum;
}

template <class Policy>
long run_store(const std::vector<std::uint64_t>& keys, int rounds, bool writes, std::size_t shards,
               std::size_t capacity) {
  cachet::sharded_store<std::uint64_t, std::uint64_t, Policy> c(
      {.max_entries = capacity, .shards = shards});
  return run(c, keys, rounds, writes);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ROUNDS lru|lfu|fifo|sieve|mutex_lru [SHARDS]\n", argv[0]);
    return 2;
  }
  const int rounds = std::atoi(argv[1]);
  const char* p = argv[2];
  const std::size_t shards = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 0;
  const bool writes = std::getenv("RW") != nullptr;
  const char* cap = std::getenv("CAPACITY");
  const std::size_t capacity = cap != nullptr ? std::strtoul(cap, nullptr, 10) : 131072;
  if (capacity == 0) {
    std::fprintf(stderr, "CAPACITY: expected a positive entry count, got \"%s\"\n", cap);
    return 2;
  }
  const std::uint64_t past = std::getenv("MISS") != nullptr ? 65536 : 0;  // ranks never put
  cachet_bench::zipf_generator zipf(65536);
  cachet_bench::splitmix64 rng(42);
  std::vector<std::uint64_t> keys(std::size_t{1} << 20);
  for (auto& k : keys) k = cachet_bench::mix64(zipf(rng) + past);
  long sum = 0;
  if (std::strcmp(p, "mutex_lru") == 0) {
    cachet_bench::mutex_lru<std::uint64_t, std::uint64_t> c(capacity);
    sum = run(c, keys, rounds, writes);
  } else if (std::strcmp(p, "lru") == 0) {
    sum = run_store<cachet::lru>(keys, rounds, writes, shards, capacity);
  } else if (std::strcmp(p, "lfu") == 0) {
    sum = run_store<cachet::lfu>(keys, rounds, writes, shards, capacity);
  } else if (std::strcmp(p, "sieve") == 0) {
    sum = run_store<cachet::sieve>(keys, rounds, writes, shards, capacity);
  } else if (std::strcmp(p, "fifo") == 0) {
    sum = run_store<cachet::fifo>(keys, rounds, writes, shards, capacity);
  } else {
    std::fprintf(stderr, "unknown cache: %s\n", p);
    return 2;
  }
  std::printf("%ld\n", sum);
}
