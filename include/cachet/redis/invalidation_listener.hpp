// cachet/redis/invalidation_listener.hpp — hear every write to a key prefix on a Redis server, to
// drop this process's local copies of what other processes changed.
//
// Purpose: the bus of a two-tier cache (a local L1 over a shared redis_store L2). Redis's
// server-assisted client-side caching, in RESP2 broadcast mode, publishes the name of every key
// modified under a prefix (SET, DEL, EXPIRE, expiry, eviction, ...) on the `__redis__:invalidate`
// channel; redis_invalidation_listener subscribes to it and calls `handlers.on_keys` with the full
// Redis key names, `on_flush` when the whole database went (FLUSHALL, FLUSHDB), and `on_state`
// when the bus is lost (false) or back (true). It needs hiredis (link cachet::redis); the server
// needs Redis 6 or later.
//
// How it works: a background thread owns two dedicated connections. The subscriber runs
// `CLIENT ID` and `SUBSCRIBE __redis__:invalidate`; the tracking connection runs
// `CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <key_prefix>` (no PREFIX when key_prefix is
// empty: every key) and then stays idle, open for the listener's life (tracking ends when it
// closes). NOLOOP is off: this process's own writes are reported too (harmless: one more drop).
// The thread polls both sockets; it sends PING on the subscriber every heartbeat_interval without
// traffic, and declares the bus lost if nothing arrives within heartbeat_timeout of a PING, or if
// either connection fails or the tracking connection receives anything (in RESP2 it never should).
// On a loss it calls on_state(false) once, then reconnects both connections with jittered
// exponential backoff (reconnect_backoff_min doubling to reconnect_backoff_max), enables tracking
// again for the new subscriber's id, and calls on_state(true).
//
// The owner's contract: until the first on_state(true), and from each on_state(false) to the next
// on_state(true), invalidations may be missed, so the owner must drop its local copies and stop
// filling them. The bus starts down and on_state strictly alternates: true when a bus is
// established, false when an established one is lost (a connect that fails reports nothing: the
// bus was down already; stats().failed_connects counts them). So the owner starts suspended and
// follows on_state, as in the wiring below. While connected,
// a write reaches on_keys after one server round of the event loop plus the loopback or network
// delay. A loss is noticed within heartbeat_interval + heartbeat_timeout of its start (sooner
// when a socket fails), so a value written elsewhere may be served from L1 for at most that long,
// or the L1 TTL if shorter. docs/redis.md ("Cross-instance invalidation") has the details and
// what broadcast costs: every write under the prefix is one message to every listening instance.
//
// Wiring to a tiered_store (whose L2 is `l2`, a redis_store with the same key_prefix):
//   tier.suspend_local();  // L1 is off until the bus is up
//   cachet::redis_invalidation_listener bus(l2.options(), {}, {
//       .on_keys = [&](std::span<const std::string> names) {
//         for (const std::string& n : names) {
//           if (auto k = l2.key_from_redis(n)) tier.invalidate_local(*k);
//         }
//       },
//       .on_flush = [&] { tier.clear_local(); },
//       .on_state = [&](bool up) { up ? tier.resume_local() : tier.suspend_local(); },
//   });
// Declare `bus` after `tier` and `l2`, so it is destroyed (and its thread stopped) first.
//
// Thread safety: the handlers run on the listener's thread, one at a time, in the order the
// server sent the events; they must not throw (the thread is noexcept: an exception ends the
// process) and should be quick (while one runs, nothing is read). stats() and connected() may be
// called from any thread.
//
// Exception safety: the constructor throws cachet::invalid_option for a bad option or a missing
// handler, std::system_error if the thread or its wake-up pipe cannot be made, std::bad_alloc.
// Nothing else throws; a Redis failure is reported through on_state, never thrown.
#pragma once

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "cachet/options.hpp"
#include "cachet/redis/detail/connection.hpp"
#include "cachet/redis/detail/sigpipe_guard.hpp"
#include "cachet/redis/options.hpp"

