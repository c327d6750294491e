// bench/sim/trace_reader.hpp — reads cache traces (arc, lirs, keys, csv) into a vector of keys.
//
// Purpose: the input side of cachet-sim. A trace is read once, in full, into memory as one 64-bit
// key per access, so the simulation loop touches nothing but a contiguous array. Integer formats
// keep their keys as they are. String keys (`keys`, `csv`) are interned: the first distinct string
// gets id 0, the next id 1, and so on. That keeps the simulation exact, because a cache only ever
// compares keys for equality: two accesses share an id exactly when they share the string. (Hash
// placement differs from hashing the strings, which matters only with more than one shard.)
//
// Formats (one record per line; a final line without '\n' counts; a trailing '\r' is dropped, so
// CRLF files read like LF files):
//   arc   `start count ignore seq`: four whitespace-separated fields, the first two unsigned
//   decimal
//         integers, count >= 1; the line stands for the `count` keys start, start+1, ...,
//         start+count-1 (the ARC paper's traces, Megiddo & Modha, FAST'03).
//   lirs  one unsigned decimal key per line, surrounding blanks allowed; blank lines and lines that
//         are `*` (checkpoint markers in the LIRS traces) are skipped.
//   keys  the whole line, any bytes, is the key; empty lines are skipped.
//   csv   the key is one field, picked by 1-based index or by the header's name for it. Fields are
//         split on the delimiter (',' by default); a field in double quotes may hold the delimiter,
//         and "" inside it is one quote. Surrounding blanks of a field are kept except in the
//         header names. Empty lines are skipped.
// A line that does not parse stops the read with a trace_error naming its line number, unless
// `skip_bad` is set: then it is skipped, counted in trace::bad_lines, and the first one's message
// is kept in trace::first_bad.
//
// Thread safety: a trace_parser is used by one thread; distinct parsers are independent.
// Exception safety: read_trace and parse_trace throw trace_error for malformed input (the partial
// trace is discarded), std::invalid_argument for bad reader_options, std::system_error for a read
// error, std::bad_alloc.
//
// Example:
//   cachet_sim::reader_options opt{.format = cachet_sim::trace_format::lirs};
//   cachet_sim::trace t = cachet_sim::parse_trace("1\n2\n*\n1\r\n", opt);   // t.keys == {1, 2, 1}
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#include <absl/strings/string_view.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace cachet_sim {

enum class trace_format { arc, lirs, keys, csv };

inline constexpr std::string_view k_format_names = "arc, lirs, keys, csv";

inline std::optional<trace_format> parse_format(std::string_view s) noexcept {
  if (s == "arc") return trace_format::arc;
  if (s == "lirs") return trace_format::lirs;
  if (s == "keys") return trace_format::keys;
  if (s == "csv") return trace_format::csv;
  return std::nullopt;
}

constexpr std::string_view to_string(trace_format f) noexcept {
  switch (f) {
    case trace_format::arc:
      return "arc";
    case trace_format::lirs:
      return "lirs";
    case trace_format::keys:
      return "keys";
    case trace_format::csv:
      return "csv";
  }
  return "unknown";
}

struct reader_options {
  trace_format format = trace_format::lirs;
  // Skip malformed lines (counted in trace::bad_lines) instead of throwing trace_error.
  bool skip_bad = false;
  // csv: the key column, a 1-based index ("2") or a name looked up in the header line.
  std::string csv_column = "1";
  // csv: the first non-empty line is a header, not data. Implied when csv_column is a name.
  bool csv_header = false;
  // csv: the field separator.
  char csv_delimiter = ',';
};

struct trace {
  std::vector<std::uint64_t> keys;  // one per access, in order
  std::uint64_t lines = 0;          // lines read, including skipped ones
  std::uint64_t bad_lines = 0;      // malformed lines skipped (skip_bad only)
  std::string first_bad;            // "line N: why" for the first of them
  // Distinct string keys interned (keys and csv formats); 0 for the integer formats.
  std::uint64_t interned = 0;

  // Number of distinct keys. O(n) with a hash set for the integer formats.
  std::uint64_t unique_keys() const {
    if (interned != 0 || keys.empty()) return interned;
    absl::flat_hash_set<std::uint64_t> seen;
    seen.reserve(keys.size() / 4);
    for (const std::uint64_t k : keys) seen.insert(k);
    return seen.size();
  }
};

// A malformed line. what() is "line N: <what is wrong>: '<the line, shortened>'".
class trace_error : public std::runtime_error {
 public:
  trace_error(std::uint64_t line, const std::string& message)
      : std::runtime_error("line " + std::to_string(line) + ": " + message), line_(line) {}
  std::uint64_t line() const noexcept { return line_; }

