// Tests of cachet/tiered_store.hpp: both tiers are sharded_store<int, int, lru, manual_clock> on
// one manual clock, so every lifetime is exact and nothing depends on timing. The interleaving
// tests hold a promotion (or a write) inside L2 with held_store, a forwarding store whose next
// get() or put() blocks, after the inner store answered, until the test releases it.
#include <cachet/cache_aside.hpp>
#include <cachet/clock.hpp>
#include <cachet/eviction/no_eviction.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/store.hpp>
#include <cachet/tiered_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using plain = cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock>;
using tiered = cachet::tiered_store<plain, plain>;

// A store that forwards to S; hold(op) makes the next `op` ("get", "peek" or "put") block after S
// answered, until release(). The blocked thread gives up after a minute (the test then fails on its
// checks). after_next_get(f) runs f once, after S answered the next get() and before it returns.
template <class S>
class held_store {
 public:
  using key_type = typename S::key_type;
  using mapped_type = typename S::mapped_type;
  using clock_type = typename S::clock_type;
  using hasher = typename S::hasher;
  using key_equal = typename S::key_equal;
  template <class V2>
  using rebind_value = held_store<typename S::template rebind_value<V2>>;

  template <class... A>
  explicit held_store(A&&... a) : s_(std::forward<A>(a)...) {}

  std::optional<mapped_type> get(const key_type& k) {
    auto v = s_.get(k);
    if (std::function<void()> f = std::exchange(after_get_, nullptr)) f();
    maybe_hold("get");
    return v;
  }
  std::optional<mapped_type> peek(const key_type& k) {
    auto v = s_.peek(k);
    maybe_hold("peek");
    return v;
  }
  bool contains(const key_type& k) { return s_.contains(k); }
  cachet::put_result put(key_type k, mapped_type v) {
    auto r = s_.put(std::move(k), std::move(v));
    maybe_hold("put");
    return r;
  }
  template <class D>
  cachet::put_result put(key_type k, mapped_type v, D ttl) {
    auto r = s_.put(std::move(k), std::move(v), ttl);
    maybe_hold("put");
    return r;
  }
  template <class P>
  cachet::put_result put_if(key_type k, mapped_type v, P c) {
    return s_.put_if(std::move(k), std::move(v), c);
  }
  template <class D, class P>
  cachet::put_result put_if(key_type k, mapped_type v, D ttl, P c) {
    return s_.put_if(std::move(k), std::move(v), ttl, c);
  }
  bool erase(const key_type& k) { return s_.erase(k); }
  void clear() { s_.clear(); }  // these two for a held_store as L1
  template <class P>
  std::size_t erase_if(P p) {
    return s_.erase_if(std::move(p));
  }
  const clock_type& clock() const noexcept { return s_.clock(); }

  S& inner() { return s_; }

  // Set before the thread that will call get() starts (it is read without a lock).
  void after_next_get(std::function<void()> f) { after_get_ = std::move(f); }

