// cachet/snapshot.hpp: save and load round-trip the live entries with their remaining TTL; a
// missing, truncated, corrupt, foreign or undecodable file throws snapshot_error and puts nothing;
// a failed save leaves the previous file whole and no temporary behind; the reader survives
// arbitrary bytes (fuzzed, with and without a valid checksum).
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cachet/clock.hpp>
#include <cachet/eviction/no_eviction.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/snapshot.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using str_store =
    cachet::sharded_store<std::string, std::string, cachet::lru, cachet::manual_clock>;
using int_store =
    cachet::sharded_store<std::uint64_t, std::uint64_t, cachet::lru, cachet::manual_clock>;

// A fresh directory, removed with its contents at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string t = (fs::temp_directory_path() / "cachet_snapshot_XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::size_t files() const {
    return static_cast<std::size_t>(
        std::distance(fs::directory_iterator(path), fs::directory_iterator()));
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_file(const fs::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}
// Recomputes the trailer's checksum after a deliberate edit, so that the edit reaches the parser.
void reseal(std::string& data) {
  if (data.size() < 24) return;
  const std::size_t end = data.size() - 24;
  std::uint64_t h = XXH3_64bits(data.data(), end);
  for (int i = 0; i < 8; ++i)
    data[end + 16 + static_cast<std::size_t>(i)] = static_cast<char>((h >> (8 * i)) & 0xff);
}

std::map<std::string, std::string> contents(str_store& s) {
  std::map<std::string, std::string> m;
  s.for_each([&](const std::string& k, const std::string& v) { m[k] = v; });
  return m;
}

}  // namespace

TEST_CASE("snapshot: save then load restores every live entry", "[snapshot]") {
  temp_dir dir;
  const fs::path file = dir.path / "users.snap";
  cachet::manual_clock clock;
  str_store a({.max_entries = 4096}, clock);
  for (int i = 0; i < 1000; ++i) {
    const std::string v = std::string(static_cast<std::size_t>(i % 50), 'x') + std::to_string(i);
    if (i % 3 == 0) {
      a.put(std::string("k") + std::to_string(i), v, 1h);
    } else {
      a.put(std::string("k") + std::to_string(i), v);
    }
  }
  a.put(std::string("binary"), std::string("a\0b\xff", 4));
  const cachet::save_result w = cachet::save(a, file);
  CHECK(w.entries == 1001);
  CHECK(w.bytes == fs::file_size(file));
  CHECK(dir.files() == 1);  // no temporary left behind

  str_store b({.max_entries = 4096}, clock);
  const cachet::load_result r = cachet::load(b, file);
  CHECK(r.loaded == 1001);
  CHECK(r.expired == 0);
  CHECK(r.rejected == 0);
  CHECK(contents(b) == contents(a));
}

TEST_CASE("snapshot: each entry keeps the time to live it had left", "[snapshot]") {
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::manual_clock clock_a;
  int_store a({.max_entries = 64}, clock_a);
  a.put(1, 100);       // no expiry
  a.put(2, 200, 10s);  // 6 s left at the save
  clock_a.advance(4s);
  cachet::save(a, file);

  cachet::manual_clock clock_b;  // another process: its own clock
  int_store b({.max_entries = 64}, clock_b);
  CHECK(cachet::load(b, file).loaded == 2);
  clock_b.advance(5s);
  CHECK(b.get(2) == 200u);
  clock_b.advance(1100ms);  // past the 6 s (minus the wall time between save and load)
  CHECK_FALSE(b.get(2).has_value());
  CHECK(b.get(1) == 100u);
}

