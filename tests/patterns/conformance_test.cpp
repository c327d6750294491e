// One conformance suite over the four access patterns (cache_aside, read_through, write_through,
// write_back), in the manner of Caffeine's CacheSpec: every property is a TEMPLATE_TEST_CASE over
// the pattern adapters of pattern_fixture.hpp, and each runs over a matrix of loaders picked with
// GENERATE:
//   present   the source has the row;
//   absent    it has none (the loader returns std::nullopt);
//   throwing  every load throws std::runtime_error("db down");
//   slow      the load is held open at the table's gate, after it read its row, while the test
//             acts (a load that began before a write);
//   bulk      reads go through get_all(), one bulk load for the keys it misses (only where the
//             pattern has get_all: read_through; elsewhere the row is skipped).
// The consistency properties are those of issue 13 (docs/consistency.md): a read that starts after
// a write has returned never returns the value that write replaced, from the cache or by joining a
// load that began before the write; write_back reads its own writes.
#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "pattern_fixture.hpp"

namespace {

using namespace cachet_patterns;

enum class loader { present, absent, throwing, slow, bulk };

const char* name_of(loader l) {
  switch (l) {
    case loader::present:
      return "present";
    case loader::absent:
      return "absent";
    case loader::throwing:
      return "throwing";
    case loader::slow:
      return "slow";
    case loader::bulk:
      return "bulk";
  }
  return "?";
}

// A read of `k` through the loader kind's read path: get_all for bulk, get otherwise.
template <class Adapter>
std::optional<int> read_via(Adapter& p, loader kind, int k) {
  if (kind == loader::bulk) {
    const int keys[] = {k};
    return p.read_all(keys).at(0);
  }
  return p.read(k);
}

// What a read returned: its value, or that it threw (and what).
struct outcome {
  std::optional<int> value;
  std::string error;  // empty if it returned
};
template <class F>
outcome capture(F f) {
  try {
    return {f(), {}};
  } catch (const std::exception& e) {
    return {std::nullopt, e.what()};
  }
}

}  // namespace

TEMPLATE_TEST_CASE("patterns: a miss loads once, then the hit is served", "[patterns]",
                   CACHET_PATTERN_ADAPTERS) {
  const loader kind =
      GENERATE(loader::present, loader::absent, loader::throwing, loader::slow, loader::bulk);
  if (kind == loader::bulk && !TestType::has_bulk) return;
  INFO(TestType::name << ", loader " << name_of(kind));
  table t;
  t.store(1, 10);
  t.store(2, 20);
  cachet::manual_clock clock;
  TestType p(t, clock);
  switch (kind) {
    case loader::present:
      REQUIRE(p.read(1) == 10);
      REQUIRE(p.read(1) == 10);
      REQUIRE(p.read(2) == 20);
      CHECK(t.loads() == 2);
      CHECK(p.load_stats().loads == 2);
      CHECK(p.size() == 2);
      break;
    case loader::absent:
      // No pattern caches absence by default (read_through's negative_ttl is 0): each read loads.
      REQUIRE(p.read(7) == std::nullopt);
      REQUIRE(p.read(7) == std::nullopt);
      CHECK(t.loads() == 2);
      CHECK(p.size() == 0);
      break;
    case loader::throwing:
      t.set_fail(true);
      REQUIRE_THROWS_WITH(p.read(1), "db down");
      CHECK(p.size() == 0);
      CHECK(p.load_stats().load_failures == 1);
      t.set_fail(false);
      REQUIRE(p.read(1) == 10);  // nothing was cached: the next read loads again
      CHECK(t.loads() == 2);
      REQUIRE(p.read(1) == 10);
      CHECK(t.loads() == 2);
      break;
    case loader::slow: {
      t.hold_next(1);
      read_call r([&] { return p.read(1); });
      REQUIRE(t.await_held());
      CHECK_FALSE(r.done());
      t.release();
      CHECK(r.value() == 10);
      REQUIRE(p.read(1) == 10);
      CHECK(t.loads() == 1);
      break;
    }
    case loader::bulk:
      REQUIRE(p.read_all(ints({1, 2, 3})) == opt_ints{10, 20, std::nullopt});
      CHECK(t.bulk_loads() == 1);
      CHECK(t.loads() == 0);
      CHECK(t.batches() == std::vector<std::vector<int>>{{1, 2, 3}});
      REQUIRE(p.read_all(ints({2, 1})) == opt_ints{20, 10});
      REQUIRE(p.read(2) == 20);
      CHECK(t.all_loads() == 1);
      break;
  }
  CHECK_FALSE(t.gate_timed_out());
}

