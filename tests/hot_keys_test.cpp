// Tests of cachet/hot_keys.hpp: Space-Saving's guarantees on a stream with known frequencies
// (sample_every = 1, so every read counts), sampling, and tracked_store as a cachet::store.
#include <cachet/cache_aside.hpp>
#include <cachet/hot_keys.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/store.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using store_t = cachet::sharded_store<int, int>;
using tracked_t = cachet::tracked_store<store_t>;
static_assert(cachet::store<tracked_t>);

}  // namespace

TEST_CASE("hot keys: Space-Saving reports every frequent key within its error bound",
          "[hot_keys]") {
  cachet::hot_key_tracker<int> t({.sample_every = 1, .capacity = 32});
  // Key 0 takes 30% of 10,000 reads, key 1 15%, key 2 5%; the rest spread over 2,000 keys.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pct(0, 99), tail(3, 2002);
  std::map<int, std::uint64_t> truth;
  const int n = 10'000;
  for (int i = 0; i < n; ++i) {
    const int r = pct(rng);
    const int k = r < 30 ? 0 : r < 45 ? 1 : r < 50 ? 2 : tail(rng);
    ++truth[k];
    t.record(k);
  }
  const auto hot = t.hot_keys(3);
  REQUIRE(hot.size() == 3);
  CHECK(hot[0].key == 0);
  CHECK(hot[1].key == 1);
  CHECK(hot[2].key == 2);
  const std::uint64_t bound = n / 32;  // N / capacity
  for (const auto& h : hot) {
    INFO("key " << h.key << " count " << h.count << " error " << h.error << " true "
                << truth[h.key]);
    CHECK(h.count >= truth[h.key]);            // never an underestimate
    CHECK(h.count - h.error <= truth[h.key]);  // the guaranteed lower bound
    CHECK(h.error <= bound);
  }
  CHECK(hot[0].share == Approx(static_cast<double>(truth[0]) / n).margin(0.01));
  CHECK(t.sampled() == static_cast<std::uint64_t>(n));
  t.reset();
  CHECK(t.hot_keys(3).empty());
}

TEST_CASE("hot keys: one read in sample_every is recorded, per thread", "[hot_keys]") {
  cachet::hot_key_tracker<int> t({.sample_every = 8, .capacity = 4});
  std::thread reader([&] {
    for (int i = 0; i < 800; ++i) t.record(5);
  });
  reader.join();
  CHECK(t.sampled() == 100);  // a fresh thread: its first read, then every 8th
  CHECK(t.hot_keys(1).at(0).key == 5);
  CHECK_THROWS_WITH(cachet::hot_key_tracker<int>({.sample_every = 0}),
                    Catch::Contains("sample_every"));
  CHECK_THROWS_WITH(cachet::hot_key_tracker<int>({.capacity = 0}), Catch::Contains("capacity"));
}

TEST_CASE("hot keys: tracked_store counts gets, forwards the rest, runs under cache_aside",
          "[hot_keys]") {
  cachet::cache_aside<tracked_t> cache(cachet::hot_key_options{.sample_every = 1, .capacity = 8},
                                       store_t::options_type{.max_entries = 64});
  for (int i = 0; i < 50; ++i) {
    cache.get_or_load(i % 5 == 0 ? 42 : 100 + i,
                      [](const int& k) -> std::optional<int> { return k; });
  }
  const auto hot = cache.store().tracker().hot_keys(1);
  REQUIRE(hot.size() == 1);
  CHECK(hot[0].key == 42);
  CHECK(hot[0].count >= 10);
  CHECK(cache.store().stats().hits == 9);  // 42 loaded once, then hit 9 times
  CHECK(cache.store().inner().contains(42));
}

TEST_CASE("hot keys: concurrent readers; every sample is counted or dropped", "[hot_keys]") {
  cachet::hot_key_tracker<int> t({.sample_every = 1, .capacity = 16});
  std::vector<std::thread> ts;
  for (int w = 0; w < 4; ++w) {
    ts.emplace_back([&, w] {
      for (int i = 0; i < 5000; ++i) t.record(i % 3 == 0 ? 7 : w * 10000 + i);
    });
  }
  std::thread reader([&] {
    for (int i = 0; i < 50; ++i) CHECK(t.hot_keys(4).size() <= 4);
  });
  for (std::thread& th : ts) th.join();
  reader.join();
  CHECK(t.sampled() + t.dropped() == 4u * 5000u);
  CHECK(t.hot_keys(1).at(0).key == 7);
}

