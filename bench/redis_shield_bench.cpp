// The hot-key shield: how many reads of one hot key reach Redis, with tiered_store's L1 in front
// of it and without.
//
// Starts its own redis-server (from PATH) in a temporary directory on a unix socket (--save ''
// --appendonly no), killed at the end, also when the run fails. For T in --threads (default 1,2)
// and each mode (tiered_store: L1 = sharded_store for --l1-ttl-ms, default 100, L2 = redis_store;
// redis_store alone), fork()s --procs P worker processes (default 2); each runs T threads that
// call get() for --seconds (default 2) on its own store. A read is of the hot key, or with
// probability --background (default 0) of a key drawn from a scrambled Zipf (theta 0.99) over
// --bg-keys (default 1,000) background keys; every key holds a 100-byte value with no TTL.
//
// Counted: reads and their answers in each worker (a miss is an error); the hot key's reads that
// reached Redis, by a thin wrapper around the L2 redis_store that counts get/peek/contains of the
// hot key (so the count is exact per process); and on the server, CONFIG RESETSTAT before the
// workers start, then INFO stats (total_commands_processed, less the measurement's own commands,
// calibrated once at start-up) and INFO commandstats (cmdstat_get calls) after they exit.
//
// The target: with the L1 shield, Redis sees at most one read of the hot key per L1 TTL
// per process. Reported as the hot key's L2 reads per TTL per process (the mean over processes,
// and the largest), and, for the tier, per L1 refresh: the wrapper notes when each hot-key read
// reached L2, and reads less than half a TTL apart count as one refresh (mean, largest group).
//
//   cachet_bench_redis_shield [--procs 2] [--threads 1,2] [--seconds 2] [--l1-ttl-ms 100]
//                             [--background 0] [--bg-keys 1000]
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cachet/redis/redis_store.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tiered_store.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "redis_bench_server.hpp"
#include "zipf.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using server = cachet_bench::redis_child;
using redis_type = cachet::redis_store<std::string, std::string>;

// Each thread stops at the deadline or after this many reads, whichever comes first.
constexpr std::uint64_t k_max_reads_per_thread = 200'000'000;

struct config {
  int procs = 2;
  std::vector<int> threads{1, 2};
  int seconds = 2;
  int l1_ttl_ms = 100;
  double background = 0.0;
  int bg_keys = 1000;
};

const std::string k_hot = "hot";

std::string bg_key(std::uint64_t i) {
  std::string k = "bg:";
  k += std::to_string(i);
  return k;
}

// The L2 of the shield: a redis_store that counts the reads of the hot key that reach it. Meets
// cachet::store by forwarding every member; only the counting is added.
class counted_l2 {
 public:
  using key_type = redis_type::key_type;
  using mapped_type = redis_type::mapped_type;
  using clock_type = redis_type::clock_type;
  using hasher = redis_type::hasher;
  using key_equal = redis_type::key_equal;
  template <class V2>
  using rebind_value = redis_type::rebind_value<V2>;  // uncounted; the bench does not rebind

  counted_l2(cachet::redis_options o, std::string hot)
      : store_(std::move(o)), hot_(std::move(hot)) {}

  std::optional<mapped_type> get(const key_type& k) {
    note(k);
    return store_.get(k);
  }
  std::optional<mapped_type> peek(const key_type& k) {
    note(k);
    return store_.peek(k);
  }
  bool contains(const key_type& k) {
    note(k);
    return store_.contains(k);
  }
  cachet::put_result put(key_type k, mapped_type v) {
    return store_.put(std::move(k), std::move(v));
  }
  template <class Rep, class Period>
  cachet::put_result put(key_type k, mapped_type v, std::chrono::duration<Rep, Period> ttl) {
    return store_.put(std::move(k), std::move(v), ttl);
  }
  template <class Pred>
  cachet::put_result put_if(key_type k, mapped_type v, Pred still_valid) {
    return store_.put_if(std::move(k), std::move(v), std::move(still_valid));
  }
  template <class Rep, class Period, class Pred>
  cachet::put_result put_if(key_type k, mapped_type v, std::chrono::duration<Rep, Period> ttl,
                            Pred still_valid) {
    return store_.put_if(std::move(k), std::move(v), ttl, std::move(still_valid));
  }
  bool erase(const key_type& k) { return store_.erase(k); }
  const clock_type& clock() const noexcept { return store_.clock(); }
  const cachet::redis_options& options() const noexcept { return store_.options(); }
  cachet::redis_stats stats() const noexcept { return store_.stats(); }