 private:
  std::uint64_t line_;
};

namespace detail {

// Up to 60 bytes of `s` for an error message, with non-printable bytes as \xNN.
inline std::string excerpt(std::string_view s) {
  static constexpr std::size_t k_max = 60;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < k_max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char k_hex[] = "0123456789abcdef";
      out += "\\x";
      out += k_hex[c >> 4];
      out += k_hex[c & 15];
    }
  }
  out += s.size() > k_max ? "'..." : "'";
  return out;
}

inline bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

inline std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (is_blank(s.front()) || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (is_blank(s.back()) || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// An unsigned decimal integer filling all of `s`.
inline std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept {
  std::uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Splits `s` at runs of blanks; at most `max` fields, returns the field count (max + 1 if more).
inline std::size_t split_blanks(std::string_view s, std::string_view* out, std::size_t max) {
  std::size_t n = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_blank(s[i])) ++i;
    if (i == s.size()) break;
    std::size_t j = i;
    while (j < s.size() && !is_blank(s[j])) ++j;
    if (n == max) return max + 1;
    out[n++] = s.substr(i, j - i);
    i = j;
  }
  return n;
}

}  // namespace detail

// Parses a trace line by line into `out`. Feed it every line without its '\n' (a '\r' before it
// may stay), in order, then call finish(). Throws trace_error for a malformed line unless skip_bad.
class trace_parser {
 public:
  // Throws std::invalid_argument if the options are inconsistent (empty csv column, index 0).
  trace_parser(reader_options opts, trace& out) : opts_(std::move(opts)), out_(&out) {
    if (opts_.format == trace_format::csv) {
      if (opts_.csv_column.empty()) {
        throw std::invalid_argument("csv column is empty: give a 1-based index or a header name");
      }
      if (const auto idx = detail::parse_u64(opts_.csv_column)) {
        if (*idx == 0) throw std::invalid_argument("csv column index is 1-based: 0 is not valid");
        column_ = *idx - 1;
        header_pending_ = opts_.csv_header;
      } else {
        header_pending_ = true;  // a name: the first line is the header
      }
      if (opts_.csv_delimiter == '"' || opts_.csv_delimiter == '\n' ||
          opts_.csv_delimiter == '\r') {
        throw std::invalid_argument("csv delimiter may not be a quote or a line break");
      }
    }
  }

  void line(std::string_view text) {
    const std::uint64_t n = ++out_->lines;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    switch (opts_.format) {
      case trace_format::arc:
        return arc_line(n, text);
      case trace_format::lirs:
        return lirs_line(n, text);
      case trace_format::keys:
        if (!text.empty()) out_->keys.push_back(intern(text));
        return;
      case trace_format::csv:
        return csv_line(n, text);
    }
  }

  // Call after the last line. Throws trace_error if a csv header was expected and never came.
  void finish() {
    if (opts_.format == trace_format::csv && header_pending_ &&
        !detail::parse_u64(opts_.csv_column)) {
      throw trace_error(out_->lines, "end of input before the csv header naming column '" +
                                         opts_.csv_column + "'");
    }
    out_->interned = ids_.size();
  }

 private:
  void bad(std::uint64_t n, const std::string& why, std::string_view text) {
    trace_error e(n, why + ": " + detail::excerpt(text));
    if (!opts_.skip_bad) throw e;
    if (out_->bad_lines++ == 0) out_->first_bad = e.what();
  }

  void arc_line(std::uint64_t n, std::string_view text) {
    std::string_view f[4];
    const std::size_t k = detail::split_blanks(text, f, 4);
    if (k == 0) return;  // blank line
    if (k != 4) {
      return bad(n,
                 "expected 4 fields 'start count ignore seq', got " +
                     (k > 4 ? std::string("more") : std::to_string(k)),
                 text);
    }
    const auto start = detail::parse_u64(f[0]);
    const auto count = detail::parse_u64(f[1]);
    if (!start) return bad(n, "start is not an unsigned decimal integer", text);
    if (!count) return bad(n, "count is not an unsigned decimal integer", text);
    if (*count == 0) return bad(n, "count is 0", text);
    if (*count > k_max_arc_count) {
      return bad(n, "count exceeds " + std::to_string(k_max_arc_count), text);
    }
    if (*start > UINT64_MAX - (*count - 1)) return bad(n, "start + count overflows 64 bits", text);
    for (std::uint64_t i = 0; i < *count; ++i) out_->keys.push_back(*start + i);
  }

