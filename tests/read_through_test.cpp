#include <algorithm>
#include <atomic>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {

using cachet_test::await;
using std::chrono::nanoseconds;
using std::chrono::seconds;

using store_t = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;

// A stand-in database that counts its queries. `advance` is how long a query takes on the manual
// clock (XFetch's delta); `fail` makes queries throw.
struct fake_db {
  cachet::manual_clock clock;
  std::map<int, std::string> rows;
  std::atomic<int> queries{0};
  nanoseconds advance{0};
  bool fail = false;
  std::optional<std::string> find(int id) {
    ++queries;
    clock.advance(advance);
    if (fail) throw std::runtime_error("db down");
    auto it = rows.find(id);
    if (it == rows.end()) return std::nullopt;
    return it->second;
  }
};

struct db_loader {
  fake_db* db;
  std::optional<std::string> operator()(const int& id) const { return db->find(id); }
};

using cache_t = cachet::read_through<store_t, db_loader>;

}  // namespace

TEST_CASE("read_through: loads on a miss, serves hits, reloads after the TTL", "[read_through]") {
  fake_db db;
  db.rows = {{1, "ada"}};
  cache_t users({.max_entries = 100, .ttl = seconds(60), .xfetch_beta = 0}, db_loader{&db},
                db.clock);
  REQUIRE(users.get(1) == "ada");
  REQUIRE(users.get(1) == "ada");
  REQUIRE(db.queries == 1);
  db.clock.advance(seconds(60));
  db.rows[1] = "ada lovelace";
  REQUIRE(users.get(1) == "ada lovelace");
  REQUIRE(db.queries == 2);
  const auto st = users.stats();
  REQUIRE(st.hits == 1);
  REQUIRE(st.misses == 2);
  REQUIRE(st.loads.loads == 2);
}

TEST_CASE("read_through: negative caching remembers absence for negative_ttl", "[read_through]") {
  fake_db db;
  SECTION("with a negative TTL") {
    cache_t users({.max_entries = 100, .ttl = seconds(60), .negative_ttl = seconds(5)},
                  db_loader{&db}, db.clock);
    REQUIRE_FALSE(users.get(7));
    REQUIRE_FALSE(users.get(7));
    REQUIRE_FALSE(users.get(7));
    REQUIRE(db.queries == 1);
    REQUIRE(users.stats().negative_hits == 2);
    db.rows[7] = "late";
    db.clock.advance(seconds(5));
    REQUIRE(users.get(7) == "late");
    REQUIRE(db.queries == 2);
  }
  SECTION("without one, every request for a missing key reaches the database") {
    cache_t users({.max_entries = 100, .ttl = seconds(60)}, db_loader{&db}, db.clock);
    REQUIRE_FALSE(users.get(7));
    REQUIRE_FALSE(users.get(7));
    REQUIRE(db.queries == 2);
    REQUIRE(users.stats().negative_hits == 0);
    REQUIRE(users.size() == 0);
  }
}

TEST_CASE("read_through: absence is remembered for negative_ttl only, not through the stale window",
          "[read_through]") {
  fake_db db;
  cache_t users({.max_entries = 100,
                 .ttl = seconds(60),
                 .negative_ttl = seconds(5),
                 .stale_while_revalidate = seconds(3600),
                 .stale_if_error = seconds(3600)},
                db_loader{&db}, db.clock);
  REQUIRE_FALSE(users.get(7));
  db.rows[7] = "created";
  db.clock.advance(seconds(5));
  REQUIRE(users.get(7) == "created");  // not a stale "absent" kept for the value's grace period
  REQUIRE(db.queries == 2);
}

TEST_CASE("read_through: a failing load caches nothing and the next get retries",
          "[read_through]") {
  fake_db db;
  db.rows = {{1, "ada"}};
  cache_t users({.max_entries = 100, .ttl = seconds(60), .negative_ttl = seconds(60)},
                db_loader{&db}, db.clock);
  db.fail = true;
  REQUIRE_THROWS_AS(users.get(1), std::runtime_error);
  REQUIRE(users.size() == 0);
  db.fail = false;
  REQUIRE(users.get(1) == "ada");
  REQUIRE(users.stats().loads.load_failures == 1);
}

