// cachet-sim — replays cache traces through cachet's eviction policies and reports hit ratios.
//
// Every access is a get() on a real cachet::sharded_store; a miss put()s the key (see
// simulate.hpp). Traces are read once into memory (trace_reader.hpp); the (policy, capacity) runs
// then go to a pool of threads, one store per run. Output is an aligned table, or CSV, and
// optionally an SVG plot (svg_plot.hpp). Run `cachet-sim --help` for the options.
//
// Exit status: 0 on success, 1 for a data error (unreadable file, malformed line, failed
// decompressor, unwritable plot), 2 for a usage error (unknown option, policy or format, bad size).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "simulate.hpp"
#include "svg_plot.hpp"
#include "trace_input.hpp"
#include "trace_reader.hpp"

namespace {

using namespace cachet_sim;

constexpr int k_exit_data = 1;
constexpr int k_exit_usage = 2;

constexpr const char* k_usage = R"(usage: cachet-sim [options] [TRACE...]

Replays each TRACE through cachet::sharded_store for every (policy, capacity) pair: each
access is a get(), and a miss put()s the key. Prints one row per run.

TRACE is a file, or - for standard input (the default). A file whose name ends in .gz,
.zst, .xz or .bz2 is read through gzip -dc, zstd -dc, xz -dc or bzip2 -dc; or pipe it:
  zstd -dc arc-OLTP.lis.zst | cachet-sim --format arc --capacity 1000 -

Trace:
  -f, --format FMT      arc | lirs | keys | csv; default: from the file name (*.lis = arc,
                        *.trace = lirs, *.csv = csv); required for stdin
                          arc   'start count ignore seq': keys start .. start+count-1
                          lirs  one decimal key per line; blank and '*' lines skipped
                          keys  one key per line, any bytes (string keys)
                          csv   one field of each line is the key (string keys)
      --column COL      csv: key column, a 1-based index or a header name (default 1)
      --header          csv: the first line is a header (implied when COL is a name)
      --delimiter C     csv: field separator, one character or 'tab' (default ',')
      --skip-bad        skip malformed lines (counted and reported) instead of stopping
      --name NAME       trace name in the output (one TRACE only; default: the file name
                        without directory and extensions, 'stdin' for -)

Runs:
  -p, --policy LIST     comma-separated policies, or 'all' (default lru); known:
                        %POLICIES%
  -c, --capacity LIST   comma-separated cache sizes, in entries
  -s, --sweep MIN:MAX:N N sizes from MIN to MAX, log-spaced (with --capacity: both)
      --shards N        shards per store, a power of two <= every size (default 1: each
                        policy exactly as defined; more: each shard runs it on its share)
      --seed N          seed of the key hash (default 1): the same seed gives the same
                        numbers; w_tinylfu, s3fifo and sharded runs move a little with it
  -j, --jobs N          runs in parallel (default: the hardware threads, %JOBS% here)

Output:
      --csv             CSV: trace,policy,capacity,shards,requests,hits,hit_ratio
                        (hit_ratio in percent, two decimals)
      --plot FILE.svg   SVG of hit ratio against cache size, one line per policy (one
                        TRACE only)
      --timing          add each run's wall and CPU time and accesses per CPU second (to
                        the table; to stderr with --csv)
      --progress        progress on stderr even when it is not a terminal
      --no-progress     no progress (default: shown on a terminal once a trace takes > 1 s)
  -q, --quiet           no progress and no per-trace summary on stderr
      --list-policies   print the known policies, one per line, and exit
  -h, --help            this text

Exit status: 0 success, 1 data error (unreadable or malformed trace, failed decompressor,
unwritable plot), 2 usage error.
)";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct data_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class progress_mode { automatic, on, off };

