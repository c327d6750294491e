// cachet_demo — every eviction backend of sharded_store under the same read-through workload.
//
// What it does: for each backend, a sharded_store<uint64_t, std::string> whose capacity is 1/8 of
// the key space is driven by 2 threads running the loop a service runs in front of a database:
//     if (auto v = cache.get(key)) use(*v); else cache.put(key, load(key));
// over scrambled-Zipf keys (s = 0.99, YCSB's generator, from bench/zipf.hpp). It prints one aligned
// row per backend: hit ratio, evictions, expirations, rejected puts, size/capacity and requests per
// second. A second block repeats lru and ttl with a default TTL and jitter, so entries also expire;
// the last row shows no_eviction refusing new keys (put_result::rejected_full) once it is full.
//
// Usage: cachet_demo [--seconds X]   (X = seconds per row, default 0.5; total runtime ~8 X + setup)
//
// The demo exits non-zero if a store broke a bound it promises (size() > capacity(), or no_eviction
// evicting), so it doubles as a smoke test. Throughput depends on the machine and on what else runs
// on it; bench/ holds the real benchmarks.
#include <atomic>
#include <cachet/cachet.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../bench/zipf.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t k_key_space = std::uint64_t{1} << 17;  // distinct keys
constexpr std::size_t k_capacity = std::size_t{1} << 14;       // entries the cache may hold
constexpr std::size_t k_log2_stream = 20;                      // 2^20 pre-generated accesses
constexpr double k_zipf_s = 0.99;
constexpr unsigned k_threads = 2;
constexpr std::chrono::milliseconds k_ttl = 50ms;
constexpr double k_jitter = 0.2;

// Bytes of the values read, summed so the copies returned by get() are used.
std::atomic<std::uint64_t> g_sink{0};

// The "database": builds the value for a key (short enough for the small-string buffer).
std::string load(std::uint64_t key) {
  char buf[24] = {'v'};
  const auto [end, ec] = std::to_chars(buf + 1, buf + sizeof buf, key);
  return std::string(buf, ec == std::errc{} ? end : buf + 1);
}

struct row {
  double hit_ratio = 0;
  std::uint64_t evictions = 0;
  std::uint64_t expirations = 0;
  std::uint64_t rejections = 0;
  std::size_t size = 0;
  std::size_t capacity = 0;
  double mreq_per_s = 0;
};

// One pass of read-through requests starting at stream position `pos`; returns the new position.
template <class Store>
std::size_t read_through(Store& store, const cachet_bench::key_stream& keys, std::size_t pos,
                         std::size_t count, std::uint64_t& sink) {
  for (std::size_t n = 0; n < count; ++n) {
    const std::uint64_t k = keys[pos++];
    if (auto v = store.get(k)) {
      sink += v->size();
    } else {
      store.put(k, load(k));
    }
  }
  return pos;
}

template <class Eviction>
row run(const std::vector<cachet_bench::key_stream>& streams,
        const cachet::store_options<std::uint64_t, std::string>& opts, double seconds) {
  cachet::sharded_store<std::uint64_t, std::string, Eviction> store(opts);
  std::uint64_t sink = 0;

  // Warm up single-threaded (two passes over the key space), then count only the steady state.
  read_through(store, streams[0], 0, 2 * k_key_space, sink);
  const cachet::cache_stats before = store.stats();

  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> requests{0};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < k_threads; ++t) {
    workers.emplace_back([&, t] {
      // Each thread is an independent client with its own stream. (Threads sharing one periodic
      // stream at different offsets drift into reading each other's recent keys, which inflates
      // the hit ratio.)
      const cachet_bench::key_stream& keys = streams[t];
      std::size_t pos = 0;
      std::uint64_t local_sink = 0;
      std::uint64_t done = 0;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        pos = read_through(store, keys, pos, 512, local_sink);
        done += 512;
      }
      requests.fetch_add(done, std::memory_order_relaxed);
      g_sink.fetch_add(local_sink, std::memory_order_relaxed);
    });
  }
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true, std::memory_order_relaxed);
  for (auto& w : workers) w.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const cachet::cache_stats after = store.stats();
  row r;
  const std::uint64_t hits = after.hits - before.hits;
  const std::uint64_t gets = hits + (after.misses - before.misses);
  r.hit_ratio = gets == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(gets);
  r.evictions = after.evictions - before.evictions;
  r.expirations = after.expirations - before.expirations;
  r.rejections = after.rejections - before.rejections;
  r.size = store.size();
  r.capacity = store.capacity();
  r.mreq_per_s = static_cast<double>(requests.load()) / elapsed / 1e6;
  g_sink.fetch_add(sink, std::memory_order_relaxed);
  return r;
}

