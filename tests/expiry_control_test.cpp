// sharded_store's expiry at run time (set_default_ttl, expires_in, set_expires_after), time to idle
// (store_options::expire_after_access) and per-entry expiry policies (store_options::expiry,
// cachet::expiry_policy), over every backend, with a manual clock.
#include <atomic>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
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

// ---- sharded_store's time to idle (store_options::expire_after_access) and per-entry expiry
// policies (store_options::expiry, cachet::expiry_policy), over every backend, with a manual clock.

TEMPLATE_TEST_CASE("expire_after_access: reads and writes restart the idle timeout", "[expiry]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 64, .expire_after_access = 10s}, clock);
  s.put(1, 10);
  CHECK(s.expires_in(1) == 10s);
  clock.advance(6s);
  CHECK(s.get(1) == 10);  // a read restarts the timeout
  CHECK(s.expires_in(1) == 10s);
  clock.advance(9s);
  CHECK(s.get_all(std::vector<int>{1}).front() == 10);
  clock.advance(9s);
  s.put(1, 11);  // so does a write
  clock.advance(9s);
  CHECK(s.get(1) == 11);
  clock.advance(10s);  // idle for the whole timeout
  CHECK_FALSE(s.get(1).has_value());
  CHECK(s.stats().expirations == 1);
}

TEMPLATE_TEST_CASE("expire_after_access: quiet lookups do not count as use", "[expiry]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 64, .expire_after_access = 10s}, clock);
  s.put(1, 10);
  clock.advance(6s);
  CHECK(s.peek(1) == 10);
  CHECK(s.contains(1));
  CHECK(s.expires_in(1) == 4s);
  clock.advance(4s);
  CHECK_FALSE(s.peek(1).has_value());
}

TEMPLATE_TEST_CASE(
    "expire_after_access: finding an entry through put_if_absent or "
    "get_or_insert is a read",
    "[expiry]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 64, .expire_after_access = 10s}, clock);
  s.put(1, 10);
  s.put(2, 20);
  clock.advance(8s);
  CHECK(s.put_if_absent(1, 99) == 10);
  CHECK(s.get_or_insert(2, 99) == 20);
  CHECK(s.expires_in(1) == 10s);
  CHECK(s.expires_in(2) == 10s);
  clock.advance(8s);
  CHECK(s.get_or_insert_with(1, [](int) { return 99; }) == 10);
  CHECK(s.expires_in(1) == 10s);
}

TEMPLATE_TEST_CASE("expire_after_access: a put's own TTL holds until the next read or write",
                   "[expiry]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s({.max_entries = 64, .expire_after_access = 10s}, clock);
  s.put(1, 10, 1h);
  CHECK(s.expires_in(1) == 1h);
  clock.advance(30min);
  CHECK(s.get(1) == 10);
  CHECK(s.expires_in(1) == 10s);
  s.put(2, 20, 2s);
  clock.advance(2s);
  CHECK_FALSE(s.get(2).has_value());
  s.put(3, 30, cachet::no_expiry);  // no TTL of its own: the idle timeout
  CHECK(s.expires_in(3) == 10s);
  // set_expires_after sets a lifetime directly; the next read restarts the idle timeout.
  REQUIRE(s.set_expires_after(3, 1h));
  CHECK(s.expires_in(3) == 1h);
  CHECK(s.get(3) == 30);
  CHECK(s.expires_in(3) == 10s);
}

TEST_CASE("expire_after_access: the earliest-deadline policy follows the reads", "[expiry]") {
  // One shard of 3: deadlines 10 s, 11 s, 12 s; a read at 3 s moves key 1's to 13 s, so making
  // room for key 4 must evict key 2 (the earliest now), not key 1.
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::ttl> s({.max_entries = 3, .shards = 1, .expire_after_access = 10s},
                                        clock);
  s.put(1, 1);
  clock.advance(1s);
  s.put(2, 2);
  clock.advance(1s);
  s.put(3, 3);
  clock.advance(1s);
  CHECK(s.get(1) == 1);
  REQUIRE(s.put(4, 4) == cachet::put_result::inserted);
  CHECK(s.contains(1));
  CHECK_FALSE(s.contains(2));
  CHECK(s.contains(3));
  CHECK(s.contains(4));
}