TEST_CASE("snapshot: entries whose time ran out while the service was down are skipped",
          "[snapshot]") {
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::manual_clock clock;
  int_store a({.max_entries = 64}, clock);
  a.put(1, 1);
  a.put(2, 2, 30min);
  a.put(3, 3, 2h);
  cachet::save(a, file);
  // Move the save an hour into the past.
  std::string data = read_file(file);
  std::int64_t saved = 0;
  for (int i = 0; i < 8; ++i)
    saved |= static_cast<std::int64_t>(
                 static_cast<unsigned char>(data[16 + static_cast<std::size_t>(i)]))
             << (8 * i);
  saved -= std::chrono::duration_cast<std::chrono::nanoseconds>(1h).count();
  for (int i = 0; i < 8; ++i)
    data[16 + static_cast<std::size_t>(i)] =
        static_cast<char>((static_cast<std::uint64_t>(saved) >> (8 * i)) & 0xff);
  reseal(data);
  write_file(file, data);

  int_store b({.max_entries = 64}, clock);
  const cachet::load_result r = cachet::load(b, file);
  CHECK(r.loaded == 2);
  CHECK(r.expired == 1);
  CHECK(b.get(1) == 1u);
  CHECK_FALSE(b.get(2).has_value());
  CHECK(b.get(3) == 3u);
}

TEST_CASE("snapshot: a store that refuses entries counts them as rejected", "[snapshot]") {
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::manual_clock clock;
  int_store a({.max_entries = 64, .shards = 1}, clock);
  for (std::uint64_t k = 0; k < 10; ++k) a.put(k, k);
  cachet::save(a, file);
  cachet::sharded_store<std::uint64_t, std::uint64_t, cachet::no_eviction, cachet::manual_clock> b(
      {.max_entries = 4, .shards = 1}, clock);
  const cachet::load_result r = cachet::load(b, file);
  CHECK(r.loaded == 4);
  CHECK(r.rejected == 6);
  CHECK(b.size() == 4);
}

TEST_CASE("snapshot: a bad file throws snapshot_error and puts nothing", "[snapshot]") {
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::manual_clock clock;
  int_store a({.max_entries = 64}, clock);
  for (std::uint64_t k = 0; k < 5; ++k) a.put(k, k * 11, k % 2 == 0 ? cachet::no_expiry : 1h);
  cachet::save(a, file);
  const std::string good = read_file(file);
  int_store b({.max_entries = 64}, clock);

  SECTION("missing") {
    CHECK_THROWS_AS(cachet::load(b, dir.path / "nope.snap"), cachet::snapshot_error);
  }
  SECTION("truncated at every length") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      write_file(file, good.substr(0, n));
      INFO("length " << n);
      CHECK_THROWS_AS(cachet::load(b, file), cachet::snapshot_error);
    }
  }
  SECTION("any one byte changed") {
    for (std::size_t i = 0; i < good.size(); ++i) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ 0x5a);
      write_file(file, bad);
      INFO("byte " << i);
      CHECK_THROWS_AS(cachet::load(b, file), cachet::snapshot_error);
    }
  }
  SECTION("another format version") {
    std::string bad = good;
    bad[8] = 2;
    reseal(bad);
    write_file(file, bad);
    CHECK_THROWS_WITH(cachet::load(b, file), Catch::Contains("format version 2"));
  }
  SECTION("a value its codec refuses") {
    // Values are 8-byte trivial_codec<uint64_t>: shorten the first record's value to 7 bytes.
    std::string bad = good;
    const std::size_t klen = static_cast<unsigned char>(bad[32]);
    const std::size_t vlen_at = 32 + 4 + klen;
    REQUIRE(static_cast<unsigned char>(bad[vlen_at]) == 8);
    bad[vlen_at] = 7;
    bad.erase(vlen_at + 4, 1);
    reseal(bad);
    write_file(file, bad);
    CHECK_THROWS_WITH(cachet::load(b, file), Catch::Contains("codec refused its value"));
  }
  CHECK(b.size() == 0);
  CHECK(b.stats().inserts == 0);
}

namespace {
// Throws when asked to encode the value "boom".
struct picky_codec {
  static void encode(const std::string& v, std::string& out) {
    if (v == "boom") throw std::runtime_error("cannot encode boom");
    out.append(v);
  }
  static std::optional<std::string> decode(std::string_view b) { return std::string(b); }
};
}  // namespace

