// bench/sim/svg_plot.hpp — a hit-ratio curve as a self-contained SVG file (no dependencies).
//
// Purpose: cachet-sim --plot. Draws hit ratio (%) against cache size, one polyline with point
// markers per series (policy), a legend, ticked and labelled axes, and a title. The x axis is
// logarithmic when asked (cachet-sim asks for --sweep, whose sizes are log-spaced, and when the
// sizes span a factor of 20 or more).
//
// Thread safety: pure functions. Exception safety: std::bad_alloc only.
//
// Example:
//   cachet_sim::plot p{.title = "lirs-gli", .log_x = true};
//   p.series.push_back({"lru", {{250, 0.91}, {500, 0.95}}});
//   std::string svg = cachet_sim::render_svg(p);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

namespace cachet_sim {

struct plot_series {
  std::string name{};
  std::vector<std::pair<double, double>> points{};  // (cache size, hit ratio in %), by size
};

struct plot {
  std::string title{};
  std::string subtitle{};
  std::string x_label = "cache size (entries)";
  std::string y_label = "hit ratio (%)";
  bool log_x = false;
  std::vector<plot_series> series{};
};

namespace detail {

inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A tick label for a cache size: 500, 2k, 1.5k, 10k, 1M.
inline std::string size_label(double v) {
  if (v >= 1e6 && std::fmod(v, 1e5) == 0) return fmt("%gM", v / 1e6);
  if (v >= 1e3 && std::fmod(v, 100) == 0) return fmt("%gk", v / 1e3);
  return fmt("%g", v);
}

// "Nice" linear ticks (1, 2 or 5 x 10^k apart), about `want` of them, from the first at or above
// lo to the first at or above hi (so the last tick is never below the data).
inline std::vector<double> nice_ticks(double lo, double hi, int want) {
  std::vector<double> t;
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / want;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  const double first = std::ceil(lo / step - 1e-9);
  for (double k = first;; k += 1) {
    const double v = k * step;
    t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    if (v >= hi - step * 1e-9) break;
  }
  return t;
}

// Ticks at 1, 2, 5 x 10^k within [lo, hi] (1 x 10^k only if that already gives 4 or more).
inline std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> decades, all;
  for (double p = std::pow(10.0, std::floor(std::log10(lo))); p <= hi * 1.0001; p *= 10) {
    for (const double m : {1.0, 2.0, 5.0}) {
      const double v = m * p;
      if (v < lo * 0.9999 || v > hi * 1.0001) continue;
      all.push_back(v);
      if (m == 1.0) decades.push_back(v);
    }
  }
  std::vector<double> t = decades.size() >= 4 ? decades : all;
  // Label the ends of the range too when the nearest tick is far from them (over a sixth of the
  // axis), so a sweep from 250 shows where it starts.
  const double span = std::log(hi) - std::log(lo);
  if (span > 0) {
    if (t.empty() || std::log(t.front()) - std::log(lo) > span / 6) t.insert(t.begin(), lo);
    if (std::log(hi) - std::log(t.back()) > span / 6) t.push_back(hi);
  }
  return t;
}

}  // namespace detail

