// cachet/split_keys.hpp over a sharded_store (the Redis fan-out is in
// tests/redis/split_redis_test): a split key is written to every copy and read from one, each
// thread walking the copies in turn; other keys are untouched; a put that does not reach every copy
// leaves none; copies map back to their key; options are validated.
#include <cachet/clock.hpp>
#include <cachet/eviction/lru.hpp>
#include <cachet/eviction/no_eviction.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/split_keys.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

namespace {
using store_t = cachet::sharded_store<std::string, int, cachet::lru, cachet::manual_clock>;
using split_t = cachet::split_store<store_t>;
static_assert(cachet::store<split_t>);

cachet::split_options hot_prefix(std::uint32_t copies = 4) {
  return {.copies = copies, .split = [](const std::string& k) { return k.starts_with("hot:"); }};
}
}  // namespace

TEST_CASE("split_store: a split key is written to every copy and read from one at a time",
          "[split]") {
  cachet::manual_clock clock;
  split_t s(hot_prefix(), store_t::options_type{.max_entries = 100}, clock);
  CHECK(s.put("hot:cfg", 7) == cachet::put_result::inserted);
  for (std::uint32_t i = 0; i < 4; ++i) CHECK(s.store().peek(split_t::copy_of("hot:cfg", i)) == 7);
  CHECK_FALSE(s.store().contains("hot:cfg"));  // the plain key is never written

  const std::uint64_t before = s.store().stats().hits;
  for (int i = 0; i < 40; ++i) CHECK(s.get("hot:cfg") == 7);
  CHECK(s.store().stats().hits == before + 40);  // one read of the store per get
  // Each copy took a quarter of the reads: erase copies one by one and count the misses.
  s.store().erase(split_t::copy_of("hot:cfg", 2));
  int misses = 0;
  for (int i = 0; i < 40; ++i) misses += s.get("hot:cfg") ? 0 : 1;
  CHECK(misses == 10);

  s.put("cold", 1);  // not split: one entry under its own name
  CHECK(s.store().peek("cold") == 1);
  CHECK_FALSE(s.store().contains("cold#0"));
  CHECK(s.get("cold") == 1);

  CHECK(s.erase("hot:cfg"));
  for (std::uint32_t i = 0; i < 4; ++i)
    CHECK_FALSE(s.store().contains(split_t::copy_of("hot:cfg", i)));
  CHECK_FALSE(s.get("hot:cfg"));
  CHECK_FALSE(s.erase("hot:cfg"));
}

TEST_CASE("split_store: a put that does not reach every copy leaves no copy", "[split]") {
  // A no_eviction store with room for 5 entries: the 4 copies of one key fit, those of a second
  // key do not (the fifth entry is the last that fits), so that put is refused part-way.
  using full_t = cachet::sharded_store<std::string, int, cachet::no_eviction, cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::split_store<full_t> s(hot_prefix(), full_t::options_type{.max_entries = 5, .shards = 1},
                                clock);
  CHECK(cachet::stored(s.put("hot:a", 1)));
  CHECK(s.put("hot:b", 2) == cachet::put_result::rejected_full);
  for (std::uint32_t i = 0; i < 4; ++i) {
    CHECK_FALSE(s.store().contains(cachet::split_store<full_t>::copy_of("hot:b", i)));
  }
  CHECK_FALSE(s.get("hot:b"));
  CHECK(s.store().size() == 4);  // hot:a's copies, untouched
  // An overwrite of hot:a that fails part-way (a put_if whose condition turns false) erases all.
  int calls = 0;
  CHECK(s.put_if("hot:a", 9, [&calls]() noexcept { return ++calls < 3; }) ==
        cachet::put_result::rejected_stale);
  CHECK(s.store().empty());
}

TEST_CASE("split_store: copies map back to their key; other names do not", "[split]") {
  cachet::manual_clock clock;
  split_t s(hot_prefix(8), store_t::options_type{.max_entries = 100}, clock);
  CHECK(s.base_of("hot:x#0") == "hot:x");
  CHECK(s.base_of("hot:x#7") == "hot:x");
  CHECK_FALSE(s.base_of("hot:x#8"));  // beyond the copies
  CHECK_FALSE(s.base_of("hot:x#"));
  CHECK_FALSE(s.base_of("hot:x#1a"));
  CHECK_FALSE(s.base_of("cold#1"));  // cold is not split: its own key
  CHECK_FALSE(s.base_of("hot:x"));
  CHECK(s.base_of("hot:a#b#3") == "hot:a#b");
}

TEST_CASE("split_store: options are validated, naming the option", "[split]") {
  cachet::manual_clock clock;
  CHECK_THROWS_MATCHES(split_t({.copies = 1}, store_t::options_type{.max_entries = 10}, clock),
                       cachet::invalid_option,
                       Catch::Matchers::Predicate<cachet::invalid_option>(
                           [](const cachet::invalid_option& e) { return e.option() == "copies"; }));
  CHECK_THROWS_AS(split_t({.copies = 65}, store_t::options_type{.max_entries = 10}, clock),
                  cachet::invalid_option);
  split_t none({}, store_t::options_type{.max_entries = 10}, clock);  // no predicate: no key split
  none.put("hot:x", 1);
  CHECK(none.store().peek("hot:x") == 1);
}
