// The shared cache traces read correctly: every file in ../shared/traces decompresses (through
// gzip/zstd, see bench/sim/trace_input.hpp) and parses to the request and distinct-key counts its
// README gives. The hit-ratio validation against the ARC paper and libCacheSim runs the optimised
// cachet-sim instead (ctest entry sim_traces, bench/sim/check_traces.cmake): in a Debug build of
// this binary the store replays well under a million accesses per second, too slow for the ~22
// million accesses of that validation.
//
// The traces live outside the repository, in ../shared/traces next to the checkout (the build
// passes the path as CACHET_TRACES_DIR; the environment variable of that name overrides it). When
// the folder is absent the test warns and passes.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "sim/trace_input.hpp"
#include "sim/trace_reader.hpp"

#ifndef CACHET_TRACES_DIR
#define CACHET_TRACES_DIR ""
#endif

namespace {

// The traces folder: $CACHET_TRACES_DIR if set, else the one the build names.
std::filesystem::path traces_dir() {
  const char* env = std::getenv("CACHET_TRACES_DIR");
  return env != nullptr && *env != '\0' ? env : CACHET_TRACES_DIR;
}

bool usable(const std::filesystem::path& dir) {
  std::error_code ec;
  return !dir.empty() && std::filesystem::is_directory(dir, ec);
}

struct trace_file {
  const char* name;  // as in the README table
  const char* file;
  cachet_sim::trace_format format;
  std::uint64_t requests;  // from the README's file table
  std::uint64_t unique;
};

constexpr trace_file k_traces[] = {
    {"gli", "lirs-gli.trace.gz", cachet_sim::trace_format::lirs, 6015, 2529},
    {"cs", "lirs-cs.trace.gz", cachet_sim::trace_format::lirs, 6781, 1409},
    {"cpp", "lirs-cpp.trace.gz", cachet_sim::trace_format::lirs, 9047, 1223},
    {"ps", "lirs-ps.trace.gz", cachet_sim::trace_format::lirs, 10448, 3083},
    {"sprite", "lirs-sprite.trace.gz", cachet_sim::trace_format::lirs, 133996, 7075},
    {"multi2", "lirs-multi2.trace.gz", cachet_sim::trace_format::lirs, 26311, 5684},
    {"2_pools", "lirs-2_pools.trace.gz", cachet_sim::trace_format::lirs, 100000, 9939},
    {"loop", "lirs-loop.trace.gz", cachet_sim::trace_format::lirs, 505500, 1011},
    {"OLTP", "arc-OLTP.lis.zst", cachet_sim::trace_format::arc, 914145, 186880},
};

}  // namespace

TEST_CASE("traces: every shared trace reads with the README's request and key counts",
          "[sim][traces]") {
  const std::filesystem::path dir = traces_dir();
  if (!usable(dir)) {
    WARN("no traces folder at '" << dir.string() << "': skipped");
    return;
  }
  for (const auto& tf : k_traces) {
    INFO(tf.file);
    const auto t = cachet_sim::read_trace_file((dir / tf.file).string(), {.format = tf.format});
    CHECK(t.keys.size() == tf.requests);
    CHECK(t.unique_keys() == tf.unique);
    CHECK(t.bad_lines == 0);
  }
}
