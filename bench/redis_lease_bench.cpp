// Cross-process stampede on one hot key: origin loads per TTL period and request latency, with and
// without lease_loader.
//
// Starts its own redis-server (from PATH) in a temporary directory on a unix socket (--save ''
// --appendonly no), killed at the end, also when the run fails. For P in --procs (default 2,4)
// and each mode (cache_aside alone, cache_aside + lease_loader), fork()s P worker processes; each
// runs --threads T threads (default 4) that call get_or_load("hot") in a loop for --seconds
// (default 3) through its own cache_aside<redis_store> with a TTL of --ttl-ms (default 200). The
// origin load sleeps --load-ms (default 20) and counts itself with INCR origin_loads. Every
// request's latency goes to a file per worker; the parent merges them.
//
//   cachet_bench_redis_lease [--procs 2,4] [--threads 4] [--seconds 3] [--ttl-ms 200]
//                            [--load-ms 20]
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cachet/cache_aside.hpp>
#include <cachet/redis/lease_loader.hpp>
#include <cachet/redis/redis_store.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "redis_bench_server.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using string_store = cachet::redis_store<std::string, std::string>;

struct config {
  std::vector<int> procs{2, 4};
  int threads = 4;
  int seconds = 3;
  int ttl_ms = 200;
  int load_ms = 20;
};

using server = cachet_bench::redis_child;

// An integer reply (or a decimal string) of one command; -1 on failure.
long long integer(const server& srv, const std::vector<std::string>& args) {
  redisReply* r = srv.command(args);
  long long out = -1;
  if (r != nullptr && r->type == REDIS_REPLY_INTEGER) out = r->integer;
  if (r != nullptr && r->type == REDIS_REPLY_STRING) out = std::atoll(r->str);
  if (r != nullptr) freeReplyObject(r);
  return out;
}

// One worker process: T threads reading "hot" until `end`; writes each request's latency (ns) to
// `out`. Returns false if anything failed.
bool worker(const server& srv, const config& cfg, bool with_lease, steady::time_point start,
            steady::time_point end, const std::filesystem::path& out) {
  cachet::redis_options o;
  o.unix_socket = srv.socket();
  o.key_prefix = "bench:";
  o.default_ttl = std::chrono::milliseconds(cfg.ttl_ms);
  o.pool_size = static_cast<std::size_t>(cfg.threads) + 2;
  cachet::cache_aside<string_store> cache(o);
  auto origin = [&srv, &cfg](const std::string&) -> std::optional<std::string> {
    integer(srv, {"INCR", "origin_loads"});
    std::this_thread::sleep_for(std::chrono::milliseconds(cfg.load_ms));
    return std::string(64, 'v');
  };
  cachet::lease_loader lease(cache.store(), origin,
                             {.lease = std::chrono::milliseconds(cfg.load_ms * 10),
                              .max_wait = std::chrono::milliseconds(cfg.load_ms * 10),
                              .poll_min = 1ms,
                              .poll_max = 5ms});
  std::vector<std::vector<std::uint32_t>> lat(static_cast<std::size_t>(cfg.threads));
  std::vector<std::thread> threads;
  bool ok = true;
  for (int t = 0; t < cfg.threads; ++t) {
    threads.emplace_back([&, t] {
      auto& mine = lat[static_cast<std::size_t>(t)];
      mine.reserve(1 << 18);
      std::this_thread::sleep_until(start);
      while (steady::now() < end) {
        const auto t0 = steady::now();
        const auto v =
            with_lease ? cache.get_or_load("hot", lease) : cache.get_or_load("hot", origin);
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0);
        mine.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(ns.count(), UINT32_MAX)));
        if (!v) ok = false;
      }
    });
  }
  for (auto& th : threads) th.join();
  std::ofstream f(out, std::ios::binary);
  for (const auto& v : lat) {
    f.write(reinterpret_cast<const char*>(v.data()),
            static_cast<std::streamsize>(v.size() * sizeof(std::uint32_t)));
  }
  return ok && f.good();
}

bool run(const server& srv, const config& cfg, int procs, bool with_lease) {
  if (redisReply* r = srv.command({"FLUSHALL"})) freeReplyObject(r);
  const auto start = steady::now() + 300ms;  // CLOCK_MONOTONIC: the same in every process
  const auto end = start + std::chrono::seconds(cfg.seconds);
  std::vector<pid_t> kids;
  std::vector<std::filesystem::path> files;
  for (int p = 0; p < procs; ++p) {
    files.push_back(srv.dir() / std::string("lat.").append(std::to_string(p)));
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      bool ok = false;
      try {
        ok = worker(srv, cfg, with_lease, start, end, files.back());
      } catch (...) {
      }
      ::_exit(ok ? 0 : 1);
    }
    kids.push_back(pid);
  }
  bool ok = true;
  for (pid_t k : kids) {
    int status = 0;
    ::waitpid(k, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  std::vector<std::uint32_t> all;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::uint32_t x = 0;
    while (in.read(reinterpret_cast<char*>(&x), sizeof x)) all.push_back(x);
  }
  if (!ok || all.empty()) return false;
  std::sort(all.begin(), all.end());
  auto pct = [&](double q) {
    return all[std::min(all.size() - 1, static_cast<std::size_t>(q * double(all.size() - 1)))] /
           1000.0;
  };
  const long long loads = integer(srv, {"GET", "origin_loads"});
  const double periods = cfg.seconds * 1000.0 / cfg.ttl_ms;
  std::printf(
      "%-22s P=%d T=%d  origin loads %4lld  per %d ms TTL period %5.2f  requests %8zu  "
      "p50 %8.1f us  p99 %8.1f us  max %8.1f us\n",
      with_lease ? "cache_aside+lease" : "cache_aside", procs, cfg.threads, loads, cfg.ttl_ms,
      double(loads) / periods, all.size(), pct(0.50), pct(0.99), all.back() / 1000.0);
  std::fflush(stdout);
  return true;
}

config parse(int argc, char** argv) {
  config c;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const std::string v = argv[i + 1];
    if (a == "--procs") {
      c.procs.clear();
      std::stringstream ss(v);
      std::string x;
      while (std::getline(ss, x, ',')) c.procs.push_back(std::stoi(x));
    } else if (a == "--threads") {
      c.threads = std::stoi(v);
    } else if (a == "--seconds") {
      c.seconds = std::stoi(v);
    } else if (a == "--ttl-ms") {
      c.ttl_ms = std::stoi(v);
    } else if (a == "--load-ms") {
      c.load_ms = std::stoi(v);
    } else {
      throw std::invalid_argument(std::string("unknown option ").append(a));
    }
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const config cfg = parse(argc, argv);
    server srv;  // killed by its destructor on every way out of this block
    std::printf(
        "one hot key, TTL %d ms, origin load %d ms, %d s per run (lease %d ms, max_wait "
        "%d ms, poll 1..5 ms)\n",
        cfg.ttl_ms, cfg.load_ms, cfg.seconds, cfg.load_ms * 10, cfg.load_ms * 10);
    for (int p : cfg.procs) {
      for (bool with_lease : {false, true}) {
        if (!run(srv, cfg, p, with_lease)) {
          std::fprintf(stderr, "run failed (P=%d, lease=%d)\n", p, int(with_lease));
          return 1;
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