TEST_CASE("read_through: XFetch refreshes early with probability exp(-gap / (beta * delta))",
          "[read_through][xfetch]") {
  // N keys, each loaded with delta = 1 s, each read once at `gap` before its expiry: each read is
  // one trial of the XFetch draw. The draws are seeded, so this is deterministic; the bound (5
  // binomial standard deviations) is what a correct implementation meets for any seed.
  const int n = 4000;
  const nanoseconds delta = seconds(1);
  struct trial {
    double gap_in_deltas;
    double beta;
  };
  for (const trial t :
       {trial{0.5, 1.0}, trial{1.0, 1.0}, trial{2.0, 1.0}, trial{1.0, 2.0}, trial{3.0, 0.5}}) {
    fake_db db;
    for (int k = 0; k < n; ++k) db.rows.emplace(k, "v");
    const nanoseconds ttl = seconds(2 * n);
    cache_t cache({.max_entries = 2 * n, .ttl = ttl, .xfetch_beta = t.beta, .seed = 42},
                  db_loader{&db}, db.clock);
    db.advance = delta;
    std::vector<std::int64_t> expiry(n);
    for (int k = 0; k < n; ++k) {
      REQUIRE(cache.get(k) == "v");  // the load advances the clock by delta
      expiry[k] = db.clock.now().count() + ttl.count();
    }
    db.advance = nanoseconds(0);
    const auto gap = nanoseconds(static_cast<std::int64_t>(t.gap_in_deltas * 1e9));
    const auto before = cache.stats().early_refreshes;
    for (int k = 0; k < n; ++k) {
      db.clock.set(nanoseconds(expiry[k]) - gap);
      REQUIRE(cache.get(k) == "v");
    }
    const double refreshed = static_cast<double>(cache.stats().early_refreshes - before) / n;
    const double p = std::exp(-t.gap_in_deltas / t.beta);
    const double sigma = std::sqrt(p * (1 - p) / n);
    INFO("gap " << t.gap_in_deltas << " delta, beta " << t.beta << ": refreshed " << refreshed
                << ", expected " << p);
    REQUIRE(std::abs(refreshed - p) <= 5 * sigma);
  }
}

TEST_CASE("read_through: an early refresh runs once and nobody waits for it",
          "[read_through][xfetch]") {
  fake_db db;
  db.rows = {{1, "old"}};
  std::atomic<bool> refreshing{false};
  std::atomic<bool> release{false};
  struct slow_refresh_loader {
    fake_db* db;
    std::atomic<bool>* refreshing;
    std::atomic<bool>* release;
    std::optional<std::string> operator()(const int& id) const {
      if (db->queries > 0) {  // the refresh, not the first load: hold it open
        *refreshing = true;
        await([&] { return release->load(); });
      }
      return db->find(id);
    }
  };
  // beta huge: every read inside the last hour before expiry draws a refresh.
  cachet::read_through<store_t, slow_refresh_loader> cache(
      {.max_entries = 10, .ttl = seconds(3600), .xfetch_beta = 1e9, .seed = 1},
      slow_refresh_loader{&db, &refreshing, &release}, db.clock);
  db.advance = std::chrono::milliseconds(1);
  REQUIRE(cache.get(1) == "old");
  db.advance = nanoseconds(0);
  db.rows[1] = "new";
  db.clock.advance(seconds(3000));
  std::optional<std::string> refresher_got;
  std::thread refresher([&] { refresher_got = cache.get(1); });  // wins the draw, runs the refresh
  REQUIRE(await([&] { return refreshing.load(); }));
  // While the refresh is held open, other readers draw a refresh too, find one in flight, and are
  // served the current value at once.
  for (int i = 0; i < 10; ++i) REQUIRE(cache.get(1) == "old");
  release = true;
  refresher.join();
  REQUIRE(refresher_got == "new");  // the reader that refreshed is served what it loaded
  REQUIRE(cache.get(1) == "new");
  REQUIRE(db.queries == 2);
  REQUIRE(cache.stats().early_refreshes >= 1);
}

TEST_CASE("read_through: a failing early refresh still serves the current value",
          "[read_through][xfetch]") {
  fake_db db;
  db.rows = {{1, "v"}};
  cache_t cache({.max_entries = 10, .ttl = seconds(10), .xfetch_beta = 1e9, .seed = 3},
                db_loader{&db}, db.clock);
  db.advance = std::chrono::milliseconds(1);
  REQUIRE(cache.get(1) == "v");
  db.fail = true;
  db.clock.advance(seconds(9));
  REQUIRE(cache.get(1) == "v");
  REQUIRE(cache.stats().refresh_failures == 1);
}

