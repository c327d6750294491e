// cachet/detail/saturate.hpp — time arithmetic that clamps instead of overflowing.
//
// IMPLEMENTATION DETAILS
// Users pass "forever" as the largest duration there is (std::chrono::nanoseconds::max(),
// std::chrono::hours::max(), cachet::no_expiry). `now + timeout`, `deadline + grace` and the
// conversion of hours::max() to nanoseconds all overflow a signed 64-bit count, which is undefined
// behaviour and in practice wraps to a time in the past: a flush that should wait forever gives up
// at once, an entry that should never expire is expired on arrival. Every sum of a time and a
// user-supplied duration in cachet goes through these functions, which clamp to the representable
// range. Negative inputs clamp the same way towards min(); callers validate signs separately.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace cachet::detail {

// a + b, clamped to [INT64_MIN, INT64_MAX].
constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  }
  return r;
}

// `d` in nanoseconds, clamped to nanoseconds::min() .. max() instead of overflowing (and for a
// floating-point duration, NaN becomes zero). Sub-nanosecond parts are truncated towards zero.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds to_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
  using ns = std::chrono::nanoseconds;
  if constexpr (std::is_floating_point_v<Rep>) {
    const long double n =
        static_cast<long double>(d.count()) * Period::num * 1'000'000'000.0L / Period::den;
    if (!(n == n)) return ns::zero();
    if (n >= static_cast<long double>(ns::max().count())) return ns::max();
    if (n <= static_cast<long double>(ns::min().count())) return ns::min();
    return ns(static_cast<std::int64_t>(n));
  } else {
    using cf = std::ratio_divide<Period, std::nano>;  // nanoseconds per tick of d
    if constexpr (cf::den == 1) {
      const auto c = d.count();
      constexpr auto lim = std::numeric_limits<std::int64_t>::max() / cf::num;
      if (c > static_cast<Rep>(lim)) return ns::max();
      if constexpr (std::is_signed_v<Rep>) {
        if (c < -static_cast<Rep>(lim)) return ns::min();
      }
      return ns(static_cast<std::int64_t>(c) * static_cast<std::int64_t>(cf::num));
    } else {  // finer than a nanosecond: the count only shrinks, but may not fit int64 yet
      const auto c = d.count() / static_cast<Rep>(cf::den) * static_cast<Rep>(cf::num);
      if (c > static_cast<Rep>(std::numeric_limits<std::int64_t>::max())) return ns::max();
      return ns(static_cast<std::int64_t>(c));
    }
  }
}

// t + d on steady_clock, clamped to time_point::max() (for deadlines of "wait forever").
inline std::chrono::steady_clock::time_point saturating_after(
    std::chrono::steady_clock::time_point t, std::chrono::nanoseconds d) noexcept {
  using tp = std::chrono::steady_clock::time_point;
  using dur = std::chrono::steady_clock::duration;
  static_assert(std::is_same_v<dur, std::chrono::nanoseconds>,
                "steady_clock counts nanoseconds on every platform cachet supports");
  return tp(dur(saturating_add(t.time_since_epoch().count(), d.count())));
}

// A caller's TTL in nanoseconds, as every store's put(key, value, ttl) takes it: saturating (a ttl
// at or beyond nanoseconds::max() means no expiry), at least 1 ns. Throws std::invalid_argument
// naming `fn` ("cachet: <fn>: ...") unless ttl > 0, so a floating-point NaN is refused too.
template <class Rep, class Period>
std::chrono::nanoseconds checked_ttl(std::chrono::duration<Rep, Period> ttl, const char* fn) {
  if (!(ttl > std::chrono::duration<Rep, Period>::zero())) {
    throw std::invalid_argument(std::string("cachet: ") + fn +
                                ": ttl must be positive (or cachet::no_expiry)");
  }
  return std::max(to_nanoseconds(ttl), std::chrono::nanoseconds(1));
}

}  // namespace cachet::detail
