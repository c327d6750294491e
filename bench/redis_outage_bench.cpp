// Redis outages under a cache_aside read path: origin loads and request latency while Redis is up,
// killed, restarted, stopped and resumed, with redis_store's circuit breaker at its defaults and
// with it effectively off.
//
// Starts its own redis-server (from PATH) in a temporary directory on a unix socket (--save ''
// --appendonly no), killed at the end, also when the run fails. For each mode (breaker: the
// default breaker_options, failures_to_open 5, open_for 1 s; no breaker: failures_to_open =
// 2^31 - 1, so it never opens), a fresh server is started, a cache_aside<redis_store> is made
// (command_timeout = connect_timeout = --timeout-ms, default 50; default_ttl 60 s) and every one of
// --keys keys (default 1,000) is put, then --threads threads (default 4) call get_or_load() on
// uniformly drawn keys back to back while the main thread walks through five phases of
// --phase-ms each (default 2,000):
//   up         Redis answers; reads are hits.
//   killed     SIGKILL: connects fail at once (ECONNREFUSED on the unix socket).
//   restarted  a fresh, empty server on the same socket: reads miss and reload.
//   stopped    SIGSTOP: connects complete into the listen backlog, every command runs into
//              command_timeout. This is where the breaker matters.
//   resumed    SIGCONT: the server answers again (and executes what was queued meanwhile).
// The origin is a sleep of --origin-us (default 200) inside the loader, timed and counted; each
// request is timed around get_or_load(). Per phase: requests, origin loads, request p50/p99/max
// against the origin's own p50/p99 in that phase, and the store's timeouts, connection errors and
// fast failures (calls the open breaker refused), and how long into the phase the first Redis hit
// came (polled every millisecond).
//
// The target: with Redis down and the breaker open, request p99 stays within 1 ms of the
// origin's own p99.
//
//   cachet_bench_redis_outage [--threads 4] [--keys 1000] [--phase-ms 2000] [--origin-us 200]
//                             [--timeout-ms 50]
#include <algorithm>
#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/redis/redis_store.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "redis_bench_server.hpp"
#include "zipf.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using server = cachet_bench::redis_child;
using string_store = cachet::redis_store<std::string, std::string>;
using cache_type = cachet::cache_aside<string_store>;

// A thread stops after this many requests in all, whatever the phase.
constexpr std::uint64_t k_max_requests_per_thread = 20'000'000;

struct config {
  int threads = 4;
  int keys = 1000;
  int phase_ms = 2000;
  int origin_us = 200;
  int timeout_ms = 50;
};

enum phase : int { up, killed, restarted, stopped, resumed, k_phases };
constexpr const char* k_phase_names[k_phases] = {"up", "killed", "restarted", "stopped", "resumed"};

std::string key_of(int i) {
  std::string k = "item:";
  k += std::to_string(i);
  return k;
}

// Latencies in ns, saturated at 2^32 - 1 (4.3 s, beyond any request here).
std::uint32_t ns_since(steady::time_point t0) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0).count();
  return static_cast<std::uint32_t>(std::min<std::int64_t>(ns, UINT32_MAX));
}

struct thread_log {
  std::vector<std::uint32_t> request[k_phases];
  std::vector<std::uint32_t> origin[k_phases];
  std::uint64_t empty = 0;  // requests that got no value (must stay 0: the origin always answers)
};

// The value at quantile q (nearest rank) of sorted `v`, in microseconds.
double pct_us(const std::vector<std::uint32_t>& v, double q) {
  if (v.empty()) return 0;
  const auto i = std::min(v.size() - 1, static_cast<std::size_t>(q * double(v.size() - 1) + 0.5));
  return v[i] / 1000.0;
}