  void hold(std::string op) {
    std::lock_guard<std::mutex> g(mu_);
    armed_ = std::move(op);
    held_ = released_ = false;
  }
  // Waits until a held call is blocked; false after a minute.
  bool wait_until_held() {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::minutes(1), [&] { return held_; });
  }
  void release() {
    std::lock_guard<std::mutex> g(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  void maybe_hold(const char* op) {
    std::unique_lock<std::mutex> l(mu_);
    if (armed_ != op) return;
    armed_.clear();
    held_ = true;
    cv_.notify_all();
    cv_.wait_for(l, std::chrono::minutes(1), [&] { return released_; });
  }

  S s_;
  std::function<void()> after_get_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string armed_;
  bool held_ = false;
  bool released_ = false;
};

using held_tiered = cachet::tiered_store<plain, held_store<plain>>;
using held_both = cachet::tiered_store<held_store<plain>, held_store<plain>>;

static_assert(cachet::store<tiered>);
static_assert(cachet::store<tiered::rebind_value<std::string>>);
static_assert(cachet::store<held_tiered>);
static_assert(std::is_same_v<tiered::clock_type, cachet::manual_clock>);

cachet::store_options<int, int> small(std::chrono::nanoseconds default_ttl = 0ns) {
  return {.max_entries = 64, .shards = 1, .default_ttl = default_ttl};
}

template <class T = tiered>
T make(const cachet::manual_clock& clock, std::chrono::nanoseconds l1_ttl = 1s,
       std::chrono::nanoseconds l2_default_ttl = 0ns) {
  return T({.l1_ttl = l1_ttl}, std::tuple{small(), clock},
           std::tuple{small(l2_default_ttl), clock});
}

// A thread that is released (if held in `s`) and joined when the test leaves its scope, also when
// a REQUIRE fails, so a failing test reports instead of terminating.
class background {
 public:
  template <class F>
  explicit background(F f, held_store<plain>* s = nullptr) : s_(s), t_(std::move(f)) {}
  background(const background&) = delete;
  background& operator=(const background&) = delete;
  ~background() { join(); }
  void join() {
    if (!t_.joinable()) return;
    if (s_ != nullptr) s_->release();
    t_.join();
  }

 private:
  held_store<plain>* s_;
  std::thread t_;
};

// Changes key 1 from 10 to 20 by `op`: a write through the tier, or a write behind its back that
// the bus reports (invalidate_local, invalidate_local_if, clear_local, suspend_local). Returns
// what a read that starts afterwards must see.
template <class T>
std::optional<int> change_key_1(T& t, const std::string& op) {
  if (op == "put") {
    t.put(1, 20);
  } else if (op == "put_ttl") {
    t.put(1, 20, 1h);
  } else if (op == "put_if") {
    t.put_if(1, 20, []() noexcept { return true; });
  } else if (op == "erase") {
    t.erase(1);
    return std::nullopt;
  } else {
    t.l2().inner().put(1, 20);
    if (op == "invalidate_local") t.invalidate_local(1);
    if (op == "invalidate_local_if") t.invalidate_local_if([](int k) { return k < 10; });
    if (op == "clear_local") t.clear_local();
    if (op == "suspend_local") t.suspend_local();
  }
  return 20;
}

}  // namespace

TEST_CASE("tiered_store: the read path: L1 hit, L2 hit promotes, miss", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  t.l2().put(1, 10);

  CHECK(t.get(1) == 10);  // L2 hit, promoted
  CHECK(t.l1().peek(1) == 10);
  CHECK(t.get(1) == 10);  // L1 hit
  CHECK_FALSE(t.get(2));  // miss in both
  CHECK(t.peek(1) == 10);
  CHECK(t.contains(1));
  CHECK_FALSE(t.contains(2));

  const cachet::tiered_stats st = t.stats();
  CHECK(st.l1_hits == 1);
  CHECK(st.l2_hits == 1);
  CHECK(st.misses == 1);
  CHECK(st.promotions == 1);
  CHECK(st.promotions_refused == 0);
}

TEST_CASE("tiered_store: peek promotes and counts nothing", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  t.l2().put(1, 10);
  CHECK(t.peek(1) == 10);
  CHECK_FALSE(t.l1().peek(1));
  const cachet::tiered_stats st = t.stats();
  CHECK(st.l1_hits + st.l2_hits + st.misses + st.promotions == 0);
}

TEST_CASE("tiered_store: a put or erase through the tier is seen by the next read", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  t.l2().put(1, 10);
  REQUIRE(t.get(1) == 10);  // L1 holds 10

  CHECK(cachet::stored(t.put(1, 11)));
  CHECK(t.get(1) == 11);
  CHECK(t.l1().peek(1) == 11);
  CHECK(t.l2().peek(1) == 11);

  CHECK(cachet::stored(t.put(1, 12, 5s)));
  CHECK(t.get(1) == 12);

  CHECK(t.erase(1));
  CHECK_FALSE(t.get(1));
  CHECK_FALSE(t.l1().peek(1));
  CHECK_FALSE(t.erase(1));
}

TEST_CASE("tiered_store: put_if forwards the condition to both tiers", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  t.l2().put(1, 10);
  REQUIRE(t.get(1) == 10);

  CHECK(t.put_if(1, 11, []() noexcept { return false; }) == cachet::put_result::rejected_stale);
  CHECK(t.l1().peek(1) == 10);  // nothing changed anywhere
  CHECK(t.l2().peek(1) == 10);

  CHECK(cachet::stored(t.put_if(1, 12, 2s, []() noexcept { return true; })));
  CHECK(t.l1().peek(1) == 12);
  CHECK(t.l2().peek(1) == 12);
}

