// Two translation units include the umbrella header and instantiate a store: a definition in a
// header that is not `inline` (or a template specialisation that is not) makes the link fail with a
// multiple-definition error. See umbrella_b.cpp.
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <string>

TEST_CASE("umbrella: the whole library in translation unit A", "[umbrella]") {
  cachet::sharded_store<std::string, int, cachet::lfu> s({.max_entries = 10, .shards = 1});
  CHECK(s.put("answer", 42) == cachet::put_result::inserted);
  CHECK(s.get("answer") == 42);
  CHECK(cachet::hash<std::string>{}("answer") ==
        cachet::hash<std::string>{}(std::string("answer")));
  CHECK(cachet::to_string(cachet::removal_cause::evicted) == "evicted");
}
