// cachet_bench_cold_start — a cold cache in front of a database that can serve only C queries at
// once: what each origin guard sends to the database, and what clients see.
//
// The origin: an SQLite file of 100,000 rows (id, name), behind a counting semaphore of C
// connections (C = 4 by default), each query holding one for its SQL plus a simulated network
// round trip (--rtt-us, 1,000 us by default, slept). Queries beyond C wait for a connection,
// which is how a saturated database behaves: its queue grows and every query slows down. A batch
// (load_all) is one `SELECT ... WHERE id IN (...)` on one connection.
//
// The clients: T threads (32 by default) each read scrambled-Zipf keys (s = 0.99 over the 100,000
// ids) as fast as they can for --seconds (3 by default), starting together against an empty
// cache of 100,000 entries (room for every row: the run measures warming, not eviction).
//
// Configurations, each on a fresh cache and fresh counters:
//   no guard        sharded_store get, and on a miss query and put (every miss is a query);
//   single-flight   read_through: concurrent misses of one key share one query;
//   + limiter       read_through over limited_loader(origin_limiter{max_in_flight = C,
//                   max_queue = 64, max_wait = 20 ms}): at most C queries at once, the rest
//                   wait or are shed (origin_overloaded, counted as an error);
//   + batching      as + limiter, with a miss_batcher (max_batch 64, max_delay 500 us) between
//                   the cache and the limiter: one IN query per batch of misses (this row uses
//                   cache_aside::get_or_load, the same single-flight, so that its store can be
//                   saved);
//   warm restart    the + batching cache's entries saved at the end of its run (snapshot.hpp),
//                   loaded into a fresh cache_aside (the restarted process) before the clients
//                   start, with the same guards; the load's time is printed.
// Columns:
//   queries, 1st s  origin queries (a batch counts one) in the first second, and in the run;
//   peak demand     most queries in the database at once, running or waiting for a connection;
//   errors          reads that failed (shed by the limiter);
//   p50/p99         read latency over the whole run, all reads (hits included);
//   t90             time until a 100 ms window's hit ratio first reached 90% of the run's last
//                   window's (the warm value);
//   hits            that last window's hit ratio; reads: reads completed in the run.
//
// Usage: cachet_bench_cold_start [--seconds S] [--threads T] [--connections C] [--rtt-us U]
//        [--batch-delay-us D] [--smoke]   (--smoke: 0.3 s per configuration, for CI)
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cachet/cachet.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "zipf.hpp"

namespace {

using row_id = std::uint64_t;
using clock_type = std::chrono::steady_clock;
constexpr std::uint64_t k_rows = 100'000;

struct config {
  double seconds = 3.0;
  int threads = 32;
  int connections = 4;
  int rtt_us = 1000;
  int batch_delay_us = 500;
};

// The database: C read-only connections to one SQLite file, handed out by a semaphore.
class origin_db {
 public:
  origin_db(const std::string& path, int connections, int rtt_us) : rtt_(rtt_us) {
    for (int i = 0; i < connections; ++i) {
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
          SQLITE_OK) {
        throw std::runtime_error("cannot open the origin database");
      }
      free_.push_back(db);
    }
  }
  ~origin_db() {
    for (sqlite3* db : free_) sqlite3_close(db);
  }
  origin_db(const origin_db&) = delete;
  origin_db& operator=(const origin_db&) = delete;

  std::optional<std::string> load(const row_id& id) {
    std::optional<std::string> out;
    query(std::span<const row_id>(&id, 1),
          [&](row_id, std::string name) { out = std::move(name); });
    return out;
  }
  std::vector<std::pair<row_id, std::string>> load_all(std::span<const row_id> ids) {
    std::vector<std::pair<row_id, std::string>> rows;
    query(ids, [&](row_id id, std::string name) { rows.emplace_back(id, std::move(name)); });
    return rows;
  }

  void reset_counters() {
    std::lock_guard<std::mutex> l(mu_);
    queries_ = 0;
    peak_ = 0;
  }
  std::uint64_t queries() {
    std::lock_guard<std::mutex> l(mu_);
    return queries_;
  }
  int peak_demand() {
    std::lock_guard<std::mutex> l(mu_);
    return peak_;
  }

 private:
  template <class Row>
  void query(std::span<const row_id> ids, Row&& row) {
    sqlite3* db = nullptr;
    {
      std::unique_lock<std::mutex> l(mu_);
      ++queries_;
      ++demand_;
      peak_ = std::max(peak_, demand_);
      cv_.wait(l, [&] { return !free_.empty(); });
      db = free_.back();
      free_.pop_back();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rtt_));
    std::string sql = "SELECT id, name FROM users WHERE id IN (";
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i != 0) sql += ',';
      sql += std::to_string(ids[i]);
    }
    sql += ")";
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        row(static_cast<row_id>(sqlite3_column_int64(st, 0)),
            std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 1))));
      }
    }
    sqlite3_finalize(st);
    {
      std::lock_guard<std::mutex> l(mu_);
      free_.push_back(db);
      --demand_;
    }
    cv_.notify_one();
  }

  std::chrono::microseconds rtt_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<sqlite3*> free_;
  std::uint64_t queries_ = 0;
  int demand_ = 0;
  int peak_ = 0;
};

