// Tests of cachet-sim's trace reader (bench/sim/trace_reader.hpp, trace_input.hpp): every format,
// CRLF, skipped lines, malformed lines named by number, --skip-bad counting, csv by index and name.
#include "sim/trace_reader.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "sim/trace_input.hpp"

using namespace std::string_view_literals;
using cachet_sim::parse_trace;
using cachet_sim::reader_options;
using cachet_sim::trace_error;
using cachet_sim::trace_format;
using keys_t = std::vector<std::uint64_t>;

namespace {

// The line number of the trace_error that parsing `text` throws (0 if it throws none).
std::uint64_t error_line(std::string_view text, const reader_options& opt,
                         std::string* what = nullptr) {
  try {
    parse_trace(text, opt);
  } catch (const trace_error& e) {
    if (what != nullptr) *what = e.what();
    return e.line();
  }
  return 0;
}

}  // namespace

TEST_CASE("trace_reader: format names", "[sim]") {
  CHECK(cachet_sim::parse_format("arc") == trace_format::arc);
  CHECK(cachet_sim::parse_format("lirs") == trace_format::lirs);
  CHECK(cachet_sim::parse_format("keys") == trace_format::keys);
  CHECK(cachet_sim::parse_format("csv") == trace_format::csv);
  CHECK_FALSE(cachet_sim::parse_format("LIRS"));
  CHECK_FALSE(cachet_sim::parse_format(""));
  for (const auto f :
       {trace_format::arc, trace_format::lirs, trace_format::keys, trace_format::csv})
    CHECK(cachet_sim::parse_format(cachet_sim::to_string(f)) == f);
}

TEST_CASE("trace_reader: lirs skips blank and '*' lines, tolerates CRLF and blanks", "[sim]") {
  const reader_options opt{.format = trace_format::lirs};
  const auto t = parse_trace("1\n2\n\n*\n  3 \r\n\r\n*\r\n18446744073709551615\n4", opt);
  CHECK(t.keys == keys_t{1, 2, 3, 18446744073709551615ULL, 4});
  CHECK(t.lines == 9);
  CHECK(t.bad_lines == 0);
  CHECK(t.unique_keys() == 5);
  CHECK(t.interned == 0);
  CHECK(parse_trace("", opt).keys.empty());
  CHECK(parse_trace("7\n", opt).lines == 1);  // the newline ends line 1; no empty line 2
}

TEST_CASE("trace_reader: a malformed lirs line stops the read, naming its number", "[sim]") {
  const reader_options opt{.format = trace_format::lirs};
  std::string what;
  CHECK(error_line("1\n2\nabc\n4\n", opt, &what) == 3);
  CHECK(what == "line 3: expected one unsigned decimal key: 'abc'");
  CHECK(error_line("1\n-2\n", opt) == 2);
  CHECK(error_line("1\n2 3\n", opt) == 2);                // two keys on a line
  CHECK(error_line("18446744073709551616\n", opt) == 1);  // 2^64 does not fit
  CHECK(error_line("1\n\n*\n**\n", opt, &what) == 4);     // blank lines count as lines
  CHECK(error_line("1\r\n2\r\n\x01\r\n"sv, opt, &what) == 3);
  CHECK(what == "line 3: expected one unsigned decimal key: '\\x01'");  // escaped, no CR
}

TEST_CASE("trace_reader: skip_bad counts malformed lines and keeps the first", "[sim]") {
  const reader_options opt{.format = trace_format::lirs, .skip_bad = true};
  const auto t = parse_trace("1\nx\n2\n\ny\n3\n", opt);
  CHECK(t.keys == keys_t{1, 2, 3});
  CHECK(t.bad_lines == 2);
  CHECK(t.first_bad == "line 2: expected one unsigned decimal key: 'x'");
}

