// cachet/shield.hpp: keys above the share are served locally for the TTL, the rest always go to
// the store; a write through the shield, or invalidate_local, drops the local copy, and a copy
// that raced it is refused; options are validated. The store underneath is a sharded_store on a
// manual clock (its stats count the reads that reach it); hooked_store runs a test's code inside
// a get, after the store answered, to interleave deterministically.
#include <atomic>
#include <cachet/clock.hpp>
#include <cachet/eviction/lru.hpp>
#include <cachet/metrics.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/shield.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "promtool_check.hpp"

using namespace std::chrono_literals;

namespace {
using remote_t = cachet::sharded_store<std::string, int, cachet::lru, cachet::manual_clock>;

// Forwards to a remote_t; after_next_get(f) runs f once inside the next get, after it answered.
class hooked_store {
 public:
  using key_type = std::string;
  using mapped_type = int;
  using clock_type = cachet::manual_clock;
  using hasher = remote_t::hasher;
  using key_equal = remote_t::key_equal;
  template <class V2>
  using rebind_value = remote_t::rebind_value<V2>;

  explicit hooked_store(const cachet::manual_clock& c) : s_({.max_entries = 1000}, c) {}
  std::optional<int> get(const std::string& k) {
    auto v = s_.get(k);
    if (auto f = std::exchange(hook_, nullptr)) f();
    return v;
  }
  std::optional<int> peek(const std::string& k) { return s_.peek(k); }
  bool contains(const std::string& k) { return s_.contains(k); }
  // Writes, then throws when throw_after_put is set (a store that failed after it wrote).
  cachet::put_result put(std::string k, int v) {
    const cachet::put_result r = s_.put(std::move(k), v);
    if (std::exchange(throw_after_put, false)) throw std::runtime_error("connection lost");
    return r;
  }
  template <class D>
  cachet::put_result put(std::string k, int v, D ttl) {
    return s_.put(std::move(k), v, ttl);
  }
  template <class P>
  cachet::put_result put_if(std::string k, int v, P c) {
    return s_.put_if(std::move(k), v, c);
  }
  template <class D, class P>
  cachet::put_result put_if(std::string k, int v, D ttl, P c) {
    return s_.put_if(std::move(k), v, ttl, c);
  }
  bool erase(const std::string& k) { return s_.erase(k); }
  const cachet::manual_clock& clock() const noexcept { return s_.clock(); }

  void after_next_get(std::function<void()> f) { hook_ = std::move(f); }
  bool throw_after_put = false;
  remote_t& inner() { return s_; }

 private:
  remote_t s_;
  std::function<void()> hook_;
};

constexpr cachet::shield_options k_opts{.min_share = 0.05,
                                        .ttl = 100ms,
                                        .max_keys = 4,
                                        .window = 1s,
                                        .min_samples = 100,
                                        .tracking = {.sample_every = 1, .capacity = 64}};

std::string key(const char* p, int i) {
  std::string k = p;
  k.append(std::to_string(i));
  return k;
}

// One window in which "hot" takes 90% of the reads and 100 cold keys 0.1% each, then the clock
// moves past the window's end.
template <class Shield>
void hot_window(Shield& s, cachet::manual_clock& clock) {
  for (int i = 0; i < 900; ++i) s.get("hot");
  for (int i = 0; i < 100; ++i) s.get(key("cold", i));
  clock.advance(1s);
}
}  // namespace