TEST_CASE("read_through: stale-while-revalidate serves the stale value while one reader refreshes",
          "[read_through][stale]") {
  fake_db db;
  db.rows = {{1, "old"}};
  std::atomic<bool> refreshing{false};
  std::atomic<bool> release{false};
  struct held_loader {
    fake_db* db;
    std::atomic<bool>* refreshing;
    std::atomic<bool>* release;
    std::optional<std::string> operator()(const int& id) const {
      if (db->queries > 0) {  // the revalidation, not the first load: hold it open
        *refreshing = true;
        await([&] { return release->load(); });
      }
      return db->find(id);
    }
  };
  cachet::read_through<store_t, held_loader> cache({.max_entries = 10,
                                                    .ttl = seconds(10),
                                                    .xfetch_beta = 0,
                                                    .stale_while_revalidate = seconds(5)},
                                                   held_loader{&db, &refreshing, &release},
                                                   db.clock);
  REQUIRE(cache.get(1) == "old");
  db.rows[1] = "new";
  db.clock.advance(seconds(12));  // 2 s past the TTL: inside the 5 s grace period
  std::optional<std::string> refresher_got;
  std::thread refresher([&] { refresher_got = cache.get(1); });
  REQUIRE(await([&] { return refreshing.load(); }));
  for (int i = 0; i < 5; ++i) REQUIRE(cache.get(1) == "old");  // served at once, stale
  release = true;
  refresher.join();
  REQUIRE(refresher_got == "new");  // the reader that revalidated gets the fresh value
  REQUIRE(cache.get(1) == "new");
  REQUIRE(db.queries == 2);
  REQUIRE(cache.stats().stale_serves == 6);
}

TEST_CASE("read_through: stale-while-revalidate refreshes once per stale period under contention",
          "[read_through][stale]") {
  // Eight readers hammer one key. Each period the clock moves past the value's TTL, inside the
  // grace period, and stays there until the value is refreshed; then it moves on. A reader that
  // read the stale value just before another reader's refresh ended must not refresh it again, so
  // the database sees exactly one query per period. (Without the check inside the refresh's flight
  // this failed about one period in ten.)
  fake_db db;
  db.rows = {{1, "v"}};
  struct slow_loader {
    fake_db* db;
    std::optional<std::string> operator()(const int& id) const {
      for (int i = 0; i < 200; ++i) std::this_thread::yield();  // widen the window for the race
      return db->find(id);
    }
  };
  cachet::read_through<store_t, slow_loader> cache({.max_entries = 10,
                                                    .ttl = seconds(10),
                                                    .xfetch_beta = 0,
                                                    .stale_while_revalidate = seconds(3600)},
                                                   slow_loader{&db}, db.clock);
  REQUIRE(cache.get(1) == "v");
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0};  // Catch2's assertions are not for other threads
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&] {
      while (!stop) wrong += cache.get(1) == "v" ? 0 : 1;
    });
  }
  constexpr int k_periods = 50;
  bool refreshed = true;
  for (int p = 1; p <= k_periods && refreshed; ++p) {
    db.clock.advance(seconds(11));
    // Counted once the refresh has stored its value, so the next advance makes that value stale.
    refreshed =
        await([&] { return cache.stats().loads.loads >= static_cast<std::uint64_t>(1 + p); });
  }
  stop = true;
  for (auto& th : readers) th.join();
  REQUIRE(refreshed);
  CHECK(wrong == 0);
  CHECK(db.queries == 1 + k_periods);
  CHECK(cache.stats().loads.loads == static_cast<std::uint64_t>(1 + k_periods));
}

TEST_CASE(
    "read_through: a miss that reaches the load after another load ended is served, not reloaded",
    "[read_through]") {
  // The race, made deterministic: reader A misses; before A joins the load's flight, reader B
  // misses, loads, caches the value and retires its flight; A then leads a new flight. A must find
  // B's value in the store inside its flight instead of querying again. The hash runs B's whole
  // get() in place of the second hash A computes (the flight's, after the store's).
  using cachet_test::hooked_hash;
  using hooked_store =
      cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock, hooked_hash>;
  fake_db db;
  db.rows = {{1, "ada"}};
  cachet::read_through<hooked_store, db_loader> users(
      {.max_entries = 100, .ttl = seconds(60), .xfetch_beta = 0}, db_loader{&db}, db.clock);
  std::optional<std::string> b_got;
  hooked_hash::at_call(2, [&] { b_got = users.get(1); });
  CHECK(users.get(1) == "ada");
  REQUIRE(hooked_hash::fired());
  CHECK(b_got == "ada");
  CHECK(db.queries == 1);
  CHECK(users.stats().misses == 2);
  CHECK(users.stats().loads.loads == 1);
  CHECK(users.stats().loads.answered == 1);
  // The same once the value has expired: A sees it expired, B reloads it, A serves B's value.
  db.clock.advance(seconds(60));
  db.rows[1] = "ada lovelace";
  hooked_hash::at_call(2, [&] { b_got = users.get(1); });
  CHECK(users.get(1) == "ada lovelace");
  REQUIRE(hooked_hash::fired());
  CHECK(b_got == "ada lovelace");
  CHECK(db.queries == 2);
  CHECK(users.stats().loads.loads == 2);
  // A value that is still stale when A leads is no answer: A loads.
  db.clock.advance(seconds(60));
  db.rows[1] = "countess";
  hooked_hash::at_call(2, [] {});
  CHECK(users.get(1) == "countess");
  REQUIRE(hooked_hash::fired());
  CHECK(db.queries == 3);
}