TEST_CASE("stampedes: a key missed threshold times within a window is flagged, once per window",
          "[hot_keys][stampede]") {
  cachet::manual_clock clock;
  cachet::stampede_detector<std::string, cachet::manual_clock> d(
      {.window = std::chrono::seconds(1), .threshold = 100}, clock);
  for (int i = 0; i < 150; ++i) d.record_miss("a");
  for (int i = 0; i < 99; ++i) d.record_miss("b");  // one short
  for (int i = 0; i < 5; ++i) d.record_miss("c");
  CHECK(d.last_window().empty());  // the window has not ended
  clock.advance(std::chrono::seconds(1));
  auto flagged = d.last_window();
  REQUIRE(flagged.size() == 1);
  CHECK(flagged[0].key == "a");
  CHECK(flagged[0].misses == 150);
  CHECK(d.stampedes() == 1);
  CHECK(d.last_window().size() == 1);  // asking again does not judge again
  CHECK(d.stampedes() == 1);

  for (int i = 0; i < 100; ++i) d.record_miss("b");  // this window: b reaches it, a is quiet
  for (int i = 0; i < 120; ++i) d.record_miss("c");
  clock.advance(std::chrono::milliseconds(1500));
  flagged = d.last_window();
  REQUIRE(flagged.size() == 2);
  CHECK(flagged[0].key == "c");  // most missed first
  CHECK(flagged[1].key == "b");
  CHECK(d.stampedes() == 3);
  clock.advance(std::chrono::seconds(1));  // a quiet window
  CHECK(d.last_window().empty());
}

TEST_CASE("stampedes: tracked_store feeds its misses, not its hits", "[hot_keys][stampede]") {
  using store_t = cachet::sharded_store<std::string, int, cachet::lru, cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::tracked_store<store_t> s({.sample_every = 1},
                                   {.window = std::chrono::seconds(10), .threshold = 50},
                                   store_t::options_type{.max_entries = 64}, clock);
  s.put(std::string("hot"), 1);
  for (int i = 0; i < 200; ++i) s.get(std::string("hot"));     // hits
  for (int i = 0; i < 60; ++i) s.get(std::string("missing"));  // misses
  REQUIRE(s.stampedes() != nullptr);
  clock.advance(std::chrono::seconds(10));
  const auto flagged = s.stampedes()->last_window();
  REQUIRE(flagged.size() == 1);
  CHECK(flagged[0].key == "missing");
  CHECK(flagged[0].misses == 60);

  cachet::tracked_store<store_t> plain({}, store_t::options_type{.max_entries = 8}, clock);
  CHECK(plain.stampedes() == nullptr);  // without stampede_options, no detector
}

TEST_CASE("stampedes: options are checked up front", "[hot_keys][stampede][options]") {
  const auto option_of = [](cachet::stampede_options o) -> std::string {
    try {
      cachet::stampede_detector<int, cachet::manual_clock> d(o);
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return "(accepted)";
  };
  CHECK(option_of({.window = std::chrono::seconds(0)}) == "window");
  CHECK(option_of({.threshold = 0}) == "threshold");
  CHECK(option_of({.tracking = {.sample_every = 0}}) == "sample_every");
  CHECK(option_of({}) == "(accepted)");
  // A window to the end of time saturates instead of overflowing: it never closes.
  cachet::manual_clock clock(std::chrono::hours(1));
  cachet::stampede_detector<int, cachet::manual_clock> forever(
      {.window = std::chrono::nanoseconds::max(), .threshold = 1}, clock);
  forever.record_miss(1);
  clock.advance(std::chrono::hours(24 * 365));
  CHECK(forever.last_window().empty());
}

TEST_CASE("stampedes: threads miss while windows roll; each window judged once",
          "[hot_keys][stampede]") {
  // Four threads miss one key 2,000 times each while the main thread moves the clock through
  // windows and reads the verdicts. TSan watches the roll (one judge per window); every verdict
  // names the key and counts no more than was recorded.
  cachet::manual_clock clock;
  cachet::stampede_detector<int, cachet::manual_clock> d(
      {.window = std::chrono::seconds(1),
       .threshold = 1,
       .tracking = {.sample_every = 1, .capacity = 8}},
      clock);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2'000; ++i) d.record_miss(42);
    });
  }
  for (int w = 0; w < 50; ++w) {
    clock.advance(std::chrono::seconds(1));
    for (const auto& s : d.last_window()) {
      CHECK(s.key == 42);
      CHECK(s.misses <= 8'000);
    }
  }
  for (std::thread& th : threads) th.join();
  clock.advance(std::chrono::seconds(1));
  (void)d.last_window();
  CHECK(d.stampedes() <= 51);  // at most one verdict per window
  CHECK(d.stampedes() >= 1);
}