  std::uint64_t hot_reads() const noexcept { return hot_reads_.load(std::memory_order_relaxed); }

  // From now on, also note when each hot-key read reached L2 (steady_clock, at most
  // k_max_times of them): how the reads group around L1 expiries.
  void record_times() {
    times_.reserve(k_max_times);
    recording_ = true;
  }
  std::vector<std::int64_t> times() const {
    std::lock_guard<std::mutex> g(mu_);
    return times_;
  }

 private:
  static constexpr std::size_t k_max_times = 1 << 16;

  void note(const key_type& k) {
    if (k != hot_) return;
    hot_reads_.fetch_add(1, std::memory_order_relaxed);
    if (!recording_) return;
    const std::int64_t now = steady::now().time_since_epoch().count();
    std::lock_guard<std::mutex> g(mu_);
    if (times_.size() < k_max_times) times_.push_back(now);
  }

  redis_type store_;
  std::string hot_;
  std::atomic<std::uint64_t> hot_reads_{0};
  bool recording_ = false;  // set before the reader threads start
  mutable std::mutex mu_;
  std::vector<std::int64_t> times_;  // guarded by mu_
};
static_assert(cachet::store<counted_l2>);

using l1_type = cachet::sharded_store<std::string, std::string>;
using tier_type = cachet::tiered_store<l1_type, counted_l2>;

// What one worker process reports back (written raw to a file; parent and child are one binary).
struct worker_result {
  std::uint64_t reads = 0;
  std::uint64_t hot_reads = 0;
  std::uint64_t hot_l2_reads = 0;  // hot-key reads that reached Redis
  std::uint64_t refreshes = 0;     // groups of them (tiered): reads less than half a TTL apart
  std::uint64_t max_per_refresh = 0;
  std::uint64_t l1_hits = 0;
  std::uint64_t failures = 0;  // reads that found nothing, or Redis errors
  std::uint64_t ok = 0;        // 1 when the worker finished
};

// An integer field ("name:123" or "name:calls=123,") of an INFO section; -1 if absent.
long long info_field(const server& srv, const char* section, const std::string& name) {
  redisReply* r = srv.command({"INFO", section});
  long long out = -1;
  if (r != nullptr && r->type == REDIS_REPLY_STRING) {
    const std::string text(r->str, r->len);
    std::string needle = "\n";
    needle += name;
    needle += ':';
    const std::size_t at = text.find(needle);
    if (at != std::string::npos) {
      std::size_t p = at + needle.size();
      while (p < text.size() && (text[p] < '0' || text[p] > '9')) ++p;  // skip "calls="
      out = std::atoll(text.c_str() + p);
    }
  }
  if (r != nullptr) freeReplyObject(r);
  return out;
}

bool simple(const server& srv, const std::vector<std::string>& args) {
  redisReply* r = srv.command(args);
  const bool ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
  if (r != nullptr) freeReplyObject(r);
  return ok;
}

cachet::redis_options l2_options(const server& srv, int threads) {
  cachet::redis_options o;
  o.unix_socket = srv.socket();
  o.key_prefix = "shield:";
  o.pool_size = static_cast<std::size_t>(threads) + 1;
  return o;
}

