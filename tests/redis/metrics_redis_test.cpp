// cachet/redis/metrics.hpp: a redis_store and an invalidation listener in a metrics_registry. No
// server is needed: stats() of a store that never connected, and of a listener whose server is
// not there, are what is written; promtool checks the text (it must be in PATH).
#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/metrics.hpp>
#include <cachet/redis/redis_store.hpp>
#include <catch2/catch.hpp>
#include <span>
#include <string>

#include "../promtool_check.hpp"

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
    return (std::string("\n") + text).find(std::string("\n") + line + "\n") != std::string::npos;
  };
  CHECK(has("cachet_redis_requests_total{cache=\"users\",result=\"miss\"} 2"));
  CHECK(has("cachet_redis_errors_total{cache=\"users\",kind=\"connection\"} 1"));
  CHECK(has("cachet_redis_breaker_state{cache=\"users\",state=\"open\"} 1.000000"));
  CHECK(has("cachet_redis_breaker_state{cache=\"users\",state=\"closed\"} 0.000000"));
  CHECK(has("cachet_redis_fast_failures_total{cache=\"users\"} 1"));
  CHECK(has("cachet_invalidation_connected{cache=\"users_bus\"} 0.000000"));

  const auto [rc, out] = cachet_test::promtool_check(text);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.empty());
}