TEST_CASE("read_through: past the grace period a stale value is reloaded before serving",
          "[read_through][stale]") {
  fake_db db;
  db.rows = {{1, "old"}};
  cache_t cache({.max_entries = 10,
                 .ttl = seconds(10),
                 .xfetch_beta = 0,
                 .stale_while_revalidate = seconds(5),
                 .stale_if_error = seconds(60)},
                db_loader{&db}, db.clock);
  REQUIRE(cache.get(1) == "old");
  db.rows[1] = "new";
  db.clock.advance(seconds(16));  // past the 5 s grace period, inside stale-if-error's 60 s
  REQUIRE(cache.get(1) == "new");
  REQUIRE(cache.stats().stale_serves == 0);
}

TEST_CASE("read_through: stale-if-error answers a failing load with the stale value, within bounds",
          "[read_through][stale]") {
  fake_db db;
  db.rows = {{1, "last good"}};
  cache_t cache(
      {.max_entries = 10, .ttl = seconds(10), .xfetch_beta = 0, .stale_if_error = seconds(60)},
      db_loader{&db}, db.clock);
  REQUIRE(cache.get(1) == "last good");
  db.fail = true;
  db.clock.advance(seconds(30));  // 20 s stale: within the 60 s bound
  REQUIRE(cache.get(1) == "last good");
  REQUIRE(cache.stats().stale_if_error_serves == 1);
  db.clock.advance(seconds(45));  // 65 s stale: beyond the bound, the failure surfaces
  REQUIRE_THROWS_AS(cache.get(1), std::runtime_error);
  db.fail = false;
  REQUIRE(cache.get(1) == "last good");  // and the next load succeeds
}

TEST_CASE("read_through: without stale options an expired value is never served",
          "[read_through][stale]") {
  fake_db db;
  db.rows = {{1, "v"}};
  cache_t cache({.max_entries = 10, .ttl = seconds(10), .xfetch_beta = 0}, db_loader{&db},
                db.clock);
  REQUIRE(cache.get(1) == "v");
  db.fail = true;
  db.clock.advance(seconds(10));
  REQUIRE_THROWS_AS(cache.get(1), std::runtime_error);
}

