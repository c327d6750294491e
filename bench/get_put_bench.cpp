// Concurrent get/put throughput, in the spirit of Caffeine's GetPutBenchmark.
//
// Setup:
//  * 2^16 distinct uint64 keys [0, 2^16); accesses follow a scrambled Zipf
//    distribution (s = 0.99), pre-generated into one 2^20-entry array that the
//    threads walk from different offsets, so key generation is not timed.
//  * Every cache is prefilled with all 2^16 keys and has room for 2 x 2^16
//    entries, so reads are hits and writes replace existing entries: this
//    measures the cost of the concurrency/bookkeeping, not the miss path or
//    the eviction policy's hit rate.
//  * Workloads: read100, read75_write25, write100 (writes are put(k, k)), and miss100: reads
//    of 2^16 keys that are never put (the same Zipf stream, offset past the prefilled keys), the
//    negative lookups of a service whose callers ask for rows that do not exist; hot100: every
//    read asks for one key, the hot key that an in-process cache exists to absorb (it scales
//    with the threads only if a hit writes no line the other readers read).
//  * Threads 1, 2, 4 (or those CACHET_BENCH_THREADS lists) share one cache
//    per (cache, workload); items/s is the aggregate over all threads, measured in real time.
//
// Benchmark names are <workload>/<cache>/real_time/threads:<n>. The counter `miss_rate` must
// read 0 for read100, read75_write25 and hot100 (1 for miss100); anything else means the prefill
// did not stick (e.g. a shard evicted) and the numbers are not comparable.
//
// CI smoke run (./quickstart bench): CACHET_BENCH_THREADS=1,2 cachet_bench_getput
// --benchmark_min_time=0.02 (about 20 s).
#include <benchmark/benchmark.h>

#include <cachet/cachet.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "baselines.hpp"
#include "zipf.hpp"

