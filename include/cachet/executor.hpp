// cachet/executor.hpp — where background work runs: a move-only task and the executor concept.
//
// Purpose: read_through's background refresh (refresh_after_write, refresh()) hands its work to an
// executor the user supplies, so the thread that serves a read never waits for the origin. An
// executor is anything callable with a `cachet::task` by rvalue: a thread pool's submit, an event
// loop's post, asio::post wrapped in a lambda. It must eventually run or destroy each task it
// accepts (a destroyed task never runs and releases what it holds); it may throw to refuse one
// (the refresh is then counted as failed and nothing else happens). `inline_executor`, the
// default, runs the task on the calling thread at once.
//
// Thread safety: a task is a plain move-only object; run it once, from any thread. The executor
// is called from whatever thread reads the cache, possibly from several at once.
// Exception safety: task's constructor throws std::bad_alloc; running a task throws what its
// function throws (read_through's tasks throw nothing).
//
// Example:
//   my_pool pool(4);
//   auto on_pool = [&pool](cachet::task t) { pool.submit(std::move(t)); };
//   cachet::read_through<store_t, loader_t, decltype(on_pool)> users(
//       {.max_entries = 100'000, .ttl = 10min, .refresh_after_write = 1min}, loader,
//       cachet::coarse_steady_clock{}, on_pool);
#pragma once

#include <concepts>
#include <memory>
#include <type_traits>
#include <utility>

namespace cachet {

// A move-only, type-erased `void()` callable (C++20 has no std::move_only_function).
class task {
 public:
  task() noexcept = default;
  template <class F>
  requires(!std::same_as<std::remove_cvref_t<F>, task> &&
           std::invocable<std::decay_t<F>&>) explicit task(F&& f)
      : impl_(std::make_unique<model<std::decay_t<F>>>(std::forward<F>(f))) {}

  task(task&&) noexcept = default;
  task& operator=(task&&) noexcept = default;

  // Runs the function; a task runs at most once (it is empty afterwards).
  void operator()() {
    std::unique_ptr<concept_t> f = std::move(impl_);
    if (f) f->run();
  }
  explicit operator bool() const noexcept { return impl_ != nullptr; }

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual void run() = 0;
  };
  template <class F>
  struct model final : concept_t {
    explicit model(F&& f) : fn(std::move(f)) {}
    explicit model(const F& f) : fn(f) {}
    void run() override { fn(); }
    F fn;
  };
  std::unique_ptr<concept_t> impl_;
};

// Anything that accepts a task by rvalue.
template <class E>
concept executor = std::invocable<E&, task&&>;

// Runs each task at once on the calling thread.
struct inline_executor {
  void operator()(task&& t) const { t(); }
};

static_assert(executor<inline_executor>);

}  // namespace cachet
