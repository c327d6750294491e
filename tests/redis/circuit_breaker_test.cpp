// cachet/redis/detail/circuit_breaker.hpp on a manual clock: when it opens, that it lets exactly
// one probe through after open_for, and what the probe's outcome does.
#include <cachet/redis/detail/circuit_breaker.hpp>
#include <catch2/catch.hpp>
#include <chrono>

namespace {
using breaker = cachet::detail::circuit_breaker<cachet::manual_clock>;
using admit = breaker::admit;
using namespace std::chrono_literals;
}  // namespace

TEST_CASE("circuit_breaker: opens after failures_to_open consecutive failures",
          "[redis][breaker]") {
  cachet::manual_clock clock;
  breaker b({.failures_to_open = 3, .open_for = 10s}, clock);
  b.on_failure(b.acquire());
  b.on_failure(b.acquire());
  b.on_success(b.acquire());  // resets the count
  b.on_failure(b.acquire());
  b.on_failure(b.acquire());
  CHECK(b.state() == cachet::breaker_state::closed);
  b.on_failure(b.acquire());
  CHECK(b.state() == cachet::breaker_state::open);
  CHECK(b.opened_count() == 1);
  CHECK(b.acquire() == admit::refused);
  clock.advance(10s - 1ns);
  CHECK(b.acquire() == admit::refused);
}

TEST_CASE("circuit_breaker: one probe after open_for; its outcome closes or re-opens",
          "[redis][breaker]") {
  cachet::manual_clock clock;
  breaker b({.failures_to_open = 1, .open_for = 10s}, clock);
  b.on_failure(b.acquire());
  REQUIRE(b.state() == cachet::breaker_state::open);
  clock.advance(10s);
  const admit probe = b.acquire();
  CHECK(probe == admit::probe);
  CHECK(b.state() == cachet::breaker_state::half_open);
  for (int i = 0; i < 5; ++i) CHECK(b.acquire() == admit::refused);

  SECTION("a failed probe re-opens it for another open_for") {
    clock.advance(1s);
    b.on_failure(probe);
    CHECK(b.state() == cachet::breaker_state::open);
    CHECK(b.opened_count() == 2);
    clock.advance(10s - 1ns);
    CHECK(b.acquire() == admit::refused);
    clock.advance(1ns);
    CHECK(b.acquire() == admit::probe);
  }
  SECTION("a successful probe closes it") {
    b.on_success(probe);
    CHECK(b.state() == cachet::breaker_state::closed);
    CHECK(b.closed_count() == 1);
    CHECK(b.acquire() == admit::closed);
  }
  SECTION("an abandoned probe lets the next call probe") {
    { breaker::probe_guard g(b, probe); }
    CHECK(b.state() == cachet::breaker_state::open);
    CHECK(b.opened_count() == 1);
    CHECK(b.acquire() == admit::probe);
  }
  SECTION("a late success of a call admitted while closed does not close it") {
    b.on_success(admit::closed);
    CHECK(b.state() == cachet::breaker_state::half_open);
  }
}
