// cachet/redis/lease_loader.hpp and redis_store's try_lease/release_lease: the lease's Redis
// semantics (NX, PX, compare-and-delete), then two "processes" (two redis_store objects, so two
// sets of connections) on one hot key: the waiter is served by the leader's load, takes over when
// the leader throws or crashes, loads itself after max_wait or when Redis is down; and a real
// fork()ed process. Loaders are gated with condition variables; every wait is bounded.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cachet/cache_aside.hpp>
#include <cachet/redis/lease_loader.hpp>
#include <cachet/redis/redis_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using cachet_test::redis_server;
using string_store = cachet::redis_store<std::string, std::string>;

cachet::redis_options opts_for(const redis_server& s) {
  cachet::redis_options o = s.options();
  o.key_prefix = "t:";
  o.default_ttl = std::chrono::seconds(60);
  return o;
}

// Polls `cond` every millisecond for up to 10 s; true as soon as it holds.
template <class Cond>
bool eventually(Cond cond) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return cond();
}

// A loader's gate: enter() says "I am in the loader" and blocks until open() (at most 10 s).
struct gate {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool opened = false;

  void enter() {
    std::unique_lock<std::mutex> l(mu);
    entered = true;
    cv.notify_all();
    cv.wait_for(l, 10s, [&] { return opened; });
  }
  bool wait_entered() {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, 10s, [&] { return entered; });
  }
  void open() {
    std::lock_guard<std::mutex> l(mu);
    opened = true;
    cv.notify_all();
  }
};

// string_codec whose encode() first runs a hook: lets a test look at Redis while a put() is on
// its way, i.e. between the leader's load and its release.
struct hooked_codec {
  static inline std::function<void()> on_encode;
  static void encode(const std::string& value, std::string& out) {
    if (on_encode) on_encode();
    out.append(value);
  }
  static std::optional<std::string> decode(std::string_view bytes) { return std::string(bytes); }
};

using func_loader = std::function<std::optional<std::string>(const std::string&)>;

}  // namespace

TEST_CASE("lease: try_lease is SET NX PX under the documented key; release compares", "[redis]") {
  redis_server server;
  string_store s(opts_for(server));
  const std::string lk = "cachet:lease:{t:hot}";
  REQUIRE(s.lease_key("hot") == lk);

  REQUIRE(s.put("hot", "data") == cachet::put_result::inserted);
  CHECK(s.try_lease("hot", "tok-1", 5000ms) == cachet::lease_result::acquired);
  CHECK(server.raw({"GET", lk}).str == "tok-1");
  const long long pttl = server.raw({"PTTL", lk}).integer;
  CHECK(pttl > 0);
  CHECK(pttl <= 5000);
  CHECK(s.get("hot") == "data");  // the lease is not the data key

  CHECK(s.try_lease("hot", "tok-2", 5000ms) == cachet::lease_result::held);  // NX
  CHECK(server.raw({"GET", lk}).str == "tok-1");                             // not overwritten
  CHECK_FALSE(s.release_lease("hot", "tok-2"));                              // wrong token
  CHECK(server.raw({"GET", lk}).str == "tok-1");                             // still there
  CHECK(s.release_lease("hot", "tok-1"));
  CHECK(server.raw({"EXISTS", lk}).integer == 0);
  CHECK_FALSE(s.release_lease("hot", "tok-1"));  // already gone

  // A lease that ran out: its release is lost, and does not touch a newer holder's lease.
  CHECK(s.try_lease("hot", "tok-3", 50ms) == cachet::lease_result::acquired);
  REQUIRE(eventually([&] { return server.raw({"EXISTS", lk}).integer == 0; }));
  CHECK(s.try_lease("hot", "tok-4", 5000ms) == cachet::lease_result::acquired);
  CHECK_FALSE(s.release_lease("hot", "tok-3"));
  CHECK(server.raw({"GET", lk}).str == "tok-4");

  const cachet::redis_stats st = s.stats();
  CHECK(st.leases_acquired == 3);
  CHECK(st.leases_contended == 1);
  CHECK(st.leases_released == 1);
  CHECK(st.lease_release_lost == 3);

  CHECK_THROWS_AS(s.try_lease("hot", "t", 0ms), std::invalid_argument);
  CHECK_THROWS_AS(s.try_lease("hot", "", 10ms), std::invalid_argument);

  server.kill();
  CHECK(s.try_lease("hot", "tok-5", 5000ms) == cachet::lease_result::unavailable);
  CHECK_FALSE(s.release_lease("hot", "tok-4"));
  CHECK(s.stats().connection_errors >= 1);
}

