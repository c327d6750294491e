// The Store concept (cachet/store.hpp) and sharded_store's guarded fill, put_if().
#include <cachet/sharded_store.hpp>
#include <cachet/store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;

template <class P>
using store_t = cachet::sharded_store<int, std::string, P, cachet::manual_clock>;

// A backend that lacks put_if: what a store written for the old, unguarded fill looks like.
struct unguarded_store {
  using key_type = int;
  using mapped_type = int;
  using clock_type = cachet::manual_clock;
  using hasher = cachet::hash<int>;
  using key_equal = std::equal_to<>;
  template <class V2>
  using rebind_value = unguarded_store;
  std::optional<int> get(const int&);
  std::optional<int> peek(const int&);
  bool contains(const int&);
  cachet::put_result put(int, int);
  cachet::put_result put(int, int, std::chrono::nanoseconds);
  bool erase(const int&);
  cachet::manual_clock clock() const;
};

}  // namespace

static_assert(!cachet::store<unguarded_store>);
static_assert(!cachet::store<int>);

TEMPLATE_TEST_CASE("store: every sharded_store backend meets cachet::store", "[store]",
                   CACHET_ALL_BACKENDS) {
  STATIC_REQUIRE(cachet::store<store_t<TestType>>);
  STATIC_REQUIRE(cachet::store<typename store_t<TestType>::template rebind_value<long>>);
}

TEMPLATE_TEST_CASE("store: put_if stores only while its condition holds under the lock", "[store]",
                   CACHET_ALL_BACKENDS) {
  cachet::manual_clock clock;
  store_t<TestType> s({.max_entries = 16, .shards = 1}, clock);
  int calls = 0;
  const auto yes = [&]() noexcept { return ++calls, true; };
  const auto no = [&]() noexcept { return ++calls, false; };

  CHECK(s.put_if(1, "a", no) == cachet::put_result::rejected_stale);
  CHECK_FALSE(s.contains(1));
  CHECK(s.put_if(1, "a", yes) == cachet::put_result::inserted);
  CHECK(s.get(1) == "a");
  // A refused fill leaves the present entry as it was (it is the newer one).
  CHECK(s.put_if(1, "stale", no) == cachet::put_result::rejected_stale);
  CHECK(s.get(1) == "a");
  CHECK(s.put_if(1, "b", 5s, yes) == cachet::put_result::replaced);
  CHECK(calls == 4);  // once per call
  clock.advance(5s);
  CHECK_FALSE(s.get(1));  // the TTL overload set a deadline
  CHECK(s.put_if(2, "forever", cachet::no_expiry, yes) == cachet::put_result::inserted);
  clock.advance(24h * 365 * 100);
  CHECK(s.get(2) == "forever");
  CHECK_THROWS_AS(s.put_if(3, "x", 0s, yes), std::invalid_argument);
  CHECK(s.stats().rejections == 0);  // a stale fill is not a capacity rejection
}
