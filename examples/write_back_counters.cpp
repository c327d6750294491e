// write-back view counters over SQLite: 4 threads count 200,000 page views of 100 pages. Each view
// is a put() acknowledged by the cache; the flusher writes the counters to the page_views table
// in batches, one transaction per batch, so 200,000 increments cost a few hundred row writes.
// flush() makes them durable; the table then holds every view.
//
// Note: `views.put(page, views.get(page).value_or(0) + 1)` is a read-modify-write. It is exact here
// because each thread counts its own pages (page % 4 == thread). Threads sharing a counter must
// serialise their increments themselves (or keep per-thread counts and add them up).
#include <sqlite3.h>

#include <atomic>
#include <cachet/cachet.hpp>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

// The Source: page_views(page INTEGER PRIMARY KEY, views INTEGER) in one in-memory connection
// shared by all threads behind a mutex. Counts the rows it wrote and the transactions.
class page_views_table {
 public:
  page_views_table() {
    if (sqlite3_open(":memory:", &db_) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
    exec("CREATE TABLE page_views(page INTEGER PRIMARY KEY, views INTEGER NOT NULL)");
    check(sqlite3_prepare_v2(db_, "SELECT views FROM page_views WHERE page = ?", -1, &select_,
                             nullptr));
    check(sqlite3_prepare_v2(db_,
                             "INSERT INTO page_views(page, views) VALUES(?1, ?2) "
                             "ON CONFLICT(page) DO UPDATE SET views = excluded.views",
                             -1, &upsert_, nullptr));
    check(sqlite3_prepare_v2(db_, "DELETE FROM page_views WHERE page = ?", -1, &delete_, nullptr));
  }
  ~page_views_table() {
    sqlite3_finalize(select_);
    sqlite3_finalize(upsert_);
    sqlite3_finalize(delete_);
    sqlite3_close(db_);
  }

  // The Source interface of cachet::write_back.
  std::optional<long> load(const int& page) {
    std::lock_guard<std::mutex> g(mu_);
    check(sqlite3_bind_int(select_, 1, page));
    std::optional<long> views;
    if (sqlite3_step(select_) == SQLITE_ROW) views = sqlite3_column_int64(select_, 0);
    sqlite3_reset(select_);
    return views;
  }
  void store(const int& page, const long& views) {
    std::lock_guard<std::mutex> g(mu_);
    upsert(page, views);
  }
  void store_all(std::span<const std::pair<int, long>> batch) {  // one transaction per batch
    std::lock_guard<std::mutex> g(mu_);
    exec("BEGIN");
    try {
      for (const auto& [page, views] : batch) upsert(page, views);
    } catch (...) {
      exec("ROLLBACK");
      throw;
    }
    exec("COMMIT");
    ++transactions_;
  }
  void erase(const int& page) {
    std::lock_guard<std::mutex> g(mu_);
    check(sqlite3_bind_int(delete_, 1, page));
    const int rc = sqlite3_step(delete_);
    sqlite3_reset(delete_);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
  }

  long total_views() {
    std::lock_guard<std::mutex> g(mu_);
    sqlite3_stmt* sum = nullptr;
    check(sqlite3_prepare_v2(db_, "SELECT COALESCE(SUM(views), 0) FROM page_views", -1, &sum,
                             nullptr));
    sqlite3_step(sum);
    const long total = sqlite3_column_int64(sum, 0);
    sqlite3_finalize(sum);
    return total;
  }
  long rows_written() const { return rows_written_; }
  long transactions() const { return transactions_; }

 private:
  void upsert(int page, long views) {  // mu_ held
    check(sqlite3_bind_int(upsert_, 1, page));
    check(sqlite3_bind_int64(upsert_, 2, views));
    const int rc = sqlite3_step(upsert_);
    sqlite3_reset(upsert_);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
    ++rows_written_;
  }
  void exec(const char* sql) { check(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr)); }
  void check(int rc) {
    if (rc != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt* select_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
  sqlite3_stmt* delete_ = nullptr;
  std::mutex mu_;
  long rows_written_ = 0;  // under mu_
  long transactions_ = 0;
};

// The table outlives the cache, which flushes into it when destroyed.
struct page_views_source {
  page_views_table* table;
  std::optional<long> load(const int& page) { return table->load(page); }
  void store(const int& page, const long& views) { table->store(page, views); }
  void store_all(std::span<const std::pair<int, long>> batch) { table->store_all(batch); }
  void erase(const int& page) { table->erase(page); }
};

}  // namespace

int main() {
  constexpr int k_threads = 4, k_pages = 100, k_views_per_thread = 50'000;
  page_views_table table;
  cachet::write_back<cachet::sharded_store<int, long>, page_views_source> views(
      page_views_source{&table}, {.max_batch = 64, .max_delay = std::chrono::milliseconds(20)},
      cachet::store_options<int, long>{.max_entries = 1'000});

  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&views, t] {
      for (int i = 0; i < k_views_per_thread; ++i) {
        const int page = (i * 7 % (k_pages / k_threads)) * k_threads + t;  // this thread's pages
        views.put(page, views.get(page).value_or(0) + 1);                  // acknowledged at once
      }
    });
  }
  for (auto& th : threads) th.join();
  views.flush();  // every acknowledged view is in the table now

  const auto st = views.stats();
  const long total = table.total_views();
  std::printf("%ld views counted, %ld in the table after flush()\n", static_cast<long>(st.writes),
              total);
  std::printf("%ld rows written in %ld transactions (%llu writes coalesced, %llu batches)\n",
              table.rows_written(), table.transactions(),
              static_cast<unsigned long long>(st.coalesced),
              static_cast<unsigned long long>(st.batches));
  const long expected = long{k_threads} * k_views_per_thread;
  const bool ok = total == expected && static_cast<long>(st.writes) == expected &&
                  table.rows_written() == static_cast<long>(st.flushed) &&
                  st.flushed + st.coalesced == st.writes && table.rows_written() < expected;
  return ok ? 0 : 1;
}
