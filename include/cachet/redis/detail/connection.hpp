// cachet/redis/detail/connection.hpp — one blocking hiredis connection, owned, with every failure
// sorted into what the store counts.
//
// IMPLEMENTATION DETAILS
// A redis_connection owns one redisContext (hiredis 0.14's blocking API: RESP2, no
// redisConnectWithOptions). open() connects with the connect timeout, sets the command timeout as
// the socket's SO_RCVTIMEO/SO_SNDTIMEO (redisSetTimeout), then sends AUTH and SELECT when
// configured. Every command goes through the Argv entry points with explicit lengths, so keys and
// values may hold any bytes, NULs included.
//
// hiredis leaves a context unusable after any I/O or protocol error, timeouts included (a reply may
// still be on its way, and would be read as the answer to the next command). Such a connection is
// marked broken and the pool frees it instead of reusing it. An error *reply* (`-OOM ...`,
// `-WRONGTYPE ...`) is a complete answer: the connection stays usable.
//
// Failures are sorted by what caused them:
//   - timeout: the socket timed out (errno EAGAIN/EWOULDBLOCK from a blocking socket with
//     SO_RCVTIMEO, ETIMEDOUT from the connect): the server is slow or stopped.
//   - connection: refused, reset, closed (EOF), a protocol error, hiredis out of memory, AUTH or
//     SELECT refused: the server is down or unusable for us.
//   - server: the server answered the command with an error reply.
// errno is read right after the failing hiredis call, before anything else can change it.
//
// Every command runs under a sigpipe_guard (a write to a server that died must not raise SIGPIPE).
// Not thread-safe: one thread at a time uses a connection (the pool's lease guarantees it).
#pragma once

#include <absl/container/inlined_vector.h>
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>

#include "cachet/redis/detail/sigpipe_guard.hpp"
#include "cachet/redis/options.hpp"

namespace cachet::detail {

enum class redis_failure : std::uint8_t { none, timeout, connection, server };

struct redis_reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

// The outcome of one command: a reply (failure none or server) or a failure without one.
struct redis_result {
  redis_reply_ptr reply;
  redis_failure failure = redis_failure::none;
  bool ok() const noexcept { return failure == redis_failure::none; }
};

class redis_connection {
 public:
  redis_connection(const redis_connection&) = delete;
  redis_connection& operator=(const redis_connection&) = delete;
  ~redis_connection() { redisFree(ctx_); }

  // Connects to the server `o` names, then AUTH and SELECT as configured. Returns nullptr and sets
  // `failure` (timeout or connection) if any step fails. Blocks up to connect_timeout for the
  // connect and up to command_timeout per read or write of AUTH/SELECT. Throws std::bad_alloc.
  static std::unique_ptr<redis_connection> open(const redis_options& o, redis_failure& failure) {
    failure = redis_failure::none;
    const timeval connect_tv = to_timeval(o.connect_timeout);
    redisContext* raw = nullptr;
    int saved_errno = 0;
    {
      sigpipe_guard g;
      raw = o.unix_socket.empty() ? redisConnectWithTimeout(o.host.c_str(), o.port, connect_tv)
                                  : redisConnectUnixWithTimeout(o.unix_socket.c_str(), connect_tv);
      saved_errno = errno;
    }
    if (raw == nullptr) {  // hiredis could not allocate its context
      failure = redis_failure::connection;
      return nullptr;
    }
    std::unique_ptr<redis_connection> c(new (std::nothrow) redis_connection(raw));
    if (c == nullptr) {
      redisFree(raw);
      throw std::bad_alloc();
    }
    if (raw->err != 0) {
      failure = classify(raw, saved_errno);
      return nullptr;
    }
    if (redisSetTimeout(raw, to_timeval(o.command_timeout)) != REDIS_OK) {
      failure = redis_failure::connection;
      return nullptr;
    }
    if (!o.password.empty()) {
      redis_result r =
          o.username.empty()
              ? c->command({"AUTH", std::string_view(o.password)})
              : c->command({"AUTH", std::string_view(o.username), std::string_view(o.password)});
      if (!r.ok()) {
        failure = r.failure == redis_failure::server ? redis_failure::connection : r.failure;
        return nullptr;
      }
    }
    if (o.database != 0) {
      const std::string db = std::to_string(o.database);
      redis_result r = c->command({"SELECT", std::string_view(db)});
      if (!r.ok()) {
        failure = r.failure == redis_failure::server ? redis_failure::connection : r.failure;
        return nullptr;
      }
    }
    return c;
  }

