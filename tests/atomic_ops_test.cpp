// Tests of sharded_store's atomic per-key operations: put_if_absent, get_or_insert,
// get_or_insert_with, compute, merge, replace and the bulk get_all / put_all / erase_all. The
// interleaving tests hold the user's function (gate) while the test thread writes the key, so the
// outcome does not depend on timing; a bounded wait only ends a failing test.
#include <atomic>
#include <cachet/clock.hpp>
#include <cachet/eviction/no_eviction.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using store = cachet::sharded_store<std::string, int, cachet::lru, cachet::manual_clock>;

store make(const cachet::manual_clock& clock, std::size_t max_entries = 64) {
  return store({.max_entries = max_entries, .shards = 1}, clock);
}

// A one-shot gate: the first caller of pass() blocks until open(); wait_entered() waits (at most a
// minute) until it is blocked there.
class gate {
 public:
  void pass() {
    std::unique_lock<std::mutex> l(mu_);
    if (used_) return;
    used_ = true;
    entered_ = true;
    cv_.notify_all();
    cv_.wait_for(l, std::chrono::minutes(1), [&] { return open_; });
  }
  bool wait_entered() {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::minutes(1), [&] { return entered_; });
  }
  void open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool used_ = false;
  bool entered_ = false;
  bool open_ = false;
};

// A thread joined when the test leaves its scope (after opening `g`), also when a REQUIRE fails.
class background {
 public:
  template <class F>
  background(gate& g, F f) : g_(g), t_(std::move(f)) {}
  background(const background&) = delete;
  background& operator=(const background&) = delete;
  ~background() { join(); }
  void join() {
    if (!t_.joinable()) return;
    g_.open();
    t_.join();
  }

 private:
  gate& g_;
  std::thread t_;
};

}  // namespace

TEST_CASE("atomic ops: put_if_absent and get_or_insert insert only when absent", "[atomic_ops]") {
  cachet::manual_clock clock;
  store s = make(clock);
  CHECK_FALSE(s.put_if_absent("a", 1));
  CHECK(s.put_if_absent("a", 2) == 1);  // present: unchanged, its value returned
  CHECK(s.peek("a") == 1);
  CHECK(s.get_or_insert("a", 3) == 1);
  CHECK(s.get_or_insert("b", 4) == 4);
  CHECK(s.peek("b") == 4);

  // An expired entry is absent.
  CHECK_FALSE(s.put_if_absent("t", 5, 10s));
  clock.advance(10s);
  CHECK_FALSE(s.put_if_absent("t", 6));
  CHECK(s.peek("t") == 6);

  const cachet::cache_stats st = s.stats();
  CHECK(st.inserts == 4);
  CHECK(st.updates == 0);
  CHECK(st.hits == 0);  // reading the existing value is not a hit
  CHECK(st.expirations == 1);
}

TEST_CASE("atomic ops: a refused insert says so", "[atomic_ops]") {
  cachet::manual_clock clock;
  cachet::sharded_store<std::string, int, cachet::no_eviction, cachet::manual_clock> s(
      {.max_entries = 1, .shards = 1}, clock);
  CHECK_FALSE(s.put_if_absent("a", 1));
  CHECK_FALSE(s.put_if_absent("b", 2));  // full: nothing cached, and nothing was there
  CHECK_FALSE(s.contains("b"));
  CHECK(s.get_or_insert("c", 3) == 3);  // the value, uncached
  CHECK_FALSE(s.contains("c"));
  CHECK(s.stats().rejections == 2);
}

TEST_CASE("atomic ops: compute puts, updates and erases", "[atomic_ops]") {
  cachet::manual_clock clock;
  std::vector<std::pair<std::string, cachet::removal_cause>> removed;
  store s({.max_entries = 64,
           .shards = 1,
           .on_removal = [&](const std::string& k, const int&,
                             cachet::removal_cause c) { removed.emplace_back(k, c); }},
          clock);
  const auto incr = [](std::optional<int> v) -> std::optional<int> { return v ? *v + 1 : 1; };
  CHECK(s.compute("n", incr) == 1);
  CHECK(s.compute("n", incr) == 2);
  CHECK(s.peek("n") == 2);
  CHECK_FALSE(s.compute("n", [](std::optional<int>) -> std::optional<int> { return {}; }));
  CHECK_FALSE(s.contains("n"));
  CHECK_FALSE(s.compute("absent", [](std::optional<int> v) { return v; }));  // nothing to erase
  REQUIRE(removed.size() == 2);
  CHECK(removed[0] ==
        std::pair<std::string, cachet::removal_cause>{"n", cachet::removal_cause::replaced});
  CHECK(removed[1] ==
        std::pair<std::string, cachet::removal_cause>{"n", cachet::removal_cause::explicit_erase});
}