namespace {

using key_type = std::uint64_t;
using value_type = std::uint64_t;

constexpr std::size_t kKeyCount = std::size_t{1} << 16;  // distinct keys
constexpr std::size_t kCapacity = 2 * kKeyCount;          // > key count: no evictions
constexpr std::size_t kLog2StreamSize = 20;               // 2^20 pre-generated accesses
constexpr std::size_t kBatch = 1024;                      // operations per benchmark iteration
constexpr double kZipfTheta = 0.99;
constexpr key_type kHotKey = 1;  // hot100's one key (prefilled, like every key below kKeyCount)
constexpr std::uint64_t kSeed = 0x5eedcace7ULL;
// Threads 1, 2, 4 unless CACHET_BENCH_THREADS lists others ("1,2,8,16"; bench/ratios.py sets it
// from its --threads), for scaling runs on larger machines.
std::vector<int> thread_counts() {
  std::vector<int> counts;
  if (const char* env = std::getenv("CACHET_BENCH_THREADS")) {
    for (const char* p = env; *p != '\0';) {
      char* end = nullptr;
      const long n = std::strtol(p, &end, 10);
      if (end == p || n < 1 || n > 1024 || (*end != ',' && *end != '\0')) {
        std::fprintf(stderr, "CACHET_BENCH_THREADS: expected a list like 1,2,8, got \"%s\"\n", env);
        std::exit(2);
      }
      counts.push_back(static_cast<int>(n));
      p = *end == ',' ? end + 1 : end;
    }
  }
  if (counts.empty()) counts = {1, 2, 4};
  return counts;
}
const std::vector<int> kThreadCounts = thread_counts();

const cachet_bench::key_stream& keys() {
  static const cachet_bench::key_stream stream(kKeyCount, kLog2StreamSize, kSeed, kZipfTheta);
  return stream;
}

// ---------------------------------------------------------------------------
// Workloads: how many of every 4 operations are reads.
// ---------------------------------------------------------------------------
enum class workload { read100, read75_write25, write100, miss100, hot100 };

struct workload_info {
  workload kind;
  const char* name;
};

constexpr workload_info kWorkloads[] = {
    {workload::read100, "read100"},
    {workload::read75_write25, "read75_write25"},
    {workload::write100, "write100"},
    {workload::miss100, "miss100"},
    {workload::hot100, "hot100"},
};

// ---------------------------------------------------------------------------
// One shared cache instance at a time. Benchmarks run one after another, and
// all threads of one run (and all thread counts of the same (cache, workload))
// ask for the same id, so the first thread to arrive builds and prefills it
// before the timed loop starts; a new id frees the previous cache first, which
// keeps the process small. Code before the `for (auto _ : state)` loop is not
// timed, and in benchmark 1.7.1 all threads enter that loop together.
// ---------------------------------------------------------------------------
struct shared_slot {
  std::mutex mutex;
  std::string id;
  std::shared_ptr<void> cache;
  std::size_t prefill_misses = 0;
};

shared_slot& slot() {
  static shared_slot s;
  return s;
}

template <class Cache>
struct cache_kind {
  std::string name;   // e.g. "cachet_lru"
  std::string label;  // shown by SetLabel
  std::function<std::unique_ptr<Cache>()> make;
  std::vector<workload> workloads;  // empty = all
};

template <class Cache>
std::pair<Cache*, std::size_t> acquire(const std::string& id, const cache_kind<Cache>& kind) {
  shared_slot& s = slot();
  std::lock_guard lock(s.mutex);
  if (s.id != id) {
    s.cache.reset();  // free the previous benchmark's cache before building the next one
    s.id.clear();
    std::shared_ptr<Cache> cache = kind.make();
    for (key_type k = 0; k < kKeyCount; ++k) cache->put(k, k);
    std::size_t misses = 0;
    for (key_type k = 0; k < kKeyCount; ++k) misses += cache->get(k).has_value() ? 0 : 1;
    if (misses != 0) {
      std::fprintf(stderr, "warning: %s: %zu of %zu prefilled keys missing after prefill\n",
                   kind.name.c_str(), misses, kKeyCount);
    }
    s.cache = std::move(cache);
    s.prefill_misses = misses;
    s.id = id;
  }
  return {static_cast<Cache*>(s.cache.get()), s.prefill_misses};
}

// ---------------------------------------------------------------------------
// The benchmark body, shared by all caches.
// ---------------------------------------------------------------------------
template <workload W, class Cache>
void run_batches(benchmark::State& state, Cache& cache) {
  const auto& stream = keys();
  const std::uint64_t* const data = stream.data();
  const std::size_t mask = stream.mask();
  std::size_t index =
      stream.offset_for(static_cast<std::size_t>(state.thread_index()),
                        static_cast<std::size_t>(state.threads()));
  std::size_t reads = 0;
  std::size_t misses = 0;

  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      key_type key = data[index++ & mask];
      bool is_read = false;
      if constexpr (W == workload::read100) {
        is_read = true;
      } else if constexpr (W == workload::miss100) {
        is_read = true;
        key += kKeyCount;  // never put
      } else if constexpr (W == workload::read75_write25) {
        is_read = (i & 3) != 3;
      } else if constexpr (W == workload::hot100) {
        is_read = true;
        key = kHotKey;
      }
      if (is_read) {
        auto value = cache.get(key);
        misses += value.has_value() ? 0 : 1;
        benchmark::DoNotOptimize(value);
        ++reads;
      } else {
        cache.put(key, key);
      }
    }
  }

  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(kBatch));
  // Averaged over threads: the fraction of this run's reads that missed.
  state.counters["miss_rate"] = benchmark::Counter(
      reads == 0 ? 0.0 : static_cast<double>(misses) / static_cast<double>(reads),
      benchmark::Counter::kAvgThreads);
}

template <class Cache>
void bench_body(benchmark::State& state, const cache_kind<Cache>& kind, workload w,
                const std::string& id) {
  auto [cache, prefill_misses] = acquire(id, kind);
  state.SetLabel(kind.label);
  if (prefill_misses != 0) {
    state.SkipWithError("prefill did not keep all keys; results would not be all-hit");
    for (auto _ : state) {
    }
    return;
  }
  switch (w) {
    case workload::read100: run_batches<workload::read100>(state, *cache); break;
    case workload::read75_write25: run_batches<workload::read75_write25>(state, *cache); break;
    case workload::write100: run_batches<workload::write100>(state, *cache); break;
    case workload::miss100: run_batches<workload::miss100>(state, *cache); break;
    case workload::hot100: run_batches<workload::hot100>(state, *cache); break;
  }
}

template <class Cache>
void register_kind(cache_kind<Cache> kind_in) {
  auto kind = std::make_shared<const cache_kind<Cache>>(std::move(kind_in));
  for (const auto& w : kWorkloads) {
    if (!kind->workloads.empty()) {
      bool wanted = false;
      for (workload x : kind->workloads) wanted = wanted || x == w.kind;
      if (!wanted) continue;
    }
    const std::string id = std::string(w.name) + "/" + kind->name;
    auto* b = benchmark::RegisterBenchmark(
        id.c_str(), [kind, wk = w.kind, id](benchmark::State& state) {
          bench_body(state, *kind, wk, id);
        });
    for (int t : kThreadCounts) b->Threads(t);
    b->UseRealTime();
  }
}