TEMPLATE_TEST_CASE("patterns: 32 threads on one cold key cause one load", "[patterns]",
                   CACHET_PATTERN_ADAPTERS) {
  const loader kind = GENERATE(loader::present, loader::absent, loader::bulk);
  if (kind == loader::bulk && !TestType::has_bulk) return;
  INFO(TestType::name << ", loader " << name_of(kind));
  constexpr int k_threads = 32;
  table t;
  if (kind != loader::absent) t.store(9, 90);
  cachet::manual_clock clock;
  TestType p(t, clock);
  t.hold_next(1);
  // The first caller leads the load (through get_all in the bulk row) and is held at the gate;
  // the others start once it is, so each of them finds the flight and follows it.
  std::vector<std::unique_ptr<read_call>> calls;
  calls.push_back(std::make_unique<read_call>([&] { return read_via(p, kind, 9); }));
  REQUIRE(t.await_held());
  for (int i = 1; i < k_threads; ++i) {
    calls.push_back(std::make_unique<read_call>([&] { return p.read(9); }));
  }
  REQUIRE(await([&] { return p.load_stats().coalesced >= k_threads - 1; }));
  t.release();
  for (auto& c : calls) c->join();
  CHECK(t.all_loads() == 1);
  const std::optional<int> expected =
      kind == loader::absent ? std::nullopt : std::optional<int>(90);
  for (auto& c : calls) {
    REQUIRE_FALSE(c->threw());
    REQUIRE(c->value() == expected);
  }
  if (kind == loader::absent) {
    REQUIRE(p.read(9) == std::nullopt);  // absence is not cached: loaded again
    CHECK(t.all_loads() == 2);
  } else {
    REQUIRE(p.read(9) == 90);  // cached
    CHECK(t.all_loads() == 1);
  }
  CHECK_FALSE(t.gate_timed_out());
}

TEMPLATE_TEST_CASE(
    "patterns: a throwing load reaches every waiter, caches nothing, and the next read retries",
    "[patterns]", CACHET_PATTERN_ADAPTERS) {
  const loader kind = GENERATE(loader::throwing, loader::bulk);
  if (kind == loader::bulk && !TestType::has_bulk) return;
  INFO(TestType::name << ", leader reads through " << (kind == loader::bulk ? "get_all" : "get"));
  constexpr int k_threads = 8;
  table t;
  t.store(9, 90);
  t.store(8, 80);
  cachet::manual_clock clock;
  TestType p(t, clock);
  REQUIRE(p.read(8) == 80);  // a neighbour, cached before: a failed load must not disturb it
  t.hold_next(1);
  std::vector<std::unique_ptr<read_call>> calls;
  calls.push_back(std::make_unique<read_call>([&] { return read_via(p, kind, 9); }));
  REQUIRE(t.await_held());
  for (int i = 1; i < k_threads; ++i) {
    calls.push_back(std::make_unique<read_call>([&] { return p.read(9); }));
  }
  REQUIRE(await([&] { return p.load_stats().coalesced >= k_threads - 1; }));
  t.set_fail(true);
  t.release();
  for (auto& c : calls) c->join();
  // Messages are read on this thread, after every worker is done (see single_flight.hpp on TSan
  // and shared exception objects).
  for (auto& c : calls) REQUIRE(message_of(c->error()) == "db down");
  CHECK(t.all_loads() == 2);  // the neighbour's, and the one that failed
  CHECK(p.load_stats().load_failures == 1);
  CHECK(p.size() == 1);  // only the neighbour
  t.set_fail(false);
  REQUIRE(p.read(9) == 90);
  CHECK(t.all_loads() == 3);
  REQUIRE(p.read(9) == 90);
  REQUIRE(p.read(8) == 80);
  CHECK(t.all_loads() == 3);
  CHECK_FALSE(t.gate_timed_out());
}