TEST_CASE("lease: options are validated, naming the option", "[redis]") {
  redis_server server;
  string_store s(opts_for(server));
  func_loader l = [](const std::string&) { return std::optional<std::string>("v"); };
  auto bad = [&](cachet::lease_options o) {
    try {
      cachet::lease_loader ll(s, l, o);
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return std::string("(accepted)");
  };
  CHECK(bad({.lease = 0ms}) == "lease");
  CHECK(bad({.max_wait = -1ms}) == "max_wait");
  CHECK(bad({.poll_min = 0ms}) == "poll_min");
  CHECK(bad({.poll_min = 5ms, .poll_max = 4ms}) == "poll_max");
  CHECK(bad({.max_wait = 0ms}) == "(accepted)");

  auto bad_store = [&](std::string key_prefix, std::string lease_prefix) {
    cachet::redis_options o = server.options();
    o.key_prefix = std::move(key_prefix);
    o.lease_prefix = std::move(lease_prefix);
    try {
      string_store st(o);
    } catch (const cachet::invalid_option& e) {
      return e.option();
    }
    return std::string("(accepted)");
  };
  CHECK(bad_store("t:", "") == "lease_prefix");
  CHECK(bad_store("t:", "l{x}:") == "lease_prefix");
  CHECK(bad_store("cachet:", "cachet:lease:") == "lease_prefix");
  CHECK(bad_store("t:", "t") == "lease_prefix");
  CHECK(bad_store("t:", "lease:") == "(accepted)");
  CHECK(bad_store("", "cachet:lease:") == "(accepted)");
}

TEST_CASE("lease: the waiter gets the leader's value without loading", "[redis]") {
  redis_server server;
  string_store a(opts_for(server));  // two "processes": separate stores, separate connections
  string_store b(opts_for(server));
  std::atomic<int> origin{0};
  gate g;
  cachet::lease_loader la(a, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            g.enter();
                            return "from-a";
                          }),
                          {.lease = 10s, .max_wait = 10s});
  std::atomic<int> b_calls{0};
  cachet::lease_loader lb(b, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            b_calls.fetch_add(1);
                            return "from-b";
                          }),
                          {.lease = 10s, .max_wait = 10s});

  std::optional<std::string> ra;
  std::optional<std::string> rb;
  std::thread ta([&] { ra = la.load("hot"); });
  REQUIRE(g.wait_entered());
  std::thread tb([&] { rb = lb.load("hot"); });
  const bool waiting = eventually([&] { return b.stats().leases_contended >= 1; });
  g.open();
  ta.join();
  tb.join();
  REQUIRE(waiting);

  CHECK(ra == "from-a");
  CHECK(rb == "from-a");
  CHECK(b_calls == 0);
  CHECK(origin == 1);
  CHECK(la.stats().loads_led == 1);
  CHECK(lb.stats().loads_waited == 1);
  CHECK(lb.stats().lease_wait_timeouts == 0);
  CHECK(a.stats().leases_released == 1);
  CHECK(server.raw({"EXISTS", a.lease_key("hot")}).integer == 0);
}

TEST_CASE("lease: the leader writes the value before it releases the lease", "[redis]") {
  redis_server server;
  cachet::redis_store<std::string, std::string, hooked_codec> s(opts_for(server));
  const std::string lk = s.lease_key("k");
  int held_at_write = -1;
  hooked_codec::on_encode = [&] { held_at_write = int(server.raw({"EXISTS", lk}).integer); };
  cachet::lease_loader l(
      s, func_loader([](const std::string&) -> std::optional<std::string> { return "v"; }));
  const std::optional<std::string> r = l.load("k");
  hooked_codec::on_encode = nullptr;
  CHECK(r == "v");
  CHECK(held_at_write == 1);  // the lease was still ours while the value was on its way
  CHECK(server.raw({"GET", "t:k"}).str == "v");
  CHECK(server.raw({"EXISTS", lk}).integer == 0);
}

