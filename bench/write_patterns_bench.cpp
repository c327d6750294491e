// cachet_bench_write — write throughput of write_through against write_back, over SQLite on disk.
//
// What it measures: T threads each put keys for --seconds, through
//   write_through  every put is one autocommitted UPSERT (one transaction), then an invalidation;
//   write_back     every put is acknowledged by the cache; the flusher writes batches of up to 256
//                  rows in one transaction each, and writes of a key still dirty coalesce.
// The database is a file in a fresh temporary directory, with SQLite's defaults for durability
// (rollback journal, synchronous=FULL: every commit is synced) and again in WAL mode with
// synchronous=NORMAL (commits are not synced until a checkpoint), the two settings services use.
// Two key streams: Zipf (s = 0.99 over 100,000 users, YCSB's scrambled generator), where write_back
// also coalesces repeated keys, and unique keys (every put a new row), where only batching helps.
// Both patterns run in the same process, one after the other, on a fresh database each.
//
// Columns:
//   puts/s (ack)      puts completed per second by the writer threads (acknowledged);
//   puts/s (durable)  puts divided by the time until the last one was in the database (for
//                     write_back, the run plus the final flush());
//   rows written      UPSERTs the database executed; transactions: commits;
//   x write_through   puts/s (durable) over write_through's, same durability setting, same run.
//
// Usage: cachet_bench_write [--seconds X] [--threads N]   (defaults 2 and 2)
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cachet/cachet.hpp>
#include <chrono>
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

using clk = std::chrono::steady_clock;

constexpr std::uint64_t k_keys = 100'000;

// One connection to a database file, shared by all threads behind a mutex (SQLite allows one
// writer at a time anyway). The Source of both patterns.
class users_file {
 public:
  users_file(const std::string& path, bool wal) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) fail();
    exec(wal ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
             : "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;");
    exec("CREATE TABLE users(id INTEGER PRIMARY KEY, visits INTEGER NOT NULL)");
    if (sqlite3_prepare_v2(db_,
                           "INSERT INTO users(id, visits) VALUES(?1, ?2) "
                           "ON CONFLICT(id) DO UPDATE SET visits = excluded.visits",
                           -1, &upsert_, nullptr) != SQLITE_OK) {
      fail();
    }
    if (sqlite3_prepare_v2(db_, "SELECT visits FROM users WHERE id = ?1", -1, &select_, nullptr) !=
        SQLITE_OK) {
      fail();
    }
  }
  ~users_file() {
    sqlite3_finalize(upsert_);
    sqlite3_finalize(select_);
    sqlite3_close(db_);
  }

  std::optional<std::int64_t> load(const std::uint64_t& id) {
    std::lock_guard<std::mutex> g(mu_);
    sqlite3_bind_int64(select_, 1, static_cast<sqlite3_int64>(id));
    std::optional<std::int64_t> v;
    if (sqlite3_step(select_) == SQLITE_ROW) v = sqlite3_column_int64(select_, 0);
    sqlite3_reset(select_);
    return v;
  }
  void store(const std::uint64_t& id, const std::int64_t& visits) {
    std::lock_guard<std::mutex> g(mu_);
    upsert(id, visits);
    ++transactions_;
  }
  void store_all(std::span<const std::pair<std::uint64_t, std::int64_t>> batch) {
    std::lock_guard<std::mutex> g(mu_);
    exec("BEGIN");
    for (const auto& [id, visits] : batch) upsert(id, visits);
    exec("COMMIT");
    ++transactions_;
  }
  void erase(const std::uint64_t&) { throw std::logic_error("not used by this benchmark"); }

  std::uint64_t rows_written() {
    std::lock_guard<std::mutex> g(mu_);
    return rows_;
  }
  std::uint64_t transactions() {
    std::lock_guard<std::mutex> g(mu_);
    return transactions_;
  }

 private:
  void upsert(std::uint64_t id, std::int64_t visits) {
    sqlite3_bind_int64(upsert_, 1, static_cast<sqlite3_int64>(id));
    sqlite3_bind_int64(upsert_, 2, visits);
    const int rc = sqlite3_step(upsert_);
    sqlite3_reset(upsert_);
    if (rc != SQLITE_DONE) fail();
    ++rows_;
  }
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail();
  }
  [[noreturn]] void fail() {
    throw std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(db_));
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
  sqlite3_stmt* select_ = nullptr;
  std::mutex mu_;
  std::uint64_t rows_ = 0, transactions_ = 0;
};

struct source_ref {  // the patterns own their Source; this one points at the table
  users_file* f;
  std::optional<std::int64_t> load(const std::uint64_t& id) { return f->load(id); }
  void store(const std::uint64_t& id, const std::int64_t& v) { f->store(id, v); }
  void store_all(std::span<const std::pair<std::uint64_t, std::int64_t>> b) { f->store_all(b); }
  void erase(const std::uint64_t& id) { f->erase(id); }
};
struct source_ref_no_batch {  // write_through writes one row per put
  users_file* f;
  std::optional<std::int64_t> load(const std::uint64_t& id) { return f->load(id); }
  void store(const std::uint64_t& id, const std::int64_t& v) { f->store(id, v); }
  void erase(const std::uint64_t& id) { f->erase(id); }
};

