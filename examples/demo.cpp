// cachet_demo — a product service in front of SQLite, with and without a cache, under load.
//
// What it simulates: a `products` table of 100,001 rows in an in-memory SQLite database, read by 8
// request threads. A query pays a simulated network round trip (a sleep, no lock held) before it
// runs: 300 us, or 2 ms for product 100000, today's deal, an expensive query that every page
// shows. Each thread replays the same key sequence in every configuration: every 4th request reads
// the deal, the others a product drawn by scrambled Zipf (s = 0.99, bench/zipf.hpp) from the other
// 100,000. Cached values live 200 ms (shortened by up to 10% jitter), so the deal expires about 10
// times per run, each time under load. 8 threads on 2 cores is deliberate: like a service's
// request handlers, they mostly wait on the database, not on a core.
//
// The configurations, each run for --seconds (default 2) from a cold cache of 25,000 entries:
//   no cache                 every request queries the database.
//   hand-rolled cache-aside  if (auto v = cache.get(id)) return v; v = query(id); cache.put(id, v);
//                            no guard: every thread that misses queries.
//   cachet::cache_aside      get_or_load(): the misses of one key share one query (single_flight).
//   read_through             loads by itself on a miss, through single_flight; XFetch off.
//   read_through + XFetch    beta = 1: shortly before an entry expires, one reader refreshes it
//                            while the others are still served the current value.
//
// How to read a row:
//   hit ratio   requests served from the cache, by the cache's own counters; the 200 ms TTL bounds
//               it, as the long tail of the Zipf traffic is read less often than once per TTL.
//   DB queries  queries the database served.
//   burst       the most queries of ONE key in flight at the same moment: the worst stampede.
//               Single-flight makes it 1; without a guard, an expiry of the deal sends every
//               thread that reads it during the 2 ms reload to the database.
//   deal loads  queries for the deal, and per TTL period: 1 per period is the floor.
//   deal waits  reads of the deal slower than 100 us: they waited on the database (their own query
//               or another thread's), up to 8 of them at the cold start. Single-flight cuts the
//               queries, not the waits; with XFetch, only the refreshing reader waits.
//   p50, p99    request latency over all requests (a log-linear histogram, ~3% resolution).
//   req/s       requests completed per second, all threads together.
// While a configuration runs, a progress line is drawn on stderr if stderr is a terminal.
//
// Database: one ":memory:" connection (each is its own database) shared by all threads behind a
// mutex that covers only the SQLite call (a few us), not the simulated round trip, so queries
// overlap as they would on a database server.
//
// Usage: cachet_demo [--seconds X]   (X in (0, 60]: seconds per configuration; total ~5 X + 0.2 s)
//
// It exits non-zero if an invariant breaks, so it doubles as a smoke test. Checked, as they hold
// whatever the timing: every request got its own product row; the cache's hits + misses equal the
// requests and its count of loads equals the database's count of queries; and where loads go
// through cachet's single_flight, no two queries of one key were ever in flight together (a
// leader's query ends before its flight is retired and the next caller can lead). Latencies and
// rates depend on the machine and what else runs on it.
#include <sqlite3.h>
#include <unistd.h>

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
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../bench/zipf.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr std::uint64_t k_products = 100'000;  // Zipf-drawn ids are [0, k_products)
constexpr std::uint64_t k_deal = k_products;   // the hot key: one more row
constexpr unsigned k_threads = 8;
constexpr unsigned k_deal_every = 4;  // every 4th request of each thread reads the deal
constexpr auto k_round_trip = 300us;  // simulated network time of one query
constexpr auto k_deal_query = 2ms;    // the deal's query is an expensive one
constexpr auto k_wait = 100us;        // a deal read slower than this waited on the database
constexpr auto k_ttl = 200ms;
constexpr double k_jitter = 0.1;
constexpr std::size_t k_capacity = 25'000;

struct product {
  std::uint64_t id = 0;
  std::string name;
  std::int64_t price_cents = 0;
};

// The source of truth, with the counters the demo reports.
class product_db {
 public:
  product_db() : in_flight_(std::make_unique<std::atomic<int>[]>(k_deal + 1)) {
    if (sqlite3_open(":memory:", &db_) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
    check(sqlite3_exec(db_,
                       "CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                       "                      price_cents INTEGER NOT NULL);"
                       "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < "
                       "100000) INSERT INTO products SELECT i, 'product ' || i,"
                       "                             100 + (i * 7919) % 100000 FROM n;",
                       nullptr, nullptr, nullptr));
    check(sqlite3_prepare_v2(db_, "SELECT name, price_cents FROM products WHERE id = ?", -1,
                             &select_, nullptr));
  }
  product_db(const product_db&) = delete;
  product_db& operator=(const product_db&) = delete;
  ~product_db() {
    sqlite3_finalize(select_);
    sqlite3_close(db_);
  }

