// The near cache across processes: two instances in two processes over one private redis-server,
// one writing and one reading. The reader is a tiered_store<sharded_store, redis_store> wired to a
// redis_invalidation_listener as the wiring comment of cachet/redis/invalidation_listener.hpp
// says, with an L1 TTL of 10 minutes, so only an invalidation can remove a stale L1 copy. The
// writer is a forked child that writes when told to, through its own tiered_store, a plain
// redis_store, or raw SET/DEL commands (any writer counts).
//
// The fault this looks for: a read that starts after the invalidation of a write has arrived
// (the reader's on_keys handler has called invalidate_local() and returned) is served the value
// the write replaced from L1. Per key: the writer SETs v1; once its invalidation is in, the reader
// reads v1 into L1 and proves the copy is there (the second read is an L1 hit); the writer SETs
// v2; once that invalidation is in, the reader must read v2 (never v1); then the writer DELs the
// key, and the reader must read a miss (never v2).
//
// The processes step in lock-step over two pipes: a command byte triple to the child, an ack byte
// back. Every wait is for an event and bounded (5 s); no sleep decides an outcome. The child is
// forked before the reader's listener thread exists, only ever leaves through _exit() (never back
// into Catch2), reports a failed write through its ack and its exit status, and is reaped with a
// bounded wait, or SIGKILLed, by the parent's guard, also when a check fails.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/redis_store.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tiered_store.hpp>
#include <catch2/catch.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using cachet_test::redis_server;
using l1_type = cachet::sharded_store<std::string, std::string>;
using l2_type = cachet::redis_store<std::string, std::string>;
using tiered = cachet::tiered_store<l1_type, l2_type>;

constexpr int k_keys = 8;
constexpr auto k_limit = 5s;  // the bound on every wait for the other process or the bus

cachet::redis_options conn_for(const redis_server& s) {
  cachet::redis_options o = s.options();
  o.key_prefix = "tp:";
  return o;
}

tiered make_tier(const redis_server& s) {
  return tiered({.l1_ttl = std::chrono::minutes(10)},
                std::tuple{cachet::store_options<std::string, std::string>{.max_entries = 1024}},
                std::tuple{conn_for(s)});
}

std::string key_of(int i) {
  std::string k = "k";
  k += std::to_string(i);
  return k;
}

std::string value_of(int version) {
  std::string v = "v";
  v += std::to_string(version);
  return v;
}

// ---- the writer process ------------------------------------------------------------------------

enum class writer_kind { tiered, store, raw };

const char* to_string(writer_kind w) {
  switch (w) {
    case writer_kind::tiered:
      return "tiered_store";
    case writer_kind::store:
      return "redis_store";
    case writer_kind::raw:
      return "raw SET/DEL";
  }
  return "?";
}

// One command to the writer: put key_of(key) = value_of(version), erase key_of(key), stream
// (put value_of(1..k_stream_versions) into each of the `key` keys key_of(k_stream_base + j), round
// robin, as fast as it can), or quit.
struct command {
  char op;  // 'p', 'e', 's' or 'q'
  std::uint8_t key;
  std::uint8_t version;
};
constexpr int k_stream_base = 100;
constexpr int k_stream_versions = 400;
constexpr int k_marker = 200;  // a key written after a stream, to drain the bus (key_of(200))
constexpr char k_ack_ok = 'k';
constexpr char k_ack_failed = 'x';

bool write_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* data, std::size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// The child's loop: runs each command with `apply(op, key, value) -> bool` and acks it. Returns
// the exit status: 0 after 'q', 1 after a failed write (acked as failed), 2 if the parent went.
template <class Apply>
int serve_commands(int in, int out, Apply apply) {
  for (;;) {
    command c{};
    if (!read_all(in, &c, sizeof c)) return 2;
    if (c.op == 'q') return 0;
    bool ok = true;
    if (c.op == 's') {
      for (int v = 1; ok && v <= k_stream_versions; ++v) {
        for (int j = 0; ok && j < c.key; ++j)
          ok = apply('p', key_of(k_stream_base + j), value_of(v));
      }
    } else {
      ok = apply(c.op, key_of(c.key), value_of(c.version));
    }
    const char ack = ok ? k_ack_ok : k_ack_failed;
    if (!write_all(out, &ack, 1)) return 2;
    if (!ok) return 1;
  }
}

