// cachet/redis/redis_store.hpp, data path: the Store concept, options, round trips (binary-safe),
// TTLs as sent, key prefixes, SELECT, AUTH, put_if and its exclusion against erase, MGET and the
// pipelined put_all, values that do not decode, and the atomic put_if_absent (SET NX GET) and
// replace (a compare-and-set script). Each test runs its own redis-server.
#include <atomic>
#include <cachet/cachet.hpp>
#include <cachet/redis/redis_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using cachet_test::redis_server;
using string_store = cachet::redis_store<std::string, std::string>;

struct point {
  std::int32_t x;
  std::int32_t y;
  double w;
  friend bool operator==(const point&, const point&) = default;
};

// The Store concept, for the store, its rebinds and another clock.
static_assert(cachet::store<string_store>);
static_assert(cachet::store<string_store::rebind_value<int>>);
static_assert(cachet::store<cachet::redis_store<int, point>>);
static_assert(
    cachet::store<cachet::redis_store<std::int64_t, std::string, cachet::string_codec,
                                      cachet::decimal_codec<std::int64_t>, cachet::manual_clock>>);
static_assert(cachet::check_store<string_store>());

cachet::redis_options opts_for(const redis_server& s, std::string prefix = "t:") {
  cachet::redis_options o = s.options();
  o.key_prefix = std::move(prefix);
  return o;
}

}  // namespace