TEST_CASE("read_through: invalid options name the option", "[read_through][options]") {
  fake_db db;
  auto make = [&](cache_t::options o) { cache_t c(o, db_loader{&db}, db.clock); };
  auto option_of = [&](cache_t::options o) {
    try {
      make(o);
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return std::string("(none)");
  };
  REQUIRE(option_of({.max_entries = 10}) == "ttl");
  REQUIRE(option_of({.max_entries = 10, .ttl = seconds(1), .ttl_jitter = 1.0}) == "ttl_jitter");
  REQUIRE(option_of({.max_entries = 10, .ttl = seconds(1), .negative_ttl = seconds(-1)}) ==
          "negative_ttl");
  REQUIRE(option_of({.max_entries = 10, .ttl = seconds(1), .xfetch_beta = -1}) == "xfetch_beta");
  REQUIRE(option_of({.max_entries = 10, .ttl = seconds(1), .xfetch_beta = NAN}) == "xfetch_beta");
  REQUIRE(option_of({.ttl = seconds(1)}) == "max_entries");
  REQUIRE(
      option_of({.max_entries = 10, .ttl = seconds(1), .stale_while_revalidate = seconds(-1)}) ==
      "stale_while_revalidate");
  REQUIRE(option_of({.max_entries = 10, .ttl = seconds(1), .stale_if_error = seconds(-1)}) ==
          "stale_if_error");
  REQUIRE(option_of({.max_entries = 10, .ttl = seconds(1)}) == "(none)");
}

// ---------------------------------------------------------------------------------------------
// get_all() and bulk loaders
// ---------------------------------------------------------------------------------------------

namespace {

using opt_strings = std::vector<std::optional<std::string>>;

// A stand-in database with a bulk query: `SELECT id, name FROM users WHERE id IN (...)`. Counts
// single and bulk queries and records each batch's keys. `on_bulk` / `on_single` run first (to
// hold a query open, or make it fail).
struct bulk_db {
  cachet::manual_clock clock;
  std::map<int, std::string> rows;
  std::atomic<int> single_queries{0};
  std::atomic<int> bulk_queries{0};
  std::mutex mu;
  std::vector<std::vector<int>> batches;
  std::function<void(std::span<const int>)> on_bulk = [](std::span<const int>) {};
  std::function<void(int)> on_single = [](int) {};

  std::vector<std::vector<int>> take_batches() {
    std::lock_guard<std::mutex> g(mu);
    return std::exchange(batches, {});
  }
};

struct bulk_loader {
  bulk_db* db;
  std::optional<std::string> load(const int& id) const {
    ++db->single_queries;
    db->on_single(id);
    auto it = db->rows.find(id);
    if (it == db->rows.end()) return std::nullopt;
    return it->second;
  }
  // One pair per row found, in the database's order (not the request's); absent ids have none.
  std::vector<std::pair<int, std::string>> load_all(std::span<const int> ids) const {
    ++db->bulk_queries;
    {
      std::lock_guard<std::mutex> g(db->mu);
      db->batches.emplace_back(ids.begin(), ids.end());
    }
    db->on_bulk(ids);
    std::vector<std::pair<int, std::string>> found;
    for (const auto& [id, name] : db->rows) {
      if (std::find(ids.begin(), ids.end(), id) != ids.end()) found.emplace_back(id, name);
    }
    return found;
  }
};

using bulk_cache_t = cachet::read_through<store_t, bulk_loader>;

static_assert(cachet::bulk_loader<bulk_loader, int, std::string>);
static_assert(!cachet::bulk_loader<db_loader, int, std::string>);  // a plain Loader still works
static_assert(cachet::loader<db_loader, int, std::string>);

std::vector<int> ints(std::initializer_list<int> l) { return l; }

}  // namespace

TEST_CASE("read_through: get_all serves cached keys and loads the rest in one bulk query",
          "[read_through][get_all]") {
  bulk_db db;
  db.rows = {{1, "one"}, {2, "two"}, {3, "three"}};
  bulk_cache_t cache({.max_entries = 100, .ttl = seconds(60), .xfetch_beta = 0}, bulk_loader{&db},
                     db.clock);
  REQUIRE(cache.get(1) == "one");  // cached by a single load
  REQUIRE(db.single_queries == 1);
  const auto keys = ints({1, 3, 2, 3, 4});
  REQUIRE(cache.get_all(keys) == opt_strings{"one", "three", "two", "three", std::nullopt});
  REQUIRE(db.bulk_queries == 1);
  REQUIRE(db.take_batches() == std::vector<std::vector<int>>{{3, 2, 4}});  // once each, 1 cached
  REQUIRE(db.single_queries == 1);
  auto st = cache.stats();
  REQUIRE(st.hits == 1);
  REQUIRE(st.misses == 1 + 4);  // get(1), then 3, 2, 3, 4
  REQUIRE(st.loads.loads == 2);
  // Now all cached (4's absence is not: negative_ttl is 0), for get() and get_all() alike.
  REQUIRE(cache.get(3) == "three");
  REQUIRE(cache.get_all(ints({2, 3, 1})) == opt_strings{"two", "three", "one"});
  REQUIRE(db.bulk_queries == 1);
  REQUIRE(db.single_queries == 1);
  // After the TTL the batch is reloaded, again in one query.
  db.clock.advance(seconds(60));
  db.rows[2] = "TWO";
  REQUIRE(cache.get_all(ints({2, 3})) == opt_strings{"TWO", "three"});
  REQUIRE(db.take_batches() == std::vector<std::vector<int>>{{2, 3}});
  REQUIRE(cache.get_all(std::span<const int>()).empty());
}

TEST_CASE("read_through: get_all caches absence for negative_ttl, and only then",
          "[read_through][get_all]") {
  bulk_db db;
  db.rows = {{1, "one"}};
  SECTION("with a negative TTL") {
    bulk_cache_t cache({.max_entries = 100, .ttl = seconds(60), .negative_ttl = seconds(5)},
                       bulk_loader{&db}, db.clock);
    REQUIRE(cache.get_all(ints({1, 7, 8})) == opt_strings{"one", std::nullopt, std::nullopt});
    REQUIRE(cache.size() == 3);
    REQUIRE(cache.get_all(ints({7, 8, 1})) == opt_strings{std::nullopt, std::nullopt, "one"});
    REQUIRE(cache.get(7) == std::nullopt);
    REQUIRE(db.bulk_queries == 1);
    REQUIRE(db.single_queries == 0);
    REQUIRE(cache.stats().negative_hits == 3);
    db.rows[7] = "late";
    db.clock.advance(seconds(5));
    REQUIRE(cache.get_all(ints({7, 8, 1})) == opt_strings{"late", std::nullopt, "one"});
    REQUIRE(db.take_batches().back() == std::vector<int>{7, 8});
  }
  SECTION("without one, absent keys reach the database every time") {
    bulk_cache_t cache({.max_entries = 100, .ttl = seconds(60)}, bulk_loader{&db}, db.clock);
    REQUIRE(cache.get_all(ints({1, 7})) == opt_strings{"one", std::nullopt});
    REQUIRE(cache.get_all(ints({1, 7})) == opt_strings{"one", std::nullopt});
    REQUIRE(db.take_batches() == std::vector<std::vector<int>>{{1, 7}, {7}});
    REQUIRE(cache.size() == 1);
    REQUIRE(cache.stats().negative_hits == 0);
  }
}

TEST_CASE("read_through: get_all waits for a key another thread's get() is loading",
          "[read_through][get_all]") {
  bulk_db db;
  db.rows = {{1, "one"}, {2, "two"}};
  std::atomic<bool> a_loading{false};
  std::atomic<bool> release{false};
  db.on_single = [&](int) {
    a_loading = true;
    await([&] { return release.load(); });
  };
  bulk_cache_t cache({.max_entries = 100, .ttl = seconds(60)}, bulk_loader{&db}, db.clock);
  std::optional<std::string> a_got;
  std::thread a([&] { a_got = cache.get(1); });
  REQUIRE(await([&] { return a_loading.load(); }));
  opt_strings b_got;
  std::thread b([&] { b_got = cache.get_all(ints({1, 2})); });
  // B bulk-loads 2, then waits for A's load of 1.
  REQUIRE(await([&] { return cache.stats().loads.coalesced == 1; }));
  release = true;
  a.join();
  b.join();
  REQUIRE(a_got == "one");
  REQUIRE(b_got == opt_strings{"one", "two"});
  REQUIRE(db.single_queries == 1);
  REQUIRE(db.take_batches() == std::vector<std::vector<int>>{{2}});  // 1 was not reloaded
}

TEST_CASE("read_through: get() of a key in a running bulk load waits for that load",
          "[read_through][get_all]") {
  bulk_db db;
  db.rows = {{1, "one"}, {2, "two"}, {3, "three"}};
  constexpr int k_readers = 6;
  std::atomic<bool> bulk_running{false};
  std::atomic<bool> release{false};
  db.on_bulk = [&](std::span<const int>) {
    bulk_running = true;
    await([&] { return release.load(); });
  };
  bulk_cache_t cache({.max_entries = 100, .ttl = seconds(60)}, bulk_loader{&db}, db.clock);
  opt_strings leader_got;
  std::thread leader([&] { leader_got = cache.get_all(ints({1, 2, 3})); });
  REQUIRE(await([&] { return bulk_running.load(); }));
  std::vector<std::optional<std::string>> got(k_readers);
  std::vector<std::thread> readers;
  for (int t = 0; t < k_readers; ++t) {
    readers.emplace_back([&, t] { got[t] = cache.get(1 + t % 3); });
  }
  REQUIRE(await([&] { return cache.stats().loads.coalesced == k_readers; }));
  release = true;
  leader.join();
  for (auto& th : readers) th.join();
  REQUIRE(leader_got == opt_strings{"one", "two", "three"});
  for (int t = 0; t < k_readers; ++t) REQUIRE(got[t] == db.rows[1 + t % 3]);
  REQUIRE(db.single_queries == 0);
  REQUIRE(db.bulk_queries == 1);
}

TEST_CASE("read_through: a failing bulk load reaches every waiter and caches nothing",
          "[read_through][get_all]") {
  bulk_db db;
  db.rows = {{1, "one"}, {2, "two"}};
  std::atomic<bool> bulk_running{false};
  std::atomic<bool> release{false};
  std::atomic<bool> fail{true};
  db.on_bulk = [&](std::span<const int>) {
    bulk_running = true;
    await([&] { return release.load(); });
    if (fail) throw std::runtime_error("db down");
  };
  bulk_cache_t cache({.max_entries = 100, .ttl = seconds(60), .negative_ttl = seconds(60)},
                     bulk_loader{&db}, db.clock);
  std::exception_ptr leader_error;
  std::thread leader([&] {
    try {
      cache.get_all(ints({1, 2, 3}));
    } catch (...) {
      leader_error = std::current_exception();
    }
  });
  REQUIRE(await([&] { return bulk_running.load(); }));
  // Workers keep only the exception_ptr; the main thread reads the message (see single_flight.hpp
  // on TSan and shared exception objects).
  std::vector<std::exception_ptr> errors(3);
  std::vector<std::thread> readers;
  for (int k = 1; k <= 3; ++k) {
    readers.emplace_back([&, k] {
      try {
        cache.get(k);
      } catch (...) {
        errors[k - 1] = std::current_exception();
      }
    });
  }
  REQUIRE(await([&] { return cache.stats().loads.coalesced == 3; }));
  release = true;
  leader.join();
  for (auto& th : readers) th.join();
  auto message = [](const std::exception_ptr& e) -> std::string {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::runtime_error& err) {
      return err.what();
    }
    return "(no error)";
  };
  REQUIRE(message(leader_error) == "db down");
  for (auto& e : errors) REQUIRE(message(e) == "db down");
  REQUIRE(cache.size() == 0);  // neither the values nor 3's absence
  REQUIRE(db.single_queries == 0);
  REQUIRE(cache.stats().loads.load_failures == 1);
  fail = false;
  REQUIRE(cache.get_all(ints({1, 2, 3})) == opt_strings{"one", "two", std::nullopt});
  REQUIRE(db.bulk_queries == 2);
}

