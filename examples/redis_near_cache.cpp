// Two service instances, each with an in-process L1 in front of one shared Redis, kept coherent by
// Redis client tracking.
//
// Each instance is a tiered_store<sharded_store (L1), redis_store (L2)> plus a
// redis_invalidation_listener wired to it (docs/redis.md, "Cross-instance invalidation"). Instance
// A writes a product; B reads it (and keeps a copy in its L1); A writes it again; B's listener
// hears of the write and drops its copy, so B's next read is the new value, well before B's L1 TTL.
//
// Redis: the server at the unix socket in CACHET_REDIS_SOCKET if set; otherwise the example starts
// its own `redis-server` on a socket in a fresh temporary directory and stops it at the end. Exits
// 77 (skipped) when neither is possible, non-zero if a check fails.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/redis_store.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tiered_store.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

extern char** environ;

namespace {

using namespace std::chrono_literals;
using l1_type = cachet::sharded_store<std::string, std::string>;
using l2_type = cachet::redis_store<std::string, std::string>;
using tier_type = cachet::tiered_store<l1_type, l2_type>;

// A redis-server of our own, on a unix socket in a fresh temporary directory; killed on scope exit.
class own_redis {
 public:
  bool start() {
    char dir_template[] = "/tmp/cachet-near-cache-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) return false;
    dir_ = dir_template;
    socket_ = dir_ + "/redis.sock";
    std::vector<std::string> args = {
        "redis-server", "--port", "0",           "--unixsocket", socket_,      "--save", "",
        "--appendonly", "no",     "--daemonize", "no",           "--loglevel", "warning"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t quiet;  // the server's banner and log go to /dev/null
    ::posix_spawn_file_actions_init(&quiet);
    ::posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    ::posix_spawn_file_actions_adddup2(&quiet, STDOUT_FILENO, STDERR_FILENO);
    const int rc = ::posix_spawnp(&pid_, "redis-server", &quiet, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&quiet);
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    for (int i = 0; i < 1000; ++i) {  // at most 10 s for the socket to answer
      if (std::filesystem::exists(socket_)) {
        l2_type probe({.unix_socket = socket_});
        if (probe.put("near-cache:probe", "1") == cachet::put_result::inserted) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  ~own_redis() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  const std::string& socket() const { return socket_; }

 private:
  pid_t pid_ = -1;
  std::string dir_;
  std::string socket_;
};

// One service instance: its two tiers and the listener that keeps its L1 coherent.
struct instance {
  explicit instance(const std::string& socket)
      : tier({.l1_ttl = 60s},
             std::tuple{cachet::store_options<std::string, std::string>{.max_entries = 10'000}},
             std::tuple{cachet::redis_options{.unix_socket = socket,
                                              .key_prefix = "shop:",
                                              .default_ttl = std::chrono::minutes(10)}}) {
    tier.suspend_local();  // no L1 until the bus is up: invalidations could be missed before
    bus = std::make_unique<cachet::redis_invalidation_listener>(
        tier.l2().options(), cachet::invalidation_options{},
        cachet::invalidation_handlers{
            .on_keys =
                [this](std::span<const std::string> names) {
                  for (const std::string& n : names) {
                    if (auto k = tier.l2().key_from_redis(n)) tier.invalidate_local(*k);
                  }
                },
            .on_flush = [this] { tier.clear_local(); },
            .on_state = [this](bool up) { up ? tier.resume_local() : tier.suspend_local(); },
        });
  }
  ~instance() { bus.reset(); }  // stop the listener's thread before the tier goes

  tier_type tier;
  std::unique_ptr<cachet::redis_invalidation_listener> bus;
};

template <class F>
bool within(std::chrono::milliseconds limit, F done) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%-58s %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++failures;
}

}  // namespace

int main() {
  own_redis server;
  std::string socket;
  if (const char* s = std::getenv("CACHET_REDIS_SOCKET")) {
    socket = s;
  } else if (server.start()) {
    socket = server.socket();
  } else {
    std::printf("no Redis: set CACHET_REDIS_SOCKET or put redis-server in PATH (skipped)\n");
    return 77;
  }

  instance a(socket);
  instance b(socket);
  check(within(5s, [&] { return a.bus->connected() && b.bus->connected(); }),
        "both instances' invalidation buses are up");

  a.tier.put("product:1", "lamp, 30 EUR");
  // Every write under the prefix is announced to every instance, so B hears of this one too; wait
  // for it, or its arrival could drop the copy B is about to take.
  check(within(5s, [&] { return b.tier.stats().local_invalidations == 1; }),
        "B heard of A's first write");
  check(b.tier.get("product:1") == "lamp, 30 EUR", "B reads what A wrote (from Redis)");
  check(b.tier.get("product:1") == "lamp, 30 EUR", "B reads it again (from its L1)");
  check(b.tier.stats().l1_hits == 1, "  ... and that second read was an L1 hit");

  const auto before = b.tier.stats().local_invalidations;
  const auto t0 = std::chrono::steady_clock::now();
  a.tier.put("product:1", "lamp, 25 EUR");  // a price change on instance A
  const bool heard = within(5s, [&] { return b.tier.stats().local_invalidations > before; });
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  check(heard, "B's listener heard of A's write and dropped its L1 copy");
  std::printf("  (within %lld us of A's put; B's L1 TTL is 60 s)\n", static_cast<long long>(us));
  check(b.tier.get("product:1") == "lamp, 25 EUR", "B's next read is the new price");

  a.tier.erase("product:1");
  check(within(5s, [&] { return !b.tier.get("product:1").has_value(); }),
        "an erase on A reaches B too");
  return failures == 0 ? 0 : 1;
}