TEST_CASE("snapshot: a failed save leaves the previous file whole and no temporary", "[snapshot]") {
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::manual_clock clock;
  str_store a({.max_entries = 64}, clock);
  a.put(std::string("a"), std::string("1"));
  cachet::save<void, picky_codec>(a, file);
  const std::string before = read_file(file);
  for (int i = 0; i < 20; ++i) a.put(std::string("k") + std::to_string(i), std::string("v"));
  a.put(std::string("b"), std::string("boom"));
  CHECK_THROWS_WITH((cachet::save<void, picky_codec>(a, file)), "cannot encode boom");
  CHECK(read_file(file) == before);
  CHECK(dir.files() == 1);
  CHECK_THROWS_AS(cachet::save(a, dir.path / "no" / "such" / "dir.snap"), cachet::snapshot_error);
  str_store b({.max_entries = 64}, clock);
  CHECK(cachet::load<void, picky_codec>(b, file).loaded == 1);
  CHECK(b.get(std::string("a")) == "1");
}

TEST_CASE("snapshot: the reader survives arbitrary bytes", "[snapshot]") {
  // Random edits of a valid file: bytes changed, cut, inserted; half of them resealed with a valid
  // checksum so that the record parser sees them. Every load either throws snapshot_error or
  // loads; nothing else (ASan and UBSan watch the rest).
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::manual_clock clock;
  str_store a({.max_entries = 64}, clock);
  for (int i = 0; i < 6; ++i) {
    a.put(std::string("key") + std::to_string(i), std::string(static_cast<std::size_t>(i * 3), 'v'),
          1h);
  }
  cachet::save(a, file);
  const std::string good = read_file(file);
  std::mt19937_64 rng(42);
  int thrown = 0, loaded = 0;
  for (int round = 0; round < 1500; ++round) {
    std::string bad = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % bad.size();
      switch (rng() % 3) {
        case 0:
          bad[at] = static_cast<char>(rng());
          break;
        case 1:
          bad.erase(at, 1 + rng() % 8);
          break;
        default:
          bad.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng())));
      }
      if (bad.empty()) bad.push_back('x');
    }
    if (round % 2 == 0) reseal(bad);
    write_file(file, bad);
    str_store b({.max_entries = 64}, clock);
    try {
      cachet::load(b, file);
      ++loaded;
    } catch (const cachet::snapshot_error&) {
      ++thrown;
    }
  }
  CHECK(thrown + loaded == 1500);
  CHECK(thrown > 1000);
}

TEST_CASE("snapshot: saving while other threads write", "[snapshot]") {
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::sharded_store<std::uint64_t, std::uint64_t> s({.max_entries = 1024});
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (std::uint64_t i = 0; !stop.load(); ++i)
        s.put((i * 2 + static_cast<std::uint64_t>(t)) % 512, i * 2 + static_cast<std::uint64_t>(t));
    });
  }
  for (int i = 0; i < 5; ++i) cachet::save(s, file);
  stop = true;
  for (auto& w : writers) w.join();
  cachet::sharded_store<std::uint64_t, std::uint64_t> b({.max_entries = 1024});
  const cachet::load_result r = cachet::load(b, file);
  CHECK(r.loaded <= 512);
  bool well_formed = true;
  b.for_each([&](const std::uint64_t& k, const std::uint64_t& v) {
    well_formed = well_formed && v % 512 == k;
  });
  CHECK(well_formed);
}

TEST_CASE("snapshot: concurrent saves to one path leave one whole snapshot", "[snapshot]") {
  // Each save writes its own temporary file and renames it over the path: whichever rename comes
  // last wins, the file is always complete, and no temporary is left behind.
  temp_dir dir;
  const fs::path file = dir.path / "s.snap";
  cachet::sharded_store<std::uint64_t, std::uint64_t> s({.max_entries = 1024});
  for (std::uint64_t k = 0; k < 300; ++k) s.put(k, k * 3);
  std::vector<std::thread> savers;
  for (int t = 0; t < 3; ++t) {
    savers.emplace_back([&] {
      for (int i = 0; i < 10; ++i) cachet::save(s, file);
    });
  }
  for (auto& t : savers) t.join();
  CHECK(dir.files() == 1);
  cachet::sharded_store<std::uint64_t, std::uint64_t> b({.max_entries = 1024});
  CHECK(cachet::load(b, file).loaded == 300);
  CHECK(b.get(299) == 897u);
}
