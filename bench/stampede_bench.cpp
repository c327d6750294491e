// Hot-key stampede: database loads per TTL period and readers blocked at expiry, with and without
// single-flight, XFetch and stale-while-revalidate.
//
// Scenario. --threads readers (default: 2 x hardware threads, at least 8; a blocked reader sleeps
// on a load, so oversubscribing the cores is the point) read ONE key in a tight loop for --seconds
// per row. A loaded value lives --ttl-ms (default 100). A load takes --load-ms (default 5): a sleep
// standing in for a database round trip, so the loading thread waits and frees its core, as with
// a real query. One row per way of reading the key; each row gets a fresh cache, warmed with one
// load before the threads start (not counted):
//   no_guard      sharded_store with the hand-rolled "get; on a miss, load and put";
//   cache_aside   cache_aside::get_or_load (single-flight);
//   rt beta=0     read_through with xfetch_beta = 0 (single-flight only);
//   xfetch b=...  read_through with xfetch_beta = 1 (the default), 0.25 and 0.1;
//   swr           read_through with xfetch_beta = 0 and stale_while_revalidate = one TTL.
//
// Columns:
//   reads/s     get() calls per second, all threads together.
//   periods     wall time of the row / TTL.
//   loads       database loads run during the row (every one, whether a miss or a refresh).
//   loads/per   loads / periods. Without refresh-ahead one load per TTL + load time, so slightly
//               under 1; a herd shows as one load per thread per period.
//   redund      loads decided on an outdated view: the get() that ran the load began before the
//               newest value was published (its request time < when the latest put returned), so
//               it acted on the value just replaced: a herd member that started late, or a second
//               refresh by a reader that saw the old value before the first refresh's put.
//   peak ld     the most loads in flight at once (the burst at an expiry).
//   blocked     reads that found no live value and went to the load path: they ran a load or
//               waited for another thread's. Counted exactly, not by latency: the row's store is
//               a sharded_store that flags the reading thread when its lookup finds nothing, which
//               is exactly when each pattern goes to its miss path (cross-checked below against the
//               library's own miss counters). An XFetch or stale-while-revalidate refresh is not a
//               blocked read: the refresher was served a live value and chose to reload; it pays
//               the load's latency itself (see "max ms").
//   blk/per     blocked / periods.
//   peak blk    the most readers blocked at once: a counter raised when a lookup finds nothing and
//               lowered when that get() returns. At an expiry without a guard or refresh-ahead,
//               every thread ends up here; it cannot exceed --threads.
//   lead ms     mean over the loads not counted in "redund" of (expiry of the newest value
//               loaded so far - start of the load): > 0 is a refresh ahead of expiry, <= 0 a load
//               after it.
//   p50 us, p99 us, max ms   get() latency (log-linear histogram, 1/16 resolution; max exact).
// Under the table, per row: load time (the sleep plus the wait for a core once it ends), publish
// time (from a load's end until its put returned, i.e. the value became visible: mostly the wait
// for the hot key's shard lock), and the library's own counters. The program exits 1 if a
// library's miss count differs from "blocked".
//
// The clock. Every row's store uses `request_clock`: each reader reads std::chrono::steady_clock
// once per get() and every clock read inside that get() sees that instant, except that a load
// moves it to the load's end (so a value's deadline is exactly load end + TTL, and XFetch's delta
// is the load's duration). Without that, the store's deadline (read at put) and read_through's
// expiry (read just before) differ by the few hundred nanoseconds between two clock reads, and a
// read landing in between would be a read_through miss that the store saw as a hit.
//
// XFetch arithmetic (xfetch.hpp). A read `g` before expiry refreshes with probability
// exp(-g / (beta delta)). At a read rate lambda the first refresh is Gumbel-distributed with mean
// lead G = beta delta (ln(lambda beta delta) + 0.577), printed under the table beside the
// measured lead. The key is then reloaded every TTL + delta - G, i.e. TTL / (TTL + delta - G)
// loads per period: G must be small against the TTL for ~1 load per period, and larger than delta
// for the refresh to land before expiry.
//
// The default run takes about 15 s; CI smoke run: cachet_bench_stampede --seconds 0.3 (3 s).
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cachet/cachet.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct config {
  double seconds = 2.0;  // per row
  int threads = static_cast<int>(std::max(8u, 2 * std::thread::hardware_concurrency()));
  double ttl_ms = 100;
  double load_ms = 5;
  std::string only;  // run only the rows whose name contains this
};
config g_cfg;

