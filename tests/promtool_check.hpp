// Test helper: `promtool check metrics` over exposition text (Debian's prometheus package). FAILs
// the test with a message when promtool is not in PATH.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

namespace cachet_test {

// promtool's exit status (-1 if it did not exit) and everything it printed.
inline std::pair<int, std::string> promtool_check(const std::string& text) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    FAIL("promtool is not in PATH: the metrics tests need it (apt-get install prometheus)");
  }
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     (std::string("cachet-metrics-") + std::to_string(::getpid()));
  std::ofstream(file) << text;
  const std::string cmd = std::string("promtool check metrics < ") + file.string() + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int status = ::pclose(p);
  std::filesystem::remove(file);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace cachet_test
