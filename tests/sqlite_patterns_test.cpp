// The access patterns over a real database: an in-memory SQLite (sqlite_db.hpp) is the source of
// truth, and every check is on what the database saw (queries() counts its SELECTs).
#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/write_back.hpp>
#include <cachet/write_through.hpp>
#include <catch2/catch.hpp>
#include <exception>
#include <map>
#include <span>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sqlite_db.hpp"
#include "support.hpp"

namespace {

using cachet_test::await;
using cachet_test::sqlite_db;
using cachet_test::users_table;
using std::chrono::seconds;

using store_t = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;
using aside_t = cachet::cache_aside<store_t>;

struct find_user_loader {
  sqlite_db* db;
  std::optional<std::string> operator()(const int& id) const { return db->find_user(id); }
};
using reader_t = cachet::read_through<store_t, find_user_loader>;

constexpr int k_threads = 64;

// What one thread got: a value (or nullopt), or the exception it caught.
struct outcome {
  std::optional<std::string> value;
  std::exception_ptr error;
};

// Runs `read` on k_threads threads at once and returns what each got. Asserts nothing: Catch2's
// assertions are not thread-safe, so the caller checks the outcomes after the join. A failed load
// hands the same exception object to every waiter; the threads only keep a pointer to it, and the
// main thread reads it after the join (reading it in the threads while another's catch block frees
// it is reported by TSan, which cannot see libstdc++'s uninstrumented refcount).
template <class Read>
std::vector<outcome> read_from_all_threads(Read read) {
  std::vector<outcome> out(k_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      try {
        out[t].value = read();
      } catch (...) {
        out[t].error = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  return out;
}

// The message of a caught exception, or "" if there was none.
std::string message(const std::exception_ptr& e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

// Installs a query hook that holds the (single) query open until every other thread is waiting on
// it, as counted by `coalesced()`, then throws if `fail`. Counts the hook's calls: each is one load
// that reached the database. If single-flight broke, each thread would run its own load: the hook
// would run k_threads times, coalesced() would never reach k_threads - 1, and await would give up.
template <class Coalesced>
void hold_queries_open(sqlite_db& db, Coalesced coalesced, std::atomic<int>& calls,
                       std::atomic<bool>& all_waited, bool fail) {
  db.set_query_hook([coalesced, &calls, &all_waited, fail] {
    ++calls;
    all_waited = await([&] { return coalesced() == k_threads - 1; });
    if (fail) throw std::runtime_error("database is locked");
  });
}

}  // namespace

TEST_CASE("sqlite: cache_aside, 64 threads on one cold key cause one query", "[sqlite]") {
  sqlite_db db;
  db.upsert_user(9, "ada");
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  std::atomic<int> hook_calls{0};
  std::atomic<bool> all_waited{false};
  hold_queries_open(
      db, [&] { return users.load_stats().coalesced; }, hook_calls, all_waited, false);

  const auto got = read_from_all_threads(
      [&] { return users.get_or_load(9, [&](int id) { return db.find_user(id); }); });

  REQUIRE(all_waited);
  REQUIRE(hook_calls == 1);
  REQUIRE(db.queries() == 1);
  for (const auto& o : got) {
    REQUIRE_FALSE(o.error);
    REQUIRE(o.value == "ada");
  }
  REQUIRE(users.load_stats().loads == 1);
  REQUIRE(users.load_stats().coalesced == k_threads - 1);
  // Cached now: the next read does not reach the database.
  db.set_query_hook({});
  REQUIRE(users.get_or_load(9, [&](int id) { return db.find_user(id); }) == "ada");
  REQUIRE(db.queries() == 1);
}

TEST_CASE("sqlite: cache_aside, a failing query reaches all 64 waiters and caches nothing",
          "[sqlite]") {
  sqlite_db db;
  db.upsert_user(9, "ada");
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  std::atomic<int> hook_calls{0};
  std::atomic<bool> all_waited{false};
  hold_queries_open(
      db, [&] { return users.load_stats().coalesced; }, hook_calls, all_waited, true);

  const auto got = read_from_all_threads(
      [&] { return users.get_or_load(9, [&](int id) { return db.find_user(id); }); });

  REQUIRE(all_waited);
  REQUIRE(hook_calls == 1);
  REQUIRE(db.queries() == 0);  // the hook threw before the SELECT ran
  for (const auto& o : got) {
    REQUIRE_FALSE(o.value);
    REQUIRE(message(o.error) == "database is locked");
  }
  REQUIRE(users.load_stats().load_failures == 1);
  REQUIRE(users.store().size() == 0);
  // Nothing was remembered: the next call queries again.
  db.set_query_hook({});
  REQUIRE(users.get_or_load(9, [&](int id) { return db.find_user(id); }) == "ada");
  REQUIRE(db.queries() == 1);
  REQUIRE(users.store().size() == 1);
}

TEST_CASE("sqlite: read_through, 64 threads on one cold key cause one query", "[sqlite]") {
  sqlite_db db;
  db.upsert_user(9, "ada");
  cachet::manual_clock clock;
  reader_t users({.max_entries = 100, .ttl = seconds(60), .xfetch_beta = 0}, find_user_loader{&db},
                 clock);
  std::atomic<int> hook_calls{0};
  std::atomic<bool> all_waited{false};
  hold_queries_open(
      db, [&] { return users.stats().loads.coalesced; }, hook_calls, all_waited, false);

  const auto got = read_from_all_threads([&] { return users.get(9); });

  REQUIRE(all_waited);
  REQUIRE(hook_calls == 1);
  REQUIRE(db.queries() == 1);
  for (const auto& o : got) {
    REQUIRE_FALSE(o.error);
    REQUIRE(o.value == "ada");
  }
  const auto st = users.stats();
  REQUIRE(st.misses == k_threads);
  REQUIRE(st.loads.loads == 1);
  REQUIRE(st.loads.coalesced == k_threads - 1);
  db.set_query_hook({});
  REQUIRE(users.get(9) == "ada");
  REQUIRE(db.queries() == 1);
  REQUIRE(users.stats().hits == 1);
}

TEST_CASE("sqlite: read_through, a failing query reaches all 64 waiters and caches nothing",
          "[sqlite]") {
  sqlite_db db;
  db.upsert_user(9, "ada");
  cachet::manual_clock clock;
  // A negative TTL too: a failure must not be remembered as "absent".
  reader_t users(
      {.max_entries = 100, .ttl = seconds(60), .negative_ttl = seconds(60), .xfetch_beta = 0},
      find_user_loader{&db}, clock);
  std::atomic<int> hook_calls{0};
  std::atomic<bool> all_waited{false};
  hold_queries_open(
      db, [&] { return users.stats().loads.coalesced; }, hook_calls, all_waited, true);

  const auto got = read_from_all_threads([&] { return users.get(9); });

  REQUIRE(all_waited);
  REQUIRE(hook_calls == 1);
  REQUIRE(db.queries() == 0);
  for (const auto& o : got) {
    REQUIRE_FALSE(o.value);
    REQUIRE(message(o.error) == "database is locked");
  }
  REQUIRE(users.stats().loads.load_failures == 1);
  REQUIRE(users.size() == 0);
  db.set_query_hook({});
  REQUIRE(users.get(9) == "ada");
  REQUIRE(db.queries() == 1);
  REQUIRE(users.size() == 1);
}

TEST_CASE("sqlite: a real SQLite error reaches the caller and caches nothing", "[sqlite]") {
  sqlite_db db;
  db.upsert_user(1, "ada");
  cachet::manual_clock clock;
  reader_t users({.max_entries = 100, .ttl = seconds(60), .negative_ttl = seconds(60)},
                 find_user_loader{&db}, clock);
  db.exec("ALTER TABLE users RENAME TO users_offline");
  REQUIRE_THROWS_WITH(users.get(1), Catch::Contains("no such table: users"));
  REQUIRE(users.size() == 0);
  db.exec("ALTER TABLE users_offline RENAME TO users");
  REQUIRE(users.get(1) == "ada");  // the prepared statement recompiles against the table
  REQUIRE(users.size() == 1);
}

TEST_CASE("sqlite: write_through writes the table first, then invalidates", "[sqlite]") {
  sqlite_db db;
  db.upsert_user(1, "ada");
  cachet::manual_clock clock;
  cachet::write_through<store_t, users_table> users(
      users_table{&db}, store_t::options_type{.max_entries = 100}, clock);
  REQUIRE(users.get(1) == "ada");
  REQUIRE(users.get(1) == "ada");
  REQUIRE(db.queries() == 1);

  users.put(1, "ada lovelace");
  REQUIRE_FALSE(users.cache().get(1));         // invalidated, not set
  REQUIRE(db.find_user(1) == "ada lovelace");  // the row changed (a query of its own)
  REQUIRE(db.queries() == 2);
  REQUIRE(users.get(1) == "ada lovelace");  // one query for the new row...
  REQUIRE(users.get(1) == "ada lovelace");  // ...then served from the cache
  REQUIRE(db.queries() == 3);

  SECTION("a write the table refuses leaves the cache (and the row) unchanged") {
    db.exec(
        "CREATE TRIGGER no_empty_insert BEFORE INSERT ON users WHEN NEW.name = '' "
        "BEGIN SELECT RAISE(ABORT, 'empty names are refused'); END;"
        "CREATE TRIGGER no_empty_update BEFORE UPDATE ON users WHEN NEW.name = '' "
        "BEGIN SELECT RAISE(ABORT, 'empty names are refused'); END;");
    REQUIRE_THROWS_WITH(users.put(1, ""), Catch::Contains("empty names are refused"));
    REQUIRE(users.cache().get(1) == "ada lovelace");  // still cached: not invalidated
    REQUIRE_THROWS_WITH(users.put(1, "", cachet::write_mode::update),
                        Catch::Contains("empty names are refused"));
    REQUIRE(users.cache().get(1) == "ada lovelace");  // not overwritten either
    REQUIRE(db.find_user(1) == "ada lovelace");
    REQUIRE(users.get(1) == "ada lovelace");
    REQUIRE(db.queries() == 4);  // only the direct find_user above
  }
  SECTION("update mode puts the written value; erase deletes the row and the entry") {
    users.put(1, "countess", cachet::write_mode::update);
    REQUIRE(users.cache().get(1) == "countess");
    REQUIRE(users.get(1) == "countess");
    REQUIRE(db.queries() == 3);
    users.erase(1);
    REQUIRE_FALSE(users.cache().get(1));
    REQUIRE_FALSE(users.get(1));
    REQUIRE(db.queries() == 4);
  }
}

TEST_CASE("sqlite: cache_aside update + invalidate, the next read returns the new row",
          "[sqlite]") {
  sqlite_db db;
  db.upsert_user(7, "grace");
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  auto load = [&](int id) { return db.find_user(id); };
  REQUIRE(users.get_or_load(7, load) == "grace");
  REQUIRE(users.get_or_load(7, load) == "grace");
  REQUIRE(db.queries() == 1);

  db.upsert_user(7, "grace hopper");
  REQUIRE(users.get_or_load(7, load) == "grace");  // stale until invalidated
  REQUIRE(users.invalidate(7));
  REQUIRE(users.get_or_load(7, load) == "grace hopper");
  REQUIRE(db.queries() == 2);

  db.delete_user(7);
  REQUIRE(users.invalidate(7));
  REQUIRE_FALSE(users.get_or_load(7, load));
  REQUIRE(db.queries() == 3);
}

TEST_CASE("sqlite: cache_aside drops a fill that raced with a write + invalidate", "[sqlite]") {
  sqlite_db db;
  db.upsert_user(7, "old");
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  // The loader reads the old row; before it returns, a writer updates the row and invalidates.
  auto racing_load = [&](int id) {
    auto row = db.find_user(id);
    db.upsert_user(id, "new");
    users.invalidate(id);
    return row;
  };
  REQUIRE(users.get_or_load(7, racing_load) == "old");  // this caller saw the old row...
  REQUIRE_FALSE(users.get(7));                          // ...but the cache does not keep it
  REQUIRE(users.get_or_load(7, [&](int id) { return db.find_user(id); }) == "new");
  REQUIRE(db.queries() == 2);
}

namespace {

// The users table as a write_back Source with batch writes, which refuses the write calls numbered
// [fail_from, fail_until): a failing window, placed by call count so it does not depend on timing.
struct flaky_users_table {
  sqlite_db* db;
  std::atomic<int>* calls;
  int fail_from, fail_until;
  void maybe_fail() {
    const int n = (*calls)++;
    if (n >= fail_from && n < fail_until) throw std::runtime_error("database is locked");
  }
  std::optional<std::string> load(const int& id) { return db->find_user(id); }
  void store(const int& id, const std::string& name) {
    maybe_fail();
    db->upsert_user(id, name);
  }
  void store_all(std::span<const std::pair<int, std::string>> batch) {
    maybe_fail();
    db->upsert_users(batch);
  }
  void erase(const int& id) {
    maybe_fail();
    db->delete_user(id);
  }
};

}  // namespace

TEST_CASE("sqlite: write_back under a failing window and a tiny cache, the table equals the model",
          "[sqlite]") {
  sqlite_db db;
  std::atomic<int> calls{0};
  cachet::write_back_options o;
  o.max_batch = 32;
  o.max_dirty = 256;
  o.max_delay = std::chrono::milliseconds(1);
  o.retry_initial = std::chrono::microseconds(100);
  o.retry_max = std::chrono::milliseconds(1);
  cachet::store_options<int, std::string> cache;
  cache.max_entries = 32;  // the working set is 1200 keys
  cache.shards = 1;
  constexpr int k_writers = 4, k_keys = 300, k_ops = 3000;
  // Each writer owns its keys, so its model is exact: the last value written, "" = erased.
  std::vector<std::map<int, std::string>> models(k_writers);
  std::vector<int> stale_reads(k_writers, 0);
  cachet::write_back_stats st;
  {
    cachet::write_back<store_t, flaky_users_table> users(
        flaky_users_table{&db, &calls, 20, 120}, o, cache, cachet::manual_clock{});
    std::vector<std::thread> writers;
    for (int w = 0; w < k_writers; ++w) {
      writers.emplace_back([&, w] {
        std::uint64_t x = 0xC0FFEEULL + static_cast<std::uint64_t>(w);
        auto& model = models[static_cast<std::size_t>(w)];
        for (int i = 0; i < k_ops; ++i) {
          x = cachet::detail::mix64(x);
          const int id = w * k_keys + static_cast<int>(x % k_keys);
          const int op = static_cast<int>((x >> 40) % 10);
          if (op < 6) {
            // Appended rather than "u" + ...: GCC 12 at -O3 warns falsely (-Wstringop-overflow)
            // on operator+(const char*, std::string&&), which inserts at the front.
            std::string name = "u";
            name += std::to_string(w);
            name += '-';
            name += std::to_string(i);
            users.put(id, name);
            model[id] = name;
          } else if (op == 6) {
            users.erase(id);
            model[id] = "";
          } else {
            auto it = model.find(id);
            const std::string want = it == model.end() ? "" : it->second;
            if (users.get(id).value_or("") != want) ++stale_reads[static_cast<std::size_t>(w)];
          }
        }
      });
    }
    for (auto& t : writers) t.join();
    users.flush();
    st = users.stats();
    CHECK(users.store().stats().evictions > 0);
  }
  std::map<int, std::string> expected;
  for (const auto& m : models) {
    for (const auto& [id, name] : m) {
      if (!name.empty()) expected[id] = name;
    }
  }
  CHECK(db.all_users() == expected);
  CHECK(stale_reads == std::vector<int>(k_writers, 0));
  CHECK(st.flush_failures >= 100);  // every call in the window failed and was retried
  CHECK(st.coalesced > 0);
  CHECK(st.flushed + st.coalesced == st.writes);
  CHECK(st.dirty == 0);
}
