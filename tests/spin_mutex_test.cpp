// The per-shard lock: mutual exclusion under contention, and the sleeping path (a waiter that
// has spent its spin budget sleeps on the lock word and is woken by the unlock).
#include <atomic>
#include <cachet/detail/spin_mutex.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

using cachet::detail::spin_mutex;

namespace {

// The calling thread's id for thread_is_asleep(), or 0 where there is no such id.
long this_thread_id() {
#if defined(__linux__)
  return static_cast<long>(::syscall(SYS_gettid));
#else
  return 0;
#endif
}

// Whether thread `tid` of this process is asleep (state S in /proc). Where that cannot be read,
// true: the caller then only knows the waiter is about to sleep, and the test is weaker.
bool thread_is_asleep(long tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  if (!in) return true;
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');  // "tid (name) S ...": the name may hold spaces
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] == 'S';
}

}  // namespace

TEST_CASE("spin_mutex: a waiter that gives up spinning sleeps until the unlock wakes it") {
  spin_mutex m;
  m.lock();
  std::atomic<bool> acquired{false};
  std::atomic<long> waiter_id{-1};
  std::thread waiter([&] {
    waiter_id.store(this_thread_id());
    m.lock();
    acquired.store(true);
    m.unlock();
  });
  // The waiter spins for a bounded time, marks the lock "held, maybe sleepers" and sleeps in the
  // kernel. Wait for both (no timing involved), so that the unlock below must wake a thread that
  // really sleeps: without the wake the join never returns.
  while (!m.has_sleepers() || !thread_is_asleep(waiter_id.load())) std::this_thread::yield();
  CHECK_FALSE(acquired.load());
  CHECK_FALSE(m.try_lock());
  m.unlock();  // must wake the sleeper, or the join below never returns
  waiter.join();
  CHECK(acquired.load());
  CHECK_FALSE(m.has_sleepers());
  CHECK(m.try_lock());
  m.unlock();
}

TEST_CASE("spin_mutex: one holder at a time, every increment kept, under contention") {
  spin_mutex m;
  constexpr int k_threads = 4;
  constexpr int k_rounds = 20'000;
  std::uint64_t counter = 0;  // plain: only the lock protects it
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < k_rounds; ++r) {
        std::lock_guard<spin_mutex> g(m);
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++counter;
        // Now and then hold the lock long enough that waiters exhaust their spin and sleep.
        if ((r + t) % 512 == 0) std::this_thread::yield();
        inside.fetch_sub(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(overlaps.load() == 0);
  CHECK(counter == std::uint64_t{k_threads} * k_rounds);
}