// Forwards to the shared origin (the wrappers keep their loader by value).
struct origin_ref {
  origin_db* db;
  std::optional<std::string> load(const row_id& id) { return db->load(id); }
  std::vector<std::pair<row_id, std::string>> load_all(std::span<const row_id> ids) {
    return db->load_all(ids);
  }
};

std::string make_database() {
  char dir_template[] = "/tmp/cachet_cold_start_XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) throw std::runtime_error("mkdtemp failed");
  const std::string path = std::string(dir) + "/origin.db";
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); BEGIN;", nullptr,
               nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO users VALUES (?, ?)", -1, &st, nullptr);
  for (std::uint64_t id = 0; id < k_rows; ++id) {
    sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(id));
    const std::string name = std::string("user-") + std::to_string(id);
    sqlite3_bind_text(st, 2, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_step(st);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_exec(db, "COMMIT;", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return path;
}

const cachet_bench::key_stream& zipf_keys() {
  static const cachet_bench::key_stream keys(k_rows, 20, 0x5eedcace7ULL, 0.99);
  return keys;
}

struct result {
  std::uint64_t reads = 0, errors = 0, queries = 0, queries_first_second = 0;
  int peak_demand = 0;
  std::uint64_t p50_ns = 0, p99_ns = 0;
  double t90_s = -1;
  double last_hit_ratio = 0;
};

// Runs the clients against read(key) -> bool (true: served) for cfg.seconds; samples hits()
// and the origin's queries every 100 ms.
template <class Read, class Hits>
result run_clients(const config& cfg, origin_db& db, Read read, Hits hits_and_reads) {
  const cachet_bench::key_stream& keys = zipf_keys();
  db.reset_counters();
  cachet::detail::latency_histogram latency;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0}, errors{0};
  std::vector<std::thread> threads;
  const auto start = clock_type::now();
  for (int t = 0; t < cfg.threads; ++t) {
    threads.emplace_back([&, t] {
      std::size_t i = static_cast<std::size_t>(t) * 7919 * 64;
      std::uint64_t n = 0, failed = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = clock_type::now();
        if (!read(keys[i++])) ++failed;
        latency.record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count()));
        ++n;
      }
      reads += n;
      errors += failed;
    });
  }
  result r;
  std::vector<double> window_ratio;
  std::pair<std::uint64_t, std::uint64_t> last = {0, 0};
  const int windows = std::max(1, static_cast<int>(cfg.seconds * 10));
  for (int w = 1; w <= windows; ++w) {
    std::this_thread::sleep_until(start + std::chrono::milliseconds(100 * w));
    const auto now = hits_and_reads();
    const std::uint64_t dh = now.first - last.first, dr = now.second - last.second;
    window_ratio.push_back(dr == 0 ? 0.0 : static_cast<double>(dh) / static_cast<double>(dr));
    last = now;
    if (w == 10) r.queries_first_second = db.queries();
  }
  stop = true;
  for (auto& th : threads) th.join();
  if (windows < 10) r.queries_first_second = db.queries();
  r.reads = reads;
  r.errors = errors;
  r.queries = db.queries();
  r.peak_demand = db.peak_demand();
  r.p50_ns = latency.percentile(0.5);
  r.p99_ns = latency.percentile(0.99);
  const double warm = window_ratio.back();
  r.last_hit_ratio = warm;
  for (std::size_t w = 0; w < window_ratio.size(); ++w) {
    if (window_ratio[w] >= 0.9 * warm) {
      r.t90_s = 0.1 * static_cast<double>(w + 1);
      break;
    }
  }
  return r;
}

void print(const char* name, const result& r) {
  std::printf("%-16s %10llu %10llu %8d %8llu %9.1f %9.1f %6.1f %6.1f%% %12llu\n", name,
              static_cast<unsigned long long>(r.queries_first_second),
              static_cast<unsigned long long>(r.queries), r.peak_demand,
              static_cast<unsigned long long>(r.errors), static_cast<double>(r.p50_ns) / 1e3,
              static_cast<double>(r.p99_ns) / 1e3, r.t90_s, 100 * r.last_hit_ratio,
              static_cast<unsigned long long>(r.reads));
  std::fflush(stdout);
}

