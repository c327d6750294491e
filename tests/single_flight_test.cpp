#include <atomic>
#include <cachet/single_flight.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
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

constexpr int k_threads = 64;

using opt_ints = std::vector<std::optional<int>>;

// `current` checks for single_flight<int, std::string>'s load() and try_lead(): one with no
// answer (the load runs) and one that throws.
using answer = std::optional<std::optional<std::string>>;
answer no_answer() { return {}; }
answer failing_check() { throw std::runtime_error("check failed"); }
// A load for it that counts its calls and answers "loaded".
struct counting_load {
  int calls = 0;
  std::optional<std::string> operator()() {
    ++calls;
    return "loaded";
  }
};

// A bulk load for single_flight<int, int>::load_all that records the keys of every call and
// answers key k with 10 * k (absent for negative keys), after `before(keys)` has run.
struct recording_bulk {
  std::mutex mu;
  std::vector<std::vector<int>> calls;
  std::function<void(std::span<const int>)> before = [](std::span<const int>) {};

  auto fn() {
    return [this](std::span<const int> keys) {
      {
        std::lock_guard<std::mutex> g(mu);
        calls.emplace_back(keys.begin(), keys.end());
      }
      before(keys);
      opt_ints out;
      for (int k : keys) out.push_back(k < 0 ? std::nullopt : std::optional<int>(10 * k));
      return out;
    };
  }
  std::vector<std::vector<int>> take() {
    std::lock_guard<std::mutex> g(mu);
    return std::exchange(calls, {});
  }
};

// What a worker saw: a value, or the exception it caught (inspected on the main thread only).
struct outcome {
  std::optional<int> value;
  std::exception_ptr error;
};

template <class F>
outcome capture(F&& f) {
  try {
    return {f(), nullptr};
  } catch (...) {
    return {std::nullopt, std::current_exception()};
  }
}

// The message of the exception in `e` if it is a std::runtime_error, else "".
std::string runtime_message(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const std::runtime_error& err) {
    return err.what();
  } catch (...) {
  }
  return "";
}

bool broken_promise(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const std::future_error& err) {
    return err.code() == std::future_errc::broken_promise;
  } catch (...) {
  }
  return false;
}

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

TEST_CASE("single_flight: after detach(), callers start a new flight; the old one answers its own",
          "[single_flight]") {
  cachet::single_flight<int, int> flights;
  std::atomic<bool> old_started{false}, release_old{false}, new_started{false}, release_new{false};
  std::optional<int> old_leader, old_follower;
  std::thread leader([&] {
    old_leader = flights.load(1, [&] {
      old_started = true;
      await([&] { return release_old.load(); });
      return std::optional<int>(1);  // the row as it was before the write
    });
  });
  REQUIRE(await([&] { return old_started.load(); }));
  std::thread follower(
      [&] { old_follower = flights.load(1, [] { return std::optional<int>(-1); }); });
  REQUIRE(await([&] { return flights.stats().coalesced == 1; }));

  flights.detach(1);  // the writer's step: later callers must not join the load above
  std::optional<int> fresh;
  std::thread reader([&] {
    fresh = flights.load(1, [&] {
      new_started = true;
      await([&] { return release_new.load(); });
      return std::optional<int>(2);
    });
  });
  REQUIRE(await([&] { return new_started.load(); }));
  // The old flight retires while the new one runs: it must not remove the new one from the table.
  release_old = true;
  leader.join();
  follower.join();
  std::optional<int> joined;
  std::thread late([&] { joined = flights.load(1, [] { return std::optional<int>(-2); }); });
  REQUIRE(await([&] { return flights.stats().coalesced == 2; }));  // joined the new flight
  release_new = true;
  reader.join();
  late.join();
  CHECK(old_leader == 1);
  CHECK(old_follower == 1);  // joined before the detach: the old answer is allowed
  CHECK(fresh == 2);
  CHECK(joined == 2);
  CHECK(flights.stats().loads == 2);
  CHECK(flights.in_flight() == 0);
}

