// Tests of cachet-sim's SVG output (bench/sim/svg_plot.hpp): structure, labels, escaping, ticks.
#include "sim/svg_plot.hpp"

#include <catch2/catch.hpp>
#include <string>

namespace {
std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("svg_plot: one polyline and legend entry per series, labelled axes", "[sim]") {
  cachet_sim::plot p{.title = "Hit ratio: a<b & \"c\"", .log_x = true};
  p.series.push_back({"lru", {{100, 10.0}, {1000, 40.5}, {10000, 70.25}}});
  p.series.push_back({"fifo", {{100, 8.0}, {1000, 35.0}, {10000, 66.0}}});
  const std::string svg = cachet_sim::render_svg(p);
  CHECK(svg.starts_with("<?xml"));
  CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  CHECK(svg.ends_with("</svg>\n"));
  CHECK(count(svg, "<polyline") == 2);
  CHECK(count(svg, "<circle") == 2 * 3 + 2);  // markers + legend markers
  CHECK(svg.find("Hit ratio: a&lt;b &amp; &quot;c&quot;") != std::string::npos);
  CHECK(svg.find("cache size (entries), log scale") != std::string::npos);
  CHECK(svg.find("hit ratio (%)") != std::string::npos);
  CHECK(svg.find(">lru</text>") != std::string::npos);
  CHECK(svg.find(">fifo</text>") != std::string::npos);
  // Decade ticks on a log axis spanning 100..10000.
  CHECK(svg.find(">100</text>") != std::string::npos);
  CHECK(svg.find(">1k</text>") != std::string::npos);
  CHECK(svg.find(">10k</text>") != std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
  // The y axis reaches the first round value above the highest point (70.25 -> 80).
  CHECK(svg.find(">80</text>") != std::string::npos);
  CHECK(svg.find(">100</text>") != std::string::npos);  // the x tick; no y tick above 80
}

TEST_CASE("svg_plot: linear axis, one point, no points", "[sim]") {
  cachet_sim::plot p{.title = "t"};
  p.series.push_back({"lru", {{500, 0.0}}});
  const std::string one = cachet_sim::render_svg(p);
  CHECK(one.find("log scale") == std::string::npos);
  CHECK(one.find("nan") == std::string::npos);
  p.series.clear();
  const std::string none = cachet_sim::render_svg(p);
  CHECK(none.find("</svg>") != std::string::npos);
  CHECK(none.find("nan") == std::string::npos);
}

TEST_CASE("svg_plot: a range between ticks labels its ends; long names widen the legend", "[sim]") {
  cachet_sim::plot p{.title = "t", .log_x = true};
  p.series.push_back({"lru", {{250, 1.0}, {2500, 50.0}}});
  const std::string short_names = cachet_sim::render_svg(p);
  // 250..2500 holds the ticks 500, 1k, 2k; 250 is over a sixth of the axis from 500.
  CHECK(short_names.find(">250</text>") != std::string::npos);
  CHECK(short_names.find(">500</text>") != std::string::npos);
  CHECK(short_names.find(">2k</text>") != std::string::npos);
  CHECK(short_names.find(">2.5k</text>") == std::string::npos);  // 2k is close enough to the end
  CHECK(short_names.find("width=\"900\"") != std::string::npos);
  p.series.push_back({"w_tinylfu_adaptive_with_a_long_name", {{250, 2.0}, {2500, 55.0}}});
  const std::string long_names = cachet_sim::render_svg(p);
  CHECK(long_names.find("width=\"900\"") == std::string::npos);  // wider than the default
}