TEST_CASE("read_through: get_all with a Loader without load_all loads key by key, once each",
          "[read_through][get_all]") {
  fake_db db;
  db.rows = {{1, "one"}, {2, "two"}};
  cache_t cache({.max_entries = 100, .ttl = seconds(60), .negative_ttl = seconds(60)},
                db_loader{&db}, db.clock);
  REQUIRE(cache.get_all(ints({2, 1, 2, 9})) == opt_strings{"two", "one", "two", std::nullopt});
  REQUIRE(db.queries == 3);
  REQUIRE(cache.stats().loads.loads == 1);  // one batch, loaded by three load() calls
  REQUIRE(cache.get_all(ints({9, 1, 2})) == opt_strings{std::nullopt, "one", "two"});
  REQUIRE(db.queries == 3);
  db.fail = true;  // a failing load() fails the batch, and nothing of it is cached
  const auto cached = cache.size();
  REQUIRE_THROWS_AS(cache.get_all(ints({5, 6})), std::runtime_error);
  REQUIRE(cache.size() == cached);
  REQUIRE(cache.stats().loads.load_failures == 1);
}

TEST_CASE("read_through: get_all does not cache a key invalidated during its bulk load",
          "[read_through][get_all]") {
  bulk_db db;
  db.rows = {{1, "old"}, {2, "two"}};
  std::function<void(int)> invalidate;
  db.on_bulk = [&](std::span<const int>) {
    if (db.bulk_queries == 1) invalidate(1);  // a writer lands while the first batch loads
  };
  bulk_cache_t cache({.max_entries = 100, .ttl = seconds(60)}, bulk_loader{&db}, db.clock);
  invalidate = [&](int k) { cache.invalidate(k); };
  REQUIRE(cache.get_all(ints({1, 2})) == opt_strings{"old", "two"});
  REQUIRE(cache.size() == 1);  // 2 is cached, 1 is not
  db.rows[1] = "new";
  REQUIRE(cache.get_all(ints({1, 2})) == opt_strings{"new", "two"});
  REQUIRE(db.take_batches() == std::vector<std::vector<int>>{{1, 2}, {1}});
}

