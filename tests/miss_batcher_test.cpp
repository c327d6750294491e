// miss_batcher: misses of different keys gathered into one load_all(). Batches here close by
// count (max_delay is a minute, which no test waits for), and arrivals are sequenced by waiting
// on the batcher's own counters or on a gated loader, so every batch's contents are determined.
#include <algorithm>
#include <atomic>
#include <cachet/miss_batcher.hpp>
#include <cachet/origin_limiter.hpp>
#include <cachet/read_through.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;

// "v<k>". (Built by append: GCC 12 at -O3 reports a false -Wstringop-overflow for
// "v" + std::to_string(k) once inlined.)
std::string row_of(int k) {
  std::string v = "v";
  v.append(std::to_string(k));
  return v;
}

// A bulk loader that records each load_all() call (its keys, sorted), answers key k with
// "v<k>", has no key divisible by 10, throws for a batch holding key 13, and can be gated:
// while closed, calls block after they have been recorded.
struct recording_db {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<int>> calls;
  bool open = true;
  int running = 0;
  int peak = 0;
  int single_loads = 0;

  std::optional<std::string> load(const int& k) {
    std::lock_guard<std::mutex> l(mu);
    ++single_loads;
    return answer(k);
  }
  std::vector<std::pair<int, std::string>> load_all(std::span<const int> keys) {
    std::unique_lock<std::mutex> l(mu);
    std::vector<int> sorted(keys.begin(), keys.end());
    std::sort(sorted.begin(), sorted.end());
    calls.push_back(sorted);
    ++running;
    peak = std::max(peak, running);
    cv.notify_all();
    cv.wait_for(l, std::chrono::minutes(1), [&] { return open; });
    --running;
    if (std::find(keys.begin(), keys.end(), 13) != keys.end()) {
      throw std::runtime_error("batch with 13 failed");
    }
    std::vector<std::pair<int, std::string>> rows;
    for (int k : keys) {
      if (auto v = answer(k)) rows.emplace_back(k, std::move(*v));
    }
    return rows;
  }
  static std::optional<std::string> answer(int k) {
    if (k % 10 == 0) return std::nullopt;
    return row_of(k);
  }
  void close() {
    std::lock_guard<std::mutex> l(mu);
    open = false;
  }
  void release() {
    std::lock_guard<std::mutex> l(mu);
    open = true;
    cv.notify_all();
  }
  bool wait_calls(std::size_t n) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::minutes(1), [&] { return calls.size() >= n; });
  }
  std::vector<std::vector<int>> snapshot() {
    std::lock_guard<std::mutex> l(mu);
    return calls;
  }
};

// Forwards to a recording_db it does not own.
struct db_ref {
  recording_db* db;
  std::optional<std::string> load(const int& k) { return db->load(k); }
  std::vector<std::pair<int, std::string>> load_all(std::span<const int> keys) {
    return db->load_all(keys);
  }
};

using batcher_t = cachet::miss_batcher<int, std::string, db_ref>;

// What one thread's load() ended with. The exception is kept, and its message read by the main
// thread after the join: ThreadSanitizer cannot see libstdc++'s count of an exception shared
// through std::exception_ptr (see single_flight.hpp), so no worker reads what() of it.
struct outcome {
  std::optional<std::string> value;
  std::exception_ptr error;
  std::string message() const {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }
};

std::thread load_in_thread(batcher_t& b, int key, outcome& out) {
  return std::thread([&b, key, &out] {
    try {
      out.value = b.load(key);
    } catch (...) {
      out.error = std::current_exception();
    }
  });
}

bool wait_requests(batcher_t& b, std::uint64_t n) {
  return cachet_test::await([&] { return b.stats().requests >= n; });
}

}  // namespace