namespace cachet {

// How the listener watches the bus and how it comes back after a loss.
struct invalidation_options {
  // Without traffic, a PING goes out on the subscriber connection this often. In [1 ms, 1 hour].
  // Shorter: a stopped or unreachable server is noticed sooner (the staleness bound is
  // heartbeat_interval + heartbeat_timeout), at one tiny round trip per interval per instance.
  std::chrono::milliseconds heartbeat_interval{1000};

  // How long after a PING the bus may stay silent before it is declared lost. In [1 ms, 1 hour].
  // Shorter than the server's worst pause (a fork, a slow command) makes false alarms: each one
  // costs a drop of the owner's local cache and a reconnect.
  std::chrono::milliseconds heartbeat_timeout{1000};

  // The wait before a reconnect: reconnect_backoff_min after a loss, doubling after every failed
  // attempt up to reconnect_backoff_max, each wait drawn uniformly from [d/2, d] so that many
  // instances do not reconnect in step. min in [1 ms, 1 hour], max in [min, 1 hour].
  std::chrono::milliseconds reconnect_backoff_min{100};
  std::chrono::milliseconds reconnect_backoff_max{5000};
};

// What the listener calls, on its own thread. All three are required.
struct invalidation_handlers {
  // Keys under the prefix that were modified, deleted, expired or evicted: full Redis names,
  // key_prefix included (redis_store::key_from_redis turns one back into a key). One call per
  // message; the server batches the keys of one event-loop round into a message.
  std::function<void(std::span<const std::string> redis_keys)> on_keys;
  // The database was flushed (FLUSHALL, FLUSHDB): drop every local copy.
  std::function<void()> on_flush;
  // false: the bus is lost, invalidations may be missed from now on: drop every local copy and
  // stop filling them. true: tracking is established (again); filling may resume.
  std::function<void(bool connected)> on_state;
};

// A snapshot of the listener's counters; each exact, the set not atomic across counters.
struct invalidation_stats {
  std::uint64_t messages = 0;           // invalidation messages received (keys or flush)
  std::uint64_t keys_invalidated = 0;   // key names passed to on_keys
  std::uint64_t flushes = 0;            // null invalidations passed on as on_flush
  std::uint64_t disconnects = 0;        // established buses lost (each an on_state(false))
  std::uint64_t reconnects = 0;         // buses established again after a loss
  std::uint64_t failed_connects = 0;    // attempts that did not establish a bus
  std::uint64_t heartbeats_missed = 0;  // PINGs not answered within heartbeat_timeout
  bool connected = false;               // tracking established now
};

class redis_invalidation_listener {
 public:
  // The channel Redis publishes invalidations on, in RESP2 redirect mode.
  static constexpr std::string_view k_channel = "__redis__:invalidate";

  // Validates everything (throws invalid_option naming the first bad option or missing handler),
  // then starts the thread, which connects in the background; the constructor does not wait for
  // it (watch on_state). From `conn` the listener uses the endpoint, AUTH, database, timeouts and
  // key_prefix (the tracked prefix); the rest is ignored. Throws std::system_error, bad_alloc.
  redis_invalidation_listener(redis_options conn, invalidation_options opts,
                              invalidation_handlers handlers)
      : conn_(validated(std::move(conn))),
        opts_(validated(opts)),
        handlers_(validated(std::move(handlers))) {
    if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
      throw std::system_error(errno, std::generic_category(), "cachet: invalidation listener pipe");
    }
    try {
      thread_ = std::thread([this] { run(); });
    } catch (...) {
      ::close(wake_[0]);
      ::close(wake_[1]);
      throw;
    }
  }

  redis_invalidation_listener(const redis_invalidation_listener&) = delete;
  redis_invalidation_listener& operator=(const redis_invalidation_listener&) = delete;