TEST_CASE("tiered_store: a put L2 refuses erases the L1 copy", "[tiered]") {
  using full_l2 = cachet::sharded_store<int, int, cachet::no_eviction, cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::tiered_store<plain, full_l2> t(
      {}, std::tuple{small(), clock},
      std::tuple{cachet::store_options<int, int>{.max_entries = 1, .shards = 1}, clock});
  REQUIRE(cachet::stored(t.put(1, 10)));
  t.l1().put(2, 20);  // an L1 copy of a key L2 cannot take
  CHECK(t.put(2, 21) == cachet::put_result::rejected_full);
  CHECK_FALSE(t.l1().peek(2));
  CHECK_FALSE(t.get(2));
}

TEST_CASE("tiered_store: a write behind the tier's back is served from L1 until l1_ttl",
          "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock, 2s);
  t.put(1, 10);
  t.l2().put(1, 11);  // another process, say
  CHECK(t.get(1) == 10);
  clock.advance(1999ms);
  CHECK(t.get(1) == 10);
  clock.advance(1ms);
  CHECK(t.get(1) == 11);  // L1 expired: read L2, promoted again
  CHECK(t.l1().peek(1) == 11);
}

TEST_CASE("tiered_store: an L1 entry outlives neither l1_ttl nor its write's ttl", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock, 1s, 300ms);

  t.put(1, 1, 10s);    // l1_ttl caps
  t.put(2, 2, 100ms);  // the write's ttl caps
  t.put(3, 3);         // L2's default_ttl (300 ms) caps
  t.l2().put(4, 4, 1h);
  REQUIRE(t.get(4) == 4);  // promoted: l1_ttl

  clock.advance(100ms);
  CHECK_FALSE(t.l1().peek(2));
  CHECK(t.l1().peek(3) == 3);
  clock.advance(200ms);
  CHECK_FALSE(t.l1().peek(3));
  CHECK(t.l1().peek(1) == 1);
  clock.advance(700ms);
  CHECK_FALSE(t.l1().peek(1));
  CHECK_FALSE(t.l1().peek(4));
  CHECK(t.get(1) == 1);  // still in L2
}

TEST_CASE("tiered_store: invalidate_local and clear_local drop L1 only", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  t.put(1, 10);
  t.put(2, 20);
  t.l2().put(1, 11);
  t.l2().put(2, 21);

  t.invalidate_local(1);
  CHECK_FALSE(t.l1().peek(1));
  CHECK(t.l1().peek(2) == 20);
  CHECK(t.get(1) == 11);

  t.clear_local();
  CHECK(t.l1().size() == 0);
  CHECK(t.get(2) == 21);
  CHECK(t.get(1) == 11);

  const cachet::tiered_stats st = t.stats();
  CHECK(st.local_invalidations == 1);
  CHECK(st.local_clears == 1);
}

TEST_CASE("tiered_store: invalidate_local_if drops the matching L1 entries only", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  for (int k = 0; k < 20; ++k) REQUIRE(t.put(k, k * 10) == cachet::put_result::inserted);
  for (int k = 0; k < 20; ++k) REQUIRE(t.l1().peek(k) == k * 10);
  t.l2().put(3, 33);  // changed elsewhere: a CDC consumer hears of keys 0-9
  CHECK(t.invalidate_local_if([](int k) { return k < 10; }) == 10);
  for (int k = 0; k < 10; ++k) CHECK_FALSE(t.l1().peek(k));
  for (int k = 10; k < 20; ++k) CHECK(t.l1().peek(k) == k * 10);
  CHECK(t.l2().peek(5) == 50);  // L2 untouched
  CHECK(t.get(3) == 33);
  CHECK(t.stats().local_invalidations == 1);
}

TEST_CASE("tiered_store: suspend_local bypasses L1; suspends nest", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  t.put(1, 10);
  t.suspend_local();
  CHECK(t.local_suspended());
  CHECK(t.l1().size() == 0);  // cleared

  t.l1().put(1, 99);  // a value L1 must not be read for while suspended
  CHECK(t.get(1) == 10);
  CHECK(t.peek(1) == 10);
  CHECK(t.l1().peek(1) == 99);  // not overwritten by a promotion
  t.l1().erase(1);
  t.put(2, 20);
  CHECK(t.get(2) == 20);
  CHECK(t.l1().size() == 0);  // neither writes nor reads fill L1

  t.suspend_local();
  t.resume_local();
  CHECK(t.local_suspended());
  t.resume_local();
  CHECK_FALSE(t.local_suspended());
  t.resume_local();  // one too many: ignored
  CHECK_FALSE(t.local_suspended());

  CHECK(t.get(1) == 10);
  CHECK(t.l1().peek(1) == 10);  // promoted again
  CHECK(t.stats().l1_hits == 0);
}