// The body of the forked writer. Never returns: every path ends in _exit(), so no destructor of
// the parent's objects (the redis_server fixture!) and no Catch2 code runs in the child.
[[noreturn]] void writer_main(writer_kind kind, const redis_server& server, int in, int out) {
  int status = 3;
  try {
    if (kind == writer_kind::tiered) {
      tiered w = make_tier(server);
      status = serve_commands(in, out, [&](char op, const std::string& k, const std::string& v) {
        return op == 'p' ? w.put(k, v) == cachet::put_result::inserted : w.erase(k);
      });
    } else if (kind == writer_kind::store) {
      l2_type w(conn_for(server));
      status = serve_commands(in, out, [&](char op, const std::string& k, const std::string& v) {
        return op == 'p' ? w.put(k, v) == cachet::put_result::inserted : w.erase(k);
      });
    } else {
      status = serve_commands(in, out, [&](char op, const std::string& k, const std::string& v) {
        std::string rk = "tp:";
        rk += k;
        if (op == 'p') return server.raw({"SET", rk, v}).type == REDIS_REPLY_STATUS;
        return server.raw({"DEL", rk}).integer == 1;
      });
    }
  } catch (...) {
    status = 4;
  }
  ::_exit(status);
}

// The parent's handle on the forked writer: the two pipe ends, and a destructor that reaps the
// child within 2 s of closing its command pipe, or SIGKILLs it.
class writer_process {
 public:
  writer_process(writer_kind kind, const redis_server& server) {
    int down[2];  // parent -> child: commands
    int up[2];    // child -> parent: acks
    REQUIRE(::pipe2(down, O_CLOEXEC) == 0);
    if (::pipe2(up, O_CLOEXEC) != 0) {
      ::close(down[0]);
      ::close(down[1]);
      FAIL("pipe2 failed");
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(down[1]);
      ::close(up[0]);
      ::alarm(60);  // a last resort, should the parent's guard never come
      writer_main(kind, server, down[0], up[1]);
    }
    ::close(down[0]);
    ::close(up[1]);
    if (pid < 0) {  // the destructor does not run for a constructor that throws
      ::close(down[1]);
      ::close(up[0]);
      FAIL("fork failed");
    }
    to_child_ = down[1];
    from_child_ = up[0];
    pid_ = pid;
  }
  writer_process(const writer_process&) = delete;
  writer_process& operator=(const writer_process&) = delete;
  ~writer_process() {
    close_pipes();
    if (pid_ > 0 && !reap(2s)) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, nullptr, 0) == -1 && errno == EINTR) {
      }
    }
  }

  // Sends one command and waits for its ack (at most k_limit). True if the write was done.
  bool run(char op, int key, int version = 0) {
    const command c{op, static_cast<std::uint8_t>(key), static_cast<std::uint8_t>(version)};
    if (!write_all(to_child_, &c, sizeof c)) return false;
    pollfd p{from_child_, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(k_limit).count()));
    char ack = 0;
    return n == 1 && read_all(from_child_, &ack, 1) && ack == k_ack_ok;
  }

  // Tells the child to quit and reaps it (at most k_limit): its exit status, or -1.
  int finish() {
    const command quit{'q', 0, 0};
    write_all(to_child_, &quit, sizeof quit);
    close_pipes();
    if (!reap(k_limit)) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }

 private:
  void close_pipes() noexcept {
    for (int* fd : {&to_child_, &from_child_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }
  // Waits up to `limit` for the child to exit; true once it is reaped (pid_ is then -1).
  bool reap(std::chrono::milliseconds limit) noexcept {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (pid_ > 0) {
      const pid_t r = ::waitpid(pid_, &status_, WNOHANG);
      if (r == pid_ || (r == -1 && errno != EINTR)) {
        pid_ = -1;
        return true;
      }
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  pid_t pid_ = -1;
  int status_ = 0;
  int to_child_ = -1;
  int from_child_ = -1;
};

// ---- the reader's view of the bus --------------------------------------------------------------

// What the reader's handlers saw: how many invalidations of each key arrived (counted after
// invalidate_local() returned), and the bus state. Waits are bounded by k_limit.
class heard_log {
 public:
  void key(const std::string& k) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++counts_[k];
    }
    cv_.notify_all();
  }
  void state(bool up) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      up_ = up;
      if (!up) ++downs_;
    }
    cv_.notify_all();
  }

  std::uint64_t count(const std::string& k) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[k];
  }
  std::uint64_t downs() {
    std::lock_guard<std::mutex> lock(mu_);
    return downs_;
  }
  bool wait_up() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, k_limit, [&] { return up_; });
  }
  // Waits until more than `mark` invalidations of `k` have arrived.
  bool wait_past(const std::string& k, std::uint64_t mark) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, k_limit, [&] { return counts_[k] > mark; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::uint64_t> counts_;
  bool up_ = false;
  std::uint64_t downs_ = 0;
};