// ---------------------------------------------------------------------------
// The table of caches.
// ---------------------------------------------------------------------------
template <class Policy>
using cachet_store = cachet::sharded_store<key_type, value_type, Policy>;

template <class Policy>
cache_kind<cachet_store<Policy>> cachet_kind(std::string name, std::string policy,
                                             std::chrono::nanoseconds ttl = {},
                                             std::vector<workload> only = {},
                                             std::size_t shards = 0) {
  std::string label = "cachet::sharded_store<" + policy + "> max_entries=" +
                      std::to_string(kCapacity) +
                      " shards=" + (shards == 0 ? std::string("auto") : std::to_string(shards));
  if (ttl.count() != 0) label += " default_ttl=1h";
  return {std::move(name), std::move(label),
          [ttl, shards] {
            cachet::store_options<key_type, value_type> opts;
            opts.max_entries = kCapacity;
            opts.default_ttl = ttl;
            opts.shards = shards;
            return std::make_unique<cachet_store<Policy>>(std::move(opts));
          },
          std::move(only)};
}

void register_all() {
  register_kind(cachet_kind<cachet::lru>("cachet_lru", "lru"));
  register_kind(cachet_kind<cachet::lfu>("cachet_lfu", "lfu"));
  register_kind(cachet_kind<cachet::fifo>("cachet_fifo", "fifo"));
  register_kind(cachet_kind<cachet::ttl>("cachet_ttl", "ttl"));
  register_kind(cachet_kind<cachet::random>("cachet_random", "random"));
  register_kind(cachet_kind<cachet::sieve>("cachet_sieve", "sieve"));
  register_kind(cachet_kind<cachet::s3fifo>("cachet_s3fifo", "s3fifo"));
  register_kind(cachet_kind<cachet::w_tinylfu>("cachet_w_tinylfu", "w_tinylfu"));
  register_kind(cachet_kind<cachet::w_tinylfu_adaptive>("cachet_w_tinylfu_adaptive",
                                                        "w_tinylfu_adaptive"));
  // TTL on but nothing expires: the cost of deadline checks on the read path.
  register_kind(cachet_kind<cachet::ttl>("cachet_ttl_ttlon", "ttl",
                                         std::chrono::hours(1), {workload::read100}));
  // The old default of 8 shards (4 per hardware thread here), to show what the shard count does
  // to contention on skewed keys.
  register_kind(cachet_kind<cachet::fifo>("cachet_fifo_8shards", "fifo", {}, {workload::read100}, 8));
  register_kind(cachet_kind<cachet::lru>("cachet_lru_8shards", "lru", {}, {workload::read100}, 8));

  using namespace cachet_bench;
  register_kind(cache_kind<mutex_lru<key_type, value_type>>{
      "mutex_lru", "std::mutex + std::list + std::unordered_map, capacity=" + std::to_string(kCapacity),
      [] { return std::make_unique<mutex_lru<key_type, value_type>>(kCapacity); }, {}});
  register_kind(cache_kind<sharded_map<key_type, value_type>>{
      "sharded_map", "64 x (std::mutex + absl::flat_hash_map), no eviction",
      [] { return std::make_unique<sharded_map<key_type, value_type>>(kKeyCount); }, {}});
  register_kind(cache_kind<tbb_lru<key_type, value_type>>{
      "tbb_lru", "tbb::concurrent_lru_cache (loading cache; put == get), capacity=" + std::to_string(kCapacity),
      [] { return std::make_unique<tbb_lru<key_type, value_type>>(kCapacity); },
      // Not miss100: its get loads the key, so only the first read of each key would miss.
      {workload::read100, workload::read75_write25, workload::write100, workload::hot100}});
  register_kind(cache_kind<cuckoo_map<key_type, value_type>>{
      "cuckoo_map", "libcuckoo::cuckoohash_map, no eviction",
      [] { return std::make_unique<cuckoo_map<key_type, value_type>>(kKeyCount); }, {}});
}

}  // namespace

// What one clock read costs: a hit on an entry with a TTL reads the store's clock.
template <class Clock>
void clock_now(benchmark::State& state) {
  const Clock clock{};
  for (auto _ : state) benchmark::DoNotOptimize(clock.now());
  state.SetItemsProcessed(state.iterations());
}

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("clock/steady_clock", clock_now<cachet::steady_clock>);
  benchmark::RegisterBenchmark("clock/coarse_steady_clock", clock_now<cachet::coarse_steady_clock>);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  (void)keys();  // generate the key stream before anything is timed
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // Free the last cache before static destruction.
  slot().cache.reset();
  return 0;
}