TEST_CASE("single_flight: a negative follower_timeout is rejected", "[single_flight][options]") {
  using sf = cachet::single_flight<int, int>;
  REQUIRE_THROWS_AS(sf({.follower_timeout = std::chrono::milliseconds(-1)}),
                    cachet::invalid_option);
}

TEST_CASE("single_flight: load_all loads each distinct key once, in one bulk call",
          "[single_flight][load_all]") {
  cachet::single_flight<int, int> flights;
  recording_bulk bulk;
  const std::vector<int> keys = {3, 1, 3, -2, 1};
  const opt_ints got = flights.load_all(keys, bulk.fn());  // a vector converts to the span
  REQUIRE(got == opt_ints{30, 10, 30, std::nullopt, 10});  // answers in request order
  REQUIRE(bulk.take() == std::vector<std::vector<int>>{{3, 1, -2}});  // once, deduplicated
  const auto st = flights.stats();
  REQUIRE(st.loads == 1);  // a bulk call is one load
  REQUIRE(st.coalesced == 0);
  REQUIRE(flights.in_flight() == 0);
  // Nothing is remembered: the next batch loads again. An empty batch loads nothing.
  REQUIRE(flights.load_all(std::span<const int>(keys), bulk.fn()).size() == keys.size());
  REQUIRE(flights.load_all(std::span<const int>(), bulk.fn()).empty());
  REQUIRE(bulk.take().size() == 1);
}

TEST_CASE("single_flight: load_all waits for keys already in flight instead of reloading them",
          "[single_flight][load_all]") {
  cachet::single_flight<int, int> flights;
  std::atomic<bool> a_started{false};
  std::atomic<bool> release{false};
  std::atomic<int> single_loads{0};
  std::optional<int> a_got;
  // A loads key 1 on its own and holds that load open.
  std::thread a([&] {
    a_got = flights.load(1, [&] {
      ++single_loads;
      a_started = true;
      await([&] { return release.load(); });
      return std::optional<int>(111);
    });
  });
  REQUIRE(await([&] { return a_started.load(); }));
  recording_bulk bulk;
  opt_ints b_got;
  std::thread b([&] {
    const std::vector<int> keys = {1, 2, 3};
    b_got = flights.load_all(std::span<const int>(keys), bulk.fn());
  });
  // B loads 2 and 3 itself, then waits for A's load of 1 as a follower.
  REQUIRE(await([&] { return flights.stats().coalesced == 1; }));
  release = true;
  a.join();
  b.join();
  REQUIRE(a_got == 111);
  REQUIRE(b_got == opt_ints{111, 20, 30});  // key 1 is A's answer, not a reload
  REQUIRE(bulk.take() == std::vector<std::vector<int>>{{2, 3}});
  REQUIRE(single_loads == 1);
  REQUIRE(flights.stats().loads == 2);
  REQUIRE(flights.in_flight() == 0);
}

TEST_CASE("single_flight: callers of a key in a running bulk load are served by it",
          "[single_flight][load_all]") {
  cachet::single_flight<int, int> flights;
  constexpr int k_followers = 8;
  std::atomic<bool> bulk_started{false};
  std::atomic<bool> release{false};
  recording_bulk bulk;
  bulk.before = [&](std::span<const int>) {
    bulk_started = true;
    await([&] { return release.load(); });
  };
  opt_ints leader_got;
  std::thread leader([&] {
    const std::vector<int> keys = {1, 2};
    leader_got = flights.load_all(std::span<const int>(keys), bulk.fn());
  });
  REQUIRE(await([&] { return bulk_started.load(); }));
  std::atomic<int> single_loads{0};
  std::vector<outcome> got(k_followers);
  std::vector<std::thread> followers;
  for (int t = 0; t < k_followers; ++t) {
    followers.emplace_back([&, t] {
      const int key = 1 + t % 2;
      got[t] = capture([&] {
        return flights.load(key, [&] {
          ++single_loads;
          return std::optional<int>(-1);
        });
      });
    });
  }
  REQUIRE(await([&] { return flights.stats().coalesced == k_followers; }));
  release = true;
  leader.join();
  for (auto& th : followers) th.join();
  REQUIRE(single_loads == 0);
  REQUIRE(leader_got == opt_ints{10, 20});
  for (int t = 0; t < k_followers; ++t) {
    REQUIRE_FALSE(got[t].error);
    REQUIRE(got[t].value == 10 * (1 + t % 2));
  }
  REQUIRE(bulk.take().size() == 1);
}

