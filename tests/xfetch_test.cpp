// xfetch: the refresh draw of Vattani et al. (VLDB 2015), with a stub for the uniform draw.
#include <cachet/xfetch.hpp>
#include <catch2/catch.hpp>
#include <cmath>

TEST_CASE("xfetch: refreshes when the draw is below exp(-gap / (beta * delta))", "[xfetch]") {
  using cachet::xfetch::should_refresh;
  const std::int64_t delta = 1'000'000;  // a 1 ms load
  int draws = 0;
  const auto draw = [&](double u) { return [&draws, u] { return ++draws, u; }; };
  CHECK(should_refresh(0, delta, 1.0, draw(1.0)));  // expired: always, without a draw
  CHECK(draws == 0);
  CHECK(should_refresh(delta, delta, 1.0, draw(std::exp(-1.0) * 0.999)));
  CHECK_FALSE(should_refresh(delta, delta, 1.0, draw(std::exp(-1.0) * 1.001)));
  CHECK(should_refresh(2 * delta, delta, 2.0, draw(std::exp(-1.0) * 0.999)));  // beta scales
  CHECK_FALSE(should_refresh(delta, delta, 0.0, draw(0.0)));                   // beta 0: off
  // Far from expiry the probability is tiny but not zero: an early cut-off must not drop it.
  draws = 0;
  CHECK(should_refresh(20 * delta, delta, 1.0, draw(std::exp(-20.0) * 0.5)));
  CHECK(draws == 1);
  // Beyond about 2^-40 the draw is skipped (a hit far from expiry costs no exp()).
  draws = 0;
  CHECK_FALSE(should_refresh(30 * delta, delta, 1.0, draw(0.0)));
  CHECK(draws == 0);
}