TEST_CASE("redis_store: options are validated up front, naming the option", "[redis]") {
  auto bad = [](auto mutate) {
    cachet::redis_options o;
    mutate(o);
    try {
      string_store s(o);
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return std::string("(accepted)");
  };
  CHECK(bad([](auto& o) { o.host = ""; }) == "host");
  CHECK(bad([](auto& o) { o.port = 0; }) == "port");
  CHECK(bad([](auto& o) { o.port = 65536; }) == "port");
  CHECK(bad([](auto& o) { o.unix_socket = std::string(108, 'x'); }) == "unix_socket");
  CHECK(bad([](auto& o) { o.connect_timeout = 0ms; }) == "connect_timeout");
  CHECK(bad([](auto& o) { o.command_timeout = 2h; }) == "command_timeout");
  CHECK(bad([](auto& o) { o.pool_size = 0; }) == "pool_size");
  CHECK(bad([](auto& o) { o.username = "u"; }) == "username");
  CHECK(bad([](auto& o) { o.database = -1; }) == "database");
  CHECK(bad([](auto& o) { o.default_ttl = 0ns; }) == "default_ttl");
  CHECK(bad([](auto& o) { o.breaker.failures_to_open = 0; }) == "breaker.failures_to_open");
  CHECK(bad([](auto& o) { o.breaker.open_for = 0ns; }) == "breaker.open_for");
  CHECK(bad([](auto& o) { o.max_pending_invalidations = 0; }) == "max_pending_invalidations");
  CHECK(bad([](auto& o) { o.port = 0, o.unix_socket = "/tmp/x.sock"; }) == "(accepted)");
  CHECK(bad([](auto&) {}) == "(accepted)");  // and constructing connects nothing
}

TEST_CASE("redis_store: round trips strings, structs and binary keys and values", "[redis]") {
  redis_server server;

  SECTION("strings; hits and misses counted by get, not by peek") {
    string_store s(opts_for(server));
    CHECK(s.put("k", "v") == cachet::put_result::inserted);
    CHECK(s.get("k") == "v");
    CHECK(s.peek("k") == "v");
    CHECK(s.contains("k"));
    CHECK_FALSE(s.get("absent"));
    CHECK_FALSE(s.contains("absent"));
    CHECK(s.stats().hits == 1);
    CHECK(s.stats().misses == 1);
    CHECK(server.raw({"GET", "t:k"}).str == "v");
    CHECK(s.erase("k"));
    CHECK_FALSE(s.erase("k"));
    CHECK_FALSE(s.get("k"));
    CHECK(server.raw({"EXISTS", "t:k"}).integer == 0);
  }
  SECTION("a trivially copyable struct under an integer key (decimal text)") {
    cachet::redis_store<int, point> s(opts_for(server));
    CHECK(s.put(42, point{1, -2, 0.5}) == cachet::put_result::inserted);
    CHECK(s.get(42) == point{1, -2, 0.5});
    CHECK(server.raw({"STRLEN", "t:42"}).integer == static_cast<long long>(sizeof(point)));
  }
  SECTION("NULs and high bytes in keys and values") {
    string_store s(opts_for(server, std::string("p\0:", 3)));
    const std::string key("a\0b\r\n", 5);
    const std::string value("\0\xff\0 x", 5);
    CHECK(s.put(key, value) == cachet::put_result::inserted);
    CHECK(s.get(key) == value);
    CHECK_FALSE(s.get(std::string("a", 1)));  // the key is not cut at its NUL
    CHECK(server.raw({"GET", std::string("p\0:", 3) + key}).str == value);
  }
}

TEST_CASE("redis_store: TTLs go out as PX in whole milliseconds, rounded up", "[redis]") {
  redis_server server;
  server.take_commands();
  cachet::redis_options o = opts_for(server);
  o.default_ttl = 2s;
  string_store s(o);
  s.put("a", "v", 1500ms);
  s.put("b", "v", 1ns);
  s.put("c", "v", 1500001us);
  s.put("d", "v", cachet::no_expiry);
  s.put("e", "v", std::chrono::hours::max());  // saturates to no expiry
  s.put("f", "v");                             // the default TTL
  using args = std::vector<std::string>;
  CHECK(server.take_commands() == std::vector<args>{
                                      {"SET", "t:a", "v", "PX", "1500"},
                                      {"SET", "t:b", "v", "PX", "1"},
                                      {"SET", "t:c", "v", "PX", "1501"},
                                      {"SET", "t:d", "v"},
                                      {"SET", "t:e", "v"},
                                      {"SET", "t:f", "v", "PX", "2000"},
                                  });
  const long long pttl = server.raw({"PTTL", "t:a"}).integer;
  CHECK(pttl > 0);
  CHECK(pttl <= 1500);
  CHECK(server.raw({"PTTL", "t:d"}).integer == -1);
  CHECK_THROWS_AS(s.put("x", "v", 0ms), std::invalid_argument);
  CHECK_THROWS_AS(s.put("x", "v", -1s), std::invalid_argument);
}

TEST_CASE("redis_store: a key prefix isolates two stores on one server", "[redis]") {
  redis_server server;
  string_store a(opts_for(server, "a:"));
  string_store b(opts_for(server, "b:"));
  a.put("k", "from a");
  b.put("k", "from b");
  CHECK(a.get("k") == "from a");
  CHECK(b.get("k") == "from b");
  a.erase("k");
  CHECK_FALSE(a.get("k"));
  CHECK(b.get("k") == "from b");
  CHECK(server.raw({"EXISTS", "a:k"}).integer == 0);
  CHECK(server.raw({"EXISTS", "b:k"}).integer == 1);
}

TEST_CASE("redis_store: SELECT isolates databases", "[redis]") {
  redis_server server;
  cachet::redis_options o0 = opts_for(server);
  cachet::redis_options o3 = opts_for(server);
  o3.database = 3;
  string_store db0(o0);
  string_store db3(o3);
  db0.put("k", "zero");
  db3.put("k", "three");
  CHECK(db0.get("k") == "zero");
  CHECK(db3.get("k") == "three");
  CHECK(server.raw({"GET", "t:k"}).str == "zero");  // raw() talks to database 0
  db3.erase("k");
  CHECK(db0.get("k") == "zero");
}

TEST_CASE("redis_store: AUTH over TCP, good and bad passwords", "[redis]") {
  auto server = redis_server::tcp("s3cret");
  SECTION("the right password, with and without the ACL user name") {
    cachet::redis_options o = opts_for(*server);
    REQUIRE(o.port == server->port());
    string_store s(o);
    CHECK(s.put("k", "v") == cachet::put_result::inserted);
    CHECK(s.get("k") == "v");
    o.username = "default";
    string_store with_user(o);
    CHECK(with_user.get("k") == "v");
  }
  SECTION("a wrong password: reads miss, writes are refused, nothing throws") {
    cachet::redis_options o = opts_for(*server);
    o.password = "wrong";
    string_store s(o);
    CHECK_FALSE(s.get("k"));
    CHECK(s.put("k", "v") == cachet::put_result::rejected_unavailable);
    CHECK(s.stats().connection_errors == 2);
    CHECK(s.stats().misses == 1);
    CHECK(server->raw({"EXISTS", "t:k"}).integer == 0);
  }
  SECTION("no password where one is required") {
    cachet::redis_options o = opts_for(*server);
    o.password.clear();
    string_store s(o);
    CHECK_FALSE(s.get("k"));  // NOAUTH on GET: the server refused the read
    CHECK(s.put("k", "v") == cachet::put_result::rejected_unavailable);
    // GET, SET, and the DEL that retries the refused put's pending invalidation: all NOAUTH.
    CHECK(s.stats().server_errors == 3);
    CHECK(s.stats().pending_invalidations == 1);
  }
}

TEST_CASE("redis_store: put_if writes only when still_valid() holds", "[redis]") {
  redis_server server;
  string_store s(opts_for(server));
  server.take_commands();
  CHECK(s.put_if("k", "v", []() noexcept { return false; }) == cachet::put_result::rejected_stale);
  CHECK(server.take_commands().empty());  // nothing was sent
  CHECK_FALSE(s.get("k"));
  CHECK(s.put_if("k", "v", 5s, []() noexcept { return true; }) == cachet::put_result::inserted);
  CHECK(s.get("k") == "v");
  CHECK(server.raw({"PTTL", "t:k"}).integer > 0);
}

// erase() of the key cannot run between put_if's still_valid() and its SET: it waits for the SET,
// then removes what put_if wrote.
TEST_CASE("redis_store: erase cannot slip between still_valid() and the SET", "[redis]") {
  redis_server server;
  string_store s(opts_for(server));
  std::latch in_check(1);
  std::latch gate(1);
  std::atomic<bool> erase_returned{false};

  std::thread filler([&] {
    s.put_if("k", "filled", [&]() noexcept {
      in_check.count_down();
      gate.wait();
      return true;
    });
  });
  in_check.wait();  // put_if is inside still_valid()
  auto eraser = std::async(std::launch::async, [&] {
    const bool r = s.erase("k");
    erase_returned = true;
    return r;
  });
  // The erase must be blocked on the key's stripe for as long as put_if is. Give it every chance
  // to overtake (up to 300 ms); with the exclusion in place it cannot, however long we wait.
  for (int i = 0; i < 30 && !erase_returned; ++i) std::this_thread::sleep_for(10ms);
  CHECK_FALSE(erase_returned);
  gate.count_down();
  filler.join();
  CHECK(eraser.get());  // it removed the value put_if wrote
  CHECK_FALSE(s.get("k"));
  CHECK(server.raw({"EXISTS", "t:k"}).integer == 0);
}

TEST_CASE("redis_store: a put_all that spans every stripe", "[redis]") {
  // put_all holds the stripe mutex of each of its keys while its pipeline runs. 2,000 keys fall in
  // every stripe (the hash is seeded per process, so fewer might miss one), so this is the most
  // mutexes one call holds at once; under ThreadSanitizer, whose deadlock detector aborts a thread
  // holding more than 64, it checks the stripe count leaves room for the pool's and map's mutexes.
  redis_server server;
  string_store s(opts_for(server));
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < 2000; ++i) {
    std::string key("k");
    key.append(std::to_string(i));
    items.emplace_back(key, key);
  }
  const std::vector<cachet::put_result> results = s.put_all(items);
  CHECK(results == std::vector<cachet::put_result>(items.size(), cachet::put_result::inserted));
  CHECK(server.raw({"DBSIZE"}).integer == 2000);
  CHECK(s.get("k1999") == "k1999");
}