// The reader's bus, wired to `tier` as the wiring comment of invalidation_listener.hpp says: the
// tier is suspended until the first on_state(true); on_keys drops each key from L1 and only then
// counts it in `heard`; on_state suspends or resumes the tier and tells `heard`. Declare the
// listener after the tier and `heard`, so that it stops first.
cachet::redis_invalidation_listener wire(tiered& tier, heard_log& heard) {
  l2_type& l2 = tier.l2();
  tier.suspend_local();  // L1 is off until the bus is up
  cachet::invalidation_handlers handlers{
      .on_keys =
          [&tier, &l2, &heard](std::span<const std::string> names) {
            for (const std::string& n : names) {
              if (auto k = l2.key_from_redis(n)) {
                tier.invalidate_local(*k);
                heard.key(*k);  // counted once the L1 copy is gone
              }
            }
          },
      .on_flush = [&tier] { tier.clear_local(); },
      .on_state =
          [&tier, &heard](bool up) {
            up ? tier.resume_local() : tier.suspend_local();
            heard.state(up);
          },
  };
  return cachet::redis_invalidation_listener(l2.options(), {}, std::move(handlers));
}

}  // namespace

TEST_CASE(
    "two instances in two processes, one writing and one reading: no stale read after the "
    "invalidation has arrived",
    "[redis][two_process]") {
  const writer_kind kind = GENERATE(writer_kind::tiered, writer_kind::store, writer_kind::raw);
  INFO("writer: " << to_string(kind));
  redis_server server;
  // Forked first, while this process has one thread: the listener's thread starts after it.
  writer_process writer(kind, server);

  tiered reader = make_tier(server);
  heard_log heard;
  cachet::redis_invalidation_listener bus = wire(reader, heard);  // after `reader`: stops first
  // A read through the reader's tiers, with a miss spelled out (so a failure shows the value).
  const auto value = [&reader](const std::string& k) { return reader.get(k).value_or("(miss)"); };
  REQUIRE(heard.wait_up());
  REQUIRE_FALSE(reader.local_suspended());

  for (int i = 0; i < k_keys; ++i) {
    const std::string k = key_of(i);
    INFO("key " << k);

    // v1, written elsewhere; once its invalidation is in (so it cannot land later and drop the
    // copy), the reader takes it into L1, and the second read proves it is served from there.
    std::uint64_t mark = heard.count(k);
    REQUIRE(writer.run('p', i, 1));
    REQUIRE(heard.wait_past(k, mark));
    REQUIRE(value(k) == "v1");  // from Redis, promoted
    cachet::tiered_stats before = reader.stats();
    REQUIRE(value(k) == "v1");
    REQUIRE(reader.stats().l1_hits == before.l1_hits + 1);
    REQUIRE(reader.l1().peek(k).value_or("(none)") == "v1");

    // The writer overwrites it. Once the invalidation has arrived, v1 must not be served.
    mark = heard.count(k);
    REQUIRE(writer.run('p', i, 2));
    REQUIRE(heard.wait_past(k, mark));
    CHECK(reader.l1().peek(k).value_or("(none)") != "v1");
    before = reader.stats();
    CHECK(value(k) == "v2");
    CHECK(reader.stats().l2_hits == before.l2_hits + 1);  // read from Redis, not L1
    CHECK(value(k) == "v2");                              // and now from L1
    CHECK(reader.stats().l1_hits == before.l1_hits + 1);

    // The writer erases it. Once the invalidation has arrived, v2 must not be served either.
    mark = heard.count(k);
    REQUIRE(writer.run('e', i));
    REQUIRE(heard.wait_past(k, mark));
    CHECK(reader.l1().peek(k).value_or("(none)") == "(none)");
    before = reader.stats();
    CHECK(value(k) == "(miss)");
    CHECK(reader.stats().misses == before.misses + 1);
  }

  CHECK(writer.finish() == 0);
  CHECK(heard.downs() == 0);  // the bus stayed up: every read above could use L1
  CHECK(bus.stats().disconnects == 0);
  CHECK(reader.stats().local_invalidations >= 3 * k_keys);
}

