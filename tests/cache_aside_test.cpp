#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {

using cachet_test::await;

using store_t = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;
using aside_t = cachet::cache_aside<store_t>;

// A stand-in database: rows by id and a count of the queries it served.
struct fake_db {
  std::map<int, std::string> rows;
  std::atomic<int> queries{0};
  std::optional<std::string> find(int id) {
    ++queries;
    auto it = rows.find(id);
    if (it == rows.end()) return std::nullopt;
    return it->second;
  }
};

}  // namespace

TEST_CASE("cache_aside: get_or_load fills on a miss and serves hits after", "[cache_aside]") {
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  fake_db db;
  db.rows = {{1, "ada"}, {2, "bob"}};
  auto load = [&](int id) { return db.find(id); };
  REQUIRE(users.get_or_load(1, load) == "ada");
  REQUIRE(users.get_or_load(1, load) == "ada");
  REQUIRE(db.queries == 1);
  REQUIRE(users.get(1) == "ada");
  // Absent rows are returned as nullopt and not cached.
  REQUIRE_FALSE(users.get_or_load(3, load));
  REQUIRE_FALSE(users.get_or_load(3, load));
  REQUIRE(db.queries == 3);
}

TEST_CASE("cache_aside: write then invalidate, the next read loads the new row", "[cache_aside]") {
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  fake_db db;
  db.rows = {{1, "ada"}};
  auto load = [&](int id) { return db.find(id); };
  REQUIRE(users.get_or_load(1, load) == "ada");
  db.rows[1] = "ada lovelace";
  REQUIRE(users.invalidate(1));
  REQUIRE_FALSE(users.invalidate(1));
  REQUIRE(users.get_or_load(1, load) == "ada lovelace");
  REQUIRE(db.queries == 2);
}

TEST_CASE("cache_aside: a fill that raced with an invalidation is dropped", "[cache_aside]") {
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  fake_db db;
  db.rows = {{1, "old"}};
  // The loader reads the old row; before it returns, a writer updates the row and invalidates.
  auto racing_load = [&](int id) {
    auto row = db.find(id);
    db.rows[1] = "new";
    users.invalidate(1);
    return row;
  };
  REQUIRE(users.get_or_load(1, racing_load) == "old");  // this caller saw the old row...
  REQUIRE_FALSE(users.get(1));                          // ...but the cache does not keep it
  REQUIRE(users.get_or_load(1, [&](int id) { return db.find(id); }) == "new");
  REQUIRE(users.get(1) == "new");
}

TEST_CASE("cache_aside: 64 threads on one cold key cause one query", "[cache_aside]") {
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  fake_db db;
  db.rows = {{9, "hot"}};
  constexpr int k_threads = 64;
  std::vector<std::optional<std::string>> got(k_threads);
  std::atomic<bool> all_waited{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      got[t] = users.get_or_load(9, [&](int id) {
        // Hold the query open until every other thread is waiting on it (none can be served from
        // the cache before this returns).
        all_waited = await([&] { return users.load_stats().coalesced == k_threads - 1; });
        return db.find(id);
      });
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(all_waited);
  REQUIRE(db.queries == 1);
  for (auto& g : got) REQUIRE(g == "hot");
  REQUIRE(users.get(9) == "hot");
}

TEST_CASE(
    "cache_aside: a miss that reaches the load after another load ended is served, not reloaded",
    "[cache_aside]") {
  // Caller A misses; before A joins the load's flight, caller B misses, loads, caches the row and
  // retires its flight. A must find B's value inside its own flight instead of querying again.
  // The hash runs B's whole get_or_load() in place of the second hash A computes (the flight's).
  using cachet_test::hooked_hash;
  using hooked_store =
      cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock, hooked_hash>;
  cachet::manual_clock clock;
  cachet::cache_aside<hooked_store> users(hooked_store::options_type{.max_entries = 100}, clock);
  fake_db db;
  db.rows = {{1, "ada"}};
  auto load = [&](int id) { return db.find(id); };
  std::optional<std::string> b_got;
  hooked_hash::at_call(2, [&] { b_got = users.get_or_load(1, load); });
  CHECK(users.get_or_load(1, load) == "ada");
  REQUIRE(hooked_hash::fired());
  CHECK(b_got == "ada");
  CHECK(db.queries == 1);
  CHECK(users.load_stats().loads == 1);
  CHECK(users.load_stats().answered == 1);
}

TEST_CASE("cache_aside: a failing load reaches every waiter and caches nothing", "[cache_aside]") {
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  constexpr int k_threads = 64;
  std::atomic<int> failures{0};
  std::atomic<int> queries{0};
  std::atomic<bool> all_waited{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&] {
      try {
        users.get_or_load(5, [&](int) -> std::optional<std::string> {
          ++queries;
          all_waited = await([&] { return users.load_stats().coalesced == k_threads - 1; });
          throw std::runtime_error("db down");
        });
      } catch (const std::runtime_error&) {
        ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(all_waited);
  REQUIRE(queries == 1);
  REQUIRE(failures == k_threads);
  REQUIRE(users.store().size() == 0);
  REQUIRE(users.get_or_load(5, [](int) { return std::optional<std::string>("back"); }) == "back");
}

TEST_CASE("cache_aside: set with a TTL expires on the store's clock", "[cache_aside]") {
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  users.set(1, "a", std::chrono::seconds(10));
  REQUIRE(users.get(1) == "a");
  clock.advance(std::chrono::seconds(10));
  REQUIRE_FALSE(users.get(1));
}

namespace {
struct object_loader {
  std::optional<std::string> load(const int& id) { return "id " + std::to_string(id); }
};
struct not_a_loader {
  int fetch(const int&) { return 0; }
};
}  // namespace

TEST_CASE("cache_aside: Loader concept accepts lambdas and load() objects", "[cache_aside]") {
  static_assert(cachet::loader<object_loader, int, std::string>);
  static_assert(
      cachet::loader<decltype([](int) { return std::optional<std::string>(); }), int, std::string>);
  static_assert(!cachet::loader<not_a_loader, int, std::string>);
  cachet::manual_clock clock;
  aside_t users(store_t::options_type{.max_entries = 100}, clock);
  object_loader l;
  REQUIRE(users.get_or_load(4, l) == "id 4");
}
