#include <cachet/sharded_store.hpp>
#include <cachet/write_through.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <stdexcept>
#include <string>

namespace {

using store_t = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;

// A Source over a map, counting the calls it serves; writes can be made to fail.
struct table {
  std::map<int, std::string> rows;
  int loads = 0;
  int stores = 0;
  bool fail_writes = false;
  std::optional<std::string> load(const int& id) {
    ++loads;
    auto it = rows.find(id);
    if (it == rows.end()) return std::nullopt;
    return it->second;
  }
  void store(const int& id, const std::string& v) {
    if (fail_writes) throw std::runtime_error("write failed");
    ++stores;
    rows[id] = v;
  }
  void erase(const int& id) {
    if (fail_writes) throw std::runtime_error("write failed");
    rows.erase(id);
  }
};

using wt_t = cachet::write_through<store_t, table>;

struct load_only {
  std::optional<std::string> load(const int&) { return std::nullopt; }
};

}  // namespace

static_assert(cachet::source<table, int, std::string>);
static_assert(!cachet::source<load_only, int, std::string>);

TEST_CASE("write_through: writes reach the source first, then invalidate the cache",
          "[write_through]") {
  cachet::manual_clock clock;
  wt_t users(table{{{1, "ada"}}}, store_t::options_type{.max_entries = 100}, clock);
  REQUIRE(users.get(1) == "ada");
  REQUIRE(users.source().loads == 1);
  users.put(1, "ada lovelace");
  REQUIRE(users.source().rows.at(1) == "ada lovelace");
  REQUIRE_FALSE(users.cache().get(1));  // invalidated, not set
  REQUIRE(users.get(1) == "ada lovelace");
  REQUIRE(users.source().loads == 2);
}

TEST_CASE("write_through: update mode puts the written value", "[write_through]") {
  cachet::manual_clock clock;
  wt_t users(table{}, store_t::options_type{.max_entries = 100}, clock);
  users.put(2, "bob", cachet::write_mode::update);
  REQUIRE(users.source().rows.at(2) == "bob");
  REQUIRE(users.get(2) == "bob");
  REQUIRE(users.source().loads == 0);
}

TEST_CASE("write_through: a failing write leaves the cache unchanged", "[write_through]") {
  cachet::manual_clock clock;
  wt_t users(table{{{1, "ada"}}}, store_t::options_type{.max_entries = 100}, clock);
  REQUIRE(users.get(1) == "ada");
  users.source().fail_writes = true;
  REQUIRE_THROWS_AS(users.put(1, "eve"), std::runtime_error);
  REQUIRE_THROWS_AS(users.put(1, "eve", cachet::write_mode::update), std::runtime_error);
  REQUIRE_THROWS_AS(users.erase(1), std::runtime_error);
  REQUIRE(users.cache().get(1) == "ada");  // still cached, still the source's value
  REQUIRE(users.source().rows.at(1) == "ada");
}

TEST_CASE("write_through: erase removes from the source and the cache", "[write_through]") {
  cachet::manual_clock clock;
  wt_t users(table{{{1, "ada"}}}, store_t::options_type{.max_entries = 100}, clock);
  REQUIRE(users.get(1) == "ada");
  users.erase(1);
  REQUIRE_FALSE(users.source().rows.contains(1));
  REQUIRE_FALSE(users.get(1));
}
