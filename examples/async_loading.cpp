// Loading that parks no thread: coroutines on a one-thread event loop read through a cache whose
// loads run on a small pool. A coroutine that misses is suspended (the loop goes on serving the
// others) and resumed on the loop once the load lands; all the coroutines asking for one key share
// one load. The loop thread never waits for the database.
//
// Run: build/release/examples/example_async_loading (exits non-zero if a check fails).
#include <atomic>
#include <cachet/cachet.hpp>
#include <condition_variable>
#include <coroutine>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

// A thread-safe queue of tasks run by whoever calls run(): the event loop (one thread) and the
// load pool (two threads) are both this.
class task_queue {
 public:
  void post(cachet::task t) {
    {
      std::lock_guard<std::mutex> g(mu_);
      q_.push_back(std::move(t));
    }
    cv_.notify_one();
  }
  // Runs tasks until stop() and the queue is empty.
  void run() {
    for (;;) {
      cachet::task t;
      {
        std::unique_lock<std::mutex> g(mu_);
        cv_.wait(g, [&] { return stopping_ || !q_.empty(); });
        if (q_.empty()) return;
        t = std::move(q_.front());
        q_.pop_front();
      }
      t();
    }
  }
  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<cachet::task> q_;
  bool stopping_ = false;
};

// What read_through and get_co take as executors: post to a queue.
struct post_to {
  task_queue* q;
  void operator()(cachet::task&& t) const { q->post(std::move(t)); }
};

// The smallest coroutine type that will do: starts at once, frees itself at the end.
struct fire_and_forget {
  struct promise_type {
    fire_and_forget get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

// The "database": a blocking call, counted.
struct user_db {
  std::atomic<int> queries{0};
  std::optional<std::string> load(const int& id) {
    queries.fetch_add(1);
    if (id % 10 == 9) return std::nullopt;  // no such user
    return std::string("user-").append(std::to_string(id));
  }
};

}  // namespace

int main() {
  user_db db;
  task_queue loop, pool;
  std::vector<std::thread> pool_threads;
  for (int i = 0; i < 2; ++i) pool_threads.emplace_back([&] { pool.run(); });

  int served = 0, absent = 0, wrong = 0, pending = 0;
  {
    using cache_t =
        cachet::read_through<cachet::sharded_store<int, std::string>, user_db&, post_to>;
    cache_t users({.max_entries = 1'000,
                   .ttl = std::chrono::minutes(5),
                   .negative_ttl = std::chrono::minutes(1)},
                  db, {}, post_to{&pool});

    const std::thread::id loop_thread = std::this_thread::get_id();
    auto handle_request = [&](int id) -> fire_and_forget {
      // Suspends on a miss; resumed on the loop (post_to{&loop}) when the load lands.
      std::optional<std::string> name = co_await users.get_co(id, post_to{&loop});
      if (std::this_thread::get_id() != loop_thread) ++wrong;  // always back on the loop
      if (!name) {
        ++absent;
      } else if (*name != std::string("user-").append(std::to_string(id))) {
        ++wrong;
      }
      ++served;
      if (--pending == 0) loop.stop();
    };

    // 200 requests for 20 users, started from the loop.
    pending = 200;
    loop.post(cachet::task([&] {
      for (int i = 0; i < 200; ++i) handle_request(i % 20);
    }));
    loop.run();  // returns once the last request is served
  }              // the cache waits for any task it gave the pool
  pool.stop();
  for (std::thread& t : pool_threads) t.join();

  std::printf("served %d requests for 20 users with %d database queries (%d absent)\n", served,
              db.queries.load(), absent);
  const bool ok = served == 200 && wrong == 0 && absent == 20 && db.queries.load() == 20;
  if (!ok) std::printf("FAILED: expected 200 served, 20 queries, 20 absent, none wrong\n");
  return ok ? 0 : 1;
}
