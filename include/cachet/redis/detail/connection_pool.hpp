// cachet/redis/detail/connection_pool.hpp — at most pool_size connections, made on demand, lent
// one call at a time.
//
// IMPLEMENTATION DETAILS
// A mutex, a condition variable and a stack of idle connections. acquire() takes an idle
// connection if there is one; else, while fewer than pool_size exist, it reserves a slot and opens
// a new connection *outside* the mutex (a connect may take connect_timeout, and must not stall
// the callers that only want an idle one); else it waits on the condition variable, at most until
// its deadline, which is real time (std::chrono::steady_clock): the store's Clock may be a manual
// test clock that never moves. A lease gives its connection back when destroyed: to the idle stack
// if it is healthy, else the connection is freed and its slot released, so the next caller
// reconnects (connections are re-made after an error, lazily). Idle connections are taken LIFO,
// so a burst's extra connections go cold at the bottom of the stack; the pool does not close idle
// connections (Redis's `timeout` setting may, and the next use then fails once and reconnects).
// When a connection fails with a connection error (the server died, or restarted), its owner calls
// discard_idle(): the idle ones were made to the same server and are most likely dead too, and
// each would fail one more call (a half-open breaker's probe among them, re-opening it for
// nothing) before the pool reconnected.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "cachet/redis/detail/connection.hpp"
#include "cachet/redis/options.hpp"

namespace cachet::detail {

class redis_pool {
 public:
  // A connection lent to one caller; returns it to the pool when destroyed.
  class lease {
   public:
    lease() = default;
    lease(lease&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)), conn_(std::move(o.conn_)) {}
    lease& operator=(lease&& o) noexcept {
      if (this != &o) {
        release();
        pool_ = std::exchange(o.pool_, nullptr);
        conn_ = std::move(o.conn_);
      }
      return *this;
    }
    ~lease() { release(); }

    explicit operator bool() const noexcept { return conn_ != nullptr; }
    redis_connection& operator*() const noexcept { return *conn_; }
    redis_connection* operator->() const noexcept { return conn_.get(); }

   private:
    friend class redis_pool;
    lease(redis_pool* p, std::unique_ptr<redis_connection> c) noexcept
        : pool_(p), conn_(std::move(c)) {}
    void release() noexcept {
      if (pool_ != nullptr) pool_->give_back(std::move(conn_));
      pool_ = nullptr;
    }
    redis_pool* pool_ = nullptr;
    std::unique_ptr<redis_connection> conn_;
  };

  explicit redis_pool(const redis_options& opts) : opts_(opts) { idle_.reserve(opts_.pool_size); }
  redis_pool(const redis_pool&) = delete;
  redis_pool& operator=(const redis_pool&) = delete;

  // A connection: an idle one, a new one (calls `on_connect()` first), or one freed by another
  // caller before command_timeout passes. An empty lease and `failure` set (timeout, connection)
  // otherwise. Blocks on the pool's mutex, on a connect (up to connect_timeout plus AUTH/SELECT),
  // and waiting for a free connection (up to command_timeout). Throws std::bad_alloc.
  template <class OnConnect>
  lease acquire(redis_failure& failure, OnConnect&& on_connect) {
    failure = redis_failure::none;
    const auto deadline = std::chrono::steady_clock::now() + opts_.command_timeout;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (!idle_.empty()) {
        std::unique_ptr<redis_connection> c = std::move(idle_.back());
        idle_.pop_back();
        return lease(this, std::move(c));
      }
      if (open_ < opts_.pool_size) break;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= opts_.pool_size) {
        failure = redis_failure::timeout;
        return lease();
      }
    }
    ++open_;  // the slot is ours while we connect
    lock.unlock();
    std::unique_ptr<redis_connection> c;
    try {
      on_connect();
      c = redis_connection::open(opts_, failure);
    } catch (...) {
      give_back(nullptr);
      throw;
    }
    if (c == nullptr) {
      give_back(nullptr);
      return lease();
    }
    return lease(this, std::move(c));
  }

  // Closes every idle connection (lent ones come back as usual); the next callers reconnect.
  // Takes the mutex; the sockets are closed under it (a close, no network wait).
  void discard_idle() noexcept {
    std::lock_guard<std::mutex> g(mu_);
    open_ -= idle_.size();
    idle_.clear();  // keeps the capacity give_back() relies on
  }

 private:
  // Takes back a lent connection (nullptr or broken: its slot is freed) and wakes one waiter.
  void give_back(std::unique_ptr<redis_connection> c) noexcept {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (c != nullptr && !c->broken()) {
        idle_.push_back(std::move(c));  // never allocates: reserved for pool_size
      } else {
        --open_;
      }
    }
    cv_.notify_one();
    // A broken connection (if any) is freed here, outside the mutex.
  }

  const redis_options& opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<redis_connection>> idle_;  // guarded by mu_
  std::size_t open_ = 0;                                 // idle + lent + connecting; by mu_
};

}  // namespace cachet::detail