TEST_CASE("lease: a write or erase in this process during the leader's load drops its write",
          "[redis]") {
  // What cache_aside::invalidate() and set() do to the store while the leader's loader runs: the
  // row the leader read is older than that write, so it must not land after it.
  const bool erase = GENERATE(true, false);
  INFO((erase ? "erase" : "put") << " while the leader loads");
  redis_server server;
  string_store s(opts_for(server));
  gate g;
  cachet::lease_loader l(s, func_loader([&](const std::string&) -> std::optional<std::string> {
                           g.enter();
                           return "old";
                         }),
                         {.lease = 10s, .max_wait = 10s});
  std::optional<std::string> r;
  std::thread t([&] { r = l.load("k"); });
  REQUIRE(g.wait_entered());
  if (erase) {
    s.erase("k");
  } else {
    REQUIRE(s.put("k", "new") == cachet::put_result::inserted);
  }
  g.open();
  t.join();
  CHECK(r == "old");  // its caller began before the write: the old row is allowed there
  if (erase) {
    CHECK(server.raw({"EXISTS", "t:k"}).integer == 0);
  } else {
    CHECK(server.raw({"GET", "t:k"}).str == "new");
  }
  CHECK(server.raw({"EXISTS", s.lease_key("k")}).integer == 0);  // released all the same
}

TEST_CASE("lease: a leader that throws releases; the waiter takes over and loads", "[redis]") {
  redis_server server;
  string_store a(opts_for(server));
  string_store b(opts_for(server));
  std::atomic<int> origin{0};
  gate g;
  cachet::lease_loader la(a, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            g.enter();
                            throw std::runtime_error("origin down");
                          }),
                          {.lease = 10s, .max_wait = 10s});
  cachet::lease_loader lb(b, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            return "from-b";
                          }),
                          {.lease = 10s, .max_wait = 10s});

  std::exception_ptr ea;
  std::optional<std::string> rb;
  std::thread ta([&] {
    try {
      la.load("hot");
    } catch (...) {
      ea = std::current_exception();
    }
  });
  REQUIRE(g.wait_entered());
  std::thread tb([&] { rb = lb.load("hot"); });
  const bool waiting = eventually([&] { return b.stats().leases_contended >= 1; });
  g.open();
  ta.join();
  tb.join();
  REQUIRE(waiting);

  REQUIRE(ea);
  CHECK_THROWS_WITH(std::rethrow_exception(ea), "origin down");
  CHECK(a.stats().leases_released == 1);
  CHECK(rb == "from-b");
  CHECK(origin == 2);
  CHECK(lb.stats().lease_takeovers == 1);
  CHECK(lb.stats().loads_led == 1);
  CHECK(lb.stats().lease_wait_timeouts == 0);
  CHECK(server.raw({"GET", "t:hot"}).str == "from-b");
}

TEST_CASE("lease: a crashed leader costs one lease period, not max_wait", "[redis]") {
  redis_server server;
  string_store b(opts_for(server));
  const std::string lk = b.lease_key("hot");
  // A leader that took the lease and died: never released, gone after 200 ms.
  REQUIRE(server.raw({"SET", lk, "crashed", "NX", "PX", "200"}).str == "OK");
  std::atomic<int> origin{0};
  cachet::lease_loader lb(b, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            return "from-b";
                          }),
                          {.lease = 10s, .max_wait = 10s});
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(lb.load("hot") == "from-b");
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(origin == 1);
  CHECK(lb.stats().lease_takeovers == 1);
  CHECK(lb.stats().lease_wait_timeouts == 0);
  CHECK(took < 5s);  // the lease's 200 ms and some polls, far from max_wait
}

TEST_CASE("lease: after max_wait the waiter loads itself; the leader still finishes", "[redis]") {
  redis_server server;
  string_store a(opts_for(server));
  string_store b(opts_for(server));
  std::atomic<int> origin{0};
  gate g;
  cachet::lease_loader la(a, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            g.enter();
                            return "from-a";
                          }),
                          {.lease = 10s, .max_wait = 10s});
  cachet::lease_loader lb(b, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            return "from-b";
                          }),
                          {.lease = 10s, .max_wait = 100ms, .poll_min = 5ms, .poll_max = 20ms});
  std::optional<std::string> ra;
  std::thread ta([&] { ra = la.load("hot"); });
  REQUIRE(g.wait_entered());
  const std::optional<std::string> rb = lb.load("hot");  // the leader is held throughout
  g.open();
  ta.join();
  CHECK(rb == "from-b");
  CHECK(ra == "from-a");
  CHECK(origin == 2);
  CHECK(lb.stats().lease_wait_timeouts == 1);
  CHECK(lb.stats().loads_waited == 0);
  CHECK(lb.stats().lease_takeovers == 0);
}

