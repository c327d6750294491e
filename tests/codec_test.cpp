// cachet/codec.hpp: the provided codecs round-trip, refuse malformed bytes, and the defaults
// pick what the header says.
#include <cachet/codec.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace {

struct point {
  std::int32_t x;
  std::int32_t y;
  friend bool operator==(const point&, const point&) = default;
};

template <class C, class T>
std::string encoded(const T& v) {
  std::string out;
  C::encode(v, out);
  return out;
}

}  // namespace

static_assert(cachet::codec<cachet::string_codec, std::string>);
static_assert(cachet::codec<cachet::trivial_codec<point>, point>);
static_assert(cachet::codec<cachet::decimal_codec<long>, long>);
static_assert(!cachet::codec<cachet::string_codec, int>);
static_assert(std::is_same_v<cachet::default_codec<std::string>, cachet::string_codec>);
static_assert(std::is_same_v<cachet::default_codec<int>, cachet::trivial_codec<int>>);
static_assert(std::is_same_v<cachet::default_codec<point>, cachet::trivial_codec<point>>);
static_assert(std::is_same_v<cachet::default_key_codec<int>, cachet::decimal_codec<int>>);
static_assert(std::is_same_v<cachet::default_key_codec<std::string>, cachet::string_codec>);
static_assert(std::is_same_v<cachet::default_key_codec<point>, cachet::trivial_codec<point>>);
static_assert(std::is_void_v<cachet::default_codec<std::wstring>>);

TEST_CASE("string_codec: identity, binary-safe, appends", "[redis][codec]") {
  const std::string v("a\0b\xff", 4);
  std::string out = "prefix:";
  cachet::string_codec::encode(v, out);
  CHECK(out == std::string("prefix:").append(v));
  CHECK(cachet::string_codec::decode(v) == v);
  CHECK(cachet::string_codec::decode("") == std::string());
}

TEST_CASE("trivial_codec: object bytes, refuses any other length", "[redis][codec]") {
  using c = cachet::trivial_codec<point>;
  const std::string bytes = encoded<c>(point{1, -2});
  CHECK(bytes.size() == sizeof(point));
  CHECK(c::decode(bytes) == point{1, -2});
  CHECK_FALSE(c::decode(bytes.substr(1)));
  CHECK_FALSE(c::decode(bytes + "x"));
  CHECK_FALSE(c::decode(""));
}

TEST_CASE("decimal_codec: canonical decimal text only", "[redis][codec]") {
  using c = cachet::decimal_codec<std::int32_t>;
  CHECK(encoded<c>(42) == "42");
  CHECK(encoded<c>(-7) == "-7");
  CHECK(encoded<c>(std::numeric_limits<std::int32_t>::min()) == "-2147483648");
  CHECK(c::decode("42") == 42);
  CHECK(c::decode("-2147483648") == std::numeric_limits<std::int32_t>::min());
  CHECK(c::decode("0") == 0);
  for (std::string_view bad :
       {"", "-", "+1", " 1", "1 ", "01", "-0", "1x", "2147483648", "99999999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(c::decode(bad));
  }
  CHECK(encoded<cachet::decimal_codec<std::uint64_t>>(std::numeric_limits<std::uint64_t>::max()) ==
        "18446744073709551615");
  CHECK_FALSE(cachet::decimal_codec<std::uint64_t>::decode("-1"));
}
