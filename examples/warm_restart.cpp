// Warm restart: a service saves its cache at shutdown and loads it at startup, so the first
// requests after a deploy hit the cache instead of the database (cachet/snapshot.hpp).
//
// Here one "process" fills a cache of user names and saves it; a second cache (the restarted
// process) loads the file and serves the same names with no load at all. Entries keep the time to
// live they had left. Exits non-zero if anything comes back wrong.
#include <unistd.h>

#include <cachet/cachet.hpp>
#include <cachet/snapshot.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

int main() {
  using namespace std::chrono_literals;
  using store_t = cachet::sharded_store<std::string, std::string>;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("cachet_warm_restart_example_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::filesystem::path file = dir / "users.snap";
  int failures = 0;
  {
    store_t users({.max_entries = 10'000});  // before the restart
    for (int id = 0; id < 1000; ++id) {
      users.put(std::string("user:") + std::to_string(id),
                std::string("name ") + std::to_string(id), 10min);
    }
    const cachet::save_result saved = cachet::save(users, file);  // atomic: temp file + rename
    std::printf("saved %zu entries, %llu bytes\n", saved.entries,
                static_cast<unsigned long long>(saved.bytes));
    failures += saved.entries == 1000 ? 0 : 1;
  }
  {
    store_t users({.max_entries = 10'000});  // after the restart: empty until loaded
    const cachet::load_result loaded = cachet::load(users, file);
    std::printf("loaded %zu entries (%zu expired while down, %zu refused)\n", loaded.loaded,
                loaded.expired, loaded.rejected);
    failures += loaded.loaded == 1000 ? 0 : 1;
    failures += users.get(std::string("user:42")) == "name 42" ? 0 : 1;
    failures += users.stats().hits == 1 ? 0 : 1;  // served from the cache, not loaded
  }
  std::filesystem::remove_all(dir);
  std::printf("%s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
