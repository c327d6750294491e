// cachet/detail/deadline_timer.hpp — runs tasks at steady_clock deadlines on one lazy thread.
//
// IMPLEMENTATION DETAILS
// read_through's load_timeout for get_async / get_co waiters: nobody blocks on those, so a timeout
// has to be fired by someone. This is the someone: one thread per timer, started by the first
// at() (a cache that never times an async waiter starts none), sleeping on a condition variable
// until the earliest deadline. Tasks run on that thread, in deadline order, with no lock held;
// they must not throw. The destructor stops the thread and destroys the tasks still waiting
// unrun. Deadlines are real time (steady_clock), as single_flight's follower_timeout is: a manual
// test clock does not move them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "cachet/executor.hpp"

namespace cachet::detail {

class deadline_timer {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  deadline_timer() = default;
  deadline_timer(const deadline_timer&) = delete;
  deadline_timer& operator=(const deadline_timer&) = delete;

  ~deadline_timer() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Runs `t` on the timer's thread once `when` has passed. Throws std::bad_alloc, or
  // std::system_error if the thread cannot be started; `t` is then destroyed unrun.
  void at(time_point when, task t) {
    std::lock_guard<std::mutex> g(mu_);
    const bool earliest = due_.empty() || when < due_.begin()->first;
    due_.emplace(when, std::move(t));
    if (!thread_.joinable()) {
      try {
        thread_ = std::thread([this] { run(); });
      } catch (...) {
        due_.clear();
        throw;
      }
    }
    if (earliest) cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> g(mu_);
    while (!stop_) {
      if (due_.empty()) {
        cv_.wait(g);
        continue;
      }
      const auto first = due_.begin();
      if (std::chrono::steady_clock::now() < first->first) {
        cv_.wait_until(g, first->first);
        continue;
      }
      task t = std::move(first->second);
      due_.erase(first);
      g.unlock();
      t();
      g.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<time_point, task> due_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cachet::detail