std::int64_t steady_ns() { return cachet::steady_clock{}.now().count(); }
std::int64_t ttl_ns() { return static_cast<std::int64_t>(g_cfg.ttl_ms * 1e6); }

// ---------------------------------------------------------------------------
// The per-request clock (see the header comment).
// ---------------------------------------------------------------------------
thread_local std::int64_t tl_now = 0;

struct request_clock {
  std::chrono::nanoseconds now() const noexcept { return std::chrono::nanoseconds(tl_now); }
};
static_assert(cachet::clock<request_clock>);

// ---------------------------------------------------------------------------
// Instrumentation, reset before each row.
// ---------------------------------------------------------------------------
void raise_max(std::atomic<std::int64_t>& m, std::int64_t v) {
  std::int64_t cur = m.load(std::memory_order_relaxed);
  while (cur < v && !m.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

struct counters {
  std::atomic<std::int64_t> loads{0}, loading{0}, peak_loading{0}, load_ns{0}, max_load_ns{0};
  std::atomic<std::int64_t> blocked{0}, waiting{0}, peak_waiting{0};
  // Kept across reset(), so that the warm-up's load counts: the end of the latest load, and when
  // the latest put of a loaded value returned.
  std::atomic<std::int64_t> last_load_end{0}, last_publish{0};
  std::atomic<std::int64_t> lead_sum_ns{0}, lead_count{0}, redundant{0};
  std::atomic<std::int64_t> publish_ns{0}, publishes{0}, max_publish_ns{0};

  void reset() {
    for (auto* a : {&loads, &loading, &peak_loading, &load_ns, &max_load_ns, &blocked, &waiting,
                    &peak_waiting, &lead_sum_ns, &lead_count, &redundant, &publish_ns, &publishes,
                    &max_publish_ns}) {
      a->store(0);
    }
  }
};
counters g;

// The database: a load of the hot key. Returns the load's sequence number as the value.
std::optional<std::uint64_t> query_db() {
  const std::int64_t start = steady_ns();
  const auto n = static_cast<std::uint64_t>(g.loads.fetch_add(1) + 1);
  raise_max(g.peak_loading, g.loading.fetch_add(1) + 1);
  // tl_now is still the request time of the get() that is loading.
  if (tl_now < g.last_publish.load()) {
    g.redundant.fetch_add(1);
  } else if (const std::int64_t prev = g.last_load_end.load(); prev != 0) {
    g.lead_sum_ns.fetch_add(prev + ttl_ns() - start);
    g.lead_count.fetch_add(1);
  }
  std::this_thread::sleep_for(
      std::chrono::nanoseconds(static_cast<std::int64_t>(g_cfg.load_ms * 1e6)));
  g.loading.fetch_sub(1);
  const std::int64_t end = steady_ns();
  g.load_ns.fetch_add(end - start);
  raise_max(g.max_load_ns, end - start);
  raise_max(g.last_load_end, end);
  tl_now = end;  // the caller puts the value at the load's end
  return n;
}

// Set when the current get() found nothing and went to the miss path (see "blocked").
thread_local bool tl_blocked = false;

// A sharded_store that reports a lookup that found no live entry to the reading thread, and times
// how long a loaded value takes to become visible (from the load's end until its put returned:
// every put here follows a load on the same thread). A Store for every pattern: rebind_value keeps
// the wrapper when read_through wraps its values.
template <class K, class V>
class observed_store : public cachet::sharded_store<K, V, cachet::lru, request_clock> {
  using base = cachet::sharded_store<K, V, cachet::lru, request_clock>;

 public:
  template <class V2>
  using rebind_value = observed_store<K, V2>;
  using base::base;

  template <class... Ttl>
  cachet::put_result put(K key, V value, Ttl... ttl) {
    const cachet::put_result r = base::put(std::move(key), std::move(value), ttl...);
    const std::int64_t now = steady_ns();
    const std::int64_t publish = now - tl_now;  // tl_now: the end of the load just made
    raise_max(g.last_publish, now);
    g.publish_ns.fetch_add(publish);
    g.publishes.fetch_add(1);
    raise_max(g.max_publish_ns, publish);
    return r;
  }

  std::optional<V> get(const K& key) {
    std::optional<V> v = base::get(key);
    if (!v && !tl_blocked) {
      tl_blocked = true;
      g.blocked.fetch_add(1);
      raise_max(g.peak_waiting, g.waiting.fetch_add(1) + 1);
    }
    return v;
  }
};

using store_type = observed_store<int, std::uint64_t>;
constexpr int k_hot_key = 42;

// ---------------------------------------------------------------------------
// Latency histogram: exact below 16 ns, then 16 buckets per power of two.
// ---------------------------------------------------------------------------
class histogram {
 public:
  void add(std::uint64_t v) {
    ++counts_[index(v)];
    ++total_;
    max_ = std::max(max_, v);
  }
  void merge(const histogram& o) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
  }
  // Lower bound of the bucket holding the q-quantile.
  std::uint64_t quantile(double q) const {
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank && counts_[i] != 0) return lower_bound(i);
    }
    return max_;
  }
  std::uint64_t max() const { return max_; }
  std::uint64_t total() const { return total_; }

 private:
  static std::size_t index(std::uint64_t v) {
    if (v < 16) return v;
    const int e = std::bit_width(v) - 1;  // >= 4
    return static_cast<std::size_t>((e - 3) * 16) + ((v >> (e - 4)) & 15);
  }
  static std::uint64_t lower_bound(std::size_t i) {
    if (i < 16) return i;
    const std::size_t e = i / 16 + 3;
    return (16 + i % 16) << (e - 4);
  }
  std::array<std::uint64_t, 64 * 16> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------
