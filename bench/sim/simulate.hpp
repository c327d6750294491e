// bench/sim/simulate.hpp — replays a trace through cachet's real sharded_store, per policy and
// size.
//
// Purpose: the engine of cachet-sim. Each run builds a
// `cachet::sharded_store<std::uint64_t, std::uint8_t, Policy>` with `{.max_entries = capacity,
// .shards = shards}` and replays the trace: every access is a get(), and a miss put()s the key.
// So the numbers are those of the library's eviction backends as a user would run them, not of a
// separate model. With one shard (the default) the policy runs over the whole cache, exactly as
// defined; with more, each shard runs it over its share (capacity / shards) of the keys it owns.
//
// The policy registry is for_each_policy() below: adding a policy is one line there.
//
// Thread safety: simulate() and run_all() are reentrant; run_all() runs independent runs on its
// own threads, each with its own store, reading the shared trace.
// Exception safety: simulate() throws cachet::invalid_option for a bad capacity/shard count and
// std::bad_alloc; run_all() rethrows the first exception of any run after joining its threads.
//
// The key hash is seeded by the caller (default k_default_seed), not per process as the store's
// default hash is: the same command prints the same numbers on every run. Policies that read the
// hash (w_tinylfu's sketch, s3fifo's ghost, and every policy once there are several shards) move
// by a little from seed to seed; run several seeds to see how much.
//
// Example:
//   cachet_sim::run_result r = cachet_sim::simulate_named("lru", trace.keys, 1000, 1);
//   double hit_ratio = r.hit_ratio();
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <exception>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cachet/clock.hpp"
#include "cachet/eviction/fifo.hpp"
#include "cachet/eviction/lfu.hpp"
#include "cachet/eviction/lru.hpp"
#include "cachet/eviction/no_eviction.hpp"
#include "cachet/eviction/random.hpp"
#include "cachet/eviction/ttl.hpp"
#include "cachet/hash.hpp"
#include "cachet/sharded_store.hpp"
// The policies being added: registered below as soon as their headers exist.
#if __has_include("cachet/eviction/sieve.hpp")
#include "cachet/eviction/sieve.hpp"
#define CACHET_SIM_HAS_SIEVE 1
#endif
#if __has_include("cachet/eviction/s3fifo.hpp")
#include "cachet/eviction/s3fifo.hpp"
#define CACHET_SIM_HAS_S3FIFO 1
#endif
#if __has_include("cachet/eviction/w_tinylfu.hpp")
#include "cachet/eviction/w_tinylfu.hpp"
#define CACHET_SIM_HAS_W_TINYLFU 1
#endif

namespace cachet_sim {

// The policy registry: calls f.template operator()<Policy>(name) for every policy cachet-sim
// knows, in the order `--policy all` runs them. Add a policy with one line here.
template <class F>
void for_each_policy(F&& f) {
  f.template operator()<cachet::lru>("lru");
  f.template operator()<cachet::fifo>("fifo");
  f.template operator()<cachet::lfu>("lfu");
  f.template operator()<cachet::ttl>("ttl");  // no TTLs in a trace: FIFO order
  f.template operator()<cachet::random>("random");
#ifdef CACHET_SIM_HAS_SIEVE
  f.template operator()<cachet::sieve>("sieve");
#endif
#ifdef CACHET_SIM_HAS_S3FIFO
  f.template operator()<cachet::s3fifo>("s3fifo");
#endif
#ifdef CACHET_SIM_HAS_W_TINYLFU
  f.template operator()<cachet::w_tinylfu>("w_tinylfu");
  f.template operator()<cachet::w_tinylfu_adaptive>("w_tinylfu_adaptive");
#endif
  f.template operator()<cachet::no_eviction>("no_eviction");  // keeps the first keys it sees
}

inline std::vector<std::string> policy_names() {
  std::vector<std::string> names;
  for_each_policy([&]<class P>(std::string_view name) { names.emplace_back(name); });
  return names;
}

inline bool is_policy(std::string_view name) {
  bool found = false;
  for_each_policy([&]<class P>(std::string_view n) { found = found || n == name; });
  return found;
}

inline constexpr std::uint64_t k_default_seed = 1;

// The store's key hash in the simulator: splitmix64's finaliser over key + a mixed seed, so every
// seed gives an independent, well-spread hash and a fixed seed a reproducible run. seed() fixes
// the seed of the store's policies (random's draws, w_tinylfu's admission jitter), which would
// otherwise be drawn per process (cachet/hash.hpp); it stays the constant the store used before it
// drew one, so --seed moves the hash alone and earlier figures replay exactly.
struct seeded_hash {
  using is_avalanching = void;  // the store need not mix it again
  std::uint64_t salt = cachet::detail::mix64(k_default_seed);
  seeded_hash() = default;
  explicit seeded_hash(std::uint64_t seed) noexcept : salt(cachet::detail::mix64(seed)) {}
  std::uint64_t operator()(std::uint64_t key) const noexcept {
    return cachet::detail::mix64(key + salt);
  }
  std::uint64_t seed() const noexcept { return 0x5EED0000ULL; }
};

struct run_result {
  std::uint64_t requests = 0;
  std::uint64_t hits = 0;
  double seconds = 0;      // wall time of the replay, store construction and destruction included
  double cpu_seconds = 0;  // CPU time of the replaying thread over the same span
  double hit_ratio() const noexcept {
    return requests == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(requests);
  }
};

// CPU time consumed by the calling thread, in seconds (0 where unavailable).
inline double thread_cpu_seconds() noexcept {
#if defined(CLOCK_THREAD_CPUTIME_ID)
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  }
#endif
  return 0;
}

