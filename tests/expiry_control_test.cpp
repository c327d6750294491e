// sharded_store's expiry control: set_default_ttl, expires_in, set_expires_after, over every
// backend, with a manual clock.
#include <atomic>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

TEMPLATE_TEST_CASE("expiry control: set_default_ttl applies to later puts only", "[expiry]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 64}, clock);
  CHECK(s.default_ttl() == 0ns);
  s.put(1, 1);
  s.set_default_ttl(10s);
  CHECK(s.default_ttl() == 10s);
  CHECK(s.options().default_ttl == 0ns);  // the options it was built with
  s.put(2, 2);
  CHECK(s.put_if_absent(3, 3) == std::nullopt);
  clock.advance(10s);
  CHECK(s.get(1) == 1);
  CHECK_FALSE(s.get(2).has_value());
  CHECK_FALSE(s.get(3).has_value());
  s.set_default_ttl(0ns);
  s.put(4, 4);
  clock.advance(24h);
  CHECK(s.get(4) == 4);
  CHECK_THROWS_WITH(s.set_default_ttl(-1ns), Catch::Contains("default_ttl"));
  CHECK(s.default_ttl() == 0ns);
}

TEMPLATE_TEST_CASE("expiry control: expires_in reports the time left, quietly", "[expiry]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 64}, clock);
  s.put(1, 1);
  s.put(2, 2, 10s);
  CHECK_FALSE(s.expires_in(3).has_value());
  CHECK(s.expires_in(1) == cachet::no_expiry);
  clock.advance(4s);
  CHECK(s.expires_in(2) == 6s);
  clock.advance(6s);
  CHECK_FALSE(s.expires_in(2).has_value());  // expired: reclaimed
  CHECK(s.stats().hits == 0);
  CHECK(s.stats().misses == 0);
  CHECK(s.stats().expirations == 1);
}

TEMPLATE_TEST_CASE("expiry control: set_expires_after gives a live entry a new deadline",
                   "[expiry]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 64}, clock);
  s.put(1, 10);
  s.put(2, 20, 5s);
  CHECK(s.set_expires_after(1, 3s));
  CHECK(s.expires_in(1) == 3s);
  CHECK(s.set_expires_after(2, cachet::no_expiry));
  CHECK_FALSE(s.set_expires_after(9, 1s));
  clock.advance(3s);
  CHECK_FALSE(s.get(1).has_value());
  CHECK_FALSE(s.set_expires_after(1, 1s));  // expired: nothing to extend
  clock.advance(1h);
  CHECK(s.get(2) == 20);
  CHECK_THROWS_AS(s.set_expires_after(2, 0s), std::invalid_argument);
  CHECK(s.stats().updates == 0);  // not a put
}

TEST_CASE("expiry control: the earliest-deadline policy evicts by the new deadline", "[expiry]") {
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::ttl> s({.max_entries = 2, .shards = 1}, clock);
  s.put(1, 1, 10s);
  s.put(2, 2, 20s);
  s.set_expires_after(2, 1s);  // now the earliest
  s.put(3, 3, 30s);            // full: evicts the earliest deadline
  CHECK(s.contains(1));
  CHECK_FALSE(s.contains(2));
  CHECK(s.contains(3));
}

TEST_CASE("expiry control: compute reruns when the entry's expiry changed under it", "[expiry]") {
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::lru> s({.max_entries = 8}, clock);
  s.put(1, 1);
  int runs = 0;
  const auto r = s.compute(1, [&](std::optional<int> v) -> std::optional<int> {
    if (++runs == 1) s.set_expires_after(1, 1h);  // a write between compute's read and write
    return v ? *v + 1 : 0;
  });
  CHECK(r == 2);
  CHECK(runs == 2);
}

TEST_CASE("expiry control: set_default_ttl while other threads put", "[expiry][stress]") {
  cachet::sharded_store<int, int> s({.max_entries = 1024});
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) s.put((i * 2 + t) % 512, i);
    });
  }
  for (int i = 0; i < 2000; ++i)
    s.set_default_ttl(std::chrono::nanoseconds(i % 2 == 0 ? 0 : 3'600'000'000'000));
  stop = true;
  for (auto& w : writers) w.join();
  bool ok = true;
  s.for_each([&](const int& k, const int&) { ok = ok && s.expires_in(k).has_value(); });
  CHECK(ok);
}