TEST_CASE("read_through: get_all serves stale values on error only if every missed key has one",
          "[read_through][get_all][stale]") {
  bulk_db db;
  db.rows = {{1, "one"}, {2, "two"}, {3, "three"}};
  std::atomic<bool> fail{false};
  db.on_bulk = [&](std::span<const int>) {
    if (fail) throw std::runtime_error("db down");
  };
  bulk_cache_t cache(
      {.max_entries = 100, .ttl = seconds(10), .xfetch_beta = 0, .stale_if_error = seconds(60)},
      bulk_loader{&db}, db.clock);
  REQUIRE(cache.get_all(ints({1, 2})) == opt_strings{"one", "two"});
  db.clock.advance(seconds(30));  // expired 20 s ago: within stale_if_error
  fail = true;
  REQUIRE(cache.get_all(ints({1, 2})) == opt_strings{"one", "two"});
  REQUIRE(cache.stats().stale_if_error_serves == 2);
  REQUIRE_THROWS_AS(cache.get_all(ints({1, 3})), std::runtime_error);  // 3 has nothing stale
  fail = false;
  db.rows[1] = "ONE";
  REQUIRE(cache.get_all(ints({1, 3})) == opt_strings{"ONE", "three"});  // expired: reloaded
}

TEST_CASE("read_through: get_all applies TTL jitter to what it loads", "[read_through][get_all]") {
  bulk_db db;
  // push_back, not = "v": GCC 12 at -O3 reports a false -Wstringop-overflow on the assignment.
  for (int k = 0; k < 200; ++k) db.rows[k].push_back('v');
  bulk_cache_t cache(
      {.max_entries = 1000, .ttl = seconds(100), .ttl_jitter = 0.5, .xfetch_beta = 0, .seed = 7},
      bulk_loader{&db}, db.clock);
  std::vector<int> keys;
  for (int k = 0; k < 200; ++k) keys.push_back(k);
  REQUIRE(cache.get_all(keys).size() == keys.size());
  // Jitter cuts each TTL by up to half: by 75 s some, not all, have expired; by 100 s all have.
  db.clock.advance(seconds(75));
  cache.get_all(keys);
  const auto reloaded = db.take_batches().back().size();
  REQUIRE(reloaded > 0);
  REQUIRE(reloaded < keys.size());
  db.clock.advance(seconds(100));
  cache.get_all(keys);
  REQUIRE(db.take_batches().back().size() == keys.size());
}

