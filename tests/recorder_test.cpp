// cachet/recorder.hpp: a user's stats recorder hears every get's hit or miss, each eviction and
// expiry (with its weight), and each origin load of the patterns over the store (success or
// failure, with its duration); a type whose members may throw is not a recorder.
#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/clock.hpp>
#include <cachet/eviction/lru.hpp>
#include <cachet/read_through.hpp>
#include <cachet/recorder.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
struct counting_recorder {
  std::atomic<std::uint64_t> hits{0}, misses{0}, evicted{0}, expired{0}, evicted_weight{0},
      loads_ok{0}, loads_failed{0}, load_nanos{0};
  void record_hits(std::uint64_t n) noexcept { hits += n; }
  void record_misses(std::uint64_t n) noexcept { misses += n; }
  void record_eviction(std::uint32_t weight, cachet::removal_cause c) noexcept {
    (c == cachet::removal_cause::evicted ? evicted : expired) += 1;
    evicted_weight += weight;
  }
  void record_load_success(std::chrono::nanoseconds d) noexcept {
    ++loads_ok;
    load_nanos += static_cast<std::uint64_t>(d.count());
  }
  void record_load_failure(std::chrono::nanoseconds) noexcept { ++loads_failed; }
};
static_assert(cachet::stats_recorder<counting_recorder>);

struct throwing_recorder {  // record_hits may throw: not a recorder
  void record_hits(std::uint64_t) {}
  void record_misses(std::uint64_t) noexcept {}
  void record_eviction(std::uint32_t, cachet::removal_cause) noexcept {}
  void record_load_success(std::chrono::nanoseconds) noexcept {}
  void record_load_failure(std::chrono::nanoseconds) noexcept {}
};
static_assert(!cachet::stats_recorder<throwing_recorder>);
static_assert(!cachet::stats_recorder<int>);

using store_t = cachet::sharded_store<int, std::string, cachet::lru, cachet::manual_clock>;
}  // namespace

TEST_CASE("recorder: a store reports hits, misses, evictions and expiries as they happen",
          "[recorder]") {
  auto rec = std::make_shared<counting_recorder>();
  cachet::manual_clock clock;
  store_t s({.max_entries = 2,
             .max_weight = 1000,
             .weigher = [](const int&,
                           const std::string& v) { return static_cast<std::uint32_t>(v.size()); },
             .shards = 1,
             .recorder = cachet::recorder_ref(rec)},
            clock);
  s.put(1, "a");
  CHECK(s.get(1) == "a");
  CHECK_FALSE(s.get(2));
  s.put(2, "bb");
  s.put(3, "ccc");  // evicts 1 (weight 1)
  CHECK(rec->evicted == 1);
  CHECK(rec->evicted_weight == 1);
  s.put(4, "dddd", 1s);  // evicts 2 (weight 2)
  clock.advance(2s);
  CHECK_FALSE(s.get(4));  // expired: a miss, and an expiry of weight 4
  CHECK(rec->hits == 1);
  CHECK(rec->misses == 2);
  CHECK(rec->evicted == 2);
  CHECK(rec->expired == 1);
  CHECK(rec->evicted_weight == 1 + 2 + 4);
  CHECK(s.erase(3));  // an explicit erase is not an eviction
  CHECK(rec->evicted + rec->expired == 3);
  // The store's own counters are kept as well.
  CHECK(s.stats().hits == 1);
  CHECK(s.stats().misses == 2);
}

TEST_CASE("recorder: the loading patterns report each origin load, success or failure",
          "[recorder]") {
  auto rec = std::make_shared<counting_recorder>();
  cachet::manual_clock clock;
  cachet::cache_aside<store_t> users(
      store_t::options_type{.max_entries = 10, .recorder = cachet::recorder_ref(rec)}, clock);
  CHECK(users.get_or_load(1, [](int) { return std::optional<std::string>("ada"); }) == "ada");
  CHECK(users.get_or_load(1, [](int) { return std::optional<std::string>("x"); }) == "ada");
  CHECK_THROWS_AS(users.get_or_load(
                      2, [](int) -> std::optional<std::string> { throw std::runtime_error("db"); }),
                  std::runtime_error);
  CHECK(rec->loads_ok == 1);
  CHECK(rec->loads_failed == 1);
  CHECK(rec->hits >= 1);

  auto rec2 = std::make_shared<counting_recorder>();
  const auto loader = [](const int& k) -> std::optional<std::string> {
    std::this_thread::sleep_for(1ms);  // a real duration to report (not an assertion on time)
    return std::to_string(k);
  };
  cachet::read_through<store_t, decltype(loader)> rt(
      {.max_entries = 10, .ttl = 60s, .xfetch_beta = 0, .recorder = cachet::recorder_ref(rec2)},
      loader, clock);
  CHECK(rt.get(5) == "5");
  CHECK(rt.get(5) == "5");
  CHECK(rec2->loads_ok == 1);
  CHECK(rec2->load_nanos > 0);
  CHECK(rec2->hits == 1);  // the second get
  CHECK(rec2->misses >= 1);
}

TEST_CASE("recorder: concurrent gets are all heard", "[recorder]") {
  auto rec = std::make_shared<counting_recorder>();
  cachet::sharded_store<int, int> s({.max_entries = 1000, .recorder = cachet::recorder_ref(rec)});
  for (int i = 0; i < 100; ++i) s.put(i, i);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) s.get(i % 200);
    });
  }
  for (auto& t : ts) t.join();
  CHECK(rec->hits == 4000);
  CHECK(rec->misses == 4000);
  CHECK(s.stats().hits == rec->hits);
}