  // Stops the thread and closes both connections; no handler runs after it returns (one that is
  // running is waited for). Wakes the thread at once and shuts its sockets down; the one wait it
  // cannot cut short is a connect plus AUTH/SELECT in progress (up to connect_timeout +
  // 2 x command_timeout).
  ~redis_invalidation_listener() {
    stop_.store(true, std::memory_order_release);
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_[1], &byte, 1);
    {
      std::lock_guard<std::mutex> lock(fds_mu_);
      for (int fd : fds_) {
        if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
      }
    }
    thread_.join();
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

  // Whether tracking is established now (the last on_state said true). Never blocks.
  bool connected() const noexcept { return connected_.load(std::memory_order_acquire); }

  // Relaxed loads of the counters. Never blocks.
  invalidation_stats stats() const noexcept {
    invalidation_stats s;
    s.messages = counters_.messages.load(std::memory_order_relaxed);
    s.keys_invalidated = counters_.keys_invalidated.load(std::memory_order_relaxed);
    s.flushes = counters_.flushes.load(std::memory_order_relaxed);
    s.disconnects = counters_.disconnects.load(std::memory_order_relaxed);
    s.reconnects = counters_.reconnects.load(std::memory_order_relaxed);
    s.failed_connects = counters_.failed_connects.load(std::memory_order_relaxed);
    s.heartbeats_missed = counters_.heartbeats_missed.load(std::memory_order_relaxed);
    s.connected = connected();
    return s;
  }

  const redis_options& options() const noexcept { return conn_; }
  const invalidation_options& listener_options() const noexcept { return opts_; }

 private:
  using clock = std::chrono::steady_clock;
  using connection_ptr = std::unique_ptr<detail::redis_connection>;

  struct counters {
    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> keys_invalidated{0};
    std::atomic<std::uint64_t> flushes{0};
    std::atomic<std::uint64_t> disconnects{0};
    std::atomic<std::uint64_t> reconnects{0};
    std::atomic<std::uint64_t> failed_connects{0};
    std::atomic<std::uint64_t> heartbeats_missed{0};
  };

  // The two connections of one established bus.
  struct session {
    connection_ptr subscriber;
    connection_ptr tracking;
  };

  // The connection options the listener uses; the same rules as redis_store's.
  static redis_options validated(redis_options o) {
    detail::validate_connection(o);
    if (!o.cluster_seeds.empty()) {
      throw invalid_option("cluster_seeds",
                           "is set: this listener hears one server; for a Redis Cluster use "
                           "redis_cluster_invalidation_listener "
                           "(cachet/redis/cluster_invalidation_listener.hpp)");
    }
    return o;
  }

  static invalidation_options validated(invalidation_options o) {
    detail::check_redis_duration(o.heartbeat_interval, "heartbeat_interval");
    detail::check_redis_duration(o.heartbeat_timeout, "heartbeat_timeout");
    detail::check_redis_duration(o.reconnect_backoff_min, "reconnect_backoff_min");
    detail::check_redis_duration(o.reconnect_backoff_max, "reconnect_backoff_max");
    if (o.reconnect_backoff_max < o.reconnect_backoff_min) {
      throw invalid_option("reconnect_backoff_max",
                           "= " + std::to_string(o.reconnect_backoff_max.count()) +
                               " ms: must be at least reconnect_backoff_min (" +
                               std::to_string(o.reconnect_backoff_min.count()) + " ms)");
    }
    return o;
  }

  static invalidation_handlers validated(invalidation_handlers h) {
    if (!h.on_keys) throw invalid_option("handlers.on_keys", "is empty: it is required");
    if (!h.on_flush) throw invalid_option("handlers.on_flush", "is empty: it is required");
    if (!h.on_state) throw invalid_option("handlers.on_state", "is empty: it is required");
    return h;
  }

  bool stopping() const noexcept { return stop_.load(std::memory_order_acquire); }

