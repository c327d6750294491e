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
// Cold start (min(X, 1) s per row): the same 8 threads against an empty read_through (TTL 1 h, so
// the run measures warming, not expiry), over a database that serves only 4 queries at once (the
// rest wait for a connection, as a saturated database queues them):
//   single-flight            read_through alone: the misses of one key share one query.
//   + origin_limiter         at most 4 loads in flight, 16 waiting up to 20 ms, the rest shed
//                            (an error: nothing stale to serve when cold).
//   + miss_batcher           the misses of different keys gathered (64 keys or 100 us) into one
//                            `WHERE id IN (...)` query, through the limiter (one permit a batch).
// Columns: DB queries; peak demand, the most queries in the database at once, running or
// waiting; errors, reads shed; p50, p99, req/s; the hit ratio over the row.
//
// Two tiers (built when cachet::redis is, i.e. with hiredis; the demo starts its own redis-server
// on a unix socket in a temporary directory and SIGKILLs it at exit; without redis-server in PATH
// these rows are skipped, and say so):
//   L1 + Redis               cache_aside over tiered_store<the store above, redis_store>, with a
//                            redis_invalidation_listener: TTL 200 ms in Redis and in L1.
//   Redis SIGKILLed          the same instance with its redis-server SIGKILLed: the breaker opens,
//                            the bus is down so L1 is suspended, and the requests are answered
//                            from SQLite (min(X, 0.5) s).
//   Redis restarted          the server started again (empty): the time until the bus is up and a
//                            probe closed the breaker, then the same load (min(X, 0.5) s).
//   two instances            two tiered_stores, each with its own listener, in this one process
//                            (as two processes would be: each has its own connections). 20 times:
//                            A loads a product, B reads it into its L1 (an L1 hit the second time),
//                            A changes its price in SQLite and invalidate()s; the time until B's L1
//                            dropped its copy, and whether B's next read had the new price.
//
// Usage: cachet_demo [--seconds X]   (X in (0, 60]: seconds per configuration; total ~6 X + 1.5 s
// with the two-tier rows, ~5 X + 0.2 s without, plus 3 min(X, 1) s for the cold start)
//
// It exits non-zero if an invariant breaks, so it doubles as a smoke test. Checked, as they hold
// whatever the timing: every request got its own product row; the cache's hits + misses (for the
// two tiers, L1 hits + Redis hits + misses) equal the requests and its count of loads equals the
// database's count of queries; and where loads go through cachet's single_flight, no two queries
// of one key were ever in flight together (a leader's query ends before its flight is retired and
// the next caller can lead). The two-tier rows also check that the breaker opened while Redis was
// down, that Redis takes writes again after the restart, that B's second read was an L1 hit, and
// that B's read after A's change, once heard, had the new price. Latencies and rates depend on
// the machine and what else runs on it.
#include <sqlite3.h>
#include <unistd.h>

#ifdef CACHET_DEMO_REDIS
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cachet/cachet.hpp>
#include <cachet/hot_keys.hpp>
#include <cachet/metrics.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../bench/zipf.hpp"