TEST_CASE("expire_after_access: options are checked at construction", "[expiry][options]") {
  using store = cachet_test::int_store<cachet::lru>;
  const auto option_of = [](auto make) -> std::string {
    try {
      make();
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return "(nothing thrown)";
  };
  CHECK(option_of([] { store s({.max_entries = 8, .expire_after_access = -1ns}); }) ==
        "expire_after_access");
  CHECK(option_of([] {
          store s({.max_entries = 8, .default_ttl = 1s, .expire_after_access = 1s});
        }) == "expire_after_access");
  CHECK(option_of([] {
          store s({.max_entries = 8,
                   .expire_after_access = 1s,
                   .expiry = std::make_shared<cachet::expiry_policy<int, int>>()});
        }) == "expire_after_access");
  cachet::manual_clock clock;
  store s({.max_entries = 8, .expire_after_access = 1s}, clock);
  CHECK(option_of([&] { s.set_default_ttl(1s); }) == "default_ttl");
  CHECK(s.default_ttl() == 0ns);
  s.set_default_ttl(0ns);  // no TTL is what the store has already
}

namespace {

// Records what the store asked, and answers with set lifetimes (-1 ns: return what came in).
class recording_expiry : public cachet::expiry_policy<int, int> {
 public:
  struct call {
    char kind;  // 'c'reate, 'u'pdate, 'r'ead
    int key;
    int value;
    std::chrono::nanoseconds ttl;        // create, update
    std::chrono::nanoseconds remaining;  // update, read
  };

  std::chrono::nanoseconds on_create = -1ns, on_update = -1ns, on_read = -1ns;

  std::chrono::nanoseconds after_create(const int& k, const int& v,
                                        std::chrono::nanoseconds ttl) noexcept override {
    record({'c', k, v, ttl, 0ns});
    return on_create == -1ns ? ttl : on_create;
  }
  std::chrono::nanoseconds after_update(const int& k, const int& v, std::chrono::nanoseconds ttl,
                                        std::chrono::nanoseconds remaining) noexcept override {
    record({'u', k, v, ttl, remaining});
    return on_update == -1ns ? ttl : on_update;
  }
  std::chrono::nanoseconds after_read(const int& k, const int& v,
                                      std::chrono::nanoseconds remaining) noexcept override {
    record({'r', k, v, 0ns, remaining});
    return on_read == -1ns ? remaining : on_read;
  }

  std::vector<call> take() {
    std::lock_guard<std::mutex> g(mu_);
    return std::exchange(calls_, {});
  }

 private:
  void record(const call& c) noexcept {
    std::lock_guard<std::mutex> g(mu_);
    calls_.push_back(c);
  }
  std::mutex mu_;
  std::vector<call> calls_;
};

}  // namespace

TEMPLATE_TEST_CASE("expiry_policy: each write and read asks it, with what the entry had",
                   "[expiry]", CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  auto policy = std::make_shared<recording_expiry>();
  cachet_test::int_store<TestType> s({.max_entries = 64, .default_ttl = 7s, .expiry = policy},
                                     clock);
  s.put(1, 10);  // the default TTL goes in as `ttl`
  s.put(2, 20, 3s);
  s.put(3, 30, cachet::no_expiry);
  auto calls = policy->take();
  REQUIRE(calls.size() == 3);
  CHECK((calls[0].kind == 'c' && calls[0].key == 1 && calls[0].value == 10 && calls[0].ttl == 7s));
  CHECK((calls[1].kind == 'c' && calls[1].ttl == 3s));
  CHECK((calls[2].kind == 'c' && calls[2].ttl == cachet::no_expiry));

  clock.advance(2s);
  s.put(2, 21);  // an update: the new value, the write's TTL, what the old entry had left
  calls = policy->take();
  REQUIRE(calls.size() == 1);
  CHECK((calls[0].kind == 'u' && calls[0].key == 2 && calls[0].value == 21 && calls[0].ttl == 7s &&
         calls[0].remaining == 1s));

  CHECK(s.get(1) == 10);
  CHECK(s.get(3) == 30);
  CHECK_FALSE(s.get(4).has_value());  // a miss asks nothing
  CHECK(s.peek(1) == 10);             // nor does a quiet lookup
  calls = policy->take();
  REQUIRE(calls.size() == 2);
  CHECK((calls[0].kind == 'r' && calls[0].key == 1 && calls[0].remaining == 5s));
  CHECK((calls[1].kind == 'r' && calls[1].key == 3 && calls[1].remaining == cachet::no_expiry));
  CHECK(s.expires_in(1) == 5s);  // returning `remaining` keeps the deadline

  // compute() and merge() write through the same path: updates.
  s.merge(1, 1, [](int a, int b) { return a + b; });
  calls = policy->take();
  REQUIRE(calls.size() == 1);
  CHECK((calls[0].kind == 'u' && calls[0].value == 11));
}

TEMPLATE_TEST_CASE("expiry_policy: the lifetimes it returns are the entries' deadlines", "[expiry]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  auto policy = std::make_shared<recording_expiry>();
  cachet_test::int_store<TestType> s({.max_entries = 64, .expiry = policy}, clock);
  policy->on_create = 5s;
  policy->on_update = 1min;
  policy->on_read = 20s;
  s.put(1, 10);
  CHECK(s.expires_in(1) == 5s);
  s.put(1, 11);
  CHECK(s.expires_in(1) == 1min);
  clock.advance(59s);
  CHECK(s.get(1) == 11);
  CHECK(s.expires_in(1) == 20s);
  clock.advance(20s);
  CHECK_FALSE(s.get(1).has_value());

  policy->on_create = cachet::no_expiry;
  policy->on_read = 0ns;  // expired now: this read still gets the value, the next does not
  s.put(2, 20, 1s);
  CHECK(s.expires_in(2) == cachet::no_expiry);
  CHECK(s.get(2) == 20);
  CHECK_FALSE(s.get(2).has_value());

  policy->on_create = -5s;  // zero or less: expired at once
  s.put(3, 30);
  CHECK_FALSE(s.get(3).has_value());
}

TEMPLATE_TEST_CASE("expiry_policy: the base class keeps the store's own TTLs", "[expiry]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  cachet_test::int_store<TestType> s(
      {.max_entries = 64,
       .default_ttl = 10s,
       .expiry = std::make_shared<cachet::expiry_policy<int, int>>()},
      clock);
  s.put(1, 10);
  s.put(2, 20, 3s);
  clock.advance(2s);
  CHECK(s.get(1) == 10);
  CHECK(s.expires_in(1) == 8s);
  s.put(2, 21);
  CHECK(s.expires_in(2) == 10s);
  clock.advance(8s);
  CHECK_FALSE(s.get(1).has_value());
  CHECK(s.get(2) == 21);
}