// One row: warm, run the readers, collect.
// ---------------------------------------------------------------------------
struct row_result {
  std::string name;
  double seconds = 0, reads = 0;
  std::int64_t loads = 0, redundant = 0, peak_loading = 0, blocked = 0, peak_waiting = 0;
  double mean_load_ms = 0, max_load_ms = 0, mean_publish_ms = 0, max_publish_ms = 0, lead_ms = 0;
  histogram latency;
  std::string library;     // the library's own counters, for the cross-check line
  bool consistent = true;  // the library's miss count equals "blocked"
  double beta = 0;
};

template <class Read>
row_result run_row(const std::string& name, Read&& read) {
  tl_now = steady_ns();
  tl_blocked = false;
  if (read() == std::nullopt) std::abort();  // warm-up load, before reset()
  g.reset();

  const int n = g_cfg.threads;
  std::vector<std::unique_ptr<histogram>> hists;
  for (int i = 0; i < n; ++i) hists.push_back(std::make_unique<histogram>());
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bad{0};
  std::latch ready(n + 1);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, h = hists[static_cast<std::size_t>(i)].get()] {
      ready.arrive_and_wait();
      while (!stop.load(std::memory_order_relaxed)) {
        const std::int64_t t0 = steady_ns();
        tl_now = t0;
        tl_blocked = false;
        const std::optional<std::uint64_t> v = read();
        const std::int64_t t1 = steady_ns();
        if (tl_blocked) g.waiting.fetch_sub(1);
        if (!v) bad.fetch_add(1);
        h->add(static_cast<std::uint64_t>(t1 - t0));
      }
    });
  }
  ready.arrive_and_wait();
  const std::int64_t start = steady_ns();
  std::this_thread::sleep_for(std::chrono::duration<double>(g_cfg.seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  const std::int64_t end = steady_ns();
  if (bad.load() != 0) {
    std::fprintf(stderr, "%s: %llu reads returned no value\n", name.c_str(),
                 static_cast<unsigned long long>(bad.load()));
    std::exit(1);
  }

  row_result r;
  r.name = name;
  r.seconds = static_cast<double>(end - start) * 1e-9;
  for (auto& h : hists) r.latency.merge(*h);
  r.reads = static_cast<double>(r.latency.total());
  r.loads = g.loads.load();
  r.redundant = g.redundant.load();
  r.peak_loading = g.peak_loading.load();
  r.blocked = g.blocked.load();
  r.peak_waiting = g.peak_waiting.load();
  r.mean_load_ms =
      r.loads == 0 ? 0
                   : static_cast<double>(g.load_ns.load()) * 1e-6 / static_cast<double>(r.loads);
  r.max_load_ms = static_cast<double>(g.max_load_ns.load()) * 1e-6;
  r.mean_publish_ms = g.publishes.load() == 0 ? 0
                                              : static_cast<double>(g.publish_ns.load()) * 1e-6 /
                                                    static_cast<double>(g.publishes.load());
  r.max_publish_ms = static_cast<double>(g.max_publish_ns.load()) * 1e-6;
  r.lead_ms = g.lead_count.load() == 0 ? 0
                                       : static_cast<double>(g.lead_sum_ns.load()) * 1e-6 /
                                             static_cast<double>(g.lead_count.load());
  return r;
}

// The library's miss count must equal the row's "blocked" (after the warm-up's one miss): the
// program exits non-zero otherwise, as the columns would not mean what the header says.
std::string cross_check(row_result& r, std::uint64_t library_misses_after_warmup) {
  r.consistent = static_cast<std::int64_t>(library_misses_after_warmup) == r.blocked;
  return r.consistent ? "= blocked" : "MISMATCH with blocked";
}

row_result run_no_guard() {
  store_type s({.max_entries = 16, .shards = 1});
  const auto ttl = std::chrono::nanoseconds(ttl_ns());
  row_result r = run_row("no_guard", [&]() -> std::optional<std::uint64_t> {
    std::optional<std::uint64_t> v = s.get(k_hot_key);
    if (!v) {
      v = query_db();
      s.put(k_hot_key, *v, ttl);
    }
    return v;
  });
  const std::uint64_t misses = s.stats().misses - 1;
  r.library = "store misses " + std::to_string(misses) + " " + cross_check(r, misses);
  return r;
}

row_result run_cache_aside() {
  cachet::cache_aside<store_type> c(cachet::store_options<int, std::uint64_t>{
      .max_entries = 16, .shards = 1, .default_ttl = std::chrono::nanoseconds(ttl_ns())});
  auto load = [](const int&) { return query_db(); };
  row_result r = run_row("cache_aside", [&] { return c.get_or_load(k_hot_key, load); });
  const std::uint64_t misses = c.store().stats().misses - 1;
  r.library = "store misses " + std::to_string(misses) + " " + cross_check(r, misses) +
              ", coalesced " + std::to_string(c.load_stats().coalesced) + ", answered " +
              std::to_string(c.load_stats().answered);
  return r;
}

row_result run_read_through(const std::string& name, double beta, bool swr) {
  auto load = [](const int&) { return query_db(); };
  using rt_type = cachet::read_through<store_type, decltype(load)>;
  rt_type::options o;
  o.max_entries = 16;
  o.shards = 1;
  o.ttl = std::chrono::nanoseconds(ttl_ns());
  o.xfetch_beta = beta;
  if (swr) o.stale_while_revalidate = o.ttl;
  o.seed = 0x5eed;
  rt_type rt(o, load);
  row_result r = run_row(name, [&] { return rt.get(k_hot_key); });
  const cachet::read_through_stats st = rt.stats();
  const std::uint64_t misses = st.misses - 1;
  r.library = "read_through misses " + std::to_string(misses) + " " + cross_check(r, misses) +
              ", coalesced " + std::to_string(st.loads.coalesced) + ", answered " +
              std::to_string(st.loads.answered) + ", early refreshes " +
              std::to_string(st.early_refreshes) + ", stale serves " +
              std::to_string(st.stale_serves);
  r.beta = beta;
  return r;
}

void print(const std::vector<row_result>& rows) {
  std::printf("%-12s %8s %7s %6s %9s %6s %7s %8s %7s %8s %8s %7s %7s %7s\n", "row", "reads/s",
              "periods", "loads", "loads/per", "redund", "peak ld", "blocked", "blk/per",
              "peak blk", "lead ms", "p50 us", "p99 us", "max ms");
  for (const row_result& r : rows) {
    const double periods = r.seconds * 1e3 / g_cfg.ttl_ms;
    std::printf(
        "%-12s %7.2fM %7.1f %6lld %9.2f %6lld %7lld %8lld %7.2f %8lld %8.2f %7.2f %7.2f %7.2f\n",
        r.name.c_str(), r.reads / r.seconds * 1e-6, periods, static_cast<long long>(r.loads),
        static_cast<double>(r.loads) / periods, static_cast<long long>(r.redundant),
        static_cast<long long>(r.peak_loading), static_cast<long long>(r.blocked),
        static_cast<double>(r.blocked) / periods, static_cast<long long>(r.peak_waiting), r.lead_ms,
        static_cast<double>(r.latency.quantile(0.5)) * 1e-3,
        static_cast<double>(r.latency.quantile(0.99)) * 1e-3,
        static_cast<double>(r.latency.max()) * 1e-6);
  }
  std::printf(
      "\nload: the %.1f ms sleep plus the wait for a core; publish: from the load's end until its "
      "put returned (the wait for the shard lock); library counters after the warm-up:\n",
      g_cfg.load_ms);
  for (const row_result& r : rows) {
    std::printf("  %-12s load ms mean %5.2f max %5.2f; publish ms mean %5.2f max %5.2f; %s\n",
                r.name.c_str(), r.mean_load_ms, r.max_load_ms, r.mean_publish_ms, r.max_publish_ms,
                r.library.c_str());
  }
  std::printf(
      "\nXFetch: predicted mean lead beta*delta*(ln(lambda*beta*delta) + 0.577), lambda = "
      "reads/s, delta = mean load time:\n");
  for (const row_result& r : rows) {
    if (r.beta <= 0) continue;
    const double lambda = r.reads / r.seconds;
    const double bd = r.beta * r.mean_load_ms * 1e-3;  // seconds
    const double lead = bd * (std::log(lambda * bd) + 0.5772) * 1e3;
    const double periods = r.seconds * 1e3 / g_cfg.ttl_ms;
    const bool met = static_cast<double>(r.loads) / periods <= 1.1 && r.blocked == 0;
    std::printf(
        "  %-12s delta %.2f ms, predicted lead %.1f ms, measured %.1f ms; "
        "target (<= 1.1 loads/period, 0 blocked): %s\n",
        r.name.c_str(), r.mean_load_ms, lead, r.lead_ms, met ? "met" : "NOT met");
  }
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--seconds S per row (2)] [--threads N (max(8, 2 x cores))]\n"
               "          [--ttl-ms T (100)] [--load-ms L (5)] [--only NAME_PART]\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    auto value = [&]() -> double {
      if (i + 1 >= argc) usage(argv[0]);
      char* end = nullptr;
      const double v = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(v > 0)) usage(argv[0]);
      return v;
    };
    if (std::strcmp(argv[i], "--seconds") == 0) {
      g_cfg.seconds = value();
    } else if (std::strcmp(argv[i], "--threads") == 0) {
      g_cfg.threads = static_cast<int>(value());
    } else if (std::strcmp(argv[i], "--ttl-ms") == 0) {
      g_cfg.ttl_ms = value();
    } else if (std::strcmp(argv[i], "--load-ms") == 0) {
      g_cfg.load_ms = value();
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      g_cfg.only = argv[++i];
    } else {
      usage(argv[0]);
    }
  }
  if (g_cfg.threads < 1) usage(argv[0]);
  std::printf(
      "hot-key stampede: %d threads on %u hardware threads, TTL %.0f ms, load %.1f ms, "
      "%.1f s per row\n\n",
      g_cfg.threads, std::thread::hardware_concurrency(), g_cfg.ttl_ms, g_cfg.load_ms,
      g_cfg.seconds);
  const std::vector<std::pair<std::string, std::function<row_result(const std::string&)>>> all = {
      {"no_guard", [](const std::string&) { return run_no_guard(); }},
      {"cache_aside", [](const std::string&) { return run_cache_aside(); }},
      {"rt beta=0", [](const std::string& n) { return run_read_through(n, 0.0, false); }},
      {"xfetch b=1", [](const std::string& n) { return run_read_through(n, 1.0, false); }},
      {"xfetch b=.25", [](const std::string& n) { return run_read_through(n, 0.25, false); }},
      {"xfetch b=.1", [](const std::string& n) { return run_read_through(n, 0.1, false); }},
      {"swr", [](const std::string& n) { return run_read_through(n, 0.0, true); }},
  };
  std::vector<row_result> rows;
  for (const auto& [name, run] : all) {
    if (name.find(g_cfg.only) != std::string::npos) rows.push_back(run(name));
  }
  print(rows);
  for (const row_result& r : rows) {
    if (!r.consistent) return 1;
  }
  return 0;
}
