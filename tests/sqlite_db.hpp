// Test support: a small RAII wrapper over an in-memory SQLite database, used as the source of truth
// by the [sqlite] tests. Tables: users(id INTEGER PRIMARY KEY, name TEXT) and
// products(id INTEGER PRIMARY KEY, name TEXT, price INTEGER). Every failing sqlite3 call throws
// std::runtime_error carrying sqlite3_errmsg().
//
// Threading: one connection, guarded by one std::mutex (the connection is opened with
// SQLITE_OPEN_NOMUTEX, since this wrapper serializes it). Why not SQLITE_OPEN_FULLMUTEX: each
// ":memory:" connection is its own database, so every thread must share this one connection, and
// the prepared statements are shared with it. FULLMUTEX serializes single API calls only, so two
// threads could still interleave bind / step / reset on one statement, and sqlite3_errmsg() could
// report another thread's error. The std::mutex makes each whole statement use (bind, step, read
// columns, reset) and its error message atomic.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

namespace cachet_test {

class sqlite_db {
 public:
  sqlite_db() {
    sqlite3* raw = nullptr;
    const int rc =
        sqlite3_open_v2(":memory:", &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db_.reset(raw);  // closed by the deleter even if the open failed
    if (rc != SQLITE_OK) {
      throw std::runtime_error(std::string("sqlite3_open_v2: ") +
                               (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    exec(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT, price INTEGER);");
    find_user_ = prepare("SELECT name FROM users WHERE id = ?1");
    upsert_user_ = prepare(
        "INSERT INTO users(id, name) VALUES(?1, ?2) "
        "ON CONFLICT(id) DO UPDATE SET name = excluded.name");
    delete_user_ = prepare("DELETE FROM users WHERE id = ?1");
    all_users_ = prepare("SELECT id, name FROM users ORDER BY id");
  }

  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;

  // Runs one or more SQL statements with no result rows (schema changes, triggers, test setup).
  void exec(const std::string& sql) {
    std::lock_guard<std::mutex> g(mu_);
    exec_locked(sql.c_str());
  }

  // The user's name, or nullopt if there is no such row. Runs the query hook first, outside the
  // lock (a hook that waits does not block other threads' statements); an exception from the hook
  // propagates, and no query is run or counted.
  std::optional<std::string> find_user(int id) {
    if (auto hook = query_hook()) hook();
    std::lock_guard<std::mutex> g(mu_);
    statement_use use(find_user_.get());
    bind_int(find_user_.get(), 1, id);
    queries_.fetch_add(1, std::memory_order_relaxed);
    const int rc = sqlite3_step(find_user_.get());
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) fail("sqlite3_step(find_user)");
    const unsigned char* text = sqlite3_column_text(find_user_.get(), 0);
    if (text == nullptr) return std::string();  // NULL name
    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<std::size_t>(sqlite3_column_bytes(find_user_.get(), 0)));
  }

  void upsert_user(int id, const std::string& name) {
    std::lock_guard<std::mutex> g(mu_);
    upsert_locked(id, name);
  }

  // Upserts a batch of users in one transaction: all or none.
  void upsert_users(std::span<const std::pair<int, std::string>> batch) {
    std::lock_guard<std::mutex> g(mu_);
    exec_locked("BEGIN");
    try {
      for (const auto& [id, name] : batch) upsert_locked(id, name);
    } catch (...) {
      exec_locked("ROLLBACK");
      throw;
    }
    exec_locked("COMMIT");
  }

  // Every row of users, by id.
  std::map<int, std::string> all_users() {
    std::lock_guard<std::mutex> g(mu_);
    statement_use use(all_users_.get());
    std::map<int, std::string> rows;
    int rc;
    while ((rc = sqlite3_step(all_users_.get())) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(all_users_.get(), 1);
      rows[sqlite3_column_int(all_users_.get(), 0)] =
          text ? reinterpret_cast<const char*>(text) : "";
    }
    if (rc != SQLITE_DONE) fail("sqlite3_step(all_users)");
    return rows;
  }

  void delete_user(int id) {
    std::lock_guard<std::mutex> g(mu_);
    statement_use use(delete_user_.get());
    bind_int(delete_user_.get(), 1, id);
    if (sqlite3_step(delete_user_.get()) != SQLITE_DONE) fail("sqlite3_step(delete_user)");
  }

  // SELECTs run by find_user (writes are not counted).
  int queries() const noexcept { return queries_.load(std::memory_order_relaxed); }

  // Called by find_user before its query runs, on the calling thread: tests use it to hold a query
  // open or to make it fail. An empty function removes the hook.
  void set_query_hook(std::function<void()> hook) {
    std::lock_guard<std::mutex> g(hook_mu_);
    hook_ = std::move(hook);
  }

 private:
  struct db_closer {
    void operator()(sqlite3* db) const noexcept { sqlite3_close(db); }
  };
  struct stmt_finalizer {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
  };
  using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

  // Resets a statement and clears its bindings when a use of it ends, normally or by an exception,
  // so it is ready for the next call. Constructed and destroyed under mu_.
  struct statement_use {
    explicit statement_use(sqlite3_stmt* s) : stmt(s) {}
    ~statement_use() {
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
    }
    statement_use(const statement_use&) = delete;
    statement_use& operator=(const statement_use&) = delete;
    sqlite3_stmt* stmt;
  };

  void upsert_locked(int id, const std::string& name) {
    statement_use use(upsert_user_.get());
    bind_int(upsert_user_.get(), 1, id);
    if (sqlite3_bind_text(upsert_user_.get(), 2, name.data(), static_cast<int>(name.size()),
                          SQLITE_TRANSIENT) != SQLITE_OK) {
      fail("sqlite3_bind_text");
    }
    if (sqlite3_step(upsert_user_.get()) != SQLITE_DONE) fail("sqlite3_step(upsert_user)");
  }

  // Runs SQL with mu_ held.
  void exec_locked(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errmsg(db_.get());
      sqlite3_free(err);
      throw std::runtime_error("sqlite3_exec: " + msg);
    }
  }

  std::function<void()> query_hook() {
    std::lock_guard<std::mutex> g(hook_mu_);
    return hook_;
  }

  stmt_ptr prepare(const char* sql) {
    std::lock_guard<std::mutex> g(mu_);
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr) != SQLITE_OK) {
      sqlite3_finalize(raw);
      fail("sqlite3_prepare_v2");
    }
    return stmt_ptr(raw);
  }

  void bind_int(sqlite3_stmt* s, int index, int value) {
    if (sqlite3_bind_int(s, index, value) != SQLITE_OK) fail("sqlite3_bind_int");
  }

  // Throws the connection's last error. Called with mu_ held.
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db_.get()));
  }

  // Declared first, so it is destroyed last: statements are finalized before the connection closes.
  std::unique_ptr<sqlite3, db_closer> db_;
  std::mutex mu_;
  stmt_ptr find_user_, upsert_user_, delete_user_, all_users_;
  std::atomic<int> queries_{0};
  std::mutex hook_mu_;
  std::function<void()> hook_;
};

// A cachet Source over the users table (load / store / erase), for write_through. Copies share the
// database, which must outlive them.
struct users_table {
  sqlite_db* db;
  std::optional<std::string> load(const int& id) { return db->find_user(id); }
  void store(const int& id, const std::string& name) { db->upsert_user(id, name); }
  void erase(const int& id) { db->delete_user(id); }
};

}  // namespace cachet_test