TEST_CASE(
    "two instances in two processes: reads racing a stream of writes are never older than the "
    "last invalidation heard",
    "[redis][two_process]") {
  // The writer puts versions 1, 2, ... of a few keys as fast as it can while two threads of the
  // reader read them. Each invalidation message for a key stands for at least one write of it, so
  // once c of them have arrived, Redis holds version >= c and every version < c was replaced
  // before the c-th invalidate_local() returned: a read that starts after that must not be served
  // an older version, from L1 or anywhere (a promotion that read Redis before the write and lands
  // after the invalidation would be). A miss counts as version 0 (nothing erases here).
  const writer_kind kind = GENERATE(writer_kind::tiered, writer_kind::store, writer_kind::raw);
  INFO("writer: " << to_string(kind));
  constexpr int k_stream_keys = 4;
  redis_server server;
  writer_process writer(kind, server);

  tiered reader = make_tier(server);
  heard_log heard;
  cachet::redis_invalidation_listener bus = wire(reader, heard);
  REQUIRE(heard.wait_up());

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> reads{0}, stale{0};
  std::mutex first_mu;
  std::string first_stale;
  const auto read_loop = [&](int seed) {
    for (std::uint64_t n = 0; !done.load(std::memory_order_acquire); ++n) {
      const std::string k = key_of(k_stream_base + static_cast<int>((n + seed) % k_stream_keys));
      const std::uint64_t floor = heard.count(k);
      const std::optional<std::string> v = reader.get(k);
      std::uint64_t version = 0;  // a miss, or a value not of the form v<n>
      if (v && v->size() > 1) std::from_chars(v->data() + 1, v->data() + v->size(), version);
      reads.fetch_add(1, std::memory_order_relaxed);
      if (version < floor && stale.fetch_add(1) == 0) {
        std::lock_guard<std::mutex> lock(first_mu);
        first_stale = k;
        first_stale += " read as version ";
        first_stale += std::to_string(version);
        first_stale += " after ";
        first_stale += std::to_string(floor);
        first_stale += " invalidations";
      }
    }
  };
  std::thread r1(read_loop, 0);
  std::thread r2(read_loop, 1);
  const bool streamed = writer.run('s', k_stream_keys);
  // On a loaded machine every read of the storm may have gone to Redis (each promotion raced by
  // the next invalidation): then the readers go on, still checked, until L1 has served one (at
  // most k_limit), so that the check below always looked at L1.
  for (const auto until = std::chrono::steady_clock::now() + k_limit;
       reader.stats().l1_hits == 0 && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(1ms);
  }
  done.store(true, std::memory_order_release);
  r1.join();
  r2.join();

  REQUIRE(streamed);
  INFO(first_stale);
  CHECK(stale.load() == 0);
  CHECK(heard.downs() == 0);
  const cachet::tiered_stats st = reader.stats();
  INFO("reads " << reads.load() << ": " << st.l1_hits << " from L1, " << st.l2_hits
                << " from Redis, " << st.promotions << " promotions, " << st.promotions_refused
                << " refused, " << st.local_invalidations << " invalidations");
  CHECK(st.l1_hits > 0);  // else the check above never looked at L1
  // The storm's last invalidations may still be on their way, or applied and not yet counted
  // (the listener waits for `heard`'s mutex, which the readers held on every read), while a read
  // promoted the newest version after them. Then "one more invalidation of k" below would be the
  // storm's, not the erase's. The bus delivers in order and the listener handles one message at a
  // time, so once a write made after the storm is counted, every storm invalidation has been
  // applied and counted, and the next invalidation of k is the erase's.
  const std::string marker = key_of(k_marker);
  const std::uint64_t marker_mark = heard.count(marker);
  REQUIRE(writer.run('p', k_marker, 1));
  REQUIRE(heard.wait_past(marker, marker_mark));
  // Once the storm is over, an erase of each key, in lock-step: after its invalidation the key
  // reads as a miss, so no copy of any version outlived it.
  for (int j = 0; j < k_stream_keys; ++j) {
    const std::string k = key_of(k_stream_base + j);
    CHECK(reader.l2().peek(k).value_or("(miss)") == value_of(k_stream_versions));
    const std::uint64_t mark = heard.count(k);
    REQUIRE(writer.run('e', k_stream_base + j));
    REQUIRE(heard.wait_past(k, mark));
    CHECK(reader.get(k).value_or("(miss)") == "(miss)");
  }
  CHECK(writer.finish() == 0);
}