using store_t = cachet::sharded_store<row_id, std::string, cachet::lru>;

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--seconds")) {
      cfg.seconds = std::atof(next());
    } else if (!std::strcmp(argv[i], "--threads")) {
      cfg.threads = std::atoi(next());
    } else if (!std::strcmp(argv[i], "--connections")) {
      cfg.connections = std::atoi(next());
    } else if (!std::strcmp(argv[i], "--rtt-us")) {
      cfg.rtt_us = std::atoi(next());
    } else if (!std::strcmp(argv[i], "--batch-delay-us")) {
      cfg.batch_delay_us = std::atoi(next());
    } else if (!std::strcmp(argv[i], "--smoke")) {
      cfg.seconds = 0.3;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seconds S] [--threads T] [--connections C] [--rtt-us U] "
                   "[--batch-delay-us D] [--smoke]\n",
                   argv[0]);
      return 2;
    }
  }
  if (cfg.seconds <= 0 || cfg.threads < 1 || cfg.connections < 1 || cfg.rtt_us < 0 ||
      cfg.batch_delay_us < 0 || cfg.batch_delay_us > 1'000'000) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  const std::string path = make_database();
  origin_db db(path, cfg.connections, cfg.rtt_us);
  std::printf(
      "cold start: %d client threads, %.1f s each, a database of %d connections, %d us "
      "round trip, %llu rows\n",
      cfg.threads, cfg.seconds, cfg.connections, cfg.rtt_us,
      static_cast<unsigned long long>(k_rows));
  std::printf("%-16s %10s %10s %8s %8s %9s %9s %6s %7s %12s\n", "guard", "q 1st s", "queries",
              "peak", "errors", "p50 us", "p99 us", "t90 s", "hits", "reads");
  const std::size_t capacity = k_rows;
  {
    store_t s({.max_entries = capacity});
    print("no guard", run_clients(
                          cfg, db,
                          [&](row_id k) {
                            if (s.get(k)) return true;
                            if (auto v = db.load(k)) s.put(k, std::move(*v));
                            return true;
                          },
                          [&] {
                            const cachet::cache_stats st = s.stats();
                            return std::pair{st.hits, st.hits + st.misses};
                          }));
  }
  auto rt_counts = [](const auto& rt) {
    return [&rt] {
      const cachet::read_through_stats st = rt.stats();
      return std::pair{st.hits, st.hits + st.misses};
    };
  };
  auto rt_read = [](auto& rt) {
    return [&rt](row_id k) {
      try {
        rt.get(k);
        return true;
      } catch (const cachet::origin_overloaded&) {
        return false;
      }
    };
  };
  {
    cachet::read_through<store_t, origin_ref> rt(
        {.max_entries = capacity, .ttl = std::chrono::hours(1), .xfetch_beta = 0}, origin_ref{&db});
    print("single-flight", run_clients(cfg, db, rt_read(rt), rt_counts(rt)));
  }
  const cachet::origin_limiter_options limits{
      .max_in_flight = static_cast<std::size_t>(cfg.connections),
      .max_queue = 64,
      .max_wait = std::chrono::milliseconds(20)};
  {
    cachet::origin_limiter limit(limits);
    using loader_t = cachet::limited_loader<origin_ref>;
    cachet::read_through<store_t, loader_t> rt(
        {.max_entries = capacity, .ttl = std::chrono::hours(1), .xfetch_beta = 0},
        loader_t(limit, origin_ref{&db}));
    print("+ limiter", run_clients(cfg, db, rt_read(rt), rt_counts(rt)));
  }
  {
    cachet::origin_limiter limit(limits);
    using loader_t = cachet::limited_loader<origin_ref>;
    using batcher_t = cachet::miss_batcher<row_id, std::string, loader_t>;
    batcher_t batched({.max_batch = 64, .max_delay = std::chrono::microseconds(cfg.batch_delay_us)},
                      loader_t(limit, origin_ref{&db}));
    auto aside_read = [&batched](cachet::cache_aside<store_t>& c) {
      return [&c, &batched](row_id k) {
        try {
          c.get_or_load(k, batched);
          return true;
        } catch (const cachet::origin_overloaded&) {
          return false;
        }
      };
    };
    auto aside_counts = [](cachet::cache_aside<store_t>& c) {
      return [&c] {
        const cachet::cache_stats st = c.store().stats();
        return std::pair{st.hits, st.hits + st.misses};
      };
    };
    const std::string snapshot = std::filesystem::path(path).parent_path() / "cache.snap";
    {
      cachet::cache_aside<store_t> cache(store_t::options_type{.max_entries = capacity});
      print("+ batching", run_clients(cfg, db, aside_read(cache), aside_counts(cache)));
      cachet::save(cache.store(), snapshot);  // at shutdown
    }
    const cachet::miss_batcher_stats bs = batched.stats();
    std::printf("  batching: %llu batches, %.1f keys per batch, %llu closed full\n",
                static_cast<unsigned long long>(bs.batches),
                bs.batches == 0
                    ? 0.0
                    : static_cast<double>(bs.keys_loaded) / static_cast<double>(bs.batches),
                static_cast<unsigned long long>(bs.full_batches));
    cachet::cache_aside<store_t> cache(store_t::options_type{.max_entries = capacity});
    const auto t0 = clock_type::now();
    const cachet::load_result loaded = cachet::load(cache.store(), snapshot);  // at startup
    const double load_ms =
        std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    print("warm restart", run_clients(cfg, db, aside_read(cache), aside_counts(cache)));
    std::printf("  warm restart: %zu entries loaded from the snapshot in %.1f ms\n", loaded.loaded,
                load_ms);
  }
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
  return 0;
}
