// read-through over SQLite: 32 threads read one cold key, the database serves one query; then
// negative caching: a missing id read 100 times costs one query, as "absent" is remembered.
#include <sqlite3.h>

#include <atomic>
#include <cachet/cachet.hpp>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// One in-memory connection shared by all threads (each ":memory:" connection is its own
// database), serialized by a mutex. Counts the SELECTs it runs.
class users_db {
 public:
  users_db() {
    if (sqlite3_open(":memory:", &db_) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
    check(sqlite3_exec(db_,
                       "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);"
                       "INSERT INTO users VALUES (42, 'Ada Lovelace');",
                       nullptr, nullptr, nullptr));
    check(sqlite3_prepare_v2(db_, "SELECT name FROM users WHERE id = ?", -1, &find_, nullptr));
  }
  ~users_db() {
    sqlite3_finalize(find_);
    sqlite3_close(db_);
  }
  std::optional<std::string> find(int id) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // as if over the network
    std::lock_guard<std::mutex> g(mu_);
    ++queries_;
    check(sqlite3_bind_int(find_, 1, id));
    const int rc = sqlite3_step(find_);
    std::optional<std::string> name;
    if (rc == SQLITE_ROW) name = reinterpret_cast<const char*>(sqlite3_column_text(find_, 0));
    sqlite3_reset(find_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
    return name;  // std::nullopt: no such user
  }
  int queries() const { return queries_; }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* find_ = nullptr;
  std::mutex mu_;
  std::atomic<int> queries_{0};
};

}  // namespace

int main() {
  users_db db;
  auto load = [&db](const int& id) { return db.find(id); };
  cachet::read_through<cachet::sharded_store<int, std::string>, decltype(load)> users(
      {.max_entries = 10'000,
       .ttl = std::chrono::minutes(5),
       .negative_ttl = std::chrono::minutes(1)},
      load);

  std::atomic<int> served{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&] { served += users.get(42) == "Ada Lovelace"; });
  }
  for (auto& th : threads) th.join();
  const int after_hot = db.queries();
  std::printf("%d reads, %d database query (%llu waited for it)\n", served.load(), after_hot,
              static_cast<unsigned long long>(users.stats().loads.coalesced));

  int absent = 0;
  for (int i = 0; i < 100; ++i) absent += !users.get(7).has_value();  // no user 7
  const int missing_queries = db.queries() - after_hot;
  std::printf("%d reads of a missing id, %d database query (%llu negative hits)\n", absent,
              missing_queries, static_cast<unsigned long long>(users.stats().negative_hits));
  return served == 32 && after_hot == 1 && absent == 100 && missing_queries == 1 ? 0 : 1;
}