TEST_CASE("redis_store: get_all is one MGET, put_all one pipeline", "[redis]") {
  redis_server server;
  string_store s(opts_for(server));
  const std::vector<std::pair<std::string, std::string>> items{
      {"a", "1"}, {std::string("b\0", 2), std::string("2\0", 2)}, {"c", "3"}};
  server.take_commands();
  const auto results = s.put_all(items, 10s);
  CHECK(results == std::vector<cachet::put_result>(3, cachet::put_result::inserted));
  const std::vector<std::string> keys{"a", std::string("b\0", 2), "absent", "c"};
  const auto values = s.get_all(keys);
  REQUIRE(values.size() == 4);
  CHECK(values[0] == "1");
  CHECK(values[1] == std::string("2\0", 2));
  CHECK_FALSE(values[2]);
  CHECK(values[3] == "3");
  CHECK(s.stats().hits == 3);
  CHECK(s.stats().misses == 1);
  const auto commands = server.take_commands();
  REQUIRE(commands.size() == 4);  // three SETs, then one MGET of four keys
  CHECK(commands[0] == std::vector<std::string>{"SET", "t:a", "1", "PX", "10000"});
  CHECK(commands[3].size() == 5);
  CHECK(commands[3][0] == "MGET");
  CHECK(server.raw({"PTTL", "t:c"}).integer > 0);
  CHECK(s.get_all(std::vector<std::string>{}).empty());
}