using store_t = cachet::sharded_store<std::uint64_t, std::int64_t>;

struct result {
  std::uint64_t puts = 0;
  double run_s = 0, durable_s = 0;
  std::uint64_t rows = 0, transactions = 0, coalesced = 0;
};

bool g_unique_keys = false;  // the key stream of the current rows

// Runs `put(key, i)` on `threads` threads for `seconds`, each over its own key stream.
template <class Put>
std::uint64_t drive(unsigned threads, double seconds, Put put) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> total{0};
  const cachet_bench::scrambled_zipf_generator zipf(k_keys, 0.99);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      cachet_bench::splitmix64 rng(0x5EED + t);
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int k = 0; k < 64; ++k, ++n) {
          const std::uint64_t key = g_unique_keys ? (std::uint64_t{t} << 40) + n : zipf(rng);
          put(key, static_cast<std::int64_t>(n));
        }
      }
      total += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : ts) th.join();
  return total;
}

result run_write_through(const std::string& path, bool wal, unsigned threads, double seconds) {
  users_file db(path, wal);
  cachet::write_through<store_t, source_ref_no_batch> users(
      source_ref_no_batch{&db},
      cachet::store_options<std::uint64_t, std::int64_t>{.max_entries = 10'000});
  result r;
  const auto t0 = clk::now();
  r.puts = drive(threads, seconds, [&](std::uint64_t k, std::int64_t v) { users.put(k, v); });
  r.run_s = r.durable_s = std::chrono::duration<double>(clk::now() - t0).count();
  r.rows = db.rows_written();
  r.transactions = db.transactions();
  return r;
}

result run_write_back(const std::string& path, bool wal, unsigned threads, double seconds) {
  users_file db(path, wal);
  cachet::write_back<store_t, source_ref> users(
      source_ref{&db}, {.max_batch = 256, .max_delay = std::chrono::milliseconds(50)},
      cachet::store_options<std::uint64_t, std::int64_t>{.max_entries = 10'000});
  result r;
  const auto t0 = clk::now();
  r.puts = drive(threads, seconds, [&](std::uint64_t k, std::int64_t v) { users.put(k, v); });
  r.run_s = std::chrono::duration<double>(clk::now() - t0).count();
  users.flush();
  r.durable_s = std::chrono::duration<double>(clk::now() - t0).count();
  r.rows = db.rows_written();
  r.transactions = db.transactions();
  r.coalesced = users.stats().coalesced;
  return r;
}

double arg(int argc, char** argv, const char* name, double fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtod(argv[i + 1], nullptr);
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = arg(argc, argv, "--seconds", 2.0);
  const auto threads = static_cast<unsigned>(arg(argc, argv, "--threads", 2));
  if (!(seconds > 0) || threads == 0) {
    std::fprintf(stderr, "usage: %s [--seconds X>0] [--threads N>0]\n", argv[0]);
    return 2;
  }
  char dir_template[] = "/tmp/cachet_bench_write.XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::printf("write_through vs write_back over an SQLite file, %u threads, %.1f s per row\n",
              threads, seconds);
  std::printf("%-42s %14s %16s %12s %12s %12s %14s\n", "configuration", "puts/s (ack)",
              "puts/s (durable)", "rows written", "transactions", "coalesced", "x write_through");
  int run = 0;
  for (const bool unique : {false, true})
    for (const bool wal : {false, true}) {
      g_unique_keys = unique;
      const std::string mode = std::string(unique ? "unique keys, " : "Zipf keys, ") +
                               (wal ? "WAL+NORMAL" : "sync=FULL");
      const auto path = [&] {
        return std::string(dir) + "/db" + std::to_string(run++) + ".sqlite";
      };
      const result wt = run_write_through(path(), wal, threads, seconds);
      const result wb = run_write_back(path(), wal, threads, seconds);
      const double base = static_cast<double>(wt.puts) / wt.durable_s;
      for (const auto& [name, r] : {std::pair{"write_through", wt}, std::pair{"write_back", wb}}) {
        const std::string label = std::string(name) + " (" + mode + ")";
        const double durable = static_cast<double>(r.puts) / r.durable_s;
        std::printf("%-42s %14.0f %16.0f %12llu %12llu %12llu %13.1fx\n", label.c_str(),
                    static_cast<double>(r.puts) / r.run_s, durable,
                    static_cast<unsigned long long>(r.rows),
                    static_cast<unsigned long long>(r.transactions),
                    static_cast<unsigned long long>(r.coalesced), durable / base);
      }
    }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