TEST_CASE("lease: with Redis down the loader loads directly", "[redis]") {
  redis_server server;
  string_store b(opts_for(server));
  std::atomic<int> origin{0};
  cachet::lease_loader lb(b, func_loader([&](const std::string&) -> std::optional<std::string> {
                            origin.fetch_add(1);
                            return "from-b";
                          }));
  server.kill();
  CHECK(lb.load("hot") == "from-b");
  CHECK(origin == 1);
  CHECK(lb.stats().lease_unavailable == 1);
  CHECK(lb.stats().loads_led == 0);
}

TEST_CASE("lease: a nullopt leader writes nothing; the waiter takes over", "[redis]") {
  redis_server server;
  string_store a(opts_for(server));
  string_store b(opts_for(server));
  gate g;
  cachet::lease_loader la(a, func_loader([&](const std::string&) -> std::optional<std::string> {
                            g.enter();
                            return std::nullopt;
                          }),
                          {.lease = 10s, .max_wait = 10s});
  cachet::lease_loader lb(
      b, func_loader([&](const std::string&) -> std::optional<std::string> { return "from-b"; }),
      {.lease = 10s, .max_wait = 10s});
  std::optional<std::string> ra{"unset"};
  std::optional<std::string> rb;
  std::thread ta([&] { ra = la.load("hot"); });
  REQUIRE(g.wait_entered());
  std::thread tb([&] { rb = lb.load("hot"); });
  const bool waiting = eventually([&] { return b.stats().leases_contended >= 1; });
  g.open();
  ta.join();
  tb.join();
  REQUIRE(waiting);
  CHECK(ra == std::nullopt);
  CHECK(rb == "from-b");
  CHECK(lb.stats().lease_takeovers == 1);
}

TEST_CASE("lease: two fork()ed processes through cache_aside load a cold key once", "[redis]") {
  redis_server server;
  int to_child[2];
  int to_parent[2];
  REQUIRE(::pipe(to_child) == 0);
  REQUIRE(::pipe(to_parent) == 0);

  // Both processes run this: build the cache, meet at the pipe, then read the cold key at once.
  // The loader counts origin loads in Redis (INCR origin_loads) and takes 100 ms, so that the
  // two reads overlap; the count must be 1 whichever way they interleave.
  auto run = [&server](int wait_fd, int signal_fd, bool parent) -> bool {
    cachet::cache_aside<string_store> cache(opts_for(server));
    cachet::lease_loader lease(
        cache.store(), func_loader([&server](const std::string&) -> std::optional<std::string> {
          server.raw({"INCR", "origin_loads"});
          std::this_thread::sleep_for(100ms);
          return "loaded";
        }),
        {.lease = 10s, .max_wait = 10s});
    char c = 'x';
    if (parent) {
      if (::read(wait_fd, &c, 1) != 1 || ::write(signal_fd, &c, 1) != 1) return false;
    } else {
      if (::write(signal_fd, &c, 1) != 1 || ::read(wait_fd, &c, 1) != 1) return false;
    }
    return cache.get_or_load("cold", lease) == "loaded";
  };

  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // no Catch2 and no destructors of the parent's objects here
    ::close(to_child[1]);
    ::close(to_parent[0]);
    bool ok = false;
    try {
      ok = run(to_child[0], to_parent[1], false);
    } catch (...) {
    }
    ::_exit(ok ? 0 : 1);
  }
  ::close(to_child[0]);  // so a child that dies early ends the parent's read
  ::close(to_parent[1]);
  const bool parent_ok = run(to_parent[0], to_child[1], true);
  ::close(to_child[1]);
  ::close(to_parent[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(parent_ok);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(server.raw({"GET", "origin_loads"}).str == "1");
}