  // One query: the round trip (no lock held), then the SELECT under the connection's mutex.
  std::optional<product> query(std::uint64_t id) {
    const int burst = in_flight_[id].fetch_add(1) + 1;
    int worst = worst_burst_.load(std::memory_order_relaxed);
    while (burst > worst && !worst_burst_.compare_exchange_weak(worst, burst)) {
    }
    queries_.fetch_add(1, std::memory_order_relaxed);
    if (id == k_deal) deal_queries_.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(id == k_deal ? k_deal_query : k_round_trip);
    std::optional<product> p;
    {
      std::lock_guard<std::mutex> g(mu_);
      check(sqlite3_bind_int64(select_, 1, static_cast<sqlite3_int64>(id)));
      const int rc = sqlite3_step(select_);
      if (rc == SQLITE_ROW) {
        p = product{id, reinterpret_cast<const char*>(sqlite3_column_text(select_, 0)),
                    sqlite3_column_int64(select_, 1)};
      }
      sqlite3_reset(select_);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
    }
    in_flight_[id].fetch_sub(1);
    return p;
  }

  void reset_counters() {
    queries_ = 0;
    deal_queries_ = 0;
    worst_burst_ = 0;
  }
  std::uint64_t queries() const { return queries_.load(std::memory_order_relaxed); }
  std::uint64_t deal_queries() const { return deal_queries_.load(); }
  int worst_burst() const { return worst_burst_.load(); }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* select_ = nullptr;
  std::mutex mu_;
  std::unique_ptr<std::atomic<int>[]> in_flight_;  // queries of each id in flight now
  std::atomic<std::uint64_t> queries_{0}, deal_queries_{0};
  std::atomic<int> worst_burst_{0};
};

// Latencies in ns: exact below 32 ns, then 32 buckets per power of two (each ~3% wide).
class histogram {
 public:
  void add(std::uint64_t ns) { ++counts_[index(ns)]; }
  void merge(const histogram& o) {
    for (std::size_t i = 0; i < k_size; ++i) counts_[i] += o.counts_[i];
  }
  // The q-quantile (q in (0, 1]), as the midpoint of its bucket.
  double quantile(double q) const {
    std::uint64_t total = 0;
    for (std::uint64_t c : counts_) total += c;
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < k_size; ++i) {
      if ((seen += counts_[i]) >= rank) return midpoint(i);
    }
    return 0;
  }

 private:
  static constexpr unsigned k_bits = 5;
  static constexpr std::uint64_t k_sub = std::uint64_t{1} << k_bits;
  static constexpr std::size_t k_size = k_sub + (64 - k_bits) * k_sub;
  static std::size_t index(std::uint64_t v) {
    if (v < k_sub) return v;
    const unsigned shift = static_cast<unsigned>(std::bit_width(v)) - 1 - k_bits;
    return k_sub + shift * k_sub + ((v >> shift) - k_sub);
  }
  static double midpoint(std::size_t i) {
    if (i < k_sub) return static_cast<double>(i);
    const std::size_t shift = (i - k_sub) / k_sub;
    const double lo = static_cast<double>((i - k_sub) % k_sub + k_sub);
    return (lo + 0.5) * std::ldexp(1.0, static_cast<int>(shift));
  }
  std::array<std::uint64_t, k_size> counts_{};
};

struct run_result {
  std::uint64_t requests = 0;
  std::uint64_t wrong = 0;       // requests answered with no row, the wrong row, or an exception
  std::uint64_t deal_waits = 0;  // deal reads slower than k_wait
  double seconds = 0;
  double p50_ns = 0;
  double p99_ns = 0;
};

