// cachet/redis/metrics.hpp: a redis_store and an invalidation listener in a metrics_registry. No
// server is needed: stats() of a store that never connected, and of a listener whose server is
// not there, are what is written; promtool checks the text (it must be in PATH).
#include <sys/wait.h>
#include <unistd.h>

#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/metrics.hpp>
#include <cachet/redis/redis_store.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>

TEST_CASE("redis metrics: redis_store and listener counters, promtool-clean", "[redis][metrics]") {
  cachet::redis_options o;
  o.unix_socket = "/nonexistent/cachet-metrics.sock";
  o.breaker.failures_to_open = 1;
  cachet::redis_store<std::string, std::string> store(o);
  CHECK_FALSE(store.get("k"));  // a connection error: the breaker opens
  CHECK_FALSE(store.get("k"));  // refused without network

  cachet::redis_invalidation_listener bus(o, {},
                                          {
                                              .on_keys = [](std::span<const std::string>) {},
                                              .on_flush = [] {},
                                              .on_state = [](bool) {},
                                          });

  cachet::metrics_registry m;
  m.add("users", store);
  m.add("users_bus", bus);
  const std::string text = m.prometheus_text();
  INFO(text);
  const auto has = [&](const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
  };
  CHECK(has("cachet_redis_requests_total{cache=\"users\",result=\"miss\"} 2"));
  CHECK(has("cachet_redis_errors_total{cache=\"users\",kind=\"connection\"} 1"));
  CHECK(has("cachet_redis_breaker_state{cache=\"users\",state=\"open\"} 1.000000"));
  CHECK(has("cachet_redis_breaker_state{cache=\"users\",state=\"closed\"} 0.000000"));
  CHECK(has("cachet_redis_fast_failures_total{cache=\"users\"} 1"));
  CHECK(has("cachet_invalidation_connected{cache=\"users_bus\"} 0.000000"));

  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    FAIL("promtool is not in PATH: the metrics test needs it (apt-get install prometheus)");
  }
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("cachet-redis-metrics-" + std::to_string(::getpid()));
  std::ofstream(file) << text;
  const std::string cmd = "promtool check metrics < " + file.string() + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int status = ::pclose(p);
  std::filesystem::remove(file);
  INFO(out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.empty());
}