TEST_CASE("trace_reader: arc lines expand to count consecutive keys", "[sim]") {
  const reader_options opt{.format = trace_format::arc};
  const auto t = parse_trace("5 3 0 0\n100 1 0 1\r\n\n7\t2  0 2", opt);
  CHECK(t.keys == keys_t{5, 6, 7, 100, 7, 8});
  CHECK(t.unique_keys() == 5);
  std::string what;
  CHECK(error_line("1 1 0 0\n5 3 0\n", opt, &what) == 2);
  CHECK(what == "line 2: expected 4 fields 'start count ignore seq', got 3: '5 3 0'");
  CHECK(error_line("1 1 0 0 9\n", opt) == 1);
  CHECK(error_line("x 1 0 0\n", opt) == 1);
  CHECK(error_line("1 -1 0 0\n", opt) == 1);
  CHECK(error_line("1 1 0 0\n1 1 0 0\n5 0 0 0\n", opt, &what) == 3);
  CHECK(what == "line 3: count is 0: '5 0 0 0'");
  CHECK(error_line("18446744073709551615 2 0 0\n", opt) == 1);  // start + count overflows
  CHECK(parse_trace("18446744073709551614 2 0 0\n", opt).keys.size() == 2);

  const auto skipped =
      parse_trace("1 2 0 0\n1 2 0\n3 1 0 0\n", {.format = trace_format::arc, .skip_bad = true});
  CHECK(skipped.keys == keys_t{1, 2, 3});
  CHECK(skipped.bad_lines == 1);
}

TEST_CASE("trace_reader: keys are whole lines of any bytes, interned to dense ids", "[sim]") {
  const reader_options opt{.format = trace_format::keys};
  const auto t = parse_trace("alpha\r\nbeta\nalpha\n\n a b \n\xff\0x\nalpha \n\xff\0y"sv, opt);
  // alpha=0 beta=1 " a b "=2 "\xff\0x"=3 "alpha "=4 "\xff\0y"=5; the blank line is skipped.
  CHECK(t.keys == keys_t{0, 1, 0, 2, 3, 4, 5});
  CHECK(t.interned == 6);
  CHECK(t.unique_keys() == 6);
  CHECK(t.bad_lines == 0);
}

TEST_CASE("trace_reader: csv by 1-based index", "[sim]") {
  reader_options opt{.format = trace_format::csv, .csv_column = "2"};
  const std::string_view text = "a,k1,9\nb,k2,9\r\nc,k1\n\nd,\"k,3\",1\ne,k2,\n";
  CHECK(parse_trace(text, opt).keys == keys_t{0, 1, 0, 2, 1});
  opt.csv_column = "1";
  CHECK(parse_trace(text, opt).keys == keys_t{0, 1, 2, 3, 4});
  opt.csv_column = "3";
  std::string what;
  CHECK(error_line(text, opt, &what) == 3);  // "c,k1" has two fields
  CHECK(what == "line 3: too few fields for the key column: 'c,k1'");
  opt.skip_bad = true;
  const auto t = parse_trace(text, opt);
  CHECK(t.keys == keys_t{0, 0, 1, 2});  // "9", "9", "1", "" (an empty field is a key)
  CHECK(t.bad_lines == 1);

  // --header skips the first line; a tab delimiter; a quoted field with "" inside.
  reader_options tab{
      .format = trace_format::csv, .csv_column = "2", .csv_header = true, .csv_delimiter = '\t'};
  CHECK(parse_trace("op\tkey\nget\tx\nget\t\"say \"\"hi\"\"\"\nset\tx\n", tab).keys ==
        keys_t{0, 1, 0});
}

