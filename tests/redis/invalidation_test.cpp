// cachet/redis/invalidation_listener.hpp against a private redis-server: writes, deletes, expiry
// and flushes reach the handlers; a killed subscriber, a stopped server and a restarted server
// are reported as on_state(false) then on_state(true), and writes after the reconnect arrive; a
// write from a second process arrives. Handlers append to a log under a mutex; every wait is for
// an event, bounded (5 s); no sleep decides an outcome.
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/redis_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using cachet_test::redis_server;

struct event {
  enum kind_t { keys, flush, up, down } kind;
  std::vector<std::string> names;
};

// What the handlers saw, in order. wait() blocks until a predicate over the events holds, at most
// `limit`.
class event_log {
 public:
  cachet::invalidation_handlers handlers() {
    return {
        .on_keys =
            [this](std::span<const std::string> names) {
              push({event::keys, std::vector<std::string>(names.begin(), names.end())});
            },
        .on_flush =
            [this] {
              push({event::flush, {}});
            },
        .on_state =
            [this](bool up) {
              push({up ? event::up : event::down, {}});
            },
    };
  }

  // The number of events so far: a mark to wait for events after it.
  std::size_t mark() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }

  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds limit = 5s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return pred(events_); });
  }

  // Waits for an event of `kind` (with `name` among its keys, for keys) at or after `from`.
  bool wait_for(event::kind_t kind, std::size_t from = 0, std::string_view name = {}) {
    return wait([&](const std::vector<event>& es) { return find(es, kind, from, name); });
  }
  bool seen(event::kind_t kind, std::size_t from = 0, std::string_view name = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    return find(events_, kind, from, name);
  }
  std::size_t count(event::kind_t kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<std::size_t>(std::count_if(events_.begin(), events_.end(),
                                                  [&](const event& e) { return e.kind == kind; }));
  }
  std::vector<event::kind_t> states() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<event::kind_t> out;
    for (const event& e : events_) {
      if (e.kind == event::up || e.kind == event::down) out.push_back(e.kind);
    }
    return out;
  }

 private:
  static bool find(const std::vector<event>& es, event::kind_t kind, std::size_t from,
                   std::string_view name) {
    for (std::size_t i = from; i < es.size(); ++i) {
      if (es[i].kind != kind) continue;
      if (kind != event::keys || name.empty()) return true;
      if (std::find(es[i].names.begin(), es[i].names.end(), name) != es[i].names.end()) {
        return true;
      }
    }
    return false;
  }

  void push(event e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<event> events_;
};

cachet::redis_options conn_for(const redis_server& s) {
  cachet::redis_options o = s.options();
  o.key_prefix = "t:";
  o.connect_timeout = 500ms;
  o.command_timeout = 200ms;
  return o;
}

// Short heartbeats and backoff, so a loss is noticed and mended well inside the 5 s waits.
constexpr cachet::invalidation_options k_fast{
    .heartbeat_interval = 100ms,
    .heartbeat_timeout = 300ms,
    .reconnect_backoff_min = 10ms,
    .reconnect_backoff_max = 200ms,
};

// A SET by another client, then waits for its invalidation after `log`'s current mark.
bool write_is_heard(const redis_server& server, event_log& log, const std::string& key) {
  const std::size_t from = log.mark();
  if (server.raw({"SET", key, "v"}).type != REDIS_REPLY_STATUS) return false;
  return log.wait_for(event::keys, from, key);
}

}  // namespace