// One worker process: `threads` threads reading until `end` through the tier (or the bare L2).
worker_result worker(const server& srv, const config& cfg, int threads, bool tiered,
                     const cachet_bench::key_stream& bg, steady::time_point start,
                     steady::time_point end, std::uint64_t seed) {
  tier_type tier({.l1_ttl = std::chrono::milliseconds(cfg.l1_ttl_ms)},
                 std::tuple{cachet::store_options<std::string, std::string>{
                     .max_entries = static_cast<std::size_t>(cfg.bg_keys) * 2 + 64}},
                 std::tuple{l2_options(srv, threads), k_hot});
  std::vector<std::string> names;
  names.reserve(static_cast<std::size_t>(cfg.bg_keys));
  for (int i = 0; i < cfg.bg_keys; ++i) names.push_back(bg_key(static_cast<std::uint64_t>(i)));
  const auto bg_threshold = static_cast<std::uint64_t>(cfg.background * 0x1.0p64);
  const bool any_bg = cfg.background > 0.0;
  if (tiered) tier.l2().record_times();

  std::vector<worker_result> per(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      worker_result& mine = per[static_cast<std::size_t>(t)];
      cachet_bench::splitmix64 rng(seed * 1000 + static_cast<std::uint64_t>(t) + 1);
      std::size_t i = bg.offset_for(static_cast<std::size_t>(t), static_cast<std::size_t>(threads));
      std::this_thread::sleep_until(start);
      while (mine.reads < k_max_reads_per_thread) {
        if ((mine.reads & 15) == 0 && steady::now() >= end) break;
        const bool hot = !any_bg || rng.next() >= bg_threshold;
        const std::string& key = hot ? k_hot : names[bg[i++]];
        const std::optional<std::string> v = tiered ? tier.get(key) : tier.l2().get(key);
        ++mine.reads;
        if (hot) ++mine.hot_reads;
        if (!v) ++mine.failures;
      }
    });
  }
  for (std::thread& th : pool) th.join();
  worker_result out;
  for (const worker_result& r : per) {
    out.reads += r.reads;
    out.hot_reads += r.hot_reads;
    out.failures += r.failures;
  }
  out.hot_l2_reads = tier.l2().hot_reads();
  if (tiered) {
    // One refresh of the hot key's L1 copy = the L2 reads after one expiry: a group of reads
    // less than half an L1 TTL apart.
    std::vector<std::int64_t> ts = tier.l2().times();
    std::sort(ts.begin(), ts.end());
    const std::int64_t gap =
        std::chrono::duration_cast<steady::duration>(std::chrono::milliseconds(cfg.l1_ttl_ms))
            .count() /
        2;
    std::uint64_t in_group = 0;
    for (std::size_t j = 0; j < ts.size(); ++j) {
      if (j == 0 || ts[j] - ts[j - 1] > gap) {
        ++out.refreshes;
        in_group = 0;
      }
      out.max_per_refresh = std::max(out.max_per_refresh, ++in_group);
    }
  }
  out.l1_hits = tier.stats().l1_hits;
  const cachet::redis_stats rs = tier.l2().stats();
  out.failures += rs.timeouts + rs.connection_errors + rs.server_errors;
  out.ok = 1;
  return out;
}

// The commands a measurement itself adds to total_commands_processed: CONFIG RESETSTAT and
// whatever else lands between it and INFO.
long long calibrate(const server& srv) {
  if (!simple(srv, {"CONFIG", "RESETSTAT"})) return -1;
  return info_field(srv, "stats", "total_commands_processed");
}

bool run(const server& srv, const config& cfg, const cachet_bench::key_stream& bg, int threads,
         bool tiered, long long overhead) {
  if (!simple(srv, {"CONFIG", "RESETSTAT"})) return false;
  const auto start = steady::now() + 300ms;  // CLOCK_MONOTONIC: the same in every process
  const auto end = start + std::chrono::seconds(cfg.seconds);
  std::vector<pid_t> kids;
  std::vector<std::filesystem::path> files;
  for (int p = 0; p < cfg.procs; ++p) {
    files.push_back(srv.dir() / std::string("shield.").append(std::to_string(p)));
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t k : kids) ::kill(k, SIGKILL);
      for (pid_t k : kids) ::waitpid(k, nullptr, 0);
      throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      bool ok = false;
      try {
        const worker_result r =
            worker(srv, cfg, threads, tiered, bg, start, end, static_cast<std::uint64_t>(p) + 1);
        std::ofstream f(files.back(), std::ios::binary);
        f.write(reinterpret_cast<const char*>(&r), sizeof r);
        ok = f.good();
      } catch (...) {
      }
      ::_exit(ok ? 0 : 1);  // never unwind: the parent's server object lives in this copy too
    }
    kids.push_back(pid);
  }
  bool ok = true;
  for (pid_t k : kids) {
    int status = 0;
    ::waitpid(k, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  const long long commands = info_field(srv, "stats", "total_commands_processed") - overhead;
  const long long gets = info_field(srv, "commandstats", "cmdstat_get");
  if (!ok) return false;

  worker_result sum;
  double max_per_ttl = 0;
  const double periods = cfg.seconds * 1000.0 / cfg.l1_ttl_ms;
  for (const auto& file : files) {
    worker_result r;
    std::ifstream in(file, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(&r), sizeof r) || r.ok != 1) return false;
    sum.reads += r.reads;
    sum.hot_reads += r.hot_reads;
    sum.hot_l2_reads += r.hot_l2_reads;
    sum.refreshes += r.refreshes;
    sum.max_per_refresh = std::max(sum.max_per_refresh, r.max_per_refresh);
    sum.l1_hits += r.l1_hits;
    sum.failures += r.failures;
    max_per_ttl = std::max(max_per_ttl, double(r.hot_l2_reads) / periods);
  }
  const double secs = cfg.seconds;
  std::printf(
      "%-12s P=%d T=%d  reads/s %10.0f (hot %10.0f)  Redis cmds/s %7.0f  GET/s %7.0f  "
      "hot-key L2 reads %6llu  per TTL per proc: mean %7.2f max %7.2f",
      tiered ? "tiered_store" : "redis_store", cfg.procs, threads, double(sum.reads) / secs,
      double(sum.hot_reads) / secs, double(commands) / secs, double(gets) / secs,
      static_cast<unsigned long long>(sum.hot_l2_reads),
      double(sum.hot_l2_reads) / periods / cfg.procs, max_per_ttl);
  if (tiered) {
    std::printf("  per refresh: mean %.2f max %llu (%llu refreshes)",
                sum.refreshes == 0 ? 0.0 : double(sum.hot_l2_reads) / double(sum.refreshes),
                static_cast<unsigned long long>(sum.max_per_refresh),
                static_cast<unsigned long long>(sum.refreshes));
  }
  std::printf("  failures %llu\n", static_cast<unsigned long long>(sum.failures));
  std::fflush(stdout);
  return sum.failures == 0;
}

