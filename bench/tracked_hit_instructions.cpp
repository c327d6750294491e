// Instructions per tracked_store::get against a plain sharded_store::get, counted by callgrind
// (bench/RESULTS.md, "Hot-key tracking cost"): fill both stores with 50,000 keys of a 64K-entry,
// one-shard store, then 400,000 gets of i * 2654435761 % 50000 (uniform: the tracker's worst
// case) through one of them. Subtract the two runs and divide by 400,000. SE is the tracker's
// sample_every. Not built by CMake:
//   g++ -std=c++20 -O3 -DNDEBUG -DSE=64 -Iinclude bench/tracked_hit_instructions.cpp -o hk_64
//       $(pkg-config --libs libxxhash) -labsl_hash -labsl_city -labsl_low_level_hash
//       -labsl_raw_hash_set -lpthread   (one command line)
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null ./hk_64 x   # tracked
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null ./hk_64     # plain
#include <cachet/hot_keys.hpp>
#include <cachet/sharded_store.hpp>
#include <cstdint>
#include <cstdio>

#ifndef SE
#define SE 64
#endif

int main(int argc, char**) {
  using store_t = cachet::sharded_store<std::uint64_t, std::uint64_t>;
  store_t plain({.max_entries = 1 << 16, .shards = 1});
  cachet::tracked_store<store_t> tracked(
      {.sample_every = SE, .capacity = 256},
      store_t::options_type{.max_entries = 1 << 16, .shards = 1});
  for (std::uint64_t i = 0; i < 50000; ++i) {
    plain.put(i, i);
    tracked.put(i, i);
  }
  std::uint64_t x = 0;
  for (std::uint64_t i = 0; i < 400000; ++i) {
    const std::uint64_t k = i * 2654435761u % 50000;
    x += argc == 1 ? *plain.get(k) : *tracked.get(k);
  }
  std::printf("%llu\n", static_cast<unsigned long long>(x));
}