TEMPLATE_TEST_CASE("patterns: a read that starts after a write returns sees the written value",
                   "[patterns]", CACHET_PATTERN_ADAPTERS) {
  const loader kind =
      GENERATE(loader::present, loader::absent, loader::throwing, loader::slow, loader::bulk);
  if (kind == loader::bulk && !TestType::has_bulk) return;
  INFO(TestType::name << ", loader " << name_of(kind));
  table t;
  t.store(1, 10);
  t.store(2, 20);
  t.store(3, 30);
  t.store(4, 40);
  cachet::manual_clock clock;
  TestType p(t, clock);
  switch (kind) {
    case loader::present:
      REQUIRE(p.read(1) == 10);
      p.write(1, 11);
      REQUIRE(p.read(1) == 11);
      p.write(1, 12);
      REQUIRE(p.read(1) == 12);
      REQUIRE(p.read(2) == 20);
      p.flush();
      CHECK(t.row(1) == 12);
      REQUIRE(p.read(1) == 12);
      break;
    case loader::absent:
      REQUIRE(p.read(5) == std::nullopt);
      p.write(5, 50);
      REQUIRE(p.read(5) == 50);
      p.flush();
      CHECK(t.row(5) == 50);
      break;
    case loader::throwing: {
      REQUIRE(p.read(1) == 10);
      t.set_fail(true);
      p.write(1, 11);
      // With the source failing, the read may fail; it may not return the replaced value.
      // write_back must serve its own write without the source.
      const outcome o = capture([&] { return p.read(1); });
      INFO("read after write: " << (o.error.empty() ? show(o.value) : "threw " + o.error));
      CHECK((o.value == 11 || o.error == "db down"));
      if (TestType::buffers_writes) CHECK(o.value == 11);
      t.set_fail(false);
      REQUIRE(p.read(1) == 11);
      break;
    }
    case loader::slow: {
      // A load that read the old row is held open across the write; a read after the write must
      // not join it.
      t.hold_next(1);
      read_call before([&] { return p.read(1); });
      REQUIRE(t.await_held());
      p.write(1, 11);
      const auto followers = p.load_stats().coalesced;
      read_call after([&] { return p.read(1); });
      REQUIRE(await_done_or_following(p, after, followers + 1));
      t.release();
      REQUIRE_FALSE(after.threw());
      CHECK(show(after.value()) == "11");
      const std::optional<int> b = before.value();  // overlapped the write: either is right
      CHECK((b == 10 || b == 11));
      CHECK(p.read(1) == 11);
      break;
    }
    case loader::bulk: {
      REQUIRE(p.read_all(ints({1, 2})) == opt_ints{10, 20});
      p.write(1, 11);
      REQUIRE(p.read_all(ints({1, 2})) == opt_ints{11, 20});
      // A bulk load of {3, 4} that read the old rows is held open while 4 is written. A get_all
      // after the write follows the load for 3 (nothing was written there) but not for 4.
      t.hold_next(1);
      read_all_call before([&] { return p.read_all(ints({3, 4})); });
      REQUIRE(t.await_held());
      p.write(4, 41);
      const auto followers = p.load_stats().coalesced;
      read_all_call after([&] { return p.read_all(ints({3, 4})); });
      REQUIRE(await_done_or_following(p, after, followers + 1));
      t.release();
      REQUIRE_FALSE(after.threw());
      CHECK(show(after.value()) == "{30, 41}");
      CHECK(p.read_all(ints({3, 4})) == opt_ints{30, 41});
      CHECK(p.read(4) == 41);
      break;
    }
  }
  CHECK_FALSE(t.gate_timed_out());
}