  // Sends one command and reads its reply. Blocks up to command_timeout per read or write. On a
  // timeout or connection failure the connection is broken from then on. Throws std::bad_alloc.
  redis_result command(std::span<const std::string_view> args) {
    if (broken_) return {nullptr, redis_failure::connection};
    argv_buffer argv(args);
    void* r = nullptr;
    int saved_errno = 0;
    {
      sigpipe_guard g;
      r = redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.ptrs.data(), argv.lens.data());
      saved_errno = errno;
    }
    return take(static_cast<redisReply*>(r), saved_errno);
  }
  redis_result command(std::initializer_list<std::string_view> args) {
    return command(std::span<const std::string_view>(args.begin(), args.size()));
  }

  // Queues one command in the output buffer without sending it (pipelining); the replies are read
  // in order with read_reply(), which sends what is queued first. Only allocates. False if the
  // connection is already broken.
  bool append(std::span<const std::string_view> args) {
    if (broken_) return false;
    argv_buffer argv(args);
    if (redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.ptrs.data(),
                               argv.lens.data()) != REDIS_OK) {
      broken_ = true;
      return false;
    }
    return true;
  }

  // The next reply of a pipeline. Blocks up to command_timeout per read or write.
  redis_result read_reply() {
    if (broken_) return {nullptr, redis_failure::connection};
    void* r = nullptr;
    int rc = REDIS_OK;
    int saved_errno = 0;
    {
      sigpipe_guard g;
      rc = redisGetReply(ctx_, &r);
      saved_errno = errno;
    }
    if (rc != REDIS_OK) {
      if (r != nullptr) freeReplyObject(r);
      return take(nullptr, saved_errno);
    }
    return take(static_cast<redisReply*>(r), saved_errno);
  }

  bool broken() const noexcept { return broken_; }

  // The hiredis context, for a caller that drives the socket itself (the invalidation listener
  // polls the fd and reads with redisBufferRead). Whoever uses it keeps the rules above: after an
  // I/O error the context is unusable, and a write must run under a sigpipe_guard.
  redisContext* native_handle() noexcept { return ctx_; }

 private:
  explicit redis_connection(redisContext* ctx) noexcept : ctx_(ctx) {}

  // The pointer and length arrays hiredis's Argv calls take.
  struct argv_buffer {
    explicit argv_buffer(std::span<const std::string_view> args) {
      ptrs.reserve(args.size());
      lens.reserve(args.size());
      for (std::string_view a : args) {
        ptrs.push_back(a.data());
        lens.push_back(a.size());
      }
    }
    absl::InlinedVector<const char*, 8> ptrs;
    absl::InlinedVector<std::size_t, 8> lens;
  };

  redis_result take(redisReply* r, int saved_errno) {
    if (r == nullptr) {
      broken_ = true;
      return {nullptr, classify(ctx_, saved_errno)};
    }
    redis_result out{redis_reply_ptr(r), redis_failure::none};
    if (r->type == REDIS_REPLY_ERROR) out.failure = redis_failure::server;
    return out;
  }

  static redis_failure classify(const redisContext* ctx, int saved_errno) noexcept {
    if (ctx->err == REDIS_ERR_IO &&
        (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT)) {
      return redis_failure::timeout;
    }
    // hiredis formats the errno it saw into errstr; a later call may have reset errno itself.
    if (ctx->err == REDIS_ERR_IO &&
        (std::strstr(ctx->errstr, "timed out") != nullptr ||
         std::strstr(ctx->errstr, "temporarily unavailable") != nullptr)) {
      return redis_failure::timeout;
    }
    return redis_failure::connection;
  }

  static timeval to_timeval(std::chrono::milliseconds d) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((d.count() % 1000) * 1000);
    return tv;
  }

  redisContext* ctx_;
  bool broken_ = false;
};

}  // namespace cachet::detail