std::vector<int> int_list(const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  std::string x;
  while (std::getline(ss, x, ',')) out.push_back(std::stoi(x));
  return out;
}

config parse(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(std::string("missing value for ").append(a));
    const std::string v = argv[i + 1];
    if (a == "--procs") {
      c.procs = std::stoi(v);
    } else if (a == "--threads") {
      c.threads = int_list(v);
    } else if (a == "--seconds") {
      c.seconds = std::stoi(v);
    } else if (a == "--l1-ttl-ms") {
      c.l1_ttl_ms = std::stoi(v);
    } else if (a == "--background") {
      c.background = std::stod(v);
    } else if (a == "--bg-keys") {
      c.bg_keys = std::stoi(v);
    } else {
      throw std::invalid_argument(std::string("unknown option ").append(a));
    }
  }
  if (c.procs < 1 || c.procs > 64) throw std::invalid_argument("--procs must be in [1, 64]");
  if (c.seconds < 1 || c.seconds > 60) throw std::invalid_argument("--seconds must be in [1, 60]");
  if (c.l1_ttl_ms < 1) throw std::invalid_argument("--l1-ttl-ms must be positive");
  if (!(c.background >= 0.0 && c.background < 1.0)) {
    throw std::invalid_argument("--background must be in [0, 1)");
  }
  if (c.bg_keys < 2) throw std::invalid_argument("--bg-keys must be at least 2");
  for (int t : c.threads) {
    if (t < 1 || t > 64) throw std::invalid_argument("--threads must be in [1, 64]");
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const config cfg = parse(argc, argv);
    const cachet_bench::key_stream bg(static_cast<std::uint64_t>(cfg.bg_keys), 16, 42);
    server srv;  // killed by its destructor on every way out of this block
    {
      // Every key once, with no TTL, before any worker forks (this store is gone by then).
      redis_type seed(l2_options(srv, 1));
      const std::string value(100, 'v');
      std::vector<std::pair<std::string, std::string>> items{{k_hot, value}};
      for (int i = 0; i < cfg.bg_keys; ++i) {
        items.emplace_back(bg_key(static_cast<std::uint64_t>(i)), value);
      }
      for (cachet::put_result r :
           seed.put_all(std::span<const std::pair<std::string, std::string>>(items))) {
        if (!cachet::stored(r)) throw std::runtime_error("could not seed Redis");
      }
    }
    const long long overhead = calibrate(srv);
    if (overhead < 0) throw std::runtime_error("CONFIG RESETSTAT / INFO failed");
    std::printf(
        "hot-key shield: %d processes, L1 TTL %d ms, %d s per run, background %.0f%% over %d "
        "Zipf keys; measurement overhead %lld command(s)\n",
        cfg.procs, cfg.l1_ttl_ms, cfg.seconds, cfg.background * 100, cfg.bg_keys, overhead);
    for (int t : cfg.threads) {
      for (bool tiered : {true, false}) {
        if (!run(srv, cfg, bg, t, tiered, overhead)) {
          std::fprintf(stderr, "run failed (T=%d, %s)\n", t, tiered ? "tiered" : "redis");
          return 1;
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cachet_bench_redis_shield: %s\n", e.what());
    return 1;
  }
  return 0;
}