TEST_CASE("trace_reader: csv by header name", "[sim]") {
  const reader_options opt{.format = trace_format::csv, .csv_column = "key"};
  const auto t = parse_trace("\ntime, key ,size\n1,a,10\n2,b,20\n3,a,5\n", opt);
  CHECK(t.keys == keys_t{0, 1, 0});
  CHECK(t.lines == 5);
  std::string what;
  CHECK(error_line("time,id\n1,a\n", opt, &what) == 1);
  CHECK(what == "line 1: no column named 'key' in the csv header: 'time,id'");
  REQUIRE_THROWS_AS(parse_trace("", opt), trace_error);  // no header at all
  CHECK(error_line("key\n\"unterminated\n", opt, &what) == 2);
  CHECK(what == "line 2: unterminated quoted field: '\"unterminated'");
  CHECK(error_line("key\n\"a\"b\n", opt, &what) == 2);
  CHECK(what == "line 2: text after a closing quote: '\"a\"b'");
}

TEST_CASE("trace_reader: bad csv options are rejected up front", "[sim]") {
  CHECK_THROWS_AS(parse_trace("1\n", {.format = trace_format::csv, .csv_column = "0"}),
                  std::invalid_argument);
  CHECK_THROWS_AS(parse_trace("1\n", {.format = trace_format::csv, .csv_column = ""}),
                  std::invalid_argument);
  CHECK_THROWS_AS(
      parse_trace("1\n", {.format = trace_format::csv, .csv_column = "1", .csv_delimiter = '"'}),
      std::invalid_argument);
}

TEST_CASE("trace_reader: reading a FILE in chunks gives what parsing the text gives", "[sim]") {
  std::string text;
  for (int i = 0; i < 2000; ++i) {
    text += std::to_string(i * 7919 % 1000) + (i % 3 == 0 ? "\r\n" : "\n");
    if (i % 100 == 0) text += "*\n\n";
  }
  text += "12345";  // a last line without a newline
  const reader_options opt{.format = trace_format::lirs};
  const auto expected = parse_trace(text, opt);
  REQUIRE(expected.keys.size() == 2001);
  for (const std::size_t chunk : {1u, 3u, 7u, 64u, 1u << 20}) {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    REQUIRE(std::fwrite(text.data(), 1, text.size(), f) == text.size());
    std::rewind(f);
    const auto t = cachet_sim::read_trace(f, opt, chunk);
    std::fclose(f);
    INFO("chunk " << chunk);
    CHECK(t.keys == expected.keys);
    CHECK(t.lines == expected.lines);
  }
}

TEST_CASE("trace_input: plain and gzip-compressed files, missing files", "[sim]") {
  const std::string dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  const std::string plain = dir + "/cachet_sim_reader_test.trace";
  {
    std::FILE* f = std::fopen(plain.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("3\n1\n*\n3\n", f);
    std::fclose(f);
  }
  const reader_options opt{.format = trace_format::lirs};
  CHECK(cachet_sim::read_trace_file(plain, opt).keys == keys_t{3, 1, 3});
  CHECK_THROWS_AS(cachet_sim::read_trace_file(dir + "/cachet_sim_no_such_file", opt),
                  cachet_sim::input_error);
  CHECK(cachet_sim::decompressor_for("a.trace.gz") == std::string_view("gzip"));
  CHECK(cachet_sim::decompressor_for("a.lis.zst") == std::string_view("zstd"));
  CHECK(cachet_sim::decompressor_for("a.trace") == nullptr);

  // A .gz file goes through gzip -dc (skipped where gzip is not installed).
  const std::string gz = plain + ".gz";
  if (std::system(("gzip -c '" + plain + "' > '" + gz + "' 2>/dev/null").c_str()) == 0) {
    CHECK(cachet_sim::read_trace_file(gz, opt).keys == keys_t{3, 1, 3});
    // Not gzip data: the decompressor's failure is reported, not an empty trace.
    std::rename(plain.c_str(), gz.c_str());
    CHECK_THROWS_AS(cachet_sim::read_trace_file(gz, opt), cachet_sim::input_error);
    std::remove(gz.c_str());
  } else {
    WARN("gzip not available: .gz input not tested");
  }
  std::remove(plain.c_str());
}