struct cli {
  std::optional<trace_format> format;
  reader_options reader;
  std::vector<std::string> policies;
  std::vector<std::size_t> capacities;
  bool swept = false;
  std::size_t shards = 1;
  std::uint64_t seed = k_default_seed;
  unsigned jobs = 0;
  bool csv = false;
  bool timing = false;
  bool quiet = false;
  progress_mode progress = progress_mode::automatic;
  std::string plot_file;
  std::string name;
  std::vector<std::string> traces;
};

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const std::size_t p = s.find(sep);
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) return out;
    s.remove_prefix(p + 1);
  }
}

// The whole of `s` as a decimal integer, or nullopt (empty, a sign, other characters, overflow).
std::optional<std::uint64_t> decimal(std::string_view s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::size_t parse_count(std::string_view s, std::string_view what) {
  const auto v = decimal(s);
  if (!v) {
    throw usage_error(std::string(what) + " '" + std::string(s) +
                      "' is not a positive decimal integer");
  }
  if (*v == 0) throw usage_error(std::string(what) + " must be at least 1, got 0");
  return static_cast<std::size_t>(*v);
}

std::uint64_t parse_u64(std::string_view s, std::string_view what) {
  const auto v = decimal(s);
  if (!v) {
    throw usage_error(std::string(what) + " '" + std::string(s) +
                      "' is not a decimal integer in [0, 2^64)");
  }
  return *v;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::string usage_text() {
  std::string u = k_usage;
  auto put = [&](std::string_view key, const std::string& value) {
    u.replace(u.find(key), key.size(), value);
  };
  put("%POLICIES%", join(policy_names(), ","));
  put("%JOBS%", std::to_string(std::max(1u, std::thread::hardware_concurrency())));
  return u;
}

// Parses the command line; sets `done` when it already did all there was to do (--help).
cli parse_args(int argc, char** argv, bool& done) {
  cli c;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  std::optional<std::string> column;
  bool header = false;
  std::optional<char> delimiter;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    std::optional<std::string_view> inline_value;
    if (a.starts_with("--") && a.find('=') != std::string_view::npos) {
      inline_value = a.substr(a.find('=') + 1);  // --capacity=1000
      a = a.substr(0, a.find('='));
    } else if (a.size() > 2 && a[0] == '-' && a[1] != '-' &&
               std::string_view("fpcsj").find(a[1]) != std::string_view::npos) {
      inline_value = a.substr(2);  // -c1000
      a = a.substr(0, 2);
    }
    auto value = [&]() -> std::string_view {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw usage_error("option " + std::string(a) + " needs a value");
      return args[++i];
    };
    auto flag = [&] {
      if (inline_value) throw usage_error("option " + std::string(a) + " takes no value");
    };
    if (a == "-h" || a == "--help") {
      std::fputs(usage_text().c_str(), stdout);
      done = true;
      return c;
    } else if (a == "--list-policies") {
      flag();
      for (const auto& n : policy_names()) std::puts(n.c_str());
      done = true;
      return c;
    } else if (a == "-f" || a == "--format") {
      const std::string_view v = value();
      c.format = parse_format(v);
      if (!c.format) {
        throw usage_error("unknown format '" + std::string(v) +
                          "' (known: " + std::string(k_format_names) + ")");
      }
    } else if (a == "--column") {
      column = std::string(value());
      if (column->empty()) throw usage_error("--column is empty: give a 1-based index or a name");
      if (*column == "0") throw usage_error("--column is 1-based: 0 is not a column");
    } else if (a == "--header") {
      flag();
      header = true;
    } else if (a == "--delimiter") {
      const std::string_view v = value();
      if (v == "tab" || v == "\\t") {
        delimiter = '\t';
      } else if (v.size() == 1 && v[0] != '"' && v[0] != '\n' && v[0] != '\r') {
        delimiter = v[0];
      } else {
        throw usage_error("--delimiter must be one character (not a quote) or 'tab', got '" +
                          std::string(v) + "'");
      }
    } else if (a == "--skip-bad") {
      flag();
      c.reader.skip_bad = true;
    } else if (a == "--name") {
      c.name = std::string(value());
    } else if (a == "-p" || a == "--policy") {
      for (const std::string_view p : split(value(), ',')) {
        if (p == "all") {
          for (auto& n : policy_names()) c.policies.push_back(n);
        } else if (is_policy(p)) {
          c.policies.emplace_back(p);
        } else {
          throw usage_error("unknown policy '" + std::string(p) +
                            "' (known: " + join(policy_names(), ",") + ", or all)");
        }
      }
    } else if (a == "-c" || a == "--capacity") {
      for (const std::string_view s : split(value(), ',')) {
        c.capacities.push_back(parse_count(s, "capacity"));
      }
    } else if (a == "-s" || a == "--sweep") {
      const std::string_view v = value();
      const auto parts = split(v, ':');
      if (parts.size() != 3) {
        throw usage_error("--sweep wants MIN:MAX:STEPS, e.g. 100:10000:12; got '" + std::string(v) +
                          "'");
      }
      const std::size_t lo = parse_count(parts[0], "sweep MIN");
      const std::size_t hi = parse_count(parts[1], "sweep MAX");
      const std::size_t n = parse_count(parts[2], "sweep STEPS");
      if (hi < lo) {
        throw usage_error("--sweep MAX (" + std::to_string(hi) + ") is below MIN (" +
                          std::to_string(lo) + ")");
      }
      if (n > 1000) throw usage_error("--sweep STEPS must be at most 1000");
      for (const std::size_t s : log_spaced(lo, hi, n)) c.capacities.push_back(s);
      c.swept = true;
    } else if (a == "--shards") {
      c.shards = parse_count(value(), "--shards");
      if ((c.shards & (c.shards - 1)) != 0 || c.shards > 65536) {
        throw usage_error("--shards must be a power of two in [1, 65536], got " +
                          std::to_string(c.shards));
      }
    } else if (a == "--seed") {
      c.seed = parse_u64(value(), "--seed");
    } else if (a == "-j" || a == "--jobs") {
      const std::size_t j = parse_count(value(), "--jobs");
      c.jobs = static_cast<unsigned>(std::min<std::size_t>(j, 1024));
    } else if (a == "--csv") {
      flag();
      c.csv = true;
    } else if (a == "--plot") {
      c.plot_file = std::string(value());
      if (c.plot_file.empty()) throw usage_error("--plot needs a file name");
    } else if (a == "--timing") {
      flag();
      c.timing = true;
    } else if (a == "--progress") {
      flag();
      c.progress = progress_mode::on;
    } else if (a == "--no-progress") {
      flag();
      c.progress = progress_mode::off;
    } else if (a == "-q" || a == "--quiet") {
      flag();
      c.quiet = true;
    } else if (a == "--") {
      for (++i; i < args.size(); ++i) c.traces.emplace_back(args[i]);
    } else if (a.size() > 1 && a[0] == '-') {
      throw usage_error("unknown option '" + std::string(a) + "'");
    } else {
      c.traces.emplace_back(a);
    }
  }
  if (c.traces.empty()) c.traces.emplace_back("-");
  if (c.policies.empty()) c.policies.emplace_back("lru");
  if (c.capacities.empty()) throw usage_error("no cache size: give --capacity or --sweep");
  std::sort(c.capacities.begin(), c.capacities.end());
  c.capacities.erase(std::unique(c.capacities.begin(), c.capacities.end()), c.capacities.end());
  for (std::size_t i = 0; i < c.policies.size(); ++i) {  // drop repeats, keep the first place
    for (std::size_t j = 0; j < i; ++j) {
      if (c.policies[j] == c.policies[i]) {
        c.policies.erase(c.policies.begin() + static_cast<std::ptrdiff_t>(i--));
        break;
      }
    }
  }
  if (c.shards > c.capacities.front()) {
    throw usage_error("--shards " + std::to_string(c.shards) + " exceeds the capacity " +
                      std::to_string(c.capacities.front()) +
                      ": every shard needs room for one entry");
  }
  if (std::count(c.traces.begin(), c.traces.end(), "-") > 1) {
    throw usage_error("standard input (-) given more than once");
  }
  if (c.traces.size() > 1 && !c.name.empty()) throw usage_error("--name needs exactly one TRACE");
  if (c.traces.size() > 1 && !c.plot_file.empty()) {
    throw usage_error("--plot needs exactly one TRACE");
  }
  const bool csv_opts = column || header || delimiter;
  if (csv_opts && c.format && *c.format != trace_format::csv) {
    throw usage_error("--column, --header and --delimiter apply to --format csv only");
  }
  if (column) c.reader.csv_column = *column;
  c.reader.csv_header = header;
  if (delimiter) c.reader.csv_delimiter = *delimiter;
  return c;
}

std::string basename_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The file name without directory, compression extension and format extension.
std::string default_name(const std::string& path) {
  if (path == "-") return "stdin";
  std::string n = basename_of(path);
  if (decompressor_for(n) != nullptr) n = n.substr(0, n.rfind('.'));
  const std::size_t dot = n.rfind('.');
  if (dot != std::string::npos && dot > 0) n = n.substr(0, dot);
  return n;
}

std::optional<trace_format> format_from_name(const std::string& path) {
  std::string n = basename_of(path);
  if (decompressor_for(n) != nullptr) n = n.substr(0, n.rfind('.'));
  if (n.ends_with(".lis")) return trace_format::arc;
  if (n.ends_with(".trace")) return trace_format::lirs;
  if (n.ends_with(".csv")) return trace_format::csv;
  return std::nullopt;
}

struct row {
  std::string trace;
  std::string policy;
  std::size_t capacity;
  std::size_t shards;
  run_result r;
};

// hits / requests in percent with two decimals, rounded half up exactly (in integers, so 54.415
// prints as 54.42 whatever its nearest double is).
std::string ratio_percent(const run_result& r) {
  if (r.requests == 0) return "0.00";
  __extension__ using u128 = unsigned __int128;                                 // GCC and Clang
  const u128 h = (u128{r.hits} * 20000 + r.requests) / (u128{r.requests} * 2);  // hundredths
  char buf[48];
  std::snprintf(buf, sizeof buf, "%llu.%02llu", static_cast<unsigned long long>(h / 100),
                static_cast<unsigned long long>(h % 100));
  return buf;
}

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Accesses per second of the replaying thread's CPU time (per core), in millions; wall time
// where CPU time is not available.
double maccess_per_s(const run_result& r) {
  const double t = r.cpu_seconds > 0 ? r.cpu_seconds : r.seconds;
  return t > 0 ? static_cast<double>(r.requests) / t / 1e6 : 0.0;
}

void print_csv_row(const row& w) {
  // A trace name with a comma or quote is quoted (RFC 4180).
  std::string name = w.trace;
  if (name.find_first_of(",\"\n") != std::string::npos) {
    std::string q = "\"";
    for (const char ch : name) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    name = q + "\"";
  }
  std::printf("%s,%s,%zu,%zu,%llu,%llu,%s\n", name.c_str(), w.policy.c_str(), w.capacity, w.shards,
              static_cast<unsigned long long>(w.r.requests),
              static_cast<unsigned long long>(w.r.hits), ratio_percent(w.r).c_str());
}

void print_table(const std::vector<row>& rows, bool timing) {
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> head = {"trace",    "policy", "capacity",   "shards",
                                   "requests", "hits",   "hit_ratio_%"};
  if (timing) {
    head.emplace_back("wall_s");
    head.emplace_back("cpu_s");
    head.emplace_back("M_accesses/cpu_s");
  }
  cells.push_back(head);
  for (const row& w : rows) {
    std::vector<std::string> c = {w.trace,
                                  w.policy,
                                  std::to_string(w.capacity),
                                  std::to_string(w.shards),
                                  std::to_string(w.r.requests),
                                  std::to_string(w.r.hits),
                                  ratio_percent(w.r)};
    if (timing) {
      c.push_back(fixed(w.r.seconds, 3));
      c.push_back(fixed(w.r.cpu_seconds, 3));
      c.push_back(fixed(maccess_per_s(w.r), 1));
    }
    cells.push_back(std::move(c));
  }
  std::vector<std::size_t> width(head.size(), 0);
  for (const auto& c : cells) {
    for (std::size_t k = 0; k < c.size(); ++k) width[k] = std::max(width[k], c[k].size());
  }
  for (const auto& c : cells) {
    std::string line;
    for (std::size_t k = 0; k < c.size(); ++k) {
      if (k > 0) line += "  ";
      const std::string pad(width[k] - c[k].size(), ' ');
      line +=
          k < 2 ? c[k] + (k + 1 < c.size() ? pad : "") : pad + c[k];  // text left, numbers right
    }
    std::puts(line.c_str());
  }
}

void write_plot(const cli& c, const std::vector<row>& rows) {
  plot p;
  p.title = "Hit ratio vs cache size: " + rows.front().trace;
  p.subtitle = std::to_string(rows.front().r.requests) + " requests; cachet::sharded_store, " +
               std::to_string(c.shards) + (c.shards == 1 ? " shard" : " shards") + ", hash seed " +
               std::to_string(c.seed);
  p.log_x = c.swept || c.capacities.back() >= 20 * c.capacities.front();
  for (const std::string& policy : c.policies) {
    plot_series s{policy, {}};
    for (const row& w : rows) {
      if (w.policy == policy) {
        s.points.emplace_back(static_cast<double>(w.capacity), 100.0 * w.r.hit_ratio());
      }
    }
    p.series.push_back(std::move(s));
  }
  const std::string svg = render_svg(p);
  std::FILE* f = std::fopen(c.plot_file.c_str(), "w");
  if (f == nullptr) {
    throw data_error("cannot write plot '" + c.plot_file + "': " + std::strerror(errno));
  }
  const bool ok = std::fwrite(svg.data(), 1, svg.size(), f) == svg.size();
  if (std::fclose(f) != 0 || !ok) {
    throw data_error("cannot write plot '" + c.plot_file + "': " + std::strerror(errno));
  }
}

// Runs all specs over `keys`, showing progress on stderr when asked.
std::vector<run_result> run_with_progress(const cli& c, const std::string& name,
                                          std::span<const std::uint64_t> keys,
                                          const std::vector<run_spec>& specs) {
  const bool tty = ::isatty(2) != 0;
  const bool show = !c.quiet && (c.progress == progress_mode::on ||
                                 (c.progress == progress_mode::automatic && tty));
  if (!show) return run_all(keys, specs, c.jobs);
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> finished{false};
  std::vector<run_result> results;
  std::exception_ptr error;
  std::jthread runner([&] {
    try {
      results = run_all(keys, specs, c.jobs, &done);
    } catch (...) {
      error = std::current_exception();
    }
    finished.store(true);
    finished.notify_all();
  });
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto last = t0;
  const double total = static_cast<double>(keys.size()) * static_cast<double>(specs.size());
  const auto every = std::chrono::milliseconds(tty ? 250 : 2000);
  bool printed = false;
  while (!finished.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto now = clock::now();
    if (now - t0 < std::chrono::seconds(1) || now - last < every) continue;
    last = now;
    const double secs = std::chrono::duration<double>(now - t0).count();
    const double d = static_cast<double>(done.load(std::memory_order_relaxed));
    std::fprintf(stderr, "%scachet-sim: %s: %.0f%% of %zu runs x %zu accesses, %.1f s, %.1f M/s%s",
                 tty ? "\r" : "", name.c_str(), total > 0 ? 100.0 * d / total : 100.0, specs.size(),
                 keys.size(), secs, d / secs / 1e6, tty ? "\x1b[K" : "\n");
    printed = true;
  }
  runner.join();
  if (printed && tty) std::fputs("\r\x1b[K", stderr);
  if (error) std::rethrow_exception(error);
  return results;
}

int run(int argc, char** argv) {
  bool done = false;
  const cli c = parse_args(argc, argv, done);
  if (done) return 0;
  // Check every trace's format before reading any, so a usage error costs nothing.
  std::vector<trace_format> formats;
  for (const std::string& path : c.traces) {
    std::optional<trace_format> f = c.format ? c.format : format_from_name(path);
    if (!f) {
      throw usage_error("cannot tell the format of '" + path + "' from its name: pass --format " +
                        "(" + std::string(k_format_names) + ")");
    }
    formats.push_back(*f);
  }
  if (c.csv) std::puts("trace,policy,capacity,shards,requests,hits,hit_ratio");
  std::vector<row> all_rows;
  for (std::size_t t = 0; t < c.traces.size(); ++t) {
    const std::string& path = c.traces[t];
    const std::string name = c.name.empty() ? default_name(path) : c.name;
    reader_options ro = c.reader;
    ro.format = formats[t];
    const auto t0 = std::chrono::steady_clock::now();
    trace tr;
    try {
      tr = read_trace_file(path, ro);
    } catch (const trace_error& e) {
      throw data_error(name + ": " + e.what() +
                       (ro.skip_bad ? "" : " (--skip-bad skips malformed lines)"));
    } catch (const input_error& e) {
      throw data_error(e.what());
    }
    const double read_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tr.bad_lines != 0) {
      std::fprintf(stderr, "cachet-sim: %s: skipped %llu malformed line%s (first: %s)\n",
                   name.c_str(), static_cast<unsigned long long>(tr.bad_lines),
                   tr.bad_lines == 1 ? "" : "s", tr.first_bad.c_str());
    }
    if (!c.quiet) {
      std::fprintf(stderr, "cachet-sim: %s: %zu requests, %llu unique keys (%s), read in %.2f s\n",
                   name.c_str(), tr.keys.size(), static_cast<unsigned long long>(tr.unique_keys()),
                   std::string(to_string(ro.format)).c_str(), read_s);
    }
    if (tr.keys.empty())
      std::fprintf(stderr, "cachet-sim: %s: warning: no requests\n", name.c_str());

    std::vector<run_spec> specs;
    for (const std::string& p : c.policies) {
      for (const std::size_t cap : c.capacities) specs.push_back({p, cap, c.shards, c.seed});
    }
    const std::vector<run_result> results = run_with_progress(c, name, tr.keys, specs);
    std::vector<row> rows;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      rows.push_back({name, specs[i].policy, specs[i].capacity, specs[i].shards, results[i]});
    }
    for (const row& w : rows) {
      if (c.csv) print_csv_row(w);
      if (c.csv && c.timing) {
        std::fprintf(stderr,
                     "cachet-sim: %s %s capacity %zu: %.3f s wall, %.3f s CPU, %.1f M accesses "
                     "per CPU second\n",
                     w.trace.c_str(), w.policy.c_str(), w.capacity, w.r.seconds, w.r.cpu_seconds,
                     maccess_per_s(w.r));
      }
    }
    std::fflush(stdout);
    if (!c.plot_file.empty()) write_plot(c, rows);
    all_rows.insert(all_rows.end(), rows.begin(), rows.end());
  }
  if (!c.csv) print_table(all_rows, c.timing);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "cachet-sim: %s\n(cachet-sim --help for usage)\n", e.what());
    return k_exit_usage;
  } catch (const data_error& e) {
    std::fprintf(stderr, "cachet-sim: %s\n", e.what());
    return k_exit_data;
  } catch (const cachet::invalid_option& e) {
    std::fprintf(stderr, "cachet-sim: %s\n", e.what());
    return k_exit_usage;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "cachet-sim: out of memory\n");
    return k_exit_data;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cachet-sim: %s\n", e.what());
    return k_exit_data;
  }
}
