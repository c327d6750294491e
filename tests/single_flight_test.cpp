#include <atomic>
#include <cachet/single_flight.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace {

using cachet_test::await;

constexpr int k_threads = 64;

}  // namespace

TEST_CASE("single_flight: 64 callers of one key share one load and one value", "[single_flight]") {
  cachet::single_flight<int, std::string> flights;
  std::atomic<int> loads{0};
  std::atomic<bool> all_waited{false};
  std::vector<std::optional<std::string>> results(k_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      results[t] = flights.load(7, [&]() -> std::optional<std::string> {
        ++loads;
        // Hold the load open until every other caller is waiting on it.
        all_waited = await([&] { return flights.stats().coalesced == k_threads - 1; });
        return "row 7";
      });
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(all_waited);
  REQUIRE(loads == 1);
  for (auto& r : results) REQUIRE(r == std::optional<std::string>("row 7"));
  const auto st = flights.stats();
  REQUIRE(st.loads == 1);
  REQUIRE(st.coalesced == k_threads - 1);
  REQUIRE(flights.in_flight() == 0);
}

TEST_CASE("single_flight: a failing load reaches every waiter and is not remembered",
          "[single_flight]") {
  cachet::single_flight<int, int> flights;
  std::atomic<int> loads{0};
  std::atomic<bool> all_waited{false};
  // Every waiter rethrows the same exception object. Workers keep only the exception_ptr and the
  // main thread reads the message after join: its lifetime is managed by a reference count inside
  // libstdc++, which TSan cannot see, so reading what() in the workers is reported as a race with
  // the last owner's free.
  std::vector<std::exception_ptr> errors(k_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      try {
        flights.load(1, [&]() -> std::optional<int> {
          ++loads;
          all_waited = await([&] { return flights.stats().coalesced == k_threads - 1; });
          throw std::runtime_error("database down");
        });
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(all_waited);
  REQUIRE(loads == 1);
  int failures = 0;
  for (auto& e : errors) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::runtime_error& err) {
      failures += std::string(err.what()) == "database down";
    }
  }
  REQUIRE(failures == k_threads);
  REQUIRE(flights.stats().load_failures == 1);
  // The failure is not cached: the next caller loads again.
  REQUIRE(flights.load(1, [] { return std::optional<int>(5); }) == 5);
  REQUIRE(flights.stats().loads == 2);
}

TEST_CASE("single_flight: absent is a result like any other", "[single_flight]") {
  cachet::single_flight<int, int> flights;
  REQUIRE_FALSE(flights.load(3, [] { return std::optional<int>(); }).has_value());
  REQUIRE(flights.stats().load_failures == 0);
}

TEST_CASE("single_flight: a loader that loads its own key gets an error, not a deadlock",
          "[single_flight]") {
  cachet::single_flight<int, int> flights;
  REQUIRE_THROWS_AS(
      flights.load(1, [&] { return flights.load(1, [] { return std::optional<int>(1); }); }),
      cachet::recursive_load_error);
  REQUIRE(flights.in_flight() == 0);
  // Loading a different key from inside a load is fine.
  REQUIRE(flights.load(1, [&] { return flights.load(2, [] { return std::optional<int>(2); }); }) ==
          2);
}

TEST_CASE("single_flight: loads of different keys do not wait for each other", "[single_flight]") {
  cachet::single_flight<int, int> flights;
  std::atomic<bool> b_done{false};
  std::atomic<bool> a_saw_b{false};
  std::optional<int> a_result;
  // A's load can only finish after B's load has finished in another thread: if B waited for A,
  // B would never finish and A's await() would give up.
  std::thread a([&] {
    a_result = flights.load(1, [&] {
      a_saw_b = await([&] { return b_done.load(); });
      return std::optional<int>(1);
    });
  });
  REQUIRE(await([&] { return flights.in_flight() == 1; }));
  REQUIRE(flights.load(2, [] { return std::optional<int>(2); }) == 2);
  b_done = true;
  a.join();
  REQUIRE(a_saw_b);
  REQUIRE(a_result == 1);
}

TEST_CASE("single_flight: a follower can give up after follower_timeout", "[single_flight]") {
  cachet::single_flight<int, int> flights({.follower_timeout = std::chrono::milliseconds(1)});
  std::atomic<bool> leader_started{false};
  std::atomic<bool> leader_saw_timeout{false};
  std::optional<int> leader_result;
  std::thread leader([&] {
    leader_result = flights.load(1, [&] {
      leader_started = true;
      // Finish only after the follower has timed out.
      leader_saw_timeout = await([&] { return flights.stats().timeouts == 1; });
      return std::optional<int>(1);
    });
  });
  REQUIRE(await([&] { return leader_started.load(); }));
  REQUIRE_THROWS_AS(flights.load(1, [] { return std::optional<int>(2); }),
                    cachet::load_timeout_error);
  leader.join();
  REQUIRE(leader_saw_timeout);
  REQUIRE(leader_result == 1);
  REQUIRE(flights.stats().loads == 1);
}

TEST_CASE("single_flight: a negative follower_timeout is rejected", "[single_flight][options]") {
  using sf = cachet::single_flight<int, int>;
  REQUIRE_THROWS_AS(sf({.follower_timeout = std::chrono::milliseconds(-1)}),
                    cachet::invalid_option);
}