// One mode: a fresh server (restarted), a fresh store, five phases. Returns false on failure.
bool run_mode(server& srv, const config& cfg, bool breaker) {
  srv.restart();
  cachet::redis_options o;
  o.unix_socket = srv.socket();
  o.key_prefix = "outage:";
  o.default_ttl = 60s;
  o.command_timeout = std::chrono::milliseconds(cfg.timeout_ms);
  o.connect_timeout = std::chrono::milliseconds(cfg.timeout_ms);
  o.pool_size = static_cast<std::size_t>(cfg.threads) + 1;
  if (!breaker) o.breaker.failures_to_open = 0x7fffffffu;
  cache_type cache(o);

  std::vector<std::string> keys;
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < cfg.keys; ++i) {
    keys.push_back(key_of(i));
    items.emplace_back(keys.back(), std::string(100, 'v'));
  }
  for (cachet::put_result r :
       cache.store().put_all(std::span<const std::pair<std::string, std::string>>(items))) {
    if (!cachet::stored(r)) {
      std::fprintf(stderr, "could not fill Redis\n");
      return false;
    }
  }

  std::atomic<int> current{up};
  std::vector<thread_log> logs(static_cast<std::size_t>(cfg.threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < cfg.threads; ++t) {
    pool.emplace_back([&, t] {
      thread_log& log = logs[static_cast<std::size_t>(t)];
      for (auto& v : log.request) v.reserve(1 << 16);
      cachet_bench::splitmix64 rng(static_cast<std::uint64_t>(t) + 7);
      int p = up;
      auto origin = [&](const std::string&) -> std::optional<std::string> {
        const auto t0 = steady::now();
        std::this_thread::sleep_for(std::chrono::microseconds(cfg.origin_us));
        log.origin[p].push_back(ns_since(t0));
        return std::string(100, 'v');
      };
      for (std::uint64_t n = 0; n < k_max_requests_per_thread; ++n) {
        p = current.load(std::memory_order_acquire);
        if (p < 0) break;
        const std::string& key = keys[rng.next() % keys.size()];
        const auto t0 = steady::now();
        const std::optional<std::string> v = cache.get_or_load(key, origin);
        log.request[p].push_back(ns_since(t0));
        if (!v) ++log.empty;
      }
    });
  }

  // The phases, driven from this thread (the one that owns the server).
  cachet::redis_stats at[k_phases + 1];
  double first_hit_ms[k_phases];
  double breaker_closed_ms[k_phases];
  bool ok = true;
  double action_ms[k_phases] = {};
  for (int p = up; p < k_phases && ok; ++p) {
    // The phase starts just before its action: what the action causes is counted in it.
    at[p] = cache.store().stats();
    current.store(p, std::memory_order_release);
    const auto start = steady::now();
    const auto end = start + std::chrono::milliseconds(cfg.phase_ms);
    try {
      if (p == killed) srv.kill();
      if (p == restarted) srv.restart();
      if (p == stopped) srv.pause();
      if (p == resumed) srv.resume();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "phase %s: %s\n", k_phase_names[p], e.what());
      ok = false;
      break;
    }
    action_ms[p] = std::chrono::duration<double, std::milli>(steady::now() - start).count();
    first_hit_ms[p] = -1;
    breaker_closed_ms[p] = -1;
    while (steady::now() < end) {
      std::this_thread::sleep_for(1ms);
      const cachet::redis_stats s = cache.store().stats();
      const double ms = std::chrono::duration<double, std::milli>(steady::now() - start).count();
      if (first_hit_ms[p] < 0 && s.hits > at[p].hits) first_hit_ms[p] = ms;
      if (breaker_closed_ms[p] < 0 && s.breaker_closed > at[p].breaker_closed) {
        breaker_closed_ms[p] = ms;
      }
    }
  }
  current.store(-1, std::memory_order_release);
  srv.resume();  // a stopped server (a failed phase) must not hold the readers in timeouts
  for (std::thread& th : pool) th.join();
  if (!ok) return false;
  at[k_phases] = cache.store().stats();

  std::printf(
      "\n%s (command_timeout %d ms, %d threads, %d keys, origin sleep %d us, %d ms a phase)\n",
      breaker ? "breaker on (failures_to_open 5, open_for 1 s)"
              : "breaker off (failures_to_open 2^31-1)",
      cfg.timeout_ms, cfg.threads, cfg.keys, cfg.origin_us, cfg.phase_ms);
  std::printf("%-9s %8s %8s %8s | %9s %9s %9s | %9s %9s | %9s | %6s %6s %7s %5s | %8s %8s\n",
              "phase", "requests", "loads", "hits", "req p50", "req p99", "req max", "orig p50",
              "orig p99", "p99-orig", "t/outs", "conn", "fast", "opens", "1st hit", "closed");
  std::uint64_t empty = 0;
  for (const thread_log& l : logs) empty += l.empty;
  for (int p = up; p < k_phases; ++p) {
    std::vector<std::uint32_t> req;
    std::vector<std::uint32_t> orig;
    for (const thread_log& l : logs) {
      req.insert(req.end(), l.request[p].begin(), l.request[p].end());
      orig.insert(orig.end(), l.origin[p].begin(), l.origin[p].end());
    }
    std::sort(req.begin(), req.end());
    std::sort(orig.begin(), orig.end());
    const cachet::redis_stats& a = at[p];
    const cachet::redis_stats& b = at[p + 1];
    char first_hit[32] = "-";
    char closed[32] = "-";
    if (first_hit_ms[p] >= 0)
      std::snprintf(first_hit, sizeof first_hit, "%.0f ms", first_hit_ms[p]);
    if (breaker_closed_ms[p] >= 0) {
      std::snprintf(closed, sizeof closed, "%.0f ms", breaker_closed_ms[p]);
    }
    char diff[32] = "-";
    if (!orig.empty()) {
      std::snprintf(diff, sizeof diff, "%+.0f", pct_us(req, 0.99) - pct_us(orig, 0.99));
    }
    std::printf(
        "%-9s %8zu %8zu %8llu | %9.0f %9.0f %9.0f | %9.0f %9.0f | %9s | %6llu %6llu %7llu %5llu "
        "| %8s %8s\n",
        k_phase_names[p], req.size(), orig.size(), static_cast<unsigned long long>(b.hits - a.hits),
        pct_us(req, 0.50), pct_us(req, 0.99), req.empty() ? 0.0 : req.back() / 1000.0,
        pct_us(orig, 0.50), pct_us(orig, 0.99), diff,
        static_cast<unsigned long long>(b.timeouts - a.timeouts),
        static_cast<unsigned long long>(b.connection_errors - a.connection_errors),
        static_cast<unsigned long long>(b.fast_failures - a.fast_failures),
        static_cast<unsigned long long>(b.breaker_opened - a.breaker_opened), first_hit, closed);
  }
  std::printf(
      "(latencies in us; p99-orig: request p99 minus the origin's p99 in that phase; 1st hit and "
      "closed: ms into the phase; the restart took %.0f ms of its phase)\n",
      action_ms[restarted]);
  std::fflush(stdout);
  if (empty != 0) {
    std::fprintf(stderr, "%llu requests got no value\n", static_cast<unsigned long long>(empty));
    return false;
  }
  return true;
}