TEST_CASE("hot_key_shield: a key above the share is served locally for the TTL; the rest are not",
          "[shield]") {
  cachet::manual_clock clock;
  cachet::hot_key_shield<remote_t> s(k_opts, remote_t::options_type{.max_entries = 1000}, clock);
  s.store().put("hot", 1);
  for (int i = 0; i < 100; ++i) s.store().put(key("cold", i), i);
  hot_window(s, clock);
  CHECK(s.stats().shielded_keys == 0);  // nothing shielded before the first window ended

  CHECK(s.get("hot") == 1);  // the window rolls: "hot" is shielded; this read is copied
  CHECK(s.shielded_keys() == std::vector<std::string>{"hot"});
  const std::uint64_t store_reads = s.store().stats().hits;
  for (int i = 0; i < 100; ++i) CHECK(s.get("hot") == 1);
  CHECK(s.store().stats().hits == store_reads);  // all 100 served locally
  CHECK(s.stats().local_hits == 100);
  for (int i = 0; i < 10; ++i) CHECK(s.get("cold7") == 7);
  CHECK(s.store().stats().hits == store_reads + 10);  // a cold key goes to the store every time

  clock.advance(100ms);  // the copy's TTL
  CHECK(s.get("hot") == 1);
  CHECK(s.store().stats().hits == store_reads + 11);  // read again, and copied again
  CHECK(s.stats().copies == 2);

  // A window in which "hot" cools down (the counts start afresh each window): no longer shielded.
  clock.advance(1s);
  s.get("cold1");  // rolls the window that "hot" dominated above
  for (int i = 0; i < 200; ++i) s.get(key("cold", i % 100));
  clock.advance(1s);
  s.get("cold1");  // rolls again
  CHECK(s.shielded_keys().empty());
  const std::uint64_t before = s.store().stats().hits;
  s.get("hot");
  s.get("hot");
  CHECK(s.store().stats().hits == before + 2);
  CHECK(s.stats().windows == 3);
}

TEST_CASE("hot_key_shield: writes through it, and invalidate_local, drop the local copy",
          "[shield]") {
  cachet::manual_clock clock;
  cachet::hot_key_shield<remote_t> s(k_opts, remote_t::options_type{.max_entries = 1000}, clock);
  s.store().put("hot", 1);
  hot_window(s, clock);
  CHECK(s.get("hot") == 1);  // copied
  s.put("hot", 2);
  CHECK(s.get("hot") == 2);  // its own write, at once
  CHECK(s.get("hot") == 2);
  s.store().put("hot", 3);  // written elsewhere: the copy serves 2 until told
  CHECK(s.get("hot") == 2);
  s.invalidate_local("hot");  // what the bus calls
  CHECK(s.get("hot") == 3);
  CHECK(s.erase("hot"));
  CHECK_FALSE(s.get("hot"));
  s.store().put("hot", 4);
  CHECK(s.get("hot") == 4);
  s.store().put("hot", 5);
  s.clear_local();
  CHECK(s.get("hot") == 5);
}

TEST_CASE("hot_key_shield: a copy that raced an invalidation is refused", "[shield]") {
  // The read reaches the store and gets 1; before the shield copies it, the key is written
  // elsewhere and the bus's invalidate_local runs (inside the store's get, after it answered).
  const std::string how = GENERATE(as<std::string>{}, "invalidate_local", "clear_local", "put");
  CAPTURE(how);
  cachet::manual_clock clock;
  cachet::hot_key_shield<hooked_store> s(k_opts, clock);
  s.store().put("hot", 1);
  hot_window(s, clock);
  s.get("x");  // rolls the window: "hot" is shielded
  REQUIRE(s.shielded_keys() == std::vector<std::string>{"hot"});
  s.store().after_next_get([&] {
    if (how == "put") {
      s.put("hot", 2);
    } else {
      s.store().put("hot", 2);
      how == "clear_local" ? s.clear_local() : s.invalidate_local("hot");
    }
  });
  CHECK(s.get("hot") == 1);  // it overlapped the write: the old value is allowed
  CHECK(s.stats().copies_refused == 1);
  CHECK(s.get("hot") == 2);  // no stale copy was left behind
}

TEST_CASE("hot_key_shield: a write the store throws from still drops the local copy", "[shield]") {
  cachet::manual_clock clock;
  cachet::hot_key_shield<hooked_store> s(k_opts, clock);
  s.store().put("hot", 1);
  hot_window(s, clock);
  CHECK(s.get("hot") == 1);  // rolls the window and copies
  CHECK(s.get("hot") == 1);
  CHECK(s.stats().local_hits == 1);
  s.store().throw_after_put = true;
  CHECK_THROWS_AS(s.put("hot", 2), std::runtime_error);
  CHECK(s.get("hot") == 2);  // the store took it: the copy of 1 is gone
}