// Accesses between two updates of the progress counter.
inline constexpr std::size_t k_progress_stride = std::size_t{1} << 16;

// Replays `keys` through a store of `capacity` entries in `shards` shards (a power of two, at most
// capacity) using Policy, with the key hash seeded by `seed`. Adds to *progress every
// k_progress_stride accesses when not null.
template <class Policy>
run_result simulate(std::span<const std::uint64_t> keys, std::size_t capacity, std::size_t shards,
                    std::atomic<std::uint64_t>* progress = nullptr,
                    std::uint64_t seed = k_default_seed) {
  using store_type = cachet::sharded_store<std::uint64_t, std::uint8_t, Policy,
                                           cachet::coarse_steady_clock, seeded_hash>;
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = thread_cpu_seconds();
  std::uint64_t hits = 0;
  {
    store_type store(typename store_type::options_type{.max_entries = capacity, .shards = shards},
                     cachet::coarse_steady_clock{}, seeded_hash(seed));
    for (std::size_t begin = 0; begin < keys.size(); begin += k_progress_stride) {
      const std::size_t end = std::min(keys.size(), begin + k_progress_stride);
      // The hot loop: get() is the access the policy sees (a hit is reported to it, a miss too
      // when it listens); a miss inserts. Nothing else is done per access.
      for (std::size_t i = begin; i < end; ++i) {
        const std::uint64_t k = keys[i];
        if (store.get(k)) {
          ++hits;
        } else {
          store.put(k, 0);
        }
      }
      if (progress != nullptr) progress->fetch_add(end - begin, std::memory_order_relaxed);
    }
  }
  run_result r;
  r.requests = keys.size();
  r.hits = hits;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_seconds = thread_cpu_seconds() - cpu0;
  return r;
}

// simulate() for a policy given by name. Throws std::invalid_argument for an unknown name.
inline run_result simulate_named(std::string_view policy, std::span<const std::uint64_t> keys,
                                 std::size_t capacity, std::size_t shards,
                                 std::atomic<std::uint64_t>* progress = nullptr,
                                 std::uint64_t seed = k_default_seed) {
  run_result r;
  bool found = false;
  for_each_policy([&]<class P>(std::string_view name) {
    if (found || name != policy) return;
    found = true;
    r = simulate<P>(keys, capacity, shards, progress, seed);
  });
  if (!found) throw std::invalid_argument("unknown policy '" + std::string(policy) + "'");
  return r;
}

struct run_spec {
  std::string policy;
  std::size_t capacity = 0;
  std::size_t shards = 1;
  std::uint64_t seed = k_default_seed;
};

// Runs every spec over `keys` on up to `jobs` threads (0 = hardware threads); results in spec
// order. *progress, when given, counts accesses replayed across all runs.
inline std::vector<run_result> run_all(std::span<const std::uint64_t> keys,
                                       const std::vector<run_spec>& specs, unsigned jobs = 0,
                                       std::atomic<std::uint64_t>* progress = nullptr) {
  std::vector<run_result> results(specs.size());
  if (jobs == 0) jobs = std::max(1u, std::thread::hardware_concurrency());
  jobs = static_cast<unsigned>(std::min<std::size_t>(jobs, specs.size()));
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  auto worker = [&] {
    for (;;) {
      const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= specs.size()) return;
      try {
        results[i] = simulate_named(specs[i].policy, keys, specs[i].capacity, specs[i].shards,
                                    progress, specs[i].seed);
      } catch (...) {
        std::lock_guard<std::mutex> g(mu);
        if (!error) error = std::current_exception();
        next.store(specs.size(), std::memory_order_relaxed);  // start nothing more
      }
    }
  };
  if (jobs <= 1) {
    worker();
  } else {
    std::vector<std::jthread> pool;
    pool.reserve(jobs);
    for (unsigned t = 0; t < jobs; ++t) pool.emplace_back(worker);
  }  // the jthreads join here
  if (error) std::rethrow_exception(error);
  return results;
}

// `n` cache sizes from lo to hi (both included), evenly spaced on a log scale and rounded to
// integers; duplicates (tight ranges) are dropped. n == 1 gives {lo}.
inline std::vector<std::size_t> log_spaced(std::size_t lo, std::size_t hi, std::size_t n) {
  std::vector<std::size_t> out;
  if (n == 0 || lo == 0 || hi < lo) return out;
  if (n == 1 || lo == hi) return {lo};
  const double a = std::log(static_cast<double>(lo));
  const double b = std::log(static_cast<double>(hi));
  for (std::size_t i = 0; i < n; ++i) {
    const double x =
        i + 1 == n ? static_cast<double>(hi)
                   : std::exp(a + (b - a) * static_cast<double>(i) / static_cast<double>(n - 1));
    const auto v = static_cast<std::size_t>(std::llround(x));
    if (out.empty() || v > out.back()) out.push_back(v);
  }
  return out;
}

}  // namespace cachet_sim