TEST_CASE("expire_after_access: concurrent readers and writers of hot keys", "[expiry][threads]") {
  // Readers restart the timeout under the shard lock while writers replace the values: nothing
  // expires while the clock stands still, every read of a present key hits, and each entry ends
  // with the whole timeout left. (TSan checks the deadline is only touched under the lock.)
  cachet::manual_clock clock;
  cachet_test::int_store<cachet::ttl> s(
      {.max_entries = 64, .shards = 2, .expire_after_access = 10s}, clock);
  for (int k = 0; k < 8; ++k) s.put(k, 0);
  constexpr int k_rounds = 2000;
  std::atomic<long> hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < k_rounds; ++r) {
        const int k = (r + t) % 8;
        if (t % 2 == 0) {
          if (s.get(k)) hits.fetch_add(1, std::memory_order_relaxed);
        } else {
          s.put(k, r);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(hits.load() == 2 * k_rounds);
  CHECK(s.stats().expirations == 0);
  for (int k = 0; k < 8; ++k) CHECK(s.expires_in(k) == 10s);
}

TEST_CASE("age_of: time since the entry's value was last written, with track_age",
          "[expiry][age]") {
  cachet::manual_clock clock;
  using store_t = cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock>;
  store_t s({.max_entries = 64, .track_age = true}, clock);
  CHECK_FALSE(s.age_of(1));  // no entry
  s.put(1, 10);
  CHECK(s.age_of(1) == 0s);
  clock.advance(5s);
  CHECK(s.age_of(1) == 5s);
  CHECK(s.get(1) == 10);  // reads do not make it younger
  CHECK(s.put_if_absent(1, 11) == 10);
  CHECK(s.set_expires_after(1, 1h));
  clock.advance(1s);
  CHECK(s.age_of(1) == 6s);
  s.put(1, 12);  // writes do
  CHECK(s.age_of(1) == 0s);
  clock.advance(2s);
  CHECK(s.replace(1, 12, 13));
  CHECK(s.age_of(1) == 0s);
  clock.advance(3s);
  s.compute(1, [](std::optional<int> v) { return std::optional<int>(*v + 1); });
  CHECK(s.age_of(1) == 0s);
  clock.advance(1s);
  s.put(2, 20, 1s);  // another slot; it expires
  CHECK(s.age_of(1) == 1s);
  clock.advance(1s);
  CHECK_FALSE(s.age_of(2));
  s.erase(1);
  s.put(3, 30);  // a new entry in the freed slot starts at 0
  CHECK(s.age_of(3) == 0s);
  CHECK_FALSE(s.age_of(1));

  store_t untracked({.max_entries = 8}, clock);
  CHECK_THROWS_AS(untracked.age_of(1), std::logic_error);
  const auto option_of = [&](store_t::options_type o) -> std::string {
    try {
      store_t t(o, clock);
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return "(accepted)";
  };
  CHECK(option_of({.max_weight = 100,
                   .weigher = [](const int&, const int&) { return 1u; },
                   .track_age = true}) == "track_age");
}