  // The thread: establish, serve until lost, report, back off, again; until the destructor.
  void run() noexcept {
    std::minstd_rand rng(static_cast<std::uint32_t>(clock::now().time_since_epoch().count()) ^
                         static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(this)));
    std::chrono::milliseconds backoff = opts_.reconnect_backoff_min;
    bool ever_up = false;
    while (!stopping()) {
      session s;
      bool up = false;
      try {
        up = establish(s);
      } catch (const std::bad_alloc&) {
        up = false;
      }
      if (up && !stopping()) {
        if (ever_up) counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
        ever_up = true;
        backoff = opts_.reconnect_backoff_min;
        set_state(true);
        serve(s);
        forget(s);
        if (stopping()) break;
        counters_.disconnects.fetch_add(1, std::memory_order_relaxed);
        set_state(false);
      } else {
        forget(s);
        if (stopping()) break;
        counters_.failed_connects.fetch_add(1, std::memory_order_relaxed);
      }
      const auto half = backoff.count() / 2;
      wait(std::chrono::milliseconds(
          half + std::uniform_int_distribution<long long>(0, backoff.count() - half)(rng)));
      if (!up) backoff = std::min(backoff * 2, opts_.reconnect_backoff_max);
    }
  }

  void set_state(bool up) {
    connected_.store(up, std::memory_order_release);
    handlers_.on_state(up);
  }

  // Waits `d`, or until the destructor wakes the thread.
  void wait(std::chrono::milliseconds d) noexcept {
    const auto deadline = clock::now() + d;
    while (!stopping()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) return;
      pollfd p{wake_[0], POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
  }

  // Makes a connection and registers its socket, so the destructor can shut it down.
  connection_ptr open_registered(std::size_t slot) {
    detail::redis_failure failure;
    connection_ptr c = detail::redis_connection::open(conn_, failure);
    if (c == nullptr) return nullptr;
    std::lock_guard<std::mutex> lock(fds_mu_);
    fds_[slot] = c->native_handle()->fd;
    if (stopping()) ::shutdown(fds_[slot], SHUT_RDWR);
    return c;
  }

  // Unregisters and closes the session's connections.
  void forget(session& s) noexcept {
    {
      std::lock_guard<std::mutex> lock(fds_mu_);
      fds_[0] = fds_[1] = -1;
    }
    s.subscriber.reset();
    s.tracking.reset();
  }

  // Subscriber: CLIENT ID, SUBSCRIBE; tracking: CLIENT TRACKING ... REDIRECT id BCAST [PREFIX p].
  // True when all of it was answered as expected. Each step blocks up to its timeouts.
  bool establish(session& s) {
    s.subscriber = open_registered(0);
    if (s.subscriber == nullptr || stopping()) return false;
    const detail::redis_result id = s.subscriber->command({"CLIENT", "ID"});
    if (!id.ok() || id.reply->type != REDIS_REPLY_INTEGER) return false;
    const detail::redis_result sub = s.subscriber->command({"SUBSCRIBE", k_channel});
    if (!sub.ok() || sub.reply->type != REDIS_REPLY_ARRAY) return false;

    s.tracking = open_registered(1);
    if (s.tracking == nullptr || stopping()) return false;
    const std::string redirect = std::to_string(id.reply->integer);
    std::vector<std::string_view> args{"CLIENT", "TRACKING", "ON", "REDIRECT", redirect, "BCAST"};
    if (!conn_.key_prefix.empty()) {
      args.push_back("PREFIX");
      args.push_back(conn_.key_prefix);
    }
    const detail::redis_result on = s.tracking->command(args);
    return on.ok() && on.reply->type == REDIS_REPLY_STATUS;
  }

  // Reads the subscriber until the bus is lost or the destructor stops the thread.
  void serve(session& s) {
    redisContext* sub = s.subscriber->native_handle();
    redisContext* trk = s.tracking->native_handle();
    auto next_ping = clock::now() + opts_.heartbeat_interval;
    auto ping_deadline = clock::time_point::max();  // max: no PING outstanding
    std::vector<std::string> keys;
    while (!stopping()) {
      const auto now = clock::now();
      if (ping_deadline == clock::time_point::max() && now >= next_ping) {
        if (!send_ping(sub)) return;
        ping_deadline = now + opts_.heartbeat_timeout;
      }
      if (now >= ping_deadline) {
        counters_.heartbeats_missed.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      const auto until = ping_deadline == clock::time_point::max() ? next_ping : ping_deadline;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now);
      pollfd p[3] = {{sub->fd, POLLIN, 0}, {trk->fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      const int n = ::poll(p, 3, static_cast<int>(std::max<long long>(left.count(), 1)));
      if (n < 0 && errno != EINTR) return;
      if (n <= 0) continue;
      if (p[2].revents != 0) return;  // the destructor
      if (p[1].revents != 0) return;  // tracking connection closed (RESP2: it sends nothing)
      if (p[0].revents == 0) continue;
      if (redisBufferRead(sub) != REDIS_OK) return;  // EOF, reset, or out of memory
      for (;;) {
        void* raw = nullptr;
        if (redisReaderGetReply(sub->reader, &raw) != REDIS_OK) return;  // protocol error
        if (raw == nullptr) break;
        const detail::redis_reply_ptr reply(static_cast<redisReply*>(raw));
        next_ping = clock::now() + opts_.heartbeat_interval;
        ping_deadline = clock::time_point::max();
        dispatch(reply.get(), keys);
      }
    }
  }

  // Queues PING on the subscriber and writes it out (the socket's send timeout bounds a write).
  static bool send_ping(redisContext* c) noexcept {
    detail::sigpipe_guard guard;
    if (redisAppendCommand(c, "PING") != REDIS_OK) return false;
    int done = 0;
    while (done == 0) {
      if (redisBufferWrite(c, &done) != REDIS_OK) return false;
    }
    return true;
  }

  // One pub/sub reply: ["message", channel, keys | nil]; ["pong", ""] and the rest only prove the
  // bus is alive.
  void dispatch(const redisReply* r, std::vector<std::string>& keys) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
    const redisReply* kind = r->element[0];
    const redisReply* channel = r->element[1];
    const redisReply* payload = r->element[2];
    if (kind->type != REDIS_REPLY_STRING || std::string_view(kind->str, kind->len) != "message" ||
        channel->type != REDIS_REPLY_STRING ||
        std::string_view(channel->str, channel->len) != k_channel) {
      return;
    }
    counters_.messages.fetch_add(1, std::memory_order_relaxed);
    if (payload->type == REDIS_REPLY_NIL) {
      counters_.flushes.fetch_add(1, std::memory_order_relaxed);
      handlers_.on_flush();
      return;
    }
    keys.clear();
    if (payload->type == REDIS_REPLY_STRING) {
      keys.emplace_back(payload->str, payload->len);
    } else if (payload->type == REDIS_REPLY_ARRAY) {
      for (std::size_t i = 0; i < payload->elements; ++i) {
        const redisReply* k = payload->element[i];
        if (k->type == REDIS_REPLY_STRING) keys.emplace_back(k->str, k->len);
      }
    }
    if (keys.empty()) return;
    counters_.keys_invalidated.fetch_add(keys.size(), std::memory_order_relaxed);
    handlers_.on_keys(std::span<const std::string>(keys));
  }

  const redis_options conn_;
  const invalidation_options opts_;
  const invalidation_handlers handlers_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  counters counters_;
  int wake_[2] = {-1, -1};
  std::mutex fds_mu_;
  int fds_[2] = {-1, -1};  // the session's sockets, for the destructor's shutdown(2)
  std::thread thread_;     // last: started once everything above is constructed
};

}  // namespace cachet