// Renders `p` as an SVG document (UTF-8 text).
inline std::string render_svg(const plot& p) {
  using detail::fmt;
  // Tableau 10: distinct, and readable by most colour-blind readers.
  static constexpr const char* k_colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                             "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  static constexpr int k_plot_w = 650, k_h = 560;
  static constexpr int k_left = 80, k_top = 70, k_bottom = 70;
  // The legend's column is as wide as its longest name (about 7.5 px a character at 13 px).
  std::size_t longest = 0;
  for (const auto& s : p.series) longest = std::max(longest, s.name.size());
  const int k_right = std::max(170, 70 + static_cast<int>(7.5 * static_cast<double>(longest)));
  const int k_w = k_left + k_plot_w + k_right;
  const double pw = k_plot_w, ph = k_h - k_top - k_bottom;

  double x_lo = HUGE_VAL, x_hi = -HUGE_VAL, y_hi = 0;
  for (const auto& s : p.series) {
    for (const auto& [x, y] : s.points) {
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      y_hi = std::max(y_hi, y);
    }
  }
  if (!(x_lo <= x_hi)) x_lo = 1, x_hi = 10;  // no points
  const bool log_x = p.log_x && x_lo > 0;
  if (x_lo == x_hi) {
    x_lo = log_x ? x_lo / 2 : std::max(0.0, x_lo - 1);
    x_hi = log_x ? x_hi * 2 : x_hi + 1;
  }
  std::vector<double> x_ticks;
  if (log_x) {
    x_ticks = detail::log_ticks(x_lo, x_hi);
  } else {
    x_ticks = detail::nice_ticks(x_lo, x_hi, 6);
    x_hi = std::max(x_hi, x_ticks.back());
  }
  // y from 0 to the first round value at or above the highest point.
  const std::vector<double> y_ticks = detail::nice_ticks(0, std::max(1.0, y_hi), 5);
  const double y_top = y_ticks.back();
  auto sx = [&](double x) {
    const double f = log_x ? (std::log(x) - std::log(x_lo)) / (std::log(x_hi) - std::log(x_lo))
                           : (x - x_lo) / (x_hi - x_lo);
    return k_left + f * pw;
  };
  auto sy = [&](double y) { return k_top + ph - y / y_top * ph; };

  std::string o;
  o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(k_w) + "\" height=\"" +
       std::to_string(k_h) + "\" viewBox=\"0 0 " + std::to_string(k_w) + " " + std::to_string(k_h) +
       "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"13\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + fmt("%.1f", k_left + pw / 2) +
       "\" y=\"30\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\">" +
       detail::xml_escape(p.title) + "</text>\n";
  if (!p.subtitle.empty()) {
    o += "<text x=\"" + fmt("%.1f", k_left + pw / 2) +
         "\" y=\"50\" text-anchor=\"middle\" fill=\"#555\">" + detail::xml_escape(p.subtitle) +
         "</text>\n";
  }
  // Grid, ticks and tick labels.
  o += "<g stroke=\"#e0e0e0\" stroke-width=\"1\">\n";
  for (const double y : y_ticks) {
    o += "<line x1=\"" + std::to_string(k_left) + "\" x2=\"" + fmt("%.1f", k_left + pw) +
         "\" y1=\"" + fmt("%.1f", sy(y)) + "\" y2=\"" + fmt("%.1f", sy(y)) + "\"/>\n";
  }
  for (const double x : x_ticks) {
    o += "<line x1=\"" + fmt("%.1f", sx(x)) + "\" x2=\"" + fmt("%.1f", sx(x)) + "\" y1=\"" +
         std::to_string(k_top) + "\" y2=\"" + fmt("%.1f", k_top + ph) + "\"/>\n";
  }
  o += "</g>\n<g fill=\"#333\">\n";
  for (const double y : y_ticks) {
    o += "<text x=\"" + std::to_string(k_left - 8) + "\" y=\"" + fmt("%.1f", sy(y) + 4) +
         "\" text-anchor=\"end\">" + fmt("%g", y) + "</text>\n";
  }
  for (const double x : x_ticks) {
    o += "<text x=\"" + fmt("%.1f", sx(x)) + "\" y=\"" + fmt("%.1f", k_top + ph + 20) +
         "\" text-anchor=\"middle\">" + detail::size_label(x) + "</text>\n";
  }
  o += "</g>\n";
  // Axes and their labels.
  o += "<g stroke=\"#333\" stroke-width=\"1.5\" fill=\"none\">\n";
  o += "<line x1=\"" + std::to_string(k_left) + "\" y1=\"" + fmt("%.1f", k_top + ph) + "\" x2=\"" +
       fmt("%.1f", k_left + pw) + "\" y2=\"" + fmt("%.1f", k_top + ph) + "\"/>\n";
  o += "<line x1=\"" + std::to_string(k_left) + "\" y1=\"" + std::to_string(k_top) + "\" x2=\"" +
       std::to_string(k_left) + "\" y2=\"" + fmt("%.1f", k_top + ph) + "\"/>\n";
  o += "</g>\n";
  o += "<text x=\"" + fmt("%.1f", k_left + pw / 2) + "\" y=\"" + std::to_string(k_h - 20) +
       "\" text-anchor=\"middle\">" + detail::xml_escape(p.x_label) + (log_x ? ", log scale" : "") +
       "</text>\n";
  o += "<text transform=\"translate(25," + fmt("%.1f", k_top + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + detail::xml_escape(p.y_label) + "</text>\n";
  // One polyline with markers per series, then the legend.
  for (std::size_t i = 0; i < p.series.size(); ++i) {
    const auto& s = p.series[i];
    const char* c = k_colors[i % std::size(k_colors)];
    std::string pts;
    for (const auto& [x, y] : s.points) {
      if (!pts.empty()) pts += ' ';
      pts += fmt("%.1f", sx(x)) + "," + fmt("%.1f", sy(y));
    }
    o += "<g><title>" + detail::xml_escape(s.name) + "</title>\n";
    o += "<polyline fill=\"none\" stroke=\"" + std::string(c) +
         "\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"" + pts + "\"/>\n";
    for (const auto& [x, y] : s.points) {
      o += "<circle cx=\"" + fmt("%.1f", sx(x)) + "\" cy=\"" + fmt("%.1f", sy(y)) +
           "\" r=\"3\" fill=\"" + c + "\"><title>" + detail::xml_escape(s.name) + ": " +
           fmt("%g", x) + " entries, " + fmt("%.2f", y) + " %</title></circle>\n";
    }
    o += "</g>\n";
    const double ly = k_top + 10 + 22.0 * static_cast<double>(i);
    const double lx = k_left + pw + 20;
    o += "<line x1=\"" + fmt("%.1f", lx) + "\" y1=\"" + fmt("%.1f", ly) + "\" x2=\"" +
         fmt("%.1f", lx + 24) + "\" y2=\"" + fmt("%.1f", ly) + "\" stroke=\"" + c +
         "\" stroke-width=\"2\"/>\n";
    o += "<circle cx=\"" + fmt("%.1f", lx + 12) + "\" cy=\"" + fmt("%.1f", ly) +
         "\" r=\"3\" fill=\"" + c + "\"/>\n";
    o += "<text x=\"" + fmt("%.1f", lx + 32) + "\" y=\"" + fmt("%.1f", ly + 4) + "\">" +
         detail::xml_escape(s.name) + "</text>\n";
  }
  o += "</svg>\n";
  return o;
}

}  // namespace cachet_sim