TEST_CASE("atomic ops: a compute whose key was written meanwhile runs again on the newer value",
          "[atomic_ops]") {
  const std::string op = GENERATE(as<std::string>{}, "put", "erase", "insert");
  CAPTURE(op);
  cachet::manual_clock clock;
  store s = make(clock);
  if (op != "insert") s.put("k", 1);
  gate g;
  std::vector<std::optional<int>> seen;  // written by the computing thread only
  std::optional<int> result;
  background computer(g, [&] {
    result = s.compute("k", [&](std::optional<int> v) -> std::optional<int> {
      seen.push_back(v);
      g.pass();  // the first run is held here, after it read the value
      return (v ? *v : 0) + 100;
    });
  });
  REQUIRE(g.wait_entered());
  if (op == "put") s.put("k", 10);
  if (op == "erase") s.erase("k");
  if (op == "insert") s.put("k", 10);
  computer.join();

  REQUIRE(seen.size() == 2);  // the write in between made it read again
  CHECK(seen[0] == (op == "insert" ? std::nullopt : std::optional<int>(1)));
  const std::optional<int> now = op == "erase" ? std::nullopt : std::optional<int>(10);
  CHECK(seen[1] == now);
  CHECK(result == (now ? *now : 0) + 100);
  CHECK(s.peek("k") == result);  // nothing the held run computed from the old value landed
}

TEST_CASE("atomic ops: concurrent merges lose no update", "[atomic_ops]") {
  cachet::manual_clock clock;
  store s = make(clock);
  constexpr int threads = 4;
  constexpr int per_thread = 2000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        s.merge("sum", 1, [](const int& old, const int& given) { return old + given; });
      }
    });
  }
  for (std::thread& t : ts) t.join();
  CHECK(s.peek("sum") == threads * per_thread);
}

TEST_CASE("atomic ops: merge puts the given value when absent and combines otherwise",
          "[atomic_ops]") {
  cachet::manual_clock clock;
  store s = make(clock);
  const auto add = [](const int& old, const int& given) { return old + given; };
  CHECK(s.merge("m", 5, add) == 5);
  CHECK(s.merge("m", 7, add) == 12);
  CHECK(s.peek("m") == 12);
}

TEST_CASE("atomic ops: replace swaps only the expected value", "[atomic_ops]") {
  cachet::manual_clock clock;
  store s = make(clock);
  CHECK_FALSE(s.replace("r", 1, 2));  // absent
  CHECK_FALSE(s.contains("r"));
  s.put("r", 1);
  CHECK_FALSE(s.replace("r", 7, 2));
  CHECK(s.peek("r") == 1);
  CHECK(s.replace("r", 1, 2));
  CHECK(s.peek("r") == 2);
  s.put("e", 1, 1s);
  clock.advance(1s);
  CHECK_FALSE(s.replace("e", 1, 2));  // expired: absent
}

TEST_CASE("atomic ops: get_or_insert_with runs fn once for concurrent callers", "[atomic_ops]") {
  cachet::manual_clock clock;
  store s = make(clock);
  gate g;
  std::atomic<int> calls{0};
  const auto make_value = [&](const std::string& k) {
    calls.fetch_add(1);
    g.pass();
    return static_cast<int>(k.size()) * 10;
  };
  std::optional<int> first;
  std::optional<int> second;
  background leader(g, [&] { first = s.get_or_insert_with("key", make_value); });
  REQUIRE(g.wait_entered());
  std::thread follower([&] { second = s.get_or_insert_with("key", make_value); });
  // The follower is seen waiting for the leader's call before the leader is released.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (s.insert_flight_stats().coalesced < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  const bool waited = s.insert_flight_stats().coalesced == 1;
  leader.join();
  follower.join();
  REQUIRE(waited);
  CHECK(first == 30);
  CHECK(second == 30);
  CHECK(calls == 1);
  CHECK(s.peek("key") == 30);
  CHECK(s.get_or_insert_with("key", make_value) == 30);  // a hit: fn not called
  CHECK(calls == 1);
}

TEST_CASE("atomic ops: a throwing function leaves the store unchanged", "[atomic_ops]") {
  cachet::manual_clock clock;
  store s = make(clock);
  s.put("k", 1);
  CHECK_THROWS_AS(
      s.compute("k",
                [](std::optional<int>) -> std::optional<int> { throw std::runtime_error("no"); }),
      std::runtime_error);
  CHECK(s.peek("k") == 1);
  CHECK_THROWS_AS(
      s.get_or_insert_with("x", [](const std::string&) -> int { throw std::runtime_error("no"); }),
      std::runtime_error);
  CHECK_FALSE(s.contains("x"));
  CHECK(s.get_or_insert_with("x", [](const std::string&) { return 9; }) == 9);  // tried again
}

TEST_CASE("atomic ops: get_all, put_all and erase_all go key by key", "[atomic_ops]") {
  cachet::manual_clock clock;
  store s = make(clock);
  const std::vector<std::pair<std::string, int>> items{{"a", 1}, {"b", 2}, {"a", 3}};
  const std::vector<cachet::put_result> put = s.put_all(items);
  CHECK(put == std::vector<cachet::put_result>{cachet::put_result::inserted,
                                               cachet::put_result::inserted,
                                               cachet::put_result::replaced});
  const std::vector<std::string> keys{"a", "b", "c"};
  CHECK(s.get_all(keys) == std::vector<std::optional<int>>{3, 2, std::nullopt});
  CHECK(s.erase_all(keys) == 2);
  CHECK(s.empty());
}