TEST_CASE("single_flight: a failing bulk load reaches every waiter and is not remembered",
          "[single_flight][load_all]") {
  cachet::single_flight<int, int> flights;
  std::atomic<bool> bulk_started{false};
  std::atomic<bool> release{false};
  recording_bulk bulk;
  bulk.before = [&](std::span<const int>) {
    bulk_started = true;
    await([&] { return release.load(); });
    throw std::runtime_error("database down");
  };
  outcome leader_got;
  std::thread leader([&] {
    const std::vector<int> keys = {1, 2, 3};
    leader_got =
        capture([&] { return flights.load_all(std::span<const int>(keys), bulk.fn()).at(0); });
  });
  REQUIRE(await([&] { return bulk_started.load(); }));
  std::vector<outcome> got(3);
  std::vector<std::thread> followers;
  for (int k = 1; k <= 3; ++k) {
    followers.emplace_back([&, k] {
      got[k - 1] = capture([&] { return flights.load(k, [] { return std::optional<int>(0); }); });
    });
  }
  REQUIRE(await([&] { return flights.stats().coalesced == 3; }));
  release = true;
  leader.join();
  for (auto& th : followers) th.join();
  REQUIRE(runtime_message(leader_got.error) == "database down");
  for (auto& g : got) REQUIRE(runtime_message(g.error) == "database down");
  const auto st = flights.stats();
  REQUIRE(st.loads == 1);
  REQUIRE(st.load_failures == 1);
  REQUIRE(flights.in_flight() == 0);
  // Not remembered: the next caller loads again.
  REQUIRE(flights.load(2, [] { return std::optional<int>(2); }) == 2);
}

TEST_CASE("single_flight: a bulk result of the wrong length fails every led key",
          "[single_flight][load_all]") {
  cachet::single_flight<int, int> flights;
  const std::vector<int> keys = {1, 2, 3};
  REQUIRE_THROWS_AS(flights.load_all(std::span<const int>(keys),
                                     [](std::span<const int>) { return opt_ints{1}; }),
                    std::length_error);
  REQUIRE(flights.in_flight() == 0);
  REQUIRE(flights.stats().load_failures == 1);
  REQUIRE(flights.load(3, [] { return std::optional<int>(3); }) == 3);
}

namespace {

// A value whose move throws when armed and it holds 13; copies never throw.
std::atomic<bool> g_throw_on_move_13{false};
struct moody {
  int v = 0;
  explicit moody(int x) : v(x) {}
  moody(const moody&) = default;
  moody(moody&& o) : v(o.v) {
    if (g_throw_on_move_13 && v == 13) throw std::runtime_error("move of 13");
  }
  moody& operator=(const moody&) = default;
  moody& operator=(moody&&) = default;
};

}  // namespace

TEST_CASE("single_flight: load_all publishes every led key even when publishing one throws",
          "[single_flight][load_all]") {
  // The answers for keys 1, 13, 2 are published in that order; moving 13's throws. Key 1 keeps its
  // value, 2 gets that exception, and 13's promise, which cannot portably be completed after its
  // set_value threw, is broken: nobody waits forever.
  cachet::single_flight<int, moody> flights;
  std::atomic<bool> bulk_started{false};
  std::atomic<bool> release{false};
  outcome leader_got;
  std::thread leader([&] {
    const std::vector<int> keys = {1, 13, 2};
    leader_got = capture([&]() -> std::optional<int> {
      flights.load_all(std::span<const int>(keys), [&](std::span<const int> ks) {
        bulk_started = true;
        await([&] { return release.load(); });
        std::vector<std::optional<moody>> out;
        out.reserve(ks.size());
        for (int k : ks) out.emplace_back(std::in_place, k);
        g_throw_on_move_13 = true;
        return out;
      });
      return std::nullopt;
    });
  });
  REQUIRE(await([&] { return bulk_started.load(); }));
  std::vector<outcome> got(3);
  std::vector<std::thread> followers;
  const int follow_keys[] = {1, 13, 2};
  for (int t = 0; t < 3; ++t) {
    followers.emplace_back([&, t] {
      got[t] = capture([&]() -> std::optional<int> {
        auto v = flights.load(follow_keys[t], [] { return std::optional<moody>(moody(0)); });
        return v ? std::optional<int>(v->v) : std::nullopt;
      });
    });
  }
  REQUIRE(await([&] { return flights.stats().coalesced == 3; }));
  release = true;
  leader.join();
  for (auto& th : followers) th.join();
  g_throw_on_move_13 = false;
  REQUIRE(runtime_message(leader_got.error) == "move of 13");
  REQUIRE_FALSE(got[0].error);
  REQUIRE(got[0].value == 1);
  REQUIRE(broken_promise(got[1].error));
  REQUIRE(runtime_message(got[2].error) == "move of 13");
  REQUIRE(flights.in_flight() == 0);
  REQUIRE(flights.stats().load_failures == 1);
}

