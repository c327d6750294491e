// Instructions per sharded_store::get hit, counted by callgrind (repeatable to the instruction,
// where wall-clock runs on a shared machine are not): fill 32,768 entries of a 64K-entry store,
// then `rounds` passes of get() over every key. Run it with 20 rounds and with 0, and divide the
// difference by 655,360 gets (bench/RESULTS.md, "What time to idle, pinning and the listeners
// cost a hit"). Not built by CMake:
//   g++ -std=c++20 -O3 -DNDEBUG -Iinclude bench/hit_instructions.cpp -o hc
//       $(pkg-config --libs libxxhash) -labsl_hash -labsl_city -labsl_low_level_hash
//       -labsl_raw_hash_set -lpthread   (one command line)
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null ./hc 20 fifo   # and 0; lru,
//   w_tinylfu, w_tinylfu_adaptive
// With a third argument `miss`, the gets ask for the 32,768 keys that were never put: instructions
// per miss.
#include <cachet/eviction/fifo.hpp>
#include <cachet/eviction/lru.hpp>
#include <cachet/eviction/w_tinylfu.hpp>
#include <cachet/sharded_store.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

template <class Policy>
long run(int rounds, bool miss) {
  cachet::sharded_store<long, long, Policy> s({.max_entries = 1 << 16});
  for (long k = 0; k < (1 << 15); ++k) s.put(k, k);
  const long first = miss ? (1 << 15) : 0;  // keys [first, first + 2^15)
  long sum = 0;
  for (int r = 0; r < rounds; ++r) {
    for (long k = first; k < first + (1 << 15); ++k) sum += s.get(k).value_or(1);
  }
  return sum;
}

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 4 && std::strcmp(argv[3], "miss") == 0)) {
    std::fprintf(stderr, "usage: %s ROUNDS fifo|lru|w_tinylfu|w_tinylfu_adaptive [miss]\n",
                 argv[0]);
    return 2;
  }
  const bool miss = argc == 4;
  const int rounds = std::atoi(argv[1]);
  const char* p = argv[2];
  long sum = 0;
  if (std::strcmp(p, "lru") == 0) {
    sum = run<cachet::lru>(rounds, miss);
  } else if (std::strcmp(p, "w_tinylfu") == 0) {
    sum = run<cachet::w_tinylfu>(rounds, miss);
  } else if (std::strcmp(p, "w_tinylfu_adaptive") == 0) {
    sum = run<cachet::w_tinylfu_adaptive>(rounds, miss);
  } else {
    sum = run<cachet::fifo>(rounds, miss);
  }
  std::printf("%ld\n", sum);
}
