// cachet/xfetch.hpp — XFetch, probabilistic early expiry (refresh-ahead without a stampede).
//
// Purpose: Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache Stampede Prevention"
// (VLDB 2015): a reader of an entry that expires at `e` and took `delta` to compute recomputes it
// early when  now - delta * beta * ln(r) >= e,  with r uniform in (0, 1]. With gap g = e - now
// that is  r <= exp(-g / (beta * delta)):  the chance grows smoothly as expiry nears and as loads
// get slower, so one reader (not all of them) refreshes shortly before expiry. beta > 1 refreshes
// earlier, beta < 1 later; beta = 0 turns it off.
//
// IMPLEMENTATION DETAILS: the test is done in the exp form, so no logarithm is taken, and no random
// number is drawn while the probability is below 2^-40 (g > ~27.7 beta delta): a hit on an entry
// far from expiry costs a subtraction, a multiplication and a compare.
//
// Thread safety: pure functions. Example:
//   if (cachet::xfetch::should_refresh(gap_ns, delta_ns, 1.0, [&] { return uniform01(rng); })) ...
#pragma once

#include <cmath>
#include <cstdint>

namespace cachet::xfetch {

// Probability that a read `gap_ns` before expiry refreshes early: exp(-gap / (beta * delta)); 1
// once expired (gap <= 0); 0 when beta or delta is 0.
inline double refresh_probability(std::int64_t gap_ns, std::int64_t delta_ns,
                                  double beta) noexcept {
  if (gap_ns <= 0) return 1.0;
  if (beta <= 0.0 || delta_ns <= 0) return 0.0;
  return std::exp(-static_cast<double>(gap_ns) / (beta * static_cast<double>(delta_ns)));
}

// The XFetch test. `uniform` is called at most once and returns r in (0, 1].
template <class Uniform>
bool should_refresh(std::int64_t gap_ns, std::int64_t delta_ns, double beta, Uniform&& uniform) {
  if (gap_ns <= 0) return true;
  if (beta <= 0.0 || delta_ns <= 0) return false;
  const double x = static_cast<double>(gap_ns) / (beta * static_cast<double>(delta_ns));
  if (x > 27.7) return false;  // probability below 2^-40
  return uniform() <= std::exp(-x);
}

}  // namespace cachet::xfetch