TEST_CASE("redis_store: a value that does not decode is a miss, counted and deleted", "[redis]") {
  redis_server server;
  cachet::redis_store<std::string, std::int64_t> s(opts_for(server));
  REQUIRE(s.put("n", 7) == cachet::put_result::inserted);
  CHECK(s.get("n") == 7);

  SECTION("bytes of the wrong length") {
    server.raw({"SET", "t:n", "xyz"});
    CHECK_FALSE(s.get("n"));
    CHECK(s.stats().decode_failures == 1);
    CHECK(s.stats().misses == 1);
    CHECK(server.raw({"EXISTS", "t:n"}).integer == 0);
  }
  SECTION("a key of another type (WRONGTYPE)") {
    server.raw({"DEL", "t:n"});
    server.raw({"LPUSH", "t:n", "x"});
    CHECK_FALSE(s.get("n"));
    CHECK(s.stats().decode_failures == 1);
    CHECK(server.raw({"EXISTS", "t:n"}).integer == 0);
  }
  SECTION("in get_all") {
    server.raw({"SET", "t:n", "xyz"});
    s.put("m", 8);
    const auto v = s.get_all(std::vector<std::string>{"n", "m"});
    CHECK_FALSE(v[0]);
    CHECK(v[1] == 8);
    CHECK(s.stats().decode_failures == 1);
    CHECK(server.raw({"EXISTS", "t:n"}).integer == 0);
  }
  CHECK(s.stats().breaker == cachet::breaker_state::closed);
}

TEST_CASE("redis_store: put_if_absent is SET NX GET", "[redis]") {
  redis_server server;
  string_store s(opts_for(server));
  CHECK(s.put_if_absent("k", "first") == std::nullopt);  // inserted
  CHECK(s.get("k") == "first");
  CHECK(server.raw({"PTTL", "t:k"}).integer == -1);  // the default TTL: none
  CHECK(s.put_if_absent("k", "second") == "first");  // present: unchanged, its value returned
  CHECK(s.get("k") == "first");
  CHECK(s.put_if_absent("t", "v", 5s) == std::nullopt);
  CHECK(server.raw({"PTTL", "t:t"}).integer > 0);
  CHECK(s.stats().hits == 2);  // put_if_absent's answer is not a hit

  SECTION("a value that does not decode is deleted, not returned") {
    server.raw({"LPUSH", "t:l", "x"});
    CHECK(s.put_if_absent("l", "v") == std::nullopt);
    CHECK(s.stats().decode_failures == 1);
    CHECK(server.raw({"EXISTS", "t:l"}).integer == 0);
    CHECK_FALSE(s.contains("l"));  // nothing was written: contains() tells it from an insert
  }
  SECTION("Redis down: nothing written, nullopt") {
    server.kill();
    CHECK(s.put_if_absent("n", "v") == std::nullopt);
    CHECK_FALSE(s.contains("n"));
  }
  SECTION("one winner among threads, across two stores (processes alike)") {
    string_store other(opts_for(server));
    std::vector<std::optional<std::string>> got(8);
    std::latch go(8);
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        got[i] = (i % 2 == 0 ? s : other).put_if_absent("race", std::to_string(i));
      });
    }
    for (std::thread& t : threads) t.join();
    int winners = 0;
    const std::optional<std::string> stored = s.get("race");
    REQUIRE(stored);
    for (int i = 0; i < 8; ++i) {
      if (!got[i]) {
        ++winners;
        CHECK(*stored == std::to_string(i));
      } else {
        CHECK(got[i] == stored);
      }
    }
    CHECK(winners == 1);
  }
}