void print_row(const char* name, const row& r) {
  char occupancy[32];
  std::snprintf(occupancy, sizeof occupancy, "%zu/%zu", r.size, r.capacity);
  std::printf("  %-18s %7.1f %%  %11llu  %11llu  %10llu  %13s  %8.2f\n", name, 100.0 * r.hit_ratio,
              static_cast<unsigned long long>(r.evictions),
              static_cast<unsigned long long>(r.expirations),
              static_cast<unsigned long long>(r.rejections), occupancy, r.mreq_per_s);
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--seconds X]   (X in (0, 60]: seconds per row, default 0.5)\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0.5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      char* end = nullptr;
      seconds = std::strtod(argv[++i], &end);
      if (end == argv[i] || *end != '\0' || !(seconds > 0.0 && seconds <= 60.0))
        return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }

  std::vector<cachet_bench::key_stream> keys;
  for (unsigned t = 0; t < k_threads; ++t) {
    keys.emplace_back(k_key_space, k_log2_stream, /*seed=*/0xCAC4E7ULL + t, k_zipf_s);
  }
  const cachet::store_options<std::uint64_t, std::string> plain{.max_entries = k_capacity};
  cachet::store_options<std::uint64_t, std::string> expiring = plain;
  expiring.default_ttl = k_ttl;
  expiring.ttl_jitter = k_jitter;
  const std::size_t shards =
      cachet::sharded_store<std::uint64_t, std::string, cachet::lru>(plain).shard_count();

  std::printf(
      "cachet demo: read-through (get; on a miss, put) by %u threads over %llu scrambled-Zipf "
      "keys\n"
      "(s = %.2f), cache capacity %zu entries (1/%llu of the key space) in %zu shards, %.2f s per "
      "row.\n"
      "Counters are for the timed run only, after a warm-up; M req/s counts requests (a get, plus "
      "a\n"
      "put on a miss) per second, all threads together.\n\n",
      k_threads, static_cast<unsigned long long>(k_key_space), k_zipf_s, k_capacity,
      static_cast<unsigned long long>(k_key_space / k_capacity), shards, seconds);
  std::printf("  %-18s %9s  %11s  %11s  %10s  %13s  %8s\n", "backend", "hit ratio", "evictions",
              "expirations", "rejected", "size/capacity", "M req/s");

  struct named_row {
    const char* name;
    row r;
  };
  std::vector<named_row> rows;
  auto show = [&](const char* name, const row& r) {
    print_row(name, r);
    std::fflush(stdout);
    rows.push_back({name, r});
  };

  std::printf("  no TTL:\n");
  show("lru", run<cachet::lru>(keys, plain, seconds));
  show("lfu", run<cachet::lfu>(keys, plain, seconds));
  show("fifo", run<cachet::fifo>(keys, plain, seconds));
  show("ttl (fifo order)", run<cachet::ttl>(keys, plain, seconds));
  show("random", run<cachet::random>(keys, plain, seconds));
  std::printf("  default_ttl = %lld ms, ttl_jitter = %.1f (each TTL cut by up to %.0f %%):\n",
              static_cast<long long>(k_ttl.count()), k_jitter, 100 * k_jitter);
  show("lru + TTL", run<cachet::lru>(keys, expiring, seconds));
  show("ttl + TTL", run<cachet::ttl>(keys, expiring, seconds));
  std::printf("  never evicts; a put of a new key into a full shard returns rejected_full:\n");
  const row refusing = run<cachet::no_eviction>(keys, plain, seconds);
  show("no_eviction", refusing);

  int failures = 0;
  for (const auto& [name, r] : rows) {
    if (r.size > r.capacity) {
      std::fprintf(stderr, "cachet_demo: %s: size %zu exceeds capacity %zu\n", name, r.size,
                   r.capacity);
      ++failures;
    }
  }
  if (refusing.evictions != 0 || refusing.rejections == 0) {
    std::fprintf(stderr, "cachet_demo: no_eviction evicted %llu entries and rejected %llu puts\n",
                 static_cast<unsigned long long>(refusing.evictions),
                 static_cast<unsigned long long>(refusing.rejections));
    ++failures;
  }
  std::printf(
      "\nttl with no TTL set evicts the oldest insert first, like fifo. With a TTL it evicts the "
      "earliest\n"
      "deadline first; here every entry gets about the same TTL, and at this churn most are "
      "evicted\n"
      "before they expire, whereas lru keeps hot entries until their TTL runs out. Expired entries "
      "are\n"
      "reclaimed on access, by a 4-slot sweep per put, when chosen as victims, or by cleanup().\n");
  return failures == 0 ? 0 : 1;
}