TEST_CASE("miss_batcher: options are validated, naming the option", "[miss_batcher]") {
  recording_db db;
  CHECK_THROWS_WITH(batcher_t({.max_batch = 0}, db_ref{&db}), Catch::Contains("max_batch"));
  CHECK_THROWS_WITH(batcher_t({.max_batch = (std::size_t{1} << 16) + 1}, db_ref{&db}),
                    Catch::Contains("max_batch"));
  CHECK_THROWS_WITH(batcher_t({.max_delay = -1ms}, db_ref{&db}), Catch::Contains("max_delay"));
  CHECK_THROWS_WITH(batcher_t({.max_delay = 61s}, db_ref{&db}), Catch::Contains("max_delay"));
  CHECK_NOTHROW(batcher_t({.max_batch = 1, .max_delay = 0s}, db_ref{&db}));
}

TEST_CASE("miss_batcher: concurrent misses of different keys are loaded with one load_all",
          "[miss_batcher]") {
  recording_db db;
  batcher_t b({.max_batch = 4, .max_delay = 1min}, db_ref{&db});
  std::vector<outcome> out(4);
  std::vector<std::thread> threads;
  const int keys[] = {1, 2, 20, 4};  // 20 does not exist
  for (int i = 0; i < 4; ++i) threads.push_back(load_in_thread(b, keys[i], out[i]));
  for (auto& t : threads) t.join();
  CHECK(db.snapshot() == std::vector<std::vector<int>>{{1, 2, 4, 20}});
  CHECK(db.single_loads == 0);
  CHECK(out[0].value == "v1");
  CHECK(out[1].value == "v2");
  CHECK_FALSE(out[2].value.has_value());
  CHECK_FALSE(out[2].error);
  CHECK(out[3].value == "v4");
  const cachet::miss_batcher_stats st = b.stats();
  CHECK(st.requests == 4);
  CHECK(st.batches == 1);
  CHECK(st.full_batches == 1);
  CHECK(st.keys_loaded == 4);
  CHECK(st.largest_batch == 4);
}

TEST_CASE("miss_batcher: a batch that does not fill is loaded after max_delay", "[miss_batcher]") {
  recording_db db;
  batcher_t b({.max_batch = 100, .max_delay = 1ms}, db_ref{&db});
  CHECK(b.load(7) == "v7");
  CHECK(db.snapshot() == std::vector<std::vector<int>>{{7}});
  CHECK(b.stats().full_batches == 0);
  CHECK(b.stats().batches == 1);
  // max_delay = 0: every load is a batch of its own (batching off).
  batcher_t off({.max_batch = 100, .max_delay = 0s}, db_ref{&db});
  CHECK(off.load(8) == "v8");
  CHECK(off.load(9) == "v9");
  CHECK(off.stats().batches == 2);
}

TEST_CASE("miss_batcher: keys that arrive while a batch loads form the next batch",
          "[miss_batcher]") {
  recording_db db;
  db.close();
  batcher_t b({.max_batch = 2, .max_delay = 1min}, db_ref{&db});
  std::vector<outcome> out(4);
  std::vector<std::thread> threads;
  threads.push_back(load_in_thread(b, 1, out[0]));
  threads.push_back(load_in_thread(b, 2, out[1]));
  REQUIRE(db.wait_calls(1));  // {1, 2} is loading, and blocked
  threads.push_back(load_in_thread(b, 3, out[2]));
  threads.push_back(load_in_thread(b, 4, out[3]));
  REQUIRE(db.wait_calls(2));  // {3, 4} did not wait for {1, 2}
  db.release();
  for (auto& t : threads) t.join();
  CHECK(db.snapshot() == std::vector<std::vector<int>>{{1, 2}, {3, 4}});
  CHECK(db.peak == 2);
  for (int i = 0; i < 4; ++i) CHECK(out[i].value == row_of(i + 1));
}

TEST_CASE("miss_batcher: a key asked for twice in one batch is loaded once", "[miss_batcher]") {
  recording_db db;
  batcher_t b({.max_batch = 2, .max_delay = 1min}, db_ref{&db});
  std::vector<outcome> out(3);
  std::vector<std::thread> threads;
  threads.push_back(load_in_thread(b, 7, out[0]));
  REQUIRE(wait_requests(b, 1));
  threads.push_back(load_in_thread(b, 7, out[1]));
  REQUIRE(wait_requests(b, 2));
  threads.push_back(load_in_thread(b, 8, out[2]));  // the batch's second distinct key: it closes
  for (auto& t : threads) t.join();
  CHECK(db.snapshot() == std::vector<std::vector<int>>{{7, 8}});
  CHECK(out[0].value == "v7");
  CHECK(out[1].value == "v7");
  CHECK(out[2].value == "v8");
  CHECK(b.stats().duplicates == 1);
  CHECK(b.stats().keys_loaded == 2);
}