TEST_CASE("tiered_store: options are validated", "[tiered]") {
  cachet::manual_clock clock;
  for (std::chrono::nanoseconds bad : {0ns, -1ns, cachet::no_expiry}) {
    try {
      make(clock, bad);
      FAIL("l1_ttl = " << bad.count() << " was accepted");
    } catch (const cachet::invalid_option& e) {
      CHECK(e.option() == "l1_ttl");
    }
  }
  CHECK_THROWS_AS(make(clock).put(1, 1, 0s), std::invalid_argument);
  CHECK_THROWS_AS(make(clock).put_if(1, 1, -1s, []() noexcept { return true; }),
                  std::invalid_argument);
}

// The racing write happens while a get() that read the old value from L2 is held before its
// promotion. Overlapping, the get may return the old value; after the write returned, L1 must not
// hold it and a fresh get must return the new state.
TEST_CASE("tiered_store: a promotion that read the old value cannot land after a write",
          "[tiered]") {
  const std::string op =
      GENERATE(as<std::string>{}, "put", "put_ttl", "put_if", "erase", "invalidate_local",
               "invalidate_local_if", "clear_local", "suspend_local");
  CAPTURE(op);
  cachet::manual_clock clock;
  held_tiered t = make<held_tiered>(clock);
  t.l2().inner().put(1, 10);
  t.l2().hold("get");

  std::optional<int> got;
  background reader([&] { got = t.get(1); }, &t.l2());
  REQUIRE(t.l2().wait_until_held());

  const std::optional<int> expected = change_key_1(t, op);
  t.l2().release();
  reader.join();

  CHECK(got == 10);  // it overlapped the write: the old value is allowed
  CHECK(t.l1().peek(1) != 10);
  CHECK(t.stats().promotions_refused == 1);
  CHECK(t.get(1) == expected);
  CHECK(t.get(1) == expected);
  if (op == "suspend_local") t.resume_local();
  CHECK(t.get(1) == expected);
}