// Runs `serve(id) -> std::optional<product>` from k_threads threads for `seconds`.
template <class Serve>
run_result drive(const char* label, const std::vector<cachet_bench::key_stream>& streams,
                 const product_db& db, double seconds, Serve serve) {
  struct alignas(64) worker_state {
    std::atomic<std::uint64_t> requests{0};
    std::uint64_t wrong = 0;
    std::uint64_t deal_waits = 0;
    histogram latency;
  };
  std::vector<worker_state> state(k_threads);
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      worker_state& me = state[t];
      const cachet_bench::key_stream& keys = streams[t];
      std::size_t pos = 0;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        const std::uint64_t id = n % k_deal_every == 0 ? k_deal : keys[pos++];
        const auto t0 = clock_type::now();
        try {
          const std::optional<product> p = serve(id);
          if (!p || p->id != id) ++me.wrong;
        } catch (...) {
          ++me.wrong;
        }
        const auto took = std::chrono::nanoseconds(clock_type::now() - t0);
        me.latency.add(static_cast<std::uint64_t>(took.count()));
        if (id == k_deal && took > k_wait) ++me.deal_waits;
        me.requests.store(n + 1, std::memory_order_relaxed);
      }
    });
  }
  const bool tty = isatty(STDERR_FILENO) != 0;
  const auto start = clock_type::now();
  const auto deadline = start + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(seconds));
  go.store(true, std::memory_order_release);
  for (auto now = start; now < deadline; now = clock_type::now()) {
    std::this_thread::sleep_for(std::min<clock_type::duration>(100ms, deadline - now));
    if (!tty) continue;
    std::uint64_t requests = 0;
    for (const auto& w : state) requests += w.requests.load(std::memory_order_relaxed);
    std::fprintf(stderr, "\r  running %-28s %4.1f / %.1f s  %9llu requests  %7llu DB queries ",
                 label, std::chrono::duration<double>(clock_type::now() - start).count(), seconds,
                 static_cast<unsigned long long>(requests),
                 static_cast<unsigned long long>(db.queries()));
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : threads) th.join();
  if (tty) std::fprintf(stderr, "\r\033[K");  // erase the progress line

  run_result r;
  r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  histogram all;
  for (const auto& w : state) {
    r.requests += w.requests.load();
    r.wrong += w.wrong;
    r.deal_waits += w.deal_waits;
    all.merge(w.latency);
  }
  r.p50_ns = all.quantile(0.50);
  r.p99_ns = all.quantile(0.99);
  return r;
}

std::string human_time(double ns) {
  char buf[32];
  if (ns < 1e3) {
    std::snprintf(buf, sizeof buf, "%.0f ns", ns);
  } else if (ns < 1e6) {
    std::snprintf(buf, sizeof buf, ns < 1e4 ? "%.1f us" : "%.0f us", ns / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f ms", ns / 1e6);
  }
  return buf;
}

int g_failures = 0;

void expect(bool ok, const char* label, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "cachet_demo: %s: invariant broken: %s\n", label, what);
  ++g_failures;
}

// Prints one row and checks what holds whatever the timing. `hits` < 0: no cache.
void report(const char* label, const run_result& r, const product_db& db, double hits,
            bool single_flight) {
  // The TTL periods the run spans, each the TTL shortened by the mean jitter.
  const double mean_ttl = std::chrono::duration<double>(k_ttl).count() * (1 - k_jitter / 2);
  const double periods = std::ceil(r.seconds / mean_ttl);
  char hit_ratio[16] = "-";
  if (hits >= 0) {
    std::snprintf(hit_ratio, sizeof hit_ratio, "%.1f %%",
                  100 * hits / static_cast<double>(std::max<std::uint64_t>(1, r.requests)));
  }
  char deal[32];
  std::snprintf(deal, sizeof deal, "%llu (%.1f/TTL)",
                static_cast<unsigned long long>(db.deal_queries()),
                static_cast<double>(db.deal_queries()) / periods);
  std::printf("  %-23s %9s %10llu %5d %17s %10llu %8s %8s %7.0f\n", label, hit_ratio,
              static_cast<unsigned long long>(db.queries()), db.worst_burst(), deal,
              static_cast<unsigned long long>(r.deal_waits), human_time(r.p50_ns).c_str(),
              human_time(r.p99_ns).c_str(), static_cast<double>(r.requests) / r.seconds);
  std::fflush(stdout);
  expect(r.wrong == 0, label, "a request was not answered with its own product row");
  expect(r.requests > 0, label, "no request completed");
  if (single_flight) expect(db.worst_burst() <= 1, label, "two queries of one key in flight");
}