config parse(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(std::string("missing value for ").append(a));
    const int v = std::stoi(argv[i + 1]);
    if (a == "--threads") {
      c.threads = v;
    } else if (a == "--keys") {
      c.keys = v;
    } else if (a == "--phase-ms") {
      c.phase_ms = v;
    } else if (a == "--origin-us") {
      c.origin_us = v;
    } else if (a == "--timeout-ms") {
      c.timeout_ms = v;
    } else {
      throw std::invalid_argument(std::string("unknown option ").append(a));
    }
  }
  if (c.threads < 1 || c.threads > 64) throw std::invalid_argument("--threads must be in [1, 64]");
  if (c.keys < 1) throw std::invalid_argument("--keys must be positive");
  if (c.phase_ms < 100 || c.phase_ms > 60'000) {
    throw std::invalid_argument("--phase-ms must be in [100, 60000]");
  }
  if (c.origin_us < 0 || c.origin_us > 1'000'000) {
    throw std::invalid_argument("--origin-us must be in [0, 1000000]");
  }
  if (c.timeout_ms < 1 || c.timeout_ms > 10'000) {
    throw std::invalid_argument("--timeout-ms must be in [1, 10000]");
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const config cfg = parse(argc, argv);
    server srv;  // killed by its destructor on every way out of this block, paused or not
    for (bool breaker : {true, false}) {
      if (!run_mode(srv, cfg, breaker)) {
        std::fprintf(stderr, "run failed (%s)\n", breaker ? "breaker on" : "breaker off");
        return 1;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cachet_bench_redis_outage: %s\n", e.what());
    return 1;
  }
  return 0;
}