TEST_CASE("single_flight: a loader that bulk-loads its own key gets an error before any load",
          "[single_flight][load_all]") {
  cachet::single_flight<int, int> flights;
  recording_bulk bulk;
  const std::vector<int> keys = {2, 1};
  REQUIRE_THROWS_AS(
      flights.load(1,
                   [&] { return flights.load_all(std::span<const int>(keys), bulk.fn()).at(1); }),
      cachet::recursive_load_error);
  REQUIRE(bulk.take().empty());  // refused before loading key 2
  REQUIRE(flights.in_flight() == 0);
  // Bulk-loading other keys from inside a load is fine.
  const std::vector<int> others = {2, 3};
  REQUIRE(flights.load(1, [&] {
    return flights.load_all(std::span<const int>(others), bulk.fn()).at(1);
  }) == 30);
}

TEST_CASE("single_flight: load_all completes its own flights before waiting for others",
          "[single_flight][load_all]") {
  // X leads key 2 and, from inside that load, loads key 1; T leads key 1 in a batch and follows 2.
  // T must publish 1 before waiting for 2, or T and X wait for each other. The follower timeout
  // only turns such a deadlock into a failure instead of a hang; it is never reached otherwise.
  cachet::single_flight<int, int> flights({.follower_timeout = std::chrono::seconds(30)});
  std::atomic<bool> x_started{false};
  outcome x_got;
  std::thread x([&] {
    x_got = capture([&] {
      return flights.load(2, [&] {
        x_started = true;
        await([&] { return flights.in_flight() == 2; });                // T has joined 1 and 2
        return flights.load(1, [] { return std::optional<int>(-1); });  // follows T's load of 1
      });
    });
  });
  REQUIRE(await([&] { return x_started.load(); }));
  recording_bulk bulk;
  bulk.before = [&](std::span<const int>) {
    await([&] { return flights.stats().coalesced >= 1; });  // X waits for this load
  };
  const std::vector<int> keys = {1, 2};
  const opt_ints t_got = flights.load_all(std::span<const int>(keys), bulk.fn());
  x.join();
  REQUIRE(t_got == opt_ints{10, 10});  // 2's answer is X's: the value X read for 1
  REQUIRE_FALSE(x_got.error);
  REQUIRE(x_got.value == 10);
  REQUIRE(bulk.take() == std::vector<std::vector<int>>{{1}});
  REQUIRE(flights.stats().timeouts == 0);
}

TEST_CASE("single_flight: stats report p50 and p99 load latency", "[single_flight]") {
  cachet::single_flight<int, int> flights;
  REQUIRE(flights.stats().load_p50_nanos == 0);
  REQUIRE(flights.stats().load_p99_nanos == 0);
  flights.load(1, [] { return std::optional<int>(1); });
  // One load: both percentiles are its duration's bucket, within the histogram's bound.
  const auto st = flights.stats();
  REQUIRE(st.loads == 1);
  REQUIRE(st.load_p50_nanos == st.load_p99_nanos);
  REQUIRE(st.load_p50_nanos >= st.load_nanos);
  REQUIRE(st.load_p50_nanos - st.load_nanos <= st.load_nanos / 16);
  // Failed loads and bulk loads are timed too.
  REQUIRE_THROWS(flights.load(2, []() -> std::optional<int> { throw std::runtime_error("x"); }));
  const std::vector<int> keys = {5, 6};
  flights.load_all(std::span<const int>(keys),
                   [](std::span<const int> ks) { return opt_ints(ks.size()); });
  const auto st3 = flights.stats();
  REQUIRE(st3.loads == 3);
  REQUIRE(st3.load_p50_nanos <= st3.load_p99_nanos);
  REQUIRE(st3.load_p99_nanos <= st3.load_nanos + st3.load_nanos / 16);
}

