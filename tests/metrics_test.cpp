// Tests of cachet/metrics.hpp: the exposition text of a registry of stores and patterns, checked
// sample by sample against their stats(), and by `promtool check metrics` (Debian's prometheus
// package; the test fails with a message when promtool is not in PATH).
#include <cachet/cache_aside.hpp>
#include <cachet/clock.hpp>
#include <cachet/hot_keys.hpp>
#include <cachet/metrics.hpp>
#include <cachet/miss_batcher.hpp>
#include <cachet/origin_limiter.hpp>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tiered_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "promtool_check.hpp"

namespace {

using namespace std::chrono_literals;
using store_t = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;

// Lines of `text` that start with `prefix`.
int count_lines(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

bool has_line(const std::string& text, const std::string& line) {
  return (std::string("\n") + text).find(std::string("\n") + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("metrics: a store's counters, one family each, labelled by cache", "[metrics]") {
  cachet::manual_clock clock;
  store_t users({.max_entries = 2, .shards = 1}, clock);
  users.put(1, "a");
  users.put(2, "b");
  users.put(1, "a2");
  users.put(3, "c");  // evicts one
  users.get(1);
  users.get(7);
  users.erase(3);
  store_t other({.max_entries = 8, .shards = 1}, clock);
  other.put(1, "x");

  cachet::metrics_registry m;
  m.add("users", users);
  m.add("we\"ird\\name", other);
  const std::string text = m.prometheus_text();
  INFO(text);
  CHECK(has_line(text, "# TYPE cachet_requests_total counter"));
  CHECK(count_lines(text, "# HELP cachet_requests_total ") == 1);  // one family, two caches
  CHECK(has_line(text, "cachet_requests_total{cache=\"users\",result=\"hit\"} 1"));
  CHECK(has_line(text, "cachet_requests_total{cache=\"users\",result=\"miss\"} 1"));
  CHECK(has_line(text, "cachet_puts_total{cache=\"users\",result=\"inserted\"} 3"));
  CHECK(has_line(text, "cachet_puts_total{cache=\"users\",result=\"updated\"} 1"));
  CHECK(has_line(text, "cachet_removals_total{cache=\"users\",result=\"evicted\"} 1") == false);
  CHECK(has_line(text, "cachet_removals_total{cache=\"users\",cause=\"evicted\"} 1"));
  CHECK(has_line(text, "cachet_removals_total{cache=\"users\",cause=\"explicit\"} 1"));
  CHECK(has_line(text, "cachet_entries{cache=\"users\"} 1.000000"));
  CHECK(has_line(text, "cachet_puts_total{cache=\"we\\\"ird\\\\name\",result=\"inserted\"} 1"));

  const auto [rc, out] = cachet_test::promtool_check(text);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.empty());
}

TEST_CASE("metrics: patterns add their loads; read_through and tiered_store their own families",
          "[metrics]") {
  cachet::manual_clock clock;
  cachet::cache_aside<store_t> aside(store_t::options_type{.max_entries = 8, .shards = 1}, clock);
  const auto load = [](const int& k) -> std::optional<std::string> { return std::to_string(k); };
  aside.get_or_load(1, load);
  aside.get_or_load(1, load);
  aside.get_or_load(2, load);

  struct loader {
    std::optional<std::string> operator()(const int& k) const { return std::to_string(k); }
  };
  cachet::read_through<store_t, loader> rt({.max_entries = 8, .ttl = 60s, .xfetch_beta = 0},
                                           loader{}, clock);
  rt.get(5);
  rt.get(5);

  using tier_t = cachet::tiered_store<store_t, store_t>;
  tier_t tier({.l1_ttl = 1s}, std::tuple{store_t::options_type{.max_entries = 8}, clock},
              std::tuple{store_t::options_type{.max_entries = 8}, clock});
  tier.put(1, "t");
  tier.get(1);
  tier.get(2);

  cachet::origin_limiter limit({.max_in_flight = 1, .max_queue = 0, .max_wait = 0ns});
  {
    auto permit = limit.acquire();
    CHECK_THROWS_AS(limit.acquire(), cachet::origin_overloaded);
  }

  struct bulk {
    std::optional<std::string> load(const int& k) { return std::to_string(k); }
    std::vector<std::pair<int, std::string>> load_all(std::span<const int> keys) {
      std::vector<std::pair<int, std::string>> rows;
      for (int k : keys) rows.emplace_back(k, std::to_string(k));
      return rows;
    }
  };
  cachet::miss_batcher<int, std::string, bulk> batcher({.max_batch = 1}, bulk{});
  batcher.load(1);
  batcher.load(2);

  cachet::metrics_registry m;
  m.add("db", limit);
  m.add("batcher", batcher);
  m.add("aside", aside);
  m.add("rt", rt);
  m.add("tier", tier);
  CHECK_THROWS_AS(m.add("rt", rt), std::invalid_argument);
  CHECK_THROWS_AS(m.add("", rt), std::invalid_argument);
  const std::string text = m.prometheus_text();
  INFO(text);
  CHECK(has_line(text, "cachet_requests_total{cache=\"aside\",result=\"hit\"} 1"));
  CHECK(has_line(text, "cachet_loads_total{cache=\"aside\"} 2"));
  CHECK(has_line(text, "cachet_load_duration_seconds_count{cache=\"aside\"} 2"));
  CHECK(has_line(text, "cachet_requests_total{cache=\"rt\",result=\"miss\"} 1"));
  CHECK(has_line(text, "cachet_loads_total{cache=\"rt\"} 1"));
  CHECK(has_line(text, "cachet_stale_serves_total{cache=\"rt\",reason=\"error\"} 0"));
  CHECK(has_line(text, "cachet_tier_reads_total{cache=\"tier\",result=\"l1_hit\"} 1"));
  CHECK(has_line(text, "cachet_tier_reads_total{cache=\"tier\",result=\"miss\"} 1"));
  CHECK(count_lines(text, "# TYPE cachet_load_duration_seconds histogram") == 1);
  CHECK(has_line(text, "cachet_load_duration_seconds_bucket{cache=\"aside\",le=\"+Inf\"} 2"));
  CHECK(has_line(text, "cachet_load_duration_seconds_bucket{cache=\"aside\",le=\"10.000000\"} 2"));
  CHECK(count_lines(text, "cachet_load_duration_seconds_bucket{cache=\"aside\",le=") == 20);
  CHECK(count_lines(text, "# TYPE cachet_load_duration_p99_seconds gauge") == 1);
  CHECK(has_line(text, "cachet_origin_admitted_total{cache=\"db\"} 1"));
  CHECK(has_line(text, "cachet_origin_shed_total{cache=\"db\",reason=\"queue_full\"} 1"));
  CHECK(has_line(text, "cachet_batches_total{cache=\"batcher\",closed_by=\"max_batch\"} 2"));
  CHECK(has_line(text, "cachet_batch_keys_loaded_total{cache=\"batcher\"} 2"));

  const auto [rc, out] = cachet_test::promtool_check(text);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.empty());

  CHECK(m.remove("rt"));
  CHECK_FALSE(m.remove("rt"));
  CHECK(m.prometheus_text().find("cache=\"rt\"") == std::string::npos);
}

TEST_CASE("metrics: the hottest keys of a tracker or a tracked_store, as valid text",
          "[metrics][hot_keys]") {
  using store_t = cachet::sharded_store<std::string, int>;
  cachet::tracked_store<store_t> users({.sample_every = 1, .capacity = 16},
                                       store_t::options_type{.max_entries = 64});
  users.put(std::string("alice"), 1);
  for (int i = 0; i < 3; ++i) users.get(std::string("alice"));
  users.get(std::string("bob \"b\"\n"));  // quotes escaped; the newline becomes \x0a
  users.get(std::string("\x01\xff", 2));  // bytes that are not printable ASCII
  cachet::hot_key_tracker<int> ids({.sample_every = 1});
  for (int i = 0; i < 12; ++i) ids.record(i % 3 == 0 ? 7 : 100 + i);

  cachet::metrics_registry m;
  m.add("users", users);
  m.add("ids", ids);
  const std::string text = m.prometheus_text();
  INFO(text);
  CHECK(has_line(text, "cachet_hot_key_share{cache=\"users\",key=\"alice\"} 0.600000"));
  CHECK(has_line(text,
                 "cachet_hot_key_share{cache=\"users\",key=\"bob \\\"b\\\"\\\\x0a\"} 0.200000"));
  CHECK(has_line(text, "cachet_hot_key_share{cache=\"users\",key=\"\\\\x01\\\\xff\"} 0.200000"));
  CHECK(has_line(text, "cachet_hot_key_sampled_reads_total{cache=\"users\"} 5"));
  CHECK(has_line(text, "cachet_requests_total{cache=\"users\",result=\"hit\"} 3"));  // its store
  CHECK(has_line(text, "cachet_hot_key_share{cache=\"ids\",key=\"7\"} 0.333333"));
  CHECK(count_lines(text, "cachet_hot_key_share{cache=\"ids\"") == 9);  // every key seen
  const auto [rc, out] = cachet_test::promtool_check(text);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.empty());
}

TEST_CASE("metrics: the keys a stampede detector flagged, as valid text", "[metrics][hot_keys]") {
  using store_t = cachet::sharded_store<std::string, int, cachet::lru, cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::tracked_store<store_t> users({.sample_every = 1, .capacity = 16},
                                       {.window = std::chrono::seconds(1), .threshold = 5},
                                       store_t::options_type{.max_entries = 64}, clock);
  for (int i = 0; i < 7; ++i) users.get(std::string("gone"));
  clock.advance(std::chrono::seconds(1));
  cachet::metrics_registry m;
  m.add("users", users);
  const std::string text = m.prometheus_text();
  INFO(text);
  CHECK(has_line(text, "cachet_stampede_key_misses{cache=\"users\",key=\"gone\"} 7.000000"));
  CHECK(has_line(text, "cachet_stampede_keys_total{cache=\"users\"} 1"));
  const auto [rc, out] = cachet_test::promtool_check(text);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.empty());
}