// Waits (at most a minute, the bound only ends a failing test) until `n` get() calls of `t` wait
// for another's L2 read.
template <class T>
bool until_followers(const T& t, std::uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (t.l2_read_stats().coalesced < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST_CASE("tiered_store: concurrent L1 misses of a key share one L2 read", "[tiered]") {
  cachet::manual_clock clock;
  held_tiered t = make<held_tiered>(clock);
  t.l2().inner().put(1, 10);
  t.l2().hold("get");

  std::optional<int> first;
  std::optional<int> second;
  background leader([&] { first = t.get(1); }, &t.l2());
  REQUIRE(t.l2().wait_until_held());  // the leader has read L2 and is held before promoting
  background follower([&] { second = t.get(1); });
  REQUIRE(until_followers(t, 1));  // the follower waits for the leader's read
  t.l2().release();
  leader.join();
  follower.join();

  CHECK(first == 10);
  CHECK(second == 10);
  CHECK(t.l2().inner().stats().hits == 1);  // one L2 read for both
  const cachet::tiered_stats st = t.stats();
  CHECK(st.l2_hits == 2);
  CHECK(st.coalesced == 1);
  CHECK(st.promotions == 1);
  CHECK(t.l2_read_stats().loads == 1);
}

TEST_CASE(
    "tiered_store: a read that starts after an invalidation does not take a shared read "
    "that began before it",
    "[tiered]") {
  // (A put through the tier leaves the new value in L1, where the next read finds it.)
  const std::string op = GENERATE(as<std::string>{}, "erase", "invalidate_local",
                                  "invalidate_local_if", "clear_local");
  CAPTURE(op);
  cachet::manual_clock clock;
  held_tiered t = make<held_tiered>(clock);
  t.l2().inner().put(1, 10);
  t.l2().hold("get");

  std::optional<int> first;
  background leader([&] { first = t.get(1); }, &t.l2());
  REQUIRE(t.l2().wait_until_held());  // it read 10 and is held

  const std::optional<int> expected = change_key_1(t, op);
  // Started after the invalidation returned; L1 is empty, so it joins the leader's flight.
  std::optional<int> second;
  background follower([&] { second = t.get(1); });
  REQUIRE(until_followers(t, 1));
  t.l2().release();
  leader.join();
  follower.join();

  CHECK(first == 10);         // it overlapped the invalidation: the old value is allowed
  CHECK(second == expected);  // it did not: the shared read is refused, L2 read afresh
  CHECK(t.l1().peek(1) != 10);
  CHECK(t.get(1) == expected);
}

TEST_CASE(
    "tiered_store: a read that starts after an invalidation does not take the value a shared "
    "read found in L1 before it",
    "[tiered]") {
  // The leader misses L1; another thread's promotion of the old value lands (after_next_get); the
  // leader's second look inside the flight finds it there and is held before the flight ends. The
  // key is invalidated, and a read that starts after that joins the still-open flight: the old
  // value the leader found in L1 before the invalidation is not an answer for it.
  const std::string op = GENERATE(as<std::string>{}, "erase", "invalidate_local",
                                  "invalidate_local_if", "clear_local");
  CAPTURE(op);
  cachet::manual_clock clock;
  held_both t = make<held_both>(clock);
  t.l2().inner().put(1, 10);
  t.l1().after_next_get([&t] { t.l1().inner().put(1, 10); });
  t.l1().hold("peek");

  std::optional<int> first;
  background leader([&] { first = t.get(1); }, &t.l1());
  REQUIRE(t.l1().wait_until_held());  // its second look found 10 in L1 and is held

  const std::optional<int> expected = change_key_1(t, op);
  std::optional<int> second;
  background follower([&] { second = t.get(1); });
  REQUIRE(until_followers(t, 1));
  t.l1().release();
  leader.join();
  follower.join();

  CHECK(first == 10);         // it overlapped the invalidation: the old value is allowed
  CHECK(second == expected);  // it did not
  CHECK(t.l1().inner().peek(1) != 10);
  CHECK(t.stats().coalesced == 0);  // the leader answered itself; the follower read afresh
  CHECK(t.get(1) == expected);
}

// Two writers reach L2 in one order and L1 in the other: the earlier L2 write must not be left in
// L1 over the later one.
TEST_CASE("tiered_store: racing writers leave L1 with what L2 ends with", "[tiered]") {
  cachet::manual_clock clock;
  held_tiered t = make<held_tiered>(clock);
  t.l2().hold("put");
  background first([&] { t.put(1, 10); }, &t.l2());  // held after its L2 write
  REQUIRE(t.l2().wait_until_held());
  t.put(1, 20);  // L2, then L1
  CHECK(t.l1().peek(1) == 20);
  t.l2().release();
  first.join();  // its L1 step comes last; it must not put 10 over 20

  CHECK(t.l2().peek(1) == 20);
  CHECK(t.l1().peek(1) != 10);
  CHECK(t.get(1) == 20);
}

TEST_CASE("tiered_store: cache_aside runs over it", "[tiered]") {
  cachet::manual_clock clock;
  cachet::cache_aside<tiered> cache(cachet::tiered_options{.l1_ttl = 1s},
                                    std::tuple{small(), clock}, std::tuple{small(), clock});
  int row = 1;
  int loads = 0;
  auto load = [&](int) -> std::optional<int> {
    ++loads;
    return row;
  };
  CHECK(cache.get_or_load(7, load) == 1);
  CHECK(cache.get_or_load(7, load) == 1);
  CHECK(loads == 1);
  CHECK(cache.store().l1().peek(7) == 1);
  CHECK(cache.store().l2().peek(7) == 1);

  row = 2;
  cache.invalidate(7);
  CHECK_FALSE(cache.store().l1().peek(7));
  CHECK_FALSE(cache.store().l2().peek(7));
  CHECK(cache.get_or_load(7, load) == 2);
  CHECK(loads == 2);
}

TEST_CASE("tiered_store: concurrent reads, writes and invalidations", "[tiered]") {
  cachet::manual_clock clock;
  tiered t = make(clock);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&t, w] {
      for (int i = 0; i < 2000; ++i) {
        const int k = i % 16;
        switch ((i + w) % 6) {
          case 0:
            t.put(k, i);
            break;
          case 1:
            t.erase(k);
            break;
          case 2:
            t.invalidate_local(k);
            break;
          case 3:
            if (i % 97 == 0) t.clear_local();
            break;
          default:
            (void)t.get(k);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  // Quiescent: after one last write per key, every read (L1 or L2) agrees with L2.
  for (int k = 0; k < 16; ++k) {
    t.put(k, 1000 + k);
    CHECK(t.get(k) == 1000 + k);
    CHECK(t.l2().peek(k) == 1000 + k);
  }
}
