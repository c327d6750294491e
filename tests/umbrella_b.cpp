// The second translation unit of the umbrella-header link test (see umbrella_a.cpp).
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>

TEST_CASE("umbrella: the whole library in translation unit B", "[umbrella]") {
  cachet::manual_clock clock;
  cachet::sharded_store<std::string, int, cachet::lfu, cachet::manual_clock> s(
      {.max_entries = 10, .shards = 1, .ttl_jitter = 0.5}, clock);
  CHECK(s.put("answer", 42, std::chrono::seconds(1)) == cachet::put_result::inserted);
  CHECK(s.get("answer") == 42);
  clock.advance(std::chrono::seconds(1));
  CHECK_FALSE(s.get("answer").has_value());
  CHECK(cachet::hash<std::string>{}("answer") ==
        cachet::hash<std::string>{}(std::string("answer")));
  CHECK(cachet::to_string(cachet::put_result::rejected_full) == "rejected_full");
}
