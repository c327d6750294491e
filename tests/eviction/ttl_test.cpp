#include <cachet/eviction/ttl.hpp>
#include <new>

#include "../alloc_failure.hpp"
#include "model.hpp"

using cachet::removal_cause;
using namespace cachet_test;
using std::chrono::seconds;

TEST_CASE("ttl: evicts the soonest deadline first, then no-TTL entries oldest first", "[ttl]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::ttl> s({.max_entries = 4, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1);  // no TTL
  s.put(2, 2, seconds(30));
  s.put(3, 3);  // no TTL
  s.put(4, 4, seconds(10));
  s.put(5, 5);  // evicts 4 (deadline 10)
  s.put(6, 6);  // evicts 2 (deadline 30)
  s.put(7, 7);  // only no-TTL left: evicts 1, the oldest
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{4, 2, 1});
  s.put(3, 33, seconds(5));  // gains a TTL: now the first to go
  s.put(8, 8);
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{3});
  s.put(5, 55, seconds(50));
  s.put(6, 66, seconds(20));
  s.put(6, 66, cachet::no_expiry);  // drops its TTL: joins the no-TTL queue as the newest
  s.put(9, 9);                      // evicts 5 (the only deadline)
  s.put(10, 10);                    // no-TTL queue 7 8 6 9: evicts 7
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{5, 7});
}

TEST_CASE("ttl: an updated deadline re-positions the entry", "[ttl]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::ttl> s({.max_entries = 3, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1, seconds(10));
  s.put(2, 2, seconds(20));
  s.put(3, 3, seconds(30));
  s.put(1, 1, seconds(40));  // now last
  s.put(4, 4, seconds(50));  // evicts 2
  s.put(5, 5, seconds(60));  // evicts 3
  s.put(6, 6, seconds(70));  // evicts 1
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{2, 3, 1});
}

TEST_CASE("ttl: an expired entry is the victim and is reported as expired", "[ttl]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<cachet::ttl> s({.max_entries = 2, .shards = 1, .on_removal = rec.listener()}, clock);
  s.put(1, 1, seconds(1));
  s.put(2, 2);
  clock.advance(seconds(2));
  s.put(3, 3);
  const auto events = rec.take();
  REQUIRE(events.size() == 1);
  REQUIRE(events[0].key == 1);
  REQUIRE(events[0].cause == removal_cause::expired);
  REQUIRE(s.stats().evictions == 0);
}

TEST_CASE("ttl: matches the reference model", "[ttl][model]") {
  run_standard_models<cachet::ttl, ttl_rules>();
}

TEST_CASE("ttl: with a weight bound only, a heap that cannot grow fails the put, never terminates",
          "[ttl]") {
  // No entry bound, so the deadline heap cannot be sized up front and grows with the entries with
  // a TTL. It used to grow inside a noexcept member, where std::bad_alloc calls std::terminate; now
  // it grows before the put changes anything. 200 entries without a TTL come first, so that the
  // table and the slab have room for the 16 puts after them, which are tried with their next
  // allocation failing (armed by the weigher, just before the store takes its lock): only the heap
  // can need memory there. (absl's table is left corrupt when its own growth fails.)
  cachet::manual_clock clock;
  recorder<int, int> rec;
  bool fail = false;
  int_store<cachet::ttl> s({.max_weight = 216,
                            .weigher = [&fail](const int&, const int&) -> std::uint32_t {
                              if (fail) cachet_test::fail_next_allocation();
                              return 1;
                            },
                            .shards = 1,
                            .on_removal = rec.listener()},
                           clock);
  for (int k = 0; k < 200; ++k) s.put(k, k);
  int failed = 0;
  for (int k = 200; k < 216; ++k) {
    INFO("key " << k);
    fail = true;
    try {
      s.put(k, k, seconds(1000 - k));  // the newest key expires first
    } catch (const std::bad_alloc&) {
      ++failed;
      REQUIRE_FALSE(cachet_test::allocation_failure_pending());
      REQUIRE(s.size() == static_cast<std::size_t>(k));
      REQUIRE_FALSE(s.contains(k));
    }
    fail = false;
    cachet_test::cancel_allocation_failure();  // when the put needed no memory
    if (!s.contains(k)) REQUIRE(s.put(k, k, seconds(1000 - k)) == cachet::put_result::inserted);
  }
  CHECK(failed > 0);
  CHECK(rec.take().empty());
  // The order survived: full by weight, so each new key evicts the soonest deadline.
  s.put(1000, 0);
  s.put(1001, 0);
  CHECK(rec.take_keys(removal_cause::evicted) == std::vector<int>{215, 214});
}