  void lirs_line(std::uint64_t n, std::string_view text) {
    text = detail::trim(text);
    if (text.empty() || text == "*") return;
    const auto key = detail::parse_u64(text);
    if (!key) return bad(n, "expected one unsigned decimal key", text);
    out_->keys.push_back(*key);
  }

  void csv_line(std::uint64_t n, std::string_view text) {
    if (text.empty()) return;
    if (header_pending_) return csv_header(n, text);
    std::string_view field;
    const char* err = csv_field(text, column_, field);
    if (err != nullptr) return bad(n, err, text);
    out_->keys.push_back(intern(field));
  }

  void csv_header(std::uint64_t n, std::string_view text) {
    header_pending_ = false;
    if (detail::parse_u64(opts_.csv_column)) return;  // by index: the header is just skipped
    for (std::size_t i = 0;; ++i) {
      std::string_view field;
      if (const char* err = csv_field(text, i, field)) {
        if (std::strcmp(err, k_too_few) != 0) {
          throw trace_error(n, std::string(err) + " in the csv header: " + detail::excerpt(text));
        }
        throw trace_error(n, "no column named '" + opts_.csv_column +
                                 "' in the csv header: " + detail::excerpt(text));
      }
      if (detail::trim(field) == opts_.csv_column) {
        column_ = i;
        return;
      }
    }
  }

  static constexpr const char* k_too_few = "too few fields for the key column";

  // Sets `out` to field `want` (0-based) of `line`; returns an error message or nullptr. A quoted
  // field with "" escapes is unescaped into scratch_.
  const char* csv_field(std::string_view line, std::size_t want, std::string_view& out) {
    const char d = opts_.csv_delimiter;
    std::size_t i = 0;
    for (std::size_t f = 0;; ++f) {
      const bool quoted = i < line.size() && line[i] == '"';
      std::size_t end;
      if (quoted) {
        scratch_.clear();
        std::size_t j = i + 1;
        for (;;) {
          if (j >= line.size()) return "unterminated quoted field";
          if (line[j] == '"') {
            if (j + 1 < line.size() && line[j + 1] == '"') {
              scratch_ += '"';
              j += 2;
              continue;
            }
            break;
          }
          scratch_ += line[j++];
        }
        end = j + 1;  // past the closing quote
        if (end < line.size() && line[end] != d) return "text after a closing quote";
        if (f == want) {
          out = scratch_;
          return nullptr;
        }
      } else {
        end = line.find(d, i);
        if (end == std::string_view::npos) end = line.size();
        if (f == want) {
          out = line.substr(i, end - i);
          return nullptr;
        }
      }
      if (end >= line.size()) return k_too_few;
      i = end + 1;
    }
  }

  std::uint64_t intern(std::string_view s) {
    // absl::string_view: Debian's Abseil is built with its own string_view, not std's.
    const auto it = ids_.find(absl::string_view(s.data(), s.size()));
    if (it != ids_.end()) return it->second;
    const std::uint64_t id = ids_.size();
    ids_.emplace(std::string(s), id);
    return id;
  }

  static constexpr std::uint64_t k_max_arc_count = std::uint64_t{1} << 32;

  reader_options opts_;
  trace* out_;
  std::size_t column_ = 0;
  bool header_pending_ = false;
  std::string scratch_;
  absl::flat_hash_map<std::string, std::uint64_t> ids_;
};

// Reads a whole trace from `in` (a file, a pipe, stdin), `chunk` bytes at a time.
inline trace read_trace(std::FILE* in, const reader_options& opts,
                        std::size_t chunk = std::size_t{1} << 20) {
  trace t;
  trace_parser p(opts, t);
  std::string buf;
  std::size_t begin = 0;  // start of the first unparsed line in buf
  std::vector<char> block(chunk);
  for (;;) {
    const std::size_t got = std::fread(block.data(), 1, block.size(), in);
    if (got == 0) {
      if (std::ferror(in)) throw std::system_error(errno, std::generic_category(), "read error");
      break;
    }
    buf.erase(0, begin);
    begin = 0;
    buf.append(block.data(), got);
    for (;;) {
      const void* nl = std::memchr(buf.data() + begin, '\n', buf.size() - begin);
      if (nl == nullptr) break;
      const std::size_t end = static_cast<const char*>(nl) - buf.data();
      p.line(std::string_view(buf).substr(begin, end - begin));
      begin = end + 1;
    }
  }
  if (begin < buf.size()) p.line(std::string_view(buf).substr(begin));
  p.finish();
  return t;
}

// Parses a trace held in memory.
inline trace parse_trace(std::string_view text, const reader_options& opts) {
  trace t;
  trace_parser p(opts, t);
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    p.line(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  p.finish();
  return t;
}

}  // namespace cachet_sim