using store_type = cachet::sharded_store<std::uint64_t, product, cachet::lru, cachet::steady_clock>;

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--seconds X]   (X in (0, 60]: seconds per configuration, default 2)\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2.0;
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

  product_db db;
  std::vector<cachet_bench::key_stream> streams;
  for (unsigned t = 0; t < k_threads; ++t) {
    streams.emplace_back(k_products, 17, /*seed=*/0xCAC4E7ULL + t, 0.99);
  }
  const auto load = [&db](const std::uint64_t& id) { return db.query(id); };
  const cachet::store_options<std::uint64_t, product> store_opts{
      .max_entries = k_capacity, .default_ttl = k_ttl, .ttl_jitter = k_jitter};

  std::printf(
      "cachet demo: a product service over SQLite, %llu rows, %lld us simulated round trip per "
      "query\n(%lld ms for the hot key, today's deal). %u threads; each reads the deal every %u "
      "requests,\nand Zipf-drawn products (s = 0.99) otherwise. Cache: %zu entries, TTL %lld ms "
      "(-%.0f%% jitter),\ncold at the start. %.1f s per row.\n\n",
      static_cast<unsigned long long>(k_products + 1), static_cast<long long>(k_round_trip.count()),
      static_cast<long long>(k_deal_query.count()), k_threads, k_deal_every, k_capacity,
      static_cast<long long>(k_ttl.count()), 100 * k_jitter, seconds);
  std::printf("  %-23s %9s %10s %5s %17s %10s %8s %8s %7s\n", "configuration", "hit ratio",
              "DB queries", "burst", "deal loads", "deal waits", "p50", "p99", "req/s");

  {
    const char* label = "no cache";
    db.reset_counters();
    const run_result r = drive(label, streams, db, seconds, load);
    report(label, r, db, -1, false);
    expect(db.queries() == r.requests, label, "DB queries != requests");
  }
  {
    const char* label = "hand-rolled cache-aside";
    store_type cache(store_opts);
    db.reset_counters();
    const run_result r =
        drive(label, streams, db, seconds, [&](std::uint64_t id) -> std::optional<product> {
          if (auto p = cache.get(id)) return p;
          std::optional<product> p = db.query(id);  // every thread that misses gets here
          if (p) cache.put(id, *p);
          return p;
        });
    const cachet::cache_stats st = cache.stats();
    report(label, r, db, static_cast<double>(st.hits), false);
    expect(st.gets() == r.requests, label, "cache hits + misses != requests");
    expect(st.misses == db.queries(), label, "cache misses != DB queries");
  }
  {
    const char* label = "cachet::cache_aside";
    cachet::cache_aside<store_type> cache(store_opts);
    db.reset_counters();
    const run_result r = drive(label, streams, db, seconds,
                               [&](std::uint64_t id) { return cache.get_or_load(id, load); });
    const cachet::cache_stats st = cache.store().stats();
    const cachet::single_flight_stats loads = cache.load_stats();
    report(label, r, db, static_cast<double>(st.hits), true);
    expect(st.gets() == r.requests, label, "cache hits + misses != requests");
    expect(loads.loads == db.queries(), label, "loads != DB queries");
    expect(st.misses == loads.loads + loads.coalesced + loads.answered, label,
           "misses != loads + coalesced + answered");
  }
  for (const double beta : {0.0, 1.0}) {
    const char* label = beta == 0 ? "read_through" : "read_through + XFetch";
    cachet::read_through<store_type, decltype(load)> cache(
        {.max_entries = k_capacity, .ttl = k_ttl, .ttl_jitter = k_jitter, .xfetch_beta = beta},
        load);
    db.reset_counters();
    const run_result r =
        drive(label, streams, db, seconds, [&](std::uint64_t id) { return cache.get(id); });
    const cachet::read_through_stats st = cache.stats();
    report(label, r, db, static_cast<double>(st.hits), true);
    expect(st.hits + st.misses == r.requests, label, "hits + misses != requests");
    expect(st.loads.loads == db.queries(), label, "loads != DB queries");
    expect(
        st.misses + st.early_refreshes == st.loads.loads + st.loads.coalesced + st.loads.answered,
        label, "misses + early refreshes != loads + coalesced + answered");
  }

  std::printf(
      "\nburst: most queries of one key in flight at once. deal loads: queries for the hot key, "
      "and per\nTTL period. deal waits: reads of the hot key slower than %lld us (the first read "
      "of each thread\nincluded). Without a guard, every expiry of the hot key is a stampede; "
      "single-flight lets one\nquery through and the other readers wait for it; XFetch refreshes "
      "the key before it expires,\nso only the refreshing reader waits.\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::microseconds>(k_wait).count()));
  return g_failures == 0 ? 0 : 1;
}