TEST_CASE("hot_key_shield: options are validated, naming the option", "[shield]") {
  cachet::manual_clock clock;
  const auto make = [&](cachet::shield_options o) {
    cachet::hot_key_shield<remote_t> s(o, remote_t::options_type{.max_entries = 10}, clock);
  };
  const auto named = [](const char* option) {
    return Catch::Matchers::Predicate<cachet::invalid_option>(
        [option](const cachet::invalid_option& e) { return e.option() == option; }, option);
  };
  CHECK_THROWS_MATCHES(make({.min_share = 0}), cachet::invalid_option, named("min_share"));
  CHECK_THROWS_MATCHES(make({.min_share = 1.5}), cachet::invalid_option, named("min_share"));
  CHECK_THROWS_MATCHES(make({.ttl = 0s}), cachet::invalid_option, named("ttl"));
  CHECK_THROWS_MATCHES(make({.ttl = cachet::no_expiry}), cachet::invalid_option, named("ttl"));
  CHECK_THROWS_MATCHES(make({.max_keys = 0}), cachet::invalid_option, named("max_keys"));
  CHECK_THROWS_MATCHES(make({.window = 0s}), cachet::invalid_option, named("window"));
  CHECK_NOTHROW(make({}));
}

TEST_CASE("hot_key_shield: concurrent reads, writes and invalidations", "[shield][stress]") {
  // Readers of a shielded key race a writer that writes through the shield: once a write
  // returned, a read that starts after it sees that version or a later one.
  cachet::manual_clock clock;
  cachet::hot_key_shield<remote_t> s(k_opts, remote_t::options_type{.max_entries = 1000}, clock);
  s.store().put("hot", 0);
  hot_window(s, clock);
  s.get("x");
  REQUIRE(s.shielded_keys() == std::vector<std::string>{"hot"});
  std::atomic<int> written{0};
  std::atomic<bool> quiet{false}, stop{false};
  std::atomic<int> stale{0}, quiet_reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_acquire)) {
        const bool after = quiet.load(std::memory_order_acquire);
        const int floor = written.load(std::memory_order_acquire);
        const std::optional<int> v = s.get("hot");
        if (!v || *v < floor) stale.fetch_add(1);
        if (after) quiet_reads.fetch_add(1, std::memory_order_release);
      }
    });
  }
  for (int v = 1; v <= 3000; ++v) {
    s.put("hot", v);
    written.store(v, std::memory_order_release);
    if (v % 100 == 0) s.invalidate_local("hot");
  }
  // Then no more writes: 3 reads started after this, from 2 readers, include one reader's second,
  // which finds the copy its first made (the writer may have kept every earlier copy from living
  // long enough to be read, on a loaded machine). Bounded: at most 30 s.
  quiet.store(true, std::memory_order_release);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (quiet_reads.load(std::memory_order_acquire) < 3 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  stop.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();
  CHECK(stale.load() == 0);
  REQUIRE(quiet_reads.load() >= 3);
  CHECK(s.stats().local_hits > 0);
}

TEST_CASE("hot_key_shield: exported, valid for promtool", "[shield][metrics]") {
  cachet::manual_clock clock;
  cachet::hot_key_shield<remote_t> s(k_opts, remote_t::options_type{.max_entries = 1000}, clock);
  s.store().put("hot", 1);
  hot_window(s, clock);
  s.get("hot");
  s.get("hot");
  cachet::metrics_registry reg;
  reg.add("users", s);
  const std::string text = reg.prometheus_text();
  CHECK_THAT(text,
             Catch::Contains("cachet_shield_reads_total{cache=\"users\",result=\"local\"} 1"));
  CHECK_THAT(text, Catch::Contains("cachet_shield_keys{cache=\"users\"} 1"));
  const auto [rc, out] = cachet_test::promtool_check(text);
  INFO(out);
  CHECK(rc == 0);
}