TEST_CASE("redis_store: replace is a compare-and-set in one script", "[redis]") {
  redis_server server;
  string_store s(opts_for(server));
  CHECK_FALSE(s.replace("k", "a", "b"));  // absent
  CHECK_FALSE(s.contains("k"));
  s.put("k", "a");
  CHECK_FALSE(s.replace("k", "x", "b"));  // not what it holds
  CHECK(s.get("k") == "a");
  CHECK(s.replace("k", "a", "b"));
  CHECK(s.get("k") == "b");

  SECTION("with a default TTL, the new value gets it") {
    cachet::redis_options o = opts_for(server);
    o.default_ttl = 5s;
    string_store ttl_store(o);
    CHECK(ttl_store.replace("k", "b", "c"));
    CHECK(server.raw({"PTTL", "t:k"}).integer > 0);
  }
  SECTION("no lost update: threads of two stores increment one counter by compare-and-set") {
    string_store other(opts_for(server));
    s.put("n", "0");
    std::latch go(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        string_store& mine = t % 2 == 0 ? s : other;
        go.arrive_and_wait();
        for (int i = 0; i < 50; ++i) {
          for (int tries = 0; tries < 100'000; ++tries) {  // bounded
            const std::optional<std::string> v = mine.get("n");
            if (v && mine.replace("n", *v, std::to_string(std::stoi(*v) + 1))) break;
          }
        }
      });
    }
    for (std::thread& th : threads) th.join();
    CHECK(s.get("n") == "200");
  }
}

// An erase refused by the open breaker leaves the old value in Redis as a pending invalidation;
// put_if_absent and replace must not take that value for the key's current one. (The breaker
// runs on a manual clock.)
TEST_CASE("redis_store: put_if_absent and replace see through a pending invalidation", "[redis]") {
  redis_server server;
  cachet::redis_options o = opts_for(server);
  o.command_timeout = 100ms;
  o.breaker.failures_to_open = 1;
  o.breaker.open_for = 10s;
  cachet::manual_clock clock;
  cachet::redis_store<std::string, std::string, cachet::string_codec, cachet::string_codec,
                      cachet::manual_clock>
      s(o, clock);
  REQUIRE(s.put("k", "old") == cachet::put_result::inserted);
  server.pause();
  CHECK_FALSE(s.get("other"));  // times out: the breaker opens
  server.resume();
  REQUIRE(s.stats().breaker == cachet::breaker_state::open);
  CHECK_FALSE(s.erase("k"));  // refused by the breaker: nothing sent
  REQUIRE(s.stats().pending_invalidations == 1);
  REQUIRE(server.raw({"EXISTS", "t:k"}).integer == 1);  // the removed value is still in Redis
  clock.advance(10s);                                   // the next command is the breaker's probe
  SECTION("put_if_absent deletes it first, then inserts") {
    CHECK(s.put_if_absent("k", "new") == std::nullopt);
    CHECK(s.get("k") == "new");
  }
  SECTION("replace of the removed value fails") {
    CHECK_FALSE(s.replace("k", "old", "new"));
    CHECK_FALSE(s.get("k"));
  }
  CHECK(s.stats().pending_invalidations == 0);
}

static_assert(cachet::put_if_absent_store<string_store>);
static_assert(cachet::put_if_absent_store<cachet::sharded_store<std::string, std::string>>);

TEST_CASE("redis_store: concurrent callers share the pool", "[redis]") {
  redis_server server;
  cachet::redis_options o = opts_for(server);
  o.pool_size = 2;
  string_store s(o);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string key = "k";
        key += std::to_string((t * 7 + i) % 10);
        switch (i % 4) {
          case 0:
            s.put(key, key);
            break;
          case 1:
            if (auto v = s.get(key); v && *v != key) ++wrong;
            break;
          case 2:
            s.put_if(key, key, []() noexcept { return true; });
            break;
          default:
            s.erase(key);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  const auto st = s.stats();
  CHECK(st.timeouts + st.connection_errors + st.fast_failures == 0);
  CHECK(st.connect_attempts <= 2);
}
