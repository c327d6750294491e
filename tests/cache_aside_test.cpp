#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

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