TEST_CASE("single_flight: try_lead with a current answer publishes it and runs no load",
          "[single_flight]") {
  cachet::single_flight<int, std::string> flights;
  counting_load load;
  // Nothing current: the load runs and counts.
  CHECK(flights.try_lead(1, no_answer, load));
  CHECK(load.calls == 1);
  CHECK(flights.stats().loads == 1);
  // An answer is current: a follower that joins gets it, no load runs, nothing is counted.
  std::atomic<bool> joined{false};
  std::optional<std::string> follower_got;
  std::thread follower;
  const bool led = flights.try_lead(
      1,
      [&] {
        follower = std::thread([&] {
          follower_got = flights.load(1, load);  // joins the flight in progress
        });
        joined = await([&] { return flights.stats().coalesced == 1; });
        return std::optional<std::optional<std::string>>(std::string("current"));
      },
      load);
  follower.join();
  CHECK_FALSE(led);
  CHECK(joined);
  CHECK(follower_got == "current");
  CHECK(load.calls == 1);
  CHECK(flights.stats().loads == 1);
  CHECK(flights.stats().answered == 0);  // a refresh found unneeded is not a caller's answer
  CHECK(flights.in_flight() == 0);
  // A check that throws reaches the caller, is not a load failure, and leaves no flight behind.
  CHECK_THROWS_AS(flights.try_lead(1, failing_check, load), std::runtime_error);
  CHECK(flights.stats().load_failures == 0);
  CHECK(flights.in_flight() == 0);
  CHECK(flights.try_lead(1, no_answer, load));
  CHECK(load.calls == 2);
}

TEST_CASE("single_flight: load with a current answer returns it to leader and followers, unloaded",
          "[single_flight]") {
  cachet::single_flight<int, std::string> flights;
  counting_load load;
  // Nothing current: the load runs, counts, and its value is returned.
  CHECK(flights.load(1, no_answer, load) == "loaded");
  CHECK(load.calls == 1);
  CHECK(flights.stats().loads == 1);
  // An answer is current: the leader returns it, a follower that joined gets it too, no load runs.
  std::atomic<bool> joined{false};
  std::optional<std::string> follower_got;
  std::thread follower;
  const std::optional<std::string> got = flights.load(
      1,
      [&] {
        follower = std::thread([&] { follower_got = flights.load(1, load); });
        joined = await([&] { return flights.stats().coalesced == 1; });
        return std::optional<std::optional<std::string>>(std::string("current"));
      },
      load);
  follower.join();
  CHECK(joined);
  CHECK(got == "current");
  CHECK(follower_got == "current");
  CHECK(load.calls == 1);
  CHECK(flights.stats().loads == 1);
  CHECK(flights.stats().answered == 1);  // the leader; the follower is in `coalesced`
  CHECK(flights.in_flight() == 0);
  // "Absent" is an answer too: returned as std::nullopt, still no load.
  CHECK(flights.load(
            1, [] { return std::optional<std::optional<std::string>>(std::in_place); }, load) ==
        std::nullopt);
  CHECK(load.calls == 1);
  // A check that throws reaches the caller, is not a load failure, and leaves no flight behind;
  // the next caller loads.
  CHECK_THROWS_AS(flights.load(1, failing_check, load), std::runtime_error);
  CHECK(flights.stats().load_failures == 0);
  CHECK(flights.stats().answered == 2);
  CHECK(flights.in_flight() == 0);
  CHECK(flights.load(1, no_answer, load) == "loaded");
  CHECK(load.calls == 2);
}
