#include <atomic>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
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

TEST_CASE("read_through: 64 threads on one cold key cause one load", "[read_through]") {
  fake_db db;
  db.rows = {{9, "hot"}};
  constexpr int k_threads = 64;
  std::atomic<bool> all_waited{false};
  struct gated_loader {
    fake_db* db;
    std::atomic<bool>* all_waited;
    std::function<std::uint64_t()> coalesced;
    std::optional<std::string> operator()(const int& id) const {
      *all_waited = await([&] { return coalesced() == k_threads - 1; });
      return db->find(id);
    }
  };
  using gated_t = cachet::read_through<store_t, gated_loader>;
  gated_t* self = nullptr;
  gated_t users({.max_entries = 100, .ttl = seconds(60)},
                gated_loader{&db, &all_waited, [&] { return self->stats().loads.coalesced; }},
                db.clock);
  self = &users;
  std::vector<std::optional<std::string>> got(k_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) threads.emplace_back([&, t] { got[t] = users.get(9); });
  for (auto& th : threads) th.join();
  REQUIRE(all_waited);
  REQUIRE(db.queries == 1);
  for (auto& g : got) REQUIRE(g == "hot");
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
    for (int k = 0; k < n; ++k) db.rows[k] = "v";
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
  REQUIRE(refresher_got == "old");  // the reader that refreshed was served the value it found
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

TEST_CASE("read_through: a load that raced with invalidate() is not cached", "[read_through]") {
  fake_db db;
  db.rows = {{1, "old"}};
  std::function<void(int)> invalidate;  // set to the cache's invalidate() once the cache exists
  struct racing_loader {
    fake_db* db;
    std::function<void(int)>* invalidate;
    std::optional<std::string> operator()(const int& id) const {
      auto row = db->find(id);
      if (row == "old") {  // a writer lands while this load is in flight
        db->rows[1] = "new";
        (*invalidate)(1);
      }
      return row;
    }
  };
  cachet::read_through<store_t, racing_loader> cache({.max_entries = 10, .ttl = seconds(60)},
                                                     racing_loader{&db, &invalidate}, db.clock);
  invalidate = [&](int k) { cache.invalidate(k); };
  REQUIRE(cache.get(1) == "old");  // this caller saw the old row...
  REQUIRE(cache.size() == 0);      // ...but it was not cached
  REQUIRE(cache.get(1) == "new");
  REQUIRE(cache.get(1) == "new");
  REQUIRE(db.queries == 2);
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