#ifdef CACHET_DEMO_REDIS
#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/redis_store.hpp>
#include <filesystem>
#include <span>
#include <sstream>
#include <string_view>
#include <tuple>
#endif

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
    check(sqlite3_prepare_v2(db_, "UPDATE products SET price_cents = ? WHERE id = ?", -1, &update_,
                             nullptr));
  }
  product_db(const product_db&) = delete;
  product_db& operator=(const product_db&) = delete;
  ~product_db() {
    sqlite3_finalize(update_);
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

  // One query for many ids (`WHERE id IN (...)`): one round trip, counted as one query.
  std::vector<std::pair<std::uint64_t, product>> query_all(std::span<const std::uint64_t> ids) {
    for (std::uint64_t id : ids) in_flight_[id].fetch_add(1);
    queries_.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(k_round_trip);
    std::string sql = "SELECT id, name, price_cents FROM products WHERE id IN (";
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i != 0) sql += ',';
      sql += std::to_string(ids[i]);
    }
    sql += ')';
    std::vector<std::pair<std::uint64_t, product>> rows;
    {
      std::lock_guard<std::mutex> g(mu_);
      sqlite3_stmt* st = nullptr;
      check(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr));
      int rc;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const auto id = static_cast<std::uint64_t>(sqlite3_column_int64(st, 0));
        rows.emplace_back(id, product{id, reinterpret_cast<const char*>(sqlite3_column_text(st, 1)),
                                      sqlite3_column_int64(st, 2)});
      }
      sqlite3_finalize(st);
      if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
    }
    for (std::uint64_t id : ids) in_flight_[id].fetch_sub(1);
    return rows;
  }

  // A price change: the UPDATE, under the connection's mutex, no round trip, not counted.
  void set_price(std::uint64_t id, std::int64_t price_cents) {
    std::lock_guard<std::mutex> g(mu_);
    check(sqlite3_bind_int64(update_, 1, static_cast<sqlite3_int64>(price_cents)));
    check(sqlite3_bind_int64(update_, 2, static_cast<sqlite3_int64>(id)));
    const int rc = sqlite3_step(update_);
    sqlite3_reset(update_);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
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
  sqlite3_stmt* update_ = nullptr;
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

#ifdef CACHET_DEMO_REDIS
// ---- two tiers: L1 in this process over Redis (built when cachet::redis is)
// ----------------------

// A product in Redis: id and price as 8 bytes each (this build's representation), then the name.
struct product_codec {
  static void encode(const product& p, std::string& out) {
    char head[16];
    std::memcpy(head, &p.id, 8);
    std::memcpy(head + 8, &p.price_cents, 8);
    out.append(head, sizeof head);
    out.append(p.name);
  }
  static std::optional<product> decode(std::string_view bytes) {
    if (bytes.size() < 16) return std::nullopt;
    product p;
    std::memcpy(&p.id, bytes.data(), 8);
    std::memcpy(&p.price_cents, bytes.data() + 8, 8);
    p.name.assign(bytes.substr(16));
    return p;
  }
};

using redis_type = cachet::redis_store<std::uint64_t, product, product_codec>;
using tier_type = cachet::tiered_store<store_type, redis_type>;

// A redis-server of the demo's own, on a unix socket in a fresh temporary directory, its output
// sent to /dev/null. It is SIGKILLed when the demo dies (PR_SET_PDEATHSIG) and by the destructor,
// which also removes the directory. kill() and restart() (same socket, empty) are the Redis-down
// rows' fault.
class own_redis {
 public:
  own_redis() = default;
  own_redis(const own_redis&) = delete;
  own_redis& operator=(const own_redis&) = delete;
  ~own_redis() {
    kill();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // Finds redis-server in PATH and starts it; false (with why()) if it is missing or not up in 5 s.
  bool start() {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
    for (std::string d; exe_.empty() && std::getline(dirs, d, ':');) {
      std::string candidate = d.empty() ? std::string(".") : d;
      candidate += "/redis-server";
      if (::access(candidate.c_str(), X_OK) == 0) exe_ = candidate;
    }
    if (exe_.empty()) {
      why_ = "redis-server is not in PATH";
      return false;
    }
    char dir_template[] = "/tmp/cachet-demo-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) {
      why_ = "no temporary directory";
      return false;
    }
    dir_ = dir_template;
    socket_ = dir_ + "/redis.sock";
    return spawn();
  }

  void kill() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) == -1 && errno == EINTR) {
    }
    pid_ = -1;
  }
  bool restart() {
    kill();
    return spawn();
  }

  const std::string& socket() const { return socket_; }
  const std::string& why() const { return why_; }

 private:
  bool spawn() {
    std::vector<std::string> args = {exe_, "--port",       "0",  "--unixsocket", socket_, "--save",
                                     "",   "--appendonly", "no", "--daemonize",  "no",    "--dir",
                                     dir_};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {  // the child: async-signal-safe calls only (other threads may exist)
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      if (null_fd >= 0) {
        ::dup2(null_fd, STDOUT_FILENO);
        ::dup2(null_fd, STDERR_FILENO);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (null_fd >= 0) ::close(null_fd);
    if (pid < 0) {
      why_ = "fork failed";
      return false;
    }
    pid_ = pid;
    for (int i = 0; i < 500; ++i) {  // at most 5 s for the socket to answer
      if (std::filesystem::exists(socket_)) {
        cachet::redis_store<std::string, std::string> probe({.unix_socket = socket_});
        if (probe.put("probe", "1") == cachet::put_result::inserted) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    why_ = "redis-server did not answer within 5 s";
    kill();
    return false;
  }

  std::string exe_;
  std::string dir_;
  std::string socket_;
  std::string why_;
  pid_t pid_ = -1;
};

// One service instance: cache_aside over tiered_store<L1 = store_type, L2 = redis_store>, and the
// invalidation listener that keeps its L1 coherent, wired as docs/redis.md says.
struct near_cache {
  near_cache(const std::string& socket, const char* prefix, std::chrono::nanoseconds redis_ttl,
             std::chrono::nanoseconds l1_ttl)
      : cache(cachet::tiered_options{.l1_ttl = l1_ttl},
              std::tuple{cachet::store_options<std::uint64_t, product>{.max_entries = k_capacity}},
              std::tuple{cachet::redis_options{
                  .unix_socket = socket,
                  .key_prefix = prefix,
                  .default_ttl = redis_ttl,
                  .breaker = {.failures_to_open = 5, .open_for = 250ms},
              }}) {
    tier_type& tier = cache.store();
    tier.suspend_local();  // no L1 until the bus is up: invalidations could be missed before
    bus = std::make_unique<cachet::redis_invalidation_listener>(
        tier.l2().options(),
        cachet::invalidation_options{.reconnect_backoff_min = 10ms, .reconnect_backoff_max = 100ms},
        cachet::invalidation_handlers{
            .on_keys =
                [&tier](std::span<const std::string> names) {
                  for (const std::string& n : names) {
                    if (auto k = tier.l2().key_from_redis(n)) tier.invalidate_local(*k);
                  }
                },
            .on_flush = [&tier] { tier.clear_local(); },
            .on_state = [&tier](bool up) { up ? tier.resume_local() : tier.suspend_local(); },
        });
  }
  near_cache(const near_cache&) = delete;
  near_cache& operator=(const near_cache&) = delete;
  ~near_cache() { bus.reset(); }  // stop the listener's thread before the tiers go

  tier_type& tier() { return cache.store(); }

  cachet::cache_aside<tier_type> cache;
  std::unique_ptr<cachet::redis_invalidation_listener> bus;
};

// Waits until `done()` holds, at most `limit`; true if it did.
template <class F>
bool within(std::chrono::milliseconds limit, F done) {
  const auto deadline = clock_type::now() + limit;
  while (!done()) {
    if (clock_type::now() >= deadline) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

std::string with_commas(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

// One row of the near cache under the request load, with its checks; the counters are deltas
// over the row. Returns the run's result.
template <class Load>
run_result tier_row(const char* label, near_cache& nc,
                    const std::vector<cachet_bench::key_stream>& streams, product_db& db,
                    double seconds, const Load& load) {
  const cachet::tiered_stats t0 = nc.tier().stats();
  const cachet::redis_stats r0 = nc.tier().l2().stats();
  const cachet::single_flight_stats f0 = nc.cache.load_stats();
  db.reset_counters();
  const run_result r = drive(label, streams, db, seconds,
                             [&](std::uint64_t id) { return nc.cache.get_or_load(id, load); });
  const cachet::tiered_stats t1 = nc.tier().stats();
  const cachet::redis_stats r1 = nc.tier().l2().stats();
  const cachet::single_flight_stats f1 = nc.cache.load_stats();
  const std::uint64_t l1 = t1.l1_hits - t0.l1_hits, l2 = t1.l2_hits - t0.l2_hits;
  const std::uint64_t misses = t1.misses - t0.misses, loads = f1.loads - f0.loads;
  report(label, r, db, static_cast<double>(l1 + l2), true);
  const double n = static_cast<double>(std::max<std::uint64_t>(1, r.requests));
  std::printf(
      "    L1 %.1f %%, Redis %.1f %% of requests; breaker %s, opened %llu times, %s calls "
      "refused\n",
      100 * static_cast<double>(l1) / n, 100 * static_cast<double>(l2) / n,
      std::string(cachet::to_string(r1.breaker)).c_str(),
      static_cast<unsigned long long>(r1.breaker_opened - r0.breaker_opened),
      with_commas(r1.fast_failures - r0.fast_failures).c_str());
  expect(l1 + l2 + misses == r.requests, label, "L1 hits + Redis hits + misses != requests");
  expect(loads == db.queries(), label, "loads != DB queries");
  expect(misses == loads + (f1.coalesced - f0.coalesced) + (f1.answered - f0.answered), label,
         "misses != loads + coalesced + answered");
  return r;
}

// The two-tier rows: under load with Redis up, SIGKILLed and restarted; then two instances and a
// price change. Returns false (having said why) if there is no Redis to run them on.
template <class Load>
bool redis_rows(product_db& db, const std::vector<cachet_bench::key_stream>& streams,
                double seconds, const Load& load) {
  own_redis server;
  if (!server.start()) {
    std::printf("\nTwo tiers: skipped (%s).\n", server.why().c_str());
    return false;
  }
  std::printf(
      "\nTwo tiers: cache_aside over tiered_store: L1 = the store above in this process, over L2 "
      "=\nredis_store on a redis-server of the demo's own (unix socket); SQLite behind. TTL %lld "
      "ms "
      "in both\ntiers; each instance's L1 kept coherent by a redis_invalidation_listener. Redis "
      "breaker:\nopens after 5 failures, probes after 250 ms.\n\n",
      static_cast<long long>(k_ttl.count()));
  const double short_row = std::min(seconds, 0.5);
  {
    near_cache nc(server.socket(), "demo:p:", k_ttl, k_ttl);
    expect(within(5s, [&] { return nc.bus->connected(); }), "L1 + Redis",
           "the bus did not come up");
    tier_row("L1 + Redis", nc, streams, db, seconds, load);

    server.kill();  // SIGKILL: no goodbye to the clients
    tier_row("Redis SIGKILLed", nc, streams, db, short_row, load);
    const cachet::redis_stats down = nc.tier().l2().stats();
    expect(down.breaker_opened >= 1, "Redis SIGKILLed", "the breaker never opened");
    expect(!nc.bus->connected(), "Redis SIGKILLed", "the bus still says it is up");

    const std::uint64_t opened = nc.tier().l2().stats().breaker_opened;
    const auto t0 = clock_type::now();
    const bool restarted = server.restart();
    expect(restarted, "Redis restarted", "redis-server did not start again");
    // Back in use: the bus is up again, and a probe closed the breaker (a read lets one through).
    const bool back = within(5s, [&] {
      nc.tier().l2().contains(k_deal);
      return nc.bus->connected() && nc.tier().l2().stats().breaker == cachet::breaker_state::closed;
    });
    const double back_ms =
        std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    expect(back, "Redis restarted", "the bus or the breaker did not come back within 5 s");
    const std::optional<product> row = db.query(1);
    expect(row && nc.cache.set(1, *row) == cachet::put_result::inserted, "Redis restarted",
           "Redis does not take writes again");
    tier_row("Redis restarted", nc, streams, db, short_row, load);
    std::printf(
        "    (bus up and breaker closed %.0f ms after the restart; %llu probes failed first)\n",
        back_ms, static_cast<unsigned long long>(nc.tier().l2().stats().breaker_opened - opened));
  }

  // Two instances (two tiered_stores, each with its own listener, in this one process: as two
  // processes would be, each with its own connections). A serves a product; B reads it into its L1;
  // A changes the price in SQLite and invalidates; B's L1 must drop its copy, and B's next read
  // must have the new price.
  constexpr int k_rounds = 20;
  near_cache a(server.socket(), "demo:x:", std::chrono::minutes(10), 60s);
  near_cache b(server.socket(), "demo:x:", std::chrono::minutes(10), 60s);
  const char* label = "two instances";
  expect(within(5s, [&] { return a.bus->connected() && b.bus->connected(); }), label,
         "the buses did not come up");
  std::vector<double> drop_us;
  int fresh = 0, l1_copies = 0;
  // Every write under the prefix, A's or B's, reaches B's listener as one invalidation: before B
  // reads, wait until it has heard of all of them, or a late one could drop the copy B just took.
  std::uint64_t writes = b.tier().stats().local_invalidations;
  const auto b_caught_up = [&] {
    return within(5s, [&] { return b.tier().stats().local_invalidations >= writes; });
  };
  for (int i = 0; i < k_rounds; ++i) {
    const std::uint64_t id = 1 + static_cast<std::uint64_t>(i) * 4999 % k_products;
    const std::optional<product> old = a.cache.get_or_load(id, load);  // A loads, fills Redis
    ++writes;
    expect(old && b_caught_up(), label, "B did not hear of A's fill");
    if (!old) continue;
    const std::uint64_t l1_hits = b.tier().stats().l1_hits;
    const std::optional<product> b1 = b.cache.get_or_load(id, load);  // from Redis, into B's L1
    const std::optional<product> b2 = b.cache.get_or_load(id, load);  // from B's L1
    expect(b1 && b2 && b1->price_cents == old->price_cents && b2->price_cents == old->price_cents,
           label, "B read a wrong row before the change");
    if (b.tier().stats().l1_hits == l1_hits + 1) ++l1_copies;

    const std::int64_t new_price = old->price_cents + 100;
    db.set_price(id, new_price);  // A's write to the database...
    const auto t0 = clock_type::now();
    a.cache.invalidate(id);  // ... then A's invalidate: DEL in Redis, heard by B
    ++writes;
    const bool dropped = within(5s, [&] { return !b.tier().l1().peek(id).has_value(); });
    drop_us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    expect(dropped, label, "B's L1 kept its copy after A's invalidate");
    const std::optional<product> b3 = b.cache.get_or_load(id, load);  // B loads, fills Redis
    ++writes;
    if (b3 && b3->id == id && b3->price_cents == new_price) ++fresh;
    expect(b_caught_up(), label, "B did not hear of its own fill");
  }
  std::sort(drop_us.begin(), drop_us.end());
  std::printf(
      "  two instances: %d price changes on A (UPDATE, then invalidate()); B held the old row in "
      "its L1\n    %d/%d times; its L1 dropped it %.0f us (median; max %.0f us) after A's "
      "invalidate() began,\n    and B's next read had the new price %d/%d times (B's L1 TTL is 60 "
      "s).\n",
      k_rounds, l1_copies, k_rounds, drop_us.empty() ? 0.0 : drop_us[drop_us.size() / 2],
      drop_us.empty() ? 0.0 : drop_us.back(), fresh, k_rounds);
  expect(l1_copies == k_rounds, label, "B's second read was not an L1 hit");
  expect(fresh == k_rounds, label, "B read a stale or wrong row after A's change");
  std::fflush(stdout);
  return true;
}
#endif  // CACHET_DEMO_REDIS

// ---- cold start: the database can serve only k_connections queries at once ------------------

constexpr int k_connections = 4;

// product_db behind k_connections "connections": a query beyond them waits for one (a saturated
// database queues). Counts the most queries in the database at once, running or waiting.
class capped_db {
 public:
  explicit capped_db(product_db& db) : db_(&db) {}
  std::optional<product> load(const std::uint64_t& id) {
    slot s(*this);
    return db_->query(id);
  }
  std::vector<std::pair<std::uint64_t, product>> load_all(std::span<const std::uint64_t> ids) {
    slot s(*this);
    return db_->query_all(ids);
  }
  int peak_demand() {
    std::lock_guard<std::mutex> l(mu_);
    return peak_;
  }

 private:
  struct slot {
    explicit slot(capped_db& c) : c_(c) {
      std::unique_lock<std::mutex> l(c_.mu_);
      c_.peak_ = std::max(c_.peak_, ++c_.demand_);
      c_.cv_.wait(l, [&] { return c_.running_ < k_connections; });
      ++c_.running_;
    }
    ~slot() {
      {
        std::lock_guard<std::mutex> l(c_.mu_);
        --c_.running_;
        --c_.demand_;
      }
      c_.cv_.notify_one();
    }
    capped_db& c_;
  };
  product_db* db_;
  std::mutex mu_;
  std::condition_variable cv_;
  int running_ = 0, demand_ = 0, peak_ = 0;
};

// A capped_db shared by reference (the wrappers keep their loader by value).
struct capped_ref {
  capped_db* db;
  std::optional<product> load(const std::uint64_t& id) { return db->load(id); }
  std::vector<std::pair<std::uint64_t, product>> load_all(std::span<const std::uint64_t> ids) {
    return db->load_all(ids);
  }
};

// The cold-start rows: read_through with a 1 h TTL (so the run measures warming, not expiry)
// over the capped database, guarded by single-flight only, then an origin_limiter, then a
// miss_batcher too. A read the limiter sheds is an error (nothing stale to serve when cold).
void cold_start_rows(product_db& db, const std::vector<cachet_bench::key_stream>& streams,
                     double seconds) {
  std::printf(
      "\nCold start: the same load from an empty cache (TTL 1 h), against a database that serves "
      "%d\nqueries at once (the rest wait for a connection). %.1f s per row.\n",
      k_connections, seconds);
  std::printf("  %-23s %10s %12s %7s %8s %8s %8s %9s\n", "guard", "DB queries", "peak demand",
              "errors", "p50", "p99", "req/s", "hit ratio");
  const cachet::origin_limiter_options limits{
      .max_in_flight = k_connections, .max_queue = 16, .max_wait = 20ms};
  using limited = cachet::limited_loader<capped_ref>;
  using batcher = cachet::miss_batcher<std::uint64_t, product, limited>;
  cachet::metrics_registry metrics;
  std::string exported;
  for (int row = 0; row < 3; ++row) {
    const char* label = row == 0   ? "single-flight"
                        : row == 1 ? "+ origin_limiter"
                                   : "+ miss_batcher";
    capped_db capped(db);
    cachet::origin_limiter limit(limits);
    batcher batched({.max_batch = 64, .max_delay = 100us}, limited(limit, capped_ref{&capped}));
    std::atomic<std::uint64_t> shed{0};
    db.reset_counters();
    run_result r;
    double hits = 0;
    auto serve = [&](auto& cache) {
      return [&](std::uint64_t id) -> std::optional<product> {
        try {
          return cache.get(id);
        } catch (const cachet::origin_overloaded&) {
          ++shed;
          return std::nullopt;
        }
      };
    };
    const typename cachet::read_through<store_type, capped_ref>::options opts{
        .max_entries = k_products + 1, .ttl = std::chrono::hours(1), .xfetch_beta = 0};
    if (row == 0) {
      cachet::read_through<store_type, capped_ref> cache(opts, capped_ref{&capped});
      r = drive(label, streams, db, seconds, serve(cache));
      hits = static_cast<double>(cache.stats().hits);
    } else if (row == 1) {
      cachet::read_through<store_type, limited> cache(
          {.max_entries = k_products + 1, .ttl = std::chrono::hours(1), .xfetch_beta = 0},
          limited(limit, capped_ref{&capped}));
      r = drive(label, streams, db, seconds, serve(cache));
      hits = static_cast<double>(cache.stats().hits);
    } else {
      cachet::read_through<store_type, batcher&> cache(
          {.max_entries = k_products + 1, .ttl = std::chrono::hours(1), .xfetch_beta = 0}, batched);
      cachet::hot_key_tracker<std::uint64_t> hot(
          {.sample_every = 7});  // prime: every 4th read is the deal
      r = drive(label, streams, db, seconds, [&](std::uint64_t id) {
        hot.record(id);
        return serve(cache)(id);
      });
      hits = static_cast<double>(cache.stats().hits);
      // What a service would serve on /metrics after this row (include/cachet/metrics.hpp).
      metrics.add("products", cache);
      metrics.add("origin", limit);
      metrics.add("origin_batches", batched);
      metrics.add("product_reads", hot);
      exported = metrics.prometheus_text();
      const auto hottest = hot.hot_keys(1);
      expect(!hottest.empty() && hottest[0].key == k_deal, label,
             "the deal is not the hottest key");
    }
    std::printf("  %-23s %10llu %12d %7llu %8s %8s %8.0f %8.1f%%\n", label,
                static_cast<unsigned long long>(db.queries()), capped.peak_demand(),
                static_cast<unsigned long long>(shed.load()), human_time(r.p50_ns).c_str(),
                human_time(r.p99_ns).c_str(), static_cast<double>(r.requests) / r.seconds,
                100 * hits / static_cast<double>(std::max<std::uint64_t>(1, r.requests)));
    std::fflush(stdout);
    expect(r.wrong == shed.load(), label, "a request was answered with another product's row");
    expect(r.requests > 0, label, "no request completed");
    expect(db.worst_burst() <= 1, label, "two queries of one key in flight");
    if (row > 0) {
      expect(capped.peak_demand() <= k_connections, label,
             "more queries in the database than the limiter allows");
    }
    if (row == 2) {
      expect(batched.stats().keys_loaded >= db.queries(), label, "a batch loaded no key");
    }
  }
  std::printf(
      "\nExported metrics of the + miss_batcher row (Prometheus text, cachet::metrics_registry):\n"
      "%s",
      exported.c_str());
}

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

  cold_start_rows(db, streams, std::min(seconds, 1.0));

#ifdef CACHET_DEMO_REDIS
  redis_rows(db, streams, seconds, load);
#else
  std::printf("\nTwo tiers: not built (cachet::redis needs hiredis).\n");
#endif

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
