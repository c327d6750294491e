// Hit latency of each tier: a sharded_store hit, a tiered_store L1 hit, an L2 hit (redis_store over
// a unix socket, and over loopback TCP), and a miss that reaches Redis and finds nothing.
//
// Starts its own redis-server (from PATH) in a temporary directory. Each row times `--ops` single
// get() calls of one thread (default 200,000 for the in-process rows, 20,000 for the Redis rows),
// one steady_clock reading before and after each, over 1,000 keys with 100-byte values, all
// present (but the miss row). An L2 hit is measured through a tiered_store whose L1 is suspended,
// so it pays exactly what a read that misses L1 pays. The first row is the baseline: the issue's
// target is that an L1 hit costs what a sharded_store hit costs. Prints p50, p99 and the mean in
// nanoseconds.
//
//   cachet_bench_redis_tier_latency [--ops N]
#include <algorithm>
#include <cachet/redis/redis_store.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tiered_store.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "redis_bench_server.hpp"

namespace {

using steady = std::chrono::steady_clock;
using l1_type = cachet::sharded_store<std::string, std::string>;
using l2_type = cachet::redis_store<std::string, std::string>;
using tier_type = cachet::tiered_store<l1_type, l2_type>;

constexpr int k_keys = 1000;

std::string key_of(int i) {
  std::string k = "item:";
  k += std::to_string(i);
  return k;
}

// Times `ops` calls of read(key_i); every call must return a value iff `expect_found`.
template <class Read>
bool row(const char* name, int ops, bool expect_found, Read read) {
  std::vector<std::int64_t> ns(static_cast<std::size_t>(ops));
  for (int i = 0; i < ops; ++i) {
    const std::string k = key_of(i % k_keys);
    const auto t0 = steady::now();
    const bool found = read(k);
    const auto t1 = steady::now();
    if (found != expect_found) {
      std::fprintf(stderr, "%s: key %s %s\n", name, k.c_str(), found ? "found" : "missing");
      return false;
    }
    ns[static_cast<std::size_t>(i)] =
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
  }
  double sum = 0;
  for (std::int64_t x : ns) sum += static_cast<double>(x);
  std::sort(ns.begin(), ns.end());
  const auto at = [&](double q) {
    return ns[std::min(ns.size() - 1,
                       static_cast<std::size_t>(q * static_cast<double>(ns.size())))];
  };
  std::printf("%-34s ops %8d  p50 %9lld ns  p99 %9lld ns  mean %9.0f ns\n", name, ops,
              static_cast<long long>(at(0.50)), static_cast<long long>(at(0.99)),
              sum / static_cast<double>(ops));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int ops = 200'000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--ops") == 0 && i + 1 < argc) {
      ops = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--ops N]\n", argv[0]);
      return 2;
    }
  }
  if (ops < k_keys) ops = k_keys;
  const int redis_ops = std::max(k_keys, ops / 10);
  try {
    cachet_bench::redis_child server;
    const std::string value(100, 'v');
    const cachet::store_options<std::string, std::string> l1_opts{.max_entries = 4 * k_keys};

    l1_type plain(l1_opts);
    tier_type unix_tier(
        {.l1_ttl = std::chrono::hours(1)}, std::tuple{l1_opts},
        std::tuple{cachet::redis_options{.unix_socket = server.socket(), .key_prefix = "lat:"}});
    tier_type tcp_tier({.l1_ttl = std::chrono::hours(1)}, std::tuple{l1_opts},
                       std::tuple{cachet::redis_options{
                           .host = "127.0.0.1", .port = server.port(), .key_prefix = "lat:"}});
    for (int i = 0; i < k_keys; ++i) {
      plain.put(key_of(i), value);
      if (!cachet::stored(unix_tier.put(key_of(i), value))) {
        std::fprintf(stderr, "could not write to Redis\n");
        return 1;
      }
    }
    std::printf("get() latency, one thread, %d keys of %zu-byte values\n", k_keys, value.size());
    bool ok = row("sharded_store hit (baseline)", ops, true,
                  [&](const std::string& k) { return plain.get(k).has_value(); });
    ok = ok && row("tiered_store L1 hit", ops, true,
                   [&](const std::string& k) { return unix_tier.get(k).has_value(); });
    unix_tier.suspend_local();
    tcp_tier.suspend_local();
    ok = ok && row("tiered_store L2 hit (unix socket)", redis_ops, true,
                   [&](const std::string& k) { return unix_tier.get(k).has_value(); });
    ok = ok && row("tiered_store L2 hit (TCP loopback)", redis_ops, true,
                   [&](const std::string& k) { return tcp_tier.get(k).has_value(); });
    ok = ok && row("miss in both tiers (unix socket)", redis_ops, false,
                   [&](const std::string& k) { return unix_tier.get(k + ":absent").has_value(); });
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cachet_bench_redis_tier_latency: %s\n", e.what());
    return 1;
  }
}