TEMPLATE_TEST_CASE("patterns: a read that starts after a remove returns finds nothing",
                   "[patterns]", CACHET_PATTERN_ADAPTERS) {
  const loader kind = GENERATE(loader::present, loader::throwing, loader::slow, loader::bulk);
  if (kind == loader::bulk && !TestType::has_bulk) return;
  INFO(TestType::name << ", loader " << name_of(kind));
  table t;
  t.store(1, 10);
  t.store(2, 20);
  t.store(3, 30);
  t.store(4, 40);
  cachet::manual_clock clock;
  TestType p(t, clock);
  switch (kind) {
    case loader::present:
      REQUIRE(p.read(1) == 10);
      p.remove(1);
      REQUIRE(p.read(1) == std::nullopt);
      p.flush();
      CHECK(t.row(1) == std::nullopt);
      REQUIRE(p.read(1) == std::nullopt);
      REQUIRE(p.read(2) == 20);
      break;
    case loader::throwing: {
      REQUIRE(p.read(1) == 10);
      t.set_fail(true);
      p.remove(1);
      const outcome o = capture([&] { return p.read(1); });
      INFO("read after remove: " << (o.error.empty() ? show(o.value) : "threw " + o.error));
      CHECK(((o.error.empty() && o.value == std::nullopt) || o.error == "db down"));
      if (TestType::buffers_writes) CHECK((o.error.empty() && o.value == std::nullopt));
      t.set_fail(false);
      REQUIRE(p.read(1) == std::nullopt);
      break;
    }
    case loader::slow: {
      t.hold_next(1);
      read_call before([&] { return p.read(1); });
      REQUIRE(t.await_held());
      p.remove(1);
      const auto followers = p.load_stats().coalesced;
      read_call after([&] { return p.read(1); });
      REQUIRE(await_done_or_following(p, after, followers + 1));
      t.release();
      REQUIRE_FALSE(after.threw());
      CHECK(show(after.value()) == "nullopt");
      const std::optional<int> b = before.value();
      CHECK((b == 10 || b == std::nullopt));
      CHECK(p.read(1) == std::nullopt);
      break;
    }
    case loader::bulk: {
      REQUIRE(p.read_all(ints({1, 2})) == opt_ints{10, 20});
      p.remove(1);
      REQUIRE(p.read_all(ints({1, 2})) == opt_ints{std::nullopt, 20});
      t.hold_next(1);
      read_all_call before([&] { return p.read_all(ints({3, 4})); });
      REQUIRE(t.await_held());
      p.remove(4);
      const auto followers = p.load_stats().coalesced;
      read_all_call after([&] { return p.read_all(ints({3, 4})); });
      REQUIRE(await_done_or_following(p, after, followers + 1));
      t.release();
      REQUIRE_FALSE(after.threw());
      CHECK(show(after.value()) == "{30, nullopt}");
      CHECK(p.read(4) == std::nullopt);
      break;
    }
    case loader::absent:
      break;  // not generated: removing a row that is not there is the present row's last step
  }
  CHECK_FALSE(t.gate_timed_out());
}

TEMPLATE_TEST_CASE("patterns: a fill raced by a write is never served, not even just after it",
                   "[patterns]", CACHET_PATTERN_ADAPTERS) {
  const loader kind = GENERATE(loader::present, loader::absent, loader::bulk);
  if (kind == loader::bulk && !TestType::has_bulk) return;
  INFO(TestType::name << ", loader " << name_of(kind));
  hook_scope scope;
  table t;
  if (kind != loader::absent) t.store(1, 10);
  t.store(2, 20);
  cachet::manual_clock clock;
  TestType p(t, clock);
  // The reader loads 1 (and 2, in the bulk row) and is held after reading the old row.
  t.hold_next(1);
  read_call r([&] {
    if (kind == loader::bulk) return p.read_all(ints({1, 2})).at(0);
    return p.read(1);
  });
  REQUIRE(t.await_held());
  // If its fill of 1 is stored at all, hold it right there: just after the store's put returned.
  pause_point fill;
  const std::thread::id reader = r.id();
  store_hook::arm(
      [reader](const store_event& e) {
        return e.thread == reader && e.key == 1 && e.ok &&
               (e.op == store_op::put || e.op == store_op::put_if);
      },
      [&](const store_event&) { fill.hold(); });
  p.write(1, 11);
  p.flush();  // write_back: the source has 11 too, so nothing but a raced fill can bring back 10
  t.release();
  REQUIRE(await([&] { return r.done() || fill.held(); }));
  INFO("the raced fill was " << (fill.held() ? "stored and is held there" : "not stored"));
  CHECK(show(p.read(1)) == "11");
  fill.resume();
  r.join();
  REQUIRE_FALSE(r.threw());
  const std::optional<int> old = kind == loader::absent ? std::nullopt : std::optional<int>(10);
  CHECK((r.value() == old || r.value() == 11));
  CHECK(p.read(1) == 11);
  CHECK(p.read(1) == 11);
  if constexpr (TestType::has_store) {
    const std::optional<int> cached = p.store().peek(1);
    CHECK((cached == std::nullopt || cached == 11));
  }
  if constexpr (TestType::has_bulk) CHECK(p.read_all(ints({1, 2})) == opt_ints{11, 20});
  CHECK_FALSE(fill.timed_out());
  CHECK_FALSE(t.gate_timed_out());
}