TEST_CASE("invalidation_listener: options are validated, naming the option", "[redis]") {
  event_log log;
  cachet::redis_options conn;
  const auto option_of = [&](cachet::invalidation_options o, cachet::invalidation_handlers h) {
    try {
      cachet::redis_invalidation_listener l(conn, o, std::move(h));
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return std::string("(none)");
  };
  CHECK(option_of({.heartbeat_interval = 0ms}, log.handlers()) == "heartbeat_interval");
  CHECK(option_of({.heartbeat_timeout = 2h}, log.handlers()) == "heartbeat_timeout");
  CHECK(option_of({.reconnect_backoff_min = 0ms}, log.handlers()) == "reconnect_backoff_min");
  CHECK(option_of({.reconnect_backoff_min = 50ms, .reconnect_backoff_max = 10ms}, log.handlers()) ==
        "reconnect_backoff_max");
  cachet::invalidation_handlers no_flush = log.handlers();
  no_flush.on_flush = nullptr;
  CHECK(option_of({}, no_flush) == "handlers.on_flush");
  conn.port = 0;
  CHECK(option_of({}, log.handlers()) == "port");
  CHECK(log.mark() == 0);
}

TEST_CASE("redis_store::key_from_redis strips the prefix and decodes", "[redis]") {
  cachet::redis_store<std::string, std::string> strings({.key_prefix = "t:"});
  CHECK(strings.key_from_redis("t:abc") == "abc");
  CHECK(strings.key_from_redis("t:") == "");
  CHECK_FALSE(strings.key_from_redis("u:abc"));
  CHECK_FALSE(strings.key_from_redis("t"));
  cachet::redis_store<std::int64_t, std::string> ints({.key_prefix = "n:"});
  CHECK(ints.key_from_redis("n:-42") == -42);
  CHECK_FALSE(ints.key_from_redis("n:12x"));
  CHECK_FALSE(ints.key_from_redis("t:12"));
}

TEST_CASE("invalidation_listener: writes, deletes, expiry under the prefix are heard; others not",
          "[redis]") {
  redis_server server;
  event_log log;
  cachet::redis_invalidation_listener bus(conn_for(server), k_fast, log.handlers());
  REQUIRE(log.wait_for(event::up));
  CHECK(bus.connected());

  SECTION("a redis_store with the same prefix writes; the name maps back to its key") {
    cachet::redis_store<std::string, std::string> store(conn_for(server));
    const std::size_t from = log.mark();
    REQUIRE(store.put("k1", "v1") == cachet::put_result::inserted);
    REQUIRE(log.wait_for(event::keys, from, "t:k1"));
    CHECK(store.key_from_redis("t:k1") == "k1");
  }
  SECTION("a key outside the prefix is not reported") {
    const std::size_t from = log.mark();
    REQUIRE(server.raw({"SET", "other:x", "v"}).type == REDIS_REPLY_STATUS);
    REQUIRE(write_is_heard(server, log, "t:after"));  // the server sends in order
    CHECK_FALSE(log.seen(event::keys, from, "other:x"));
  }
  SECTION("DEL") {
    REQUIRE(write_is_heard(server, log, "t:d"));
    const std::size_t from = log.mark();
    REQUIRE(server.raw({"DEL", "t:d"}).integer == 1);
    CHECK(log.wait_for(event::keys, from, "t:d"));
  }
  SECTION("expiry of a key with a short PX") {
    std::size_t from = log.mark();
    REQUIRE(server.raw({"SET", "t:e", "v", "PX", "50"}).type == REDIS_REPLY_STATUS);
    REQUIRE(log.wait_for(event::keys, from, "t:e"));  // the SET itself
    from = log.mark();
    CHECK(log.wait_for(event::keys, from, "t:e"));  // the expiry (active expire cycle)
    CHECK(server.raw({"EXISTS", "t:e"}).integer == 0);
  }
  SECTION("FLUSHALL is a null invalidation: on_flush") {
    const std::size_t from = log.mark();
    REQUIRE(server.raw({"FLUSHALL"}).type == REDIS_REPLY_STATUS);
    CHECK(log.wait_for(event::flush, from));
    CHECK(bus.stats().flushes == 1);
  }
  CHECK(bus.stats().disconnects == 0);
  CHECK(log.count(event::down) == 0);
}

TEST_CASE("invalidation_listener: a killed subscriber connection is reported and mended",
          "[redis]") {
  redis_server server;
  event_log log;
  cachet::redis_invalidation_listener bus(conn_for(server), k_fast, log.handlers());
  REQUIRE(log.wait_for(event::up));
  REQUIRE(write_is_heard(server, log, "t:before"));

  REQUIRE(server.raw({"CLIENT", "KILL", "TYPE", "pubsub"}).integer == 1);
  REQUIRE(log.wait([](const std::vector<event>& es) {
    return std::count_if(es.begin(), es.end(),
                         [](const event& e) { return e.kind == event::up; }) == 2;
  }));
  CHECK(log.states() == std::vector<event::kind_t>{event::up, event::down, event::up});
  // Tracking was enabled again, for the new subscriber.
  CHECK(write_is_heard(server, log, "t:after"));
  CHECK(bus.stats().disconnects == 1);
  CHECK(bus.stats().reconnects == 1);
}

TEST_CASE("invalidation_listener: a stopped server misses heartbeats; SIGCONT mends", "[redis]") {
  redis_server server;
  event_log log;
  cachet::redis_invalidation_listener bus(conn_for(server), k_fast, log.handlers());
  REQUIRE(log.wait_for(event::up));

  server.pause();
  const bool lost = log.wait_for(event::down);
  server.resume();
  REQUIRE(lost);
  CHECK(bus.stats().heartbeats_missed >= 1);
  REQUIRE(log.wait([](const std::vector<event>& es) { return es.back().kind == event::up; }));
  CHECK(write_is_heard(server, log, "t:after"));
}

TEST_CASE("invalidation_listener: a killed and restarted server", "[redis]") {
  redis_server server;
  event_log log;
  cachet::redis_invalidation_listener bus(conn_for(server), k_fast, log.handlers());
  REQUIRE(log.wait_for(event::up));

  server.kill();
  REQUIRE(log.wait_for(event::down));
  CHECK_FALSE(bus.connected());
  const std::size_t from = log.mark();
  server.restart();
  REQUIRE(log.wait_for(event::up, from));
  CHECK(write_is_heard(server, log, "t:after"));
  CHECK(bus.stats().reconnects == 1);
}

TEST_CASE("invalidation_listener: a server down from the start is found once it is up", "[redis]") {
  // The bus starts down: failed connects report nothing (the owner started suspended), and the
  // first bus established is the first on_state, true.
  redis_server server;
  server.kill();
  event_log log;
  cachet::redis_invalidation_listener bus(conn_for(server), k_fast, log.handlers());
  const auto start = std::chrono::steady_clock::now();
  while (bus.stats().failed_connects < 2 && std::chrono::steady_clock::now() - start < 5s) {
    std::this_thread::yield();
  }
  REQUIRE(bus.stats().failed_connects >= 2);
  CHECK_FALSE(bus.connected());
  server.restart();
  REQUIRE(log.wait_for(event::up));
  CHECK(log.states() == std::vector<event::kind_t>{event::up});
  CHECK(write_is_heard(server, log, "t:x"));
}

TEST_CASE("invalidation_listener: destruction while the server is stopped returns", "[redis]") {
  redis_server server;
  event_log log;
  cachet::redis_options conn = conn_for(server);
  conn.command_timeout = 2s;  // the reconnect blocks in a command: the destructor must cut it
  auto bus = std::make_unique<cachet::redis_invalidation_listener>(conn, k_fast, log.handlers());
  REQUIRE(log.wait_for(event::up));
  server.pause();
  const bool lost = log.wait_for(event::down);
  auto destroyed = std::async(std::launch::async, [&bus] { bus.reset(); });
  const bool returned = destroyed.wait_for(10s) == std::future_status::ready;
  server.resume();  // lets a hung destructor finish, so a failure does not hang the run
  CHECK(lost);
  REQUIRE(returned);
}

TEST_CASE("invalidation_listener: a write from another process is heard", "[redis]") {
  redis_server server;
  // Fork before the listener's thread exists: the child is a single-threaded copy that waits for
  // the go byte, writes through its own redis_store, and exits.
  int go[2];
  REQUIRE(::pipe(go) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(go[1]);
    char byte = 0;
    if (::read(go[0], &byte, 1) != 1) ::_exit(2);
    cachet::redis_store<std::string, std::string> store(conn_for(server));
    ::_exit(store.put("from-child", "v") == cachet::put_result::inserted ? 0 : 1);
  }
  ::close(go[0]);

  event_log log;
  cachet::redis_invalidation_listener bus(conn_for(server), k_fast, log.handlers());
  const bool up = log.wait_for(event::up);
  const std::size_t from = log.mark();
  const char byte = 1;
  const bool sent = ::write(go[1], &byte, 1) == 1;
  ::close(go[1]);
  int status = 0;
  while (::waitpid(child, &status, 0) == -1 && errno == EINTR) {
  }
  REQUIRE(up);
  REQUIRE(sent);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(log.wait_for(event::keys, from, "t:from-child"));
}