TEST_CASE("miss_batcher: a failed load_all reaches every caller of its batch, and only those",
          "[miss_batcher]") {
  recording_db db;
  batcher_t b({.max_batch = 2, .max_delay = 1min}, db_ref{&db});
  std::vector<outcome> out(4);
  {
    std::vector<std::thread> threads;
    threads.push_back(load_in_thread(b, 13, out[0]));
    threads.push_back(load_in_thread(b, 14, out[1]));
    for (auto& t : threads) t.join();
  }
  CHECK(out[0].message() == "batch with 13 failed");
  CHECK(out[1].message() == "batch with 13 failed");
  CHECK(out[0].error == out[1].error);  // the same exception object
  CHECK_FALSE(out[0].value.has_value());
  {
    std::vector<std::thread> threads;
    threads.push_back(load_in_thread(b, 15, out[2]));
    threads.push_back(load_in_thread(b, 16, out[3]));
    for (auto& t : threads) t.join();
  }
  CHECK(out[2].value == "v15");
  CHECK(out[3].value == "v16");
  CHECK(b.stats().failed_batches == 1);
  CHECK(b.stats().batches == 2);
}

TEST_CASE("miss_batcher: under read_through, misses of different keys share one query",
          "[miss_batcher]") {
  using store_t = cachet::sharded_store<int, std::string>;
  recording_db db;
  batcher_t b({.max_batch = 6, .max_delay = 1min}, db_ref{&db});
  cachet::read_through<store_t, batcher_t&> users({.max_entries = 1000, .ttl = 1h}, b);
  std::vector<std::optional<std::string>> got(6);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] { got[i] = users.get(i + 1); });
  }
  for (auto& t : threads) t.join();
  CHECK(db.snapshot() == std::vector<std::vector<int>>{{1, 2, 3, 4, 5, 6}});
  for (int i = 0; i < 6; ++i) CHECK(got[i] == row_of(i + 1));
  for (int i = 0; i < 6; ++i) CHECK(users.get(i + 1) == row_of(i + 1));  // cached
  CHECK(db.snapshot().size() == 1);
}

TEST_CASE("miss_batcher: over an origin_limiter a batch holds one permit", "[miss_batcher]") {
  recording_db db;
  cachet::origin_limiter limit({.max_in_flight = 1});
  cachet::miss_batcher<int, std::string, cachet::limited_loader<db_ref>> b(
      {.max_batch = 3, .max_delay = 1min}, cachet::limited_loader<db_ref>(limit, db_ref{&db}));
  std::vector<std::optional<std::string>> got(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { got[i] = b.load(i + 1); });
  for (auto& t : threads) t.join();
  CHECK(limit.stats().admitted == 1);
  for (int i = 0; i < 3; ++i) CHECK(got[i] == row_of(i + 1));
}

TEST_CASE("miss_batcher: concurrent loads each get their own key's answer", "[miss_batcher]") {
  // Short batches closing by count and by time at once; every answer is checked, and every
  // request is accounted for as a key loaded or a duplicate within its batch.
  recording_db db;
  batcher_t b({.max_batch = 8, .max_delay = 20us}, db_ref{&db});
  constexpr int k_threads = 4;
  constexpr int k_loads = 1500;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t + 1));
      for (int i = 0; i < k_loads; ++i) {
        const int k = static_cast<int>(rng() % 200) + 20;  // skips 13
        if (k == 13) continue;
        if (b.load(k) != recording_db::answer(k)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  const cachet::miss_batcher_stats st = b.stats();
  CHECK(st.requests == static_cast<std::uint64_t>(k_threads * k_loads));
  CHECK(st.requests == st.keys_loaded + st.duplicates);
  CHECK(st.batches == db.snapshot().size());
  CHECK(st.largest_batch <= 8);
}