// ---------------------------------------------------------------------------------------------
// cachet::load_all_from (source.hpp): the shapes a bulk loader may return
// ---------------------------------------------------------------------------------------------

namespace {

struct map_loader {  // answers with a std::map, and with rows nobody asked for
  std::optional<std::string> load(const int&) { return std::nullopt; }
  std::map<int, std::string> load_all(std::span<const int>) {
    return {{1, "one"}, {2, "two"}, {99, "unasked"}};
  }
};

struct optional_pairs_loader {  // pairs of (key, std::optional<V>); 2 explicitly absent
  std::optional<std::string> load(const int&) { return std::nullopt; }
  std::vector<std::pair<int, std::optional<std::string>>> load_all(std::span<const int>) {
    return {{2, std::nullopt}, {1, "one"}, {1, "one again"}};
  }
};

struct lending_loader {  // returns a view of its own rows: they must not be moved from
  std::vector<std::pair<int, std::string>> rows = {{1, "a long enough string not to be SSO'd"}};
  std::optional<std::string> load(const int&) { return std::nullopt; }
  std::span<std::pair<int, std::string>> load_all(std::span<const int>) { return rows; }
};

struct wide_key_loader {  // rows keyed by a wider integer type than the cache's keys
  std::optional<std::string> load(const int&) { return std::nullopt; }
  std::vector<std::pair<long long, std::string>> load_all(std::span<const int>) {
    return {{2LL, "two"}};
  }
};

}  // namespace

TEST_CASE("load_all_from: rows are matched to keys, whatever shape the loader returns",
          "[read_through][load_all_from]") {
  const auto keys = ints({2, 1, 3, 2});
  using cachet::load_all_from;
  SECTION("a std::map, with an unasked row ignored") {
    map_loader l;
    REQUIRE(load_all_from<int, std::string>(l, std::span<const int>(keys)) ==
            opt_strings{"two", "one", std::nullopt, "two"});
  }
  SECTION("pairs with std::optional values; the last pair for a key wins") {
    optional_pairs_loader l;
    REQUIRE(load_all_from<int, std::string>(l, std::span<const int>(keys)) ==
            opt_strings{std::nullopt, "one again", std::nullopt, std::nullopt});
  }
  SECTION("a view of the loader's own rows is copied, not moved from") {
    lending_loader l;
    REQUIRE(load_all_from<int, std::string>(l, std::span<const int>(keys))[1] ==
            "a long enough string not to be SSO'd");
    REQUIRE(l.rows[0].second == "a long enough string not to be SSO'd");
  }
  SECTION("row keys of another type that converts to the key type") {
    wide_key_loader l;
    REQUIRE(load_all_from<int, std::string>(l, std::span<const int>(keys)) ==
            opt_strings{"two", std::nullopt, std::nullopt, "two"});
  }
  SECTION("a Loader without load_all is called once per key, in order") {
    std::vector<int> asked;
    auto l = [&](const int& k) -> std::optional<std::string> {
      asked.push_back(k);
      return k == 1 ? std::optional<std::string>("one") : std::nullopt;
    };
    REQUIRE(load_all_from<int, std::string>(l, std::span<const int>(keys)) ==
            opt_strings{std::nullopt, "one", std::nullopt, std::nullopt});
    REQUIRE(asked == keys);
  }
}

TEST_CASE("read_through: under the coarse default clock, XFetch still sees how long a load took",
          "[read_through]") {
  // A load of ~100 us inside one coarse tick (a few ms) measured 0 on that clock, which turned
  // XFetch off. With beta huge, any measured delta makes the next read refresh early (the chance
  // of no refresh is below 1e-5); a delta of 0 never does.
  auto slow = [](const int& k) -> std::optional<int> {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
    while (std::chrono::steady_clock::now() < until) {
    }
    return k;
  };
  using coarse_store = cachet::sharded_store<int, int>;  // coarse_steady_clock
  cachet::read_through<coarse_store, decltype(slow)> rt(
      {.max_entries = 16, .ttl = std::chrono::hours(1), .xfetch_beta = 1e12, .seed = 7}, slow);
  CHECK(rt.get(1) == 1);
  CHECK(rt.get(1) == 1);
  CHECK(rt.stats().early_refreshes == 1);
}
