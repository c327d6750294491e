// write_back: acknowledged writes reach the Source after flush() and destruction, coalesce, survive
// eviction and expiry of their cache entries, wait out a failing Source, and respect the backlog
// bound. The flusher is a real thread: tests wait on conditions (cachet_test::await), never on
// time.
#include <cachet/sharded_store.hpp>
#include <cachet/write_back.hpp>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using store_t = cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock>;

// The table behind a mock Source, shared so tests can look at it after the write_back is gone.
struct table {
  std::mutex mu;
  std::condition_variable cv;
  std::map<int, int> rows;
  int loads = 0;
  int stores = 0;       // store() calls
  int erases = 0;       // erase() calls
  int batch_calls = 0;  // store_all() calls
  int failures = 0;     // writes that threw
  bool fail = false;    // writes throw while set
  int attempts = 0;     // write calls, failed or not
  int fail_from = -1;   // and the writes numbered [fail_from, fail_until) throw: a failing window
  int fail_until = -1;
  bool hold = false;  // store_all() blocks while set
  int held = 0;       // store_all() calls blocked now

  std::map<int, int> snapshot() {
    std::lock_guard<std::mutex> g(mu);
    return rows;
  }
  void set_fail(bool f) {
    std::lock_guard<std::mutex> g(mu);
    fail = f;
  }
  void set_hold(bool h) {
    {
      std::lock_guard<std::mutex> g(mu);
      hold = h;
    }
    cv.notify_all();
  }
  template <class F>
  auto read(F f) {
    std::lock_guard<std::mutex> g(mu);
    return f(*this);
  }
  void check_fail() {
    const int n = attempts++;
    if (fail || (n >= fail_from && n < fail_until)) {
      ++failures;
      throw std::runtime_error("source down");
    }
  }
};

// A Source with per-key writes only.
struct keyed_source {
  std::shared_ptr<table> t;
  std::optional<int> load(const int& k) {
    std::lock_guard<std::mutex> g(t->mu);
    ++t->loads;
    auto it = t->rows.find(k);
    if (it == t->rows.end()) return std::nullopt;
    return it->second;
  }
  void store(const int& k, const int& v) {
    std::lock_guard<std::mutex> g(t->mu);
    t->check_fail();
    ++t->stores;
    t->rows[k] = v;
  }
  void erase(const int& k) {
    std::lock_guard<std::mutex> g(t->mu);
    t->check_fail();
    ++t->erases;
    t->rows.erase(k);
  }
};

// The same with a batch write, which can also be held open.
struct batch_source : keyed_source {
  void store_all(std::span<const std::pair<int, int>> batch) {
    std::unique_lock<std::mutex> g(t->mu);
    ++t->held;
    t->cv.wait(g, [&] { return !t->hold; });
    --t->held;
    t->check_fail();
    ++t->batch_calls;
    for (const auto& [k, v] : batch) t->rows[k] = v;
  }
};

template <class Source>
using wb_t = cachet::write_back<store_t, Source>;

cachet::store_options<int, int> small_cache(std::size_t n) {
  cachet::store_options<int, int> o;
  o.max_entries = n;
  o.shards = 1;
  return o;
}

// Options under which nothing is flushed unless asked: no batch fills, no delay passes.
cachet::write_back_options lazy() {
  cachet::write_back_options o;
  o.max_batch = 1 << 20;
  o.max_dirty = 1 << 20;
  o.max_delay = std::chrono::hours(1);
  return o;
}

}  // namespace

TEST_CASE("write_back: a write is acknowledged at once and reaches the source on flush()",
          "[write_back]") {
  auto t = std::make_shared<table>();
  wb_t<batch_source> wb(batch_source{{t}}, lazy(), small_cache(100), cachet::manual_clock{});
  wb.put(1, 10);
  wb.put(2, 20);
  wb.erase(3);
  CHECK(wb.get(1) == 10);  // read-your-writes, before any flush
  CHECK(wb.get(3) == std::nullopt);
  CHECK(t->snapshot().empty());
  CHECK(wb.dirty() == 3);

  t->read([](table& x) { return x.rows[3] = 30; });  // a row the erase must remove
  wb.flush();
  CHECK(t->snapshot() == std::map<int, int>{{1, 10}, {2, 20}});
  CHECK(t->read([](table& x) { return x.batch_calls; }) == 1);  // one batch: store_all
  const auto st = wb.stats();
  CHECK(st.writes == 3);
  CHECK(st.flushed == 3);
  CHECK(st.batches == 1);
  CHECK(st.dirty == 0);
  CHECK(wb.dirty() == 0);
}

TEST_CASE("write_back: many writes of one key coalesce into one source write", "[write_back]") {
  auto t = std::make_shared<table>();
  wb_t<keyed_source> wb(keyed_source{t}, lazy(), small_cache(100), cachet::manual_clock{});
  for (int i = 1; i <= 100; ++i) wb.put(7, i);
  wb.put(8, 1);
  wb.flush();
  CHECK(t->snapshot() == std::map<int, int>{{7, 100}, {8, 1}});
  CHECK(t->read([](table& x) { return x.stores; }) == 2);
  const auto st = wb.stats();
  CHECK(st.coalesced == 99);
  CHECK(st.flushed + st.coalesced == st.writes);
}

TEST_CASE("write_back: orderly destruction flushes every acknowledged write", "[write_back]") {
  auto t = std::make_shared<table>();
  {
    wb_t<keyed_source> wb(keyed_source{t}, lazy(), small_cache(100), cachet::manual_clock{});
    for (int i = 0; i < 50; ++i) wb.put(i, i * i);
    wb.erase(0);
    CHECK(t->snapshot().empty());
  }
  std::map<int, int> expected;
  for (int i = 1; i < 50; ++i) expected[i] = i * i;
  CHECK(t->snapshot() == expected);
}

TEST_CASE("write_back: a full batch is written without waiting for max_delay", "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.max_batch = 4;
  wb_t<batch_source> wb(batch_source{{t}}, o, small_cache(100), cachet::manual_clock{});
  for (int i = 0; i < 10; ++i) wb.put(i, i);
  // Batches go out while at least 4 keys are dirty; the last 2 wait for max_delay (an hour).
  REQUIRE(cachet_test::await([&] { return wb.stats().flushed == 8; }));
  CHECK(wb.dirty() == 2);
  CHECK(t->read([](table& x) { return x.batch_calls; }) == 2);
  wb.flush();
  CHECK(t->snapshot().size() == 10);
}

TEST_CASE("write_back: a lone write is flushed after max_delay", "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.max_delay = 1ms;
  wb_t<keyed_source> wb(keyed_source{t}, o, small_cache(100), cachet::manual_clock{});
  wb.put(5, 55);
  REQUIRE(cachet_test::await([&] { return t->snapshot().count(5) == 1; }));
  CHECK(t->snapshot().at(5) == 55);
  CHECK(cachet_test::await([&] { return wb.dirty() == 0; }));
}

TEST_CASE("write_back: dirty entries evicted or expired from the cache are not lost",
          "[write_back]") {
  auto t = std::make_shared<table>();
  cachet::manual_clock clock;
  wb_t<keyed_source> wb(keyed_source{t}, lazy(), small_cache(8), clock);
  for (int i = 0; i < 1000; ++i) wb.put(i, -i);
  CHECK(wb.store().size() <= 8);
  CHECK(wb.store().stats().evictions >= 992);
  wb.put(5000, 1, 10s);
  clock.advance(11s);  // the cache entry of 5000 expires
  for (int i = 0; i < 1000; ++i) {
    if (wb.get(i) != -i) FAIL("key " << i << " lost its write");
  }
  CHECK(wb.get(5000) == 1);
  CHECK(wb.stats().dirty_hits >= 992);
  CHECK(t->read([](table& x) { return x.loads; }) == 0);  // all served by the dirty buffer
  wb.flush();
  const auto rows = t->snapshot();
  CHECK(rows.size() == 1001);
  for (int i = 0; i < 1000; ++i) REQUIRE(rows.at(i) == -i);
}

TEST_CASE("write_back: a failing source is retried with backoff; nothing is dropped",
          "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.retry_initial = 1ms;
  o.retry_max = 4ms;
  auto errors = std::make_shared<std::vector<cachet::flush_error>>();
  auto errors_mu = std::make_shared<std::mutex>();
  o.on_error = [errors, errors_mu](const cachet::flush_error& e) {
    std::lock_guard<std::mutex> g(*errors_mu);
    errors->push_back(e);
  };
  wb_t<keyed_source> wb(keyed_source{t}, o, small_cache(100), cachet::manual_clock{});
  t->set_fail(true);
  wb.put(1, 1);
  wb.put(2, 2);
  std::atomic<bool> flushed{false};
  std::thread flusher([&] {
    wb.flush();
    flushed = true;
  });
  REQUIRE(cachet_test::await([&] { return wb.stats().flush_failures >= 4; }));
  CHECK_FALSE(flushed.load());  // flush() waits for the source to come back
  wb.put(1, 100);               // coalesces into the write that keeps failing
  CHECK(wb.dirty() == 2);
  CHECK(wb.get(1) == 100);
  t->set_fail(false);
  flusher.join();
  CHECK(flushed.load());
  CHECK(t->snapshot() == std::map<int, int>{{1, 100}, {2, 2}});
  const auto st = wb.stats();
  CHECK(st.retries >= 4);
  CHECK(st.flushed + st.coalesced == st.writes);
  std::lock_guard<std::mutex> g(*errors_mu);
  REQUIRE(errors->size() >= 4);
  CHECK((*errors)[0].attempt == 1);
  CHECK((*errors)[1].attempt == 2);
  CHECK((*errors)[0].retry_in == 1ms);
  CHECK((*errors)[1].retry_in == 2ms);
  CHECK((*errors)[3].retry_in == 4ms);  // capped at retry_max
  CHECK((*errors)[0].batch_size >= 1);
  try {
    std::rethrow_exception((*errors)[0].error);
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "source down");
  }
}

TEST_CASE("write_back: per-key writes retry only what the source did not take", "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.retry_initial = 1ms;
  o.retry_max = 1ms;
  struct flaky : keyed_source {
    int left_before_failure = 3;  // the 4th store() of the first batch fails once
    void store(const int& k, const int& v) {
      if (left_before_failure-- == 0) throw std::runtime_error("blip");
      keyed_source::store(k, v);
    }
  };
  wb_t<flaky> wb(flaky{{t}}, o, small_cache(100), cachet::manual_clock{});
  for (int i = 0; i < 10; ++i) wb.put(i, i);
  wb.flush();
  CHECK(t->snapshot().size() == 10);
  CHECK(t->read([](table& x) { return x.stores; }) == 10);  // nothing written twice
  CHECK(wb.stats().flush_failures == 1);
  CHECK(wb.stats().flushed == 10);
}

TEST_CASE("write_back: at the backlog bound, writers block until the flusher makes room",
          "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.max_batch = 2;
  o.max_dirty = 4;
  t->set_hold(true);  // the flusher's store_all() waits until released
  wb_t<batch_source> wb(batch_source{{t}}, o, small_cache(100), cachet::manual_clock{});
  for (int i = 0; i < 4; ++i) wb.put(i, i);
  REQUIRE(cachet_test::await([&] { return t->read([](table& x) { return x.held; }) == 1; }));
  wb.put(0, 100);  // a key already dirty coalesces: no new room needed, no wait
  std::atomic<bool> done{false};
  std::thread writer([&] {
    wb.put(9, 9);  // a new key at the bound
    done = true;
  });
  REQUIRE(cachet_test::await([&] { return wb.stats().blocked_writes == 1; }));
  CHECK_FALSE(done.load());  // it cannot finish while the source holds every slot
  CHECK(wb.dirty() == 4);
  t->set_hold(false);
  writer.join();
  wb.flush();
  CHECK(t->snapshot() == std::map<int, int>{{0, 100}, {1, 1}, {2, 2}, {3, 3}, {9, 9}});
  CHECK(wb.stats().write_through_fallbacks == 0);
}

TEST_CASE("write_back: at the backlog bound, write_through mode writes the source directly",
          "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.max_batch = 2;
  o.max_dirty = 2;
  o.when_full = cachet::backlog_policy::write_through;
  t->set_hold(true);  // the flusher's store_all() is stuck; store() is not
  wb_t<batch_source> wb(batch_source{{t}}, o, small_cache(100), cachet::manual_clock{});
  wb.put(1, 1);
  wb.put(2, 2);
  REQUIRE(cachet_test::await([&] { return t->read([](table& x) { return x.held; }) == 1; }));
  wb.put(3, 3);  // no room: written through, synchronously
  CHECK(t->snapshot() == std::map<int, int>{{3, 3}});
  CHECK(wb.stats().write_through_fallbacks == 1);
  CHECK(wb.get(3) == 3);

  t->set_fail(true);  // a failing write-through write propagates and changes nothing
  CHECK_THROWS_AS(wb.put(4, 4), std::runtime_error);
  CHECK(wb.get(4) == std::nullopt);
  CHECK(wb.stats().writes == 3);
  t->set_fail(false);
  t->set_hold(false);
  wb.flush();
  CHECK(t->snapshot() == std::map<int, int>{{1, 1}, {2, 2}, {3, 3}});
}

TEST_CASE("write_back: a load that read the old row does not overwrite a newer write",
          "[write_back]") {
  auto t = std::make_shared<table>();
  t->rows[1] = 1;
  std::atomic<bool> loading{false}, release{false};
  struct gated : keyed_source {
    std::atomic<bool>* loading;
    std::atomic<bool>* release;
    std::optional<int> load(const int& k) {
      auto v = keyed_source::load(k);  // reads the old row
      *loading = true;
      while (!*release) std::this_thread::yield();
      return v;
    }
  };
  wb_t<gated> wb(gated{{t}, &loading, &release}, lazy(), small_cache(100), cachet::manual_clock{});
  std::optional<int> seen;
  std::thread reader([&] { seen = wb.get(1); });
  REQUIRE(cachet_test::await([&] { return loading.load(); }));
  wb.put(1, 2);
  release = true;
  reader.join();
  CHECK(seen == 1);       // the read began before the write: either answer is linearisable
  CHECK(wb.get(1) == 2);  // but the old row must not be cached over the new write
  wb.flush();
  CHECK(wb.get(1) == 2);
  CHECK(t->snapshot().at(1) == 2);
}

TEST_CASE("write_back: reads load from the source once the write is flushed", "[write_back]") {
  auto t = std::make_shared<table>();
  t->rows[1] = 5;
  wb_t<keyed_source> wb(keyed_source{t}, lazy(), small_cache(100), cachet::manual_clock{});
  CHECK(wb.get(1) == 5);
  CHECK(wb.get(1) == 5);
  CHECK(t->read([](table& x) { return x.loads; }) == 1);
  CHECK(wb.get(2) == std::nullopt);
  const auto st = wb.stats();
  CHECK(st.hits == 1);
  CHECK(st.misses == 2);
  CHECK(st.loads.loads == 2);
}

TEST_CASE(
    "write_back: a miss that reaches the load after another load ended is served, not reloaded",
    "[write_back]") {
  // Reader A misses; before A joins the load's flight, reader B misses, loads the row into the
  // cache and retires its flight. A must find it inside its own flight instead of loading again.
  // The hash runs B's whole get() in place of the second hash A computes (the flight's).
  using cachet_test::hooked_hash;
  using hooked_store =
      cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock, hooked_hash>;
  auto t = std::make_shared<table>();
  t->rows[1] = 5;
  cachet::store_options<int, int> cache;
  cache.max_entries = 100;
  cachet::write_back<hooked_store, keyed_source> wb(keyed_source{t}, lazy(), cache,
                                                    cachet::manual_clock{});
  std::optional<int> b_got;
  hooked_hash::at_call(2, [&] { b_got = wb.get(1); });
  CHECK(wb.get(1) == 5);
  REQUIRE(hooked_hash::fired());
  CHECK(b_got == 5);
  CHECK(t->read([](table& x) { return x.loads; }) == 1);
  CHECK(wb.stats().loads.loads == 1);
  CHECK(wb.stats().loads.answered == 1);
}

TEST_CASE("write_back: concurrent writers, a failing window and a tiny cache lose nothing",
          "[write_back]") {
  auto t = std::make_shared<table>();
  cachet::write_back_options o;
  o.max_batch = 16;
  o.max_dirty = 64;
  o.max_delay = 1ms;
  o.retry_initial = 100us;
  o.retry_max = 1ms;
  constexpr int k_threads = 4, k_keys_per_thread = 200, k_ops = 4000;
  std::vector<std::map<int, int>> models(k_threads);  // key -> last value written, -1 = erased
  std::vector<int> read_mismatches(k_threads, 0);
  t->read([](table& x) {  // the source refuses 300 writes in a row, early in the run
    x.fail_from = 200;
    return x.fail_until = 500;
  });
  {
    wb_t<keyed_source> wb(keyed_source{t}, o, small_cache(16), cachet::manual_clock{});
    std::vector<std::thread> threads;
    for (int th = 0; th < k_threads; ++th) {
      threads.emplace_back([&, th] {
        std::uint64_t x = 0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(th + 1);
        auto& model = models[static_cast<std::size_t>(th)];
        for (int i = 0; i < k_ops; ++i) {
          x = cachet::detail::mix64(x);
          const int key = th * k_keys_per_thread + static_cast<int>(x % k_keys_per_thread);
          const int op = static_cast<int>((x >> 32) % 10);
          if (op < 6) {
            wb.put(key, i);
            model[key] = i;
          } else if (op < 7) {
            wb.erase(key);
            model[key] = -1;
          } else {
            auto it = model.find(key);
            const int want = it == model.end() ? -1 : it->second;
            if (wb.get(key).value_or(-1) != want) ++read_mismatches[static_cast<std::size_t>(th)];
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    wb.flush();
    const auto st = wb.stats();
    CHECK(st.flushed + st.coalesced == st.writes);
    CHECK(st.coalesced > 0);
    CHECK(st.flush_failures > 0);
    CHECK(st.dirty == 0);
  }
  std::map<int, int> expected;
  for (const auto& m : models) {
    for (const auto& [k, v] : m) {
      if (v >= 0) expected[k] = v;
    }
  }
  CHECK(t->snapshot() == expected);
  CHECK(read_mismatches == std::vector<int>(k_threads, 0));
}

TEST_CASE("write_back: invalid options throw, naming the option", "[write_back]") {
  auto t = std::make_shared<table>();
  auto make = [&](cachet::write_back_options o) {
    wb_t<keyed_source> wb(keyed_source{t}, std::move(o), small_cache(10), cachet::manual_clock{});
  };
  auto o = lazy();
  o.max_batch = 0;
  CHECK_THROWS_WITH(make(o), Catch::Contains("max_batch"));
  o = lazy();
  o.max_dirty = o.max_batch - 1;
  CHECK_THROWS_WITH(make(o), Catch::Contains("max_dirty"));
  o = lazy();
  o.max_delay = 0ns;
  CHECK_THROWS_WITH(make(o), Catch::Contains("max_delay"));
  o = lazy();
  o.retry_initial = 0ns;
  CHECK_THROWS_WITH(make(o), Catch::Contains("retry_initial"));
  o = lazy();
  o.retry_max = o.retry_initial / 2;
  CHECK_THROWS_WITH(make(o), Catch::Contains("retry_max"));
  o = lazy();
  o.shutdown_timeout = -1ns;
  CHECK_THROWS_WITH(make(o), Catch::Contains("shutdown_timeout"));
}

TEST_CASE("write_back: shutdown_timeout bounds the destructor and reports what it abandoned",
          "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.retry_initial = 1ms;
  o.retry_max = 1ms;
  o.shutdown_timeout = 20ms;
  auto abandoned = std::make_shared<std::atomic<std::size_t>>(0);
  o.on_error = [abandoned](const cachet::flush_error& e) {
    try {
      std::rethrow_exception(e.error);
    } catch (const cachet::abandoned_writes_error& a) {
      *abandoned = a.count;
    } catch (...) {
    }
  };
  t->set_fail(true);
  {
    wb_t<keyed_source> wb(keyed_source{t}, o, small_cache(10), cachet::manual_clock{});
    wb.put(1, 1);
    wb.put(2, 2);
  }
  CHECK(abandoned->load() == 2);
  CHECK(t->snapshot().empty());
}

TEST_CASE("write_back: flush() returns under sustained writes", "[write_back]") {
  // The source and the writer run in lockstep: each store() waits until the writer has put two
  // more keys since the last store, and the writer stays at most 64 puts ahead of the last store.
  // So while the writer runs, a batch is always ready and the flusher never sees an empty round;
  // flush() must still return once the writes made before it are in the Source.
  struct paced : keyed_source {
    std::atomic<long>* progress;  // puts by the writer
    std::atomic<long>* last;      // progress at the latest store()
    std::atomic<bool>* stop;
    void store(const int& k, const int& v) {
      while (!*stop && progress->load() < last->load() + 2) std::this_thread::yield();
      last->store(progress->load());
      keyed_source::store(k, v);
    }
  };
  auto t = std::make_shared<table>();
  std::atomic<long> progress{0}, last{0};
  std::atomic<bool> stop{false};
  auto o = lazy();
  o.max_batch = 4;
  wb_t<paced> wb(paced{{t}, &progress, &last, &stop}, o, small_cache(100), cachet::manual_clock{});
  for (int i = 0; i < 100; ++i) wb.put(i, i);
  std::thread writer([&] {
    for (int i = 1000; !stop; ++i) {  // new keys, without end
      while (!stop && progress.load() >= last.load() + 64) std::this_thread::yield();
      wb.put(i, i);
      ++progress;
    }
  });
  const bool flushed = wb.flush_for(std::chrono::seconds(60));
  const auto rows = t->snapshot();
  stop = true;
  writer.join();
  CHECK(flushed);
  for (int i = 0; i < 100; ++i) REQUIRE(rows.count(i) == 1);
}

TEST_CASE("write_back: a batch write that throws leaves its whole batch dirty and retries it",
          "[write_back]") {
  auto t = std::make_shared<table>();
  auto o = lazy();
  o.retry_initial = 1ms;
  o.retry_max = 1ms;
  t->fail_from = 0;  // the first write call, store_all() of the first batch, throws once
  t->fail_until = 1;
  wb_t<batch_source> wb(batch_source{{t}}, o, small_cache(100), cachet::manual_clock{});
  for (int i = 0; i < 5; ++i) wb.put(i, 10 * i);
  wb.flush();
  CHECK(t->snapshot() == std::map<int, int>{{0, 0}, {1, 10}, {2, 20}, {3, 30}, {4, 40}});
  CHECK(t->read([](table& x) { return x.batch_calls; }) == 1);  // the retry, whole
  const auto st = wb.stats();
  CHECK(st.flush_failures == 1);
  CHECK(st.flushed == 5);  // counted once, when the Source took them
  CHECK(st.batches == 1);
  CHECK(wb.dirty() == 0);
}

TEST_CASE("write_back: a write-through fallback write is not undone or hidden by a load in flight",
          "[write_back][consistency]") {
  auto t = std::make_shared<table>();
  t->rows = {{5, 10}};
  // A Source whose first load of key 5 reads the row, then holds until released.
  struct gated_source : batch_source {
    std::shared_ptr<std::atomic<int>> stage;  // 1: the held load has read; 2: released
    std::optional<int> load(const int& k) {
      std::optional<int> v = keyed_source::load(k);
      int expected = 0;
      if (k == 5 && stage->compare_exchange_strong(expected, 1)) {
        cachet_test::await([&] { return stage->load() == 2; });
      }
      return v;
    }
  };
  auto stage = std::make_shared<std::atomic<int>>(0);
  auto o = lazy();
  o.max_batch = 1;
  o.max_dirty = 1;
  o.when_full = cachet::backlog_policy::write_through;
  t->set_hold(true);  // the flusher's batch stays in flight, so the backlog stays full
  wb_t<gated_source> wb(gated_source{{{t}}, stage}, o, small_cache(100), cachet::manual_clock{});
  wb.put(1, 1);
  REQUIRE(cachet_test::await([&] { return t->read([](table& x) { return x.held; }) == 1; }));

  std::optional<int> overlapping;
  std::thread early([&] { overlapping = wb.get(5); });  // reads 10, held before its fill
  REQUIRE(cachet_test::await([&] { return stage->load() == 1; }));
  wb.put(5, 20);  // no room: written through to the Source, then the cache step
  REQUIRE(wb.stats().write_through_fallbacks == 1);

  // A read that starts now must not join the held load (which read 10)...
  std::optional<int> after;
  std::atomic<bool> after_done{false};
  std::thread late([&] {
    after = wb.get(5);
    after_done = true;
  });
  const bool late_finished_alone = cachet_test::await([&] { return after_done.load(); });
  *stage = 2;
  early.join();
  late.join();
  CHECK(late_finished_alone);
  CHECK(after == 20);
  // ...and the held load's fill, released now, must not put 10 back.
  CHECK(wb.get(5) == 20);
  CHECK(overlapping == 10);  // it started before the write: the old value is allowed
  t->set_hold(false);
}

TEST_CASE("write_back: a write that lands at any step of a read's miss is never undone by its fill",
          "[write_back][consistency]") {
  // Each step of a read of a clean, uncached key hashes the key: the store's lookup, the flight,
  // the invalidation ticket, the dirty buffer's shard and its map. put(5, 20) runs at the n-th
  // such hash, for every n, so it lands once between each two steps; whatever the step, the read
  // may return the old 10 or the new 20, but once both calls are done 20 must be what is read and
  // cached. (Where the write lands between the dirty buffer's look and the ticket, a fill that
  // took its ticket after the look would cache 10 over the acknowledged 20.) The write runs on its
  // own thread: some hashes are taken under a lock the write needs, and there it simply waits for
  // the read to let go (the bounded wait below only keeps this thread from waiting for it).
  using hooked = cachet_test::hooked_hash;
  using hstore = cachet::sharded_store<int, int, cachet::lru, cachet::manual_clock, hooked>;
  const int n = GENERATE(range(1, 13));
  INFO("the write lands at hash " << n << " of the read");
  auto t = std::make_shared<table>();
  t->rows = {{5, 10}};
  cachet::write_back<hstore, batch_source> wb(batch_source{{t}}, lazy(), small_cache(100),
                                              cachet::manual_clock{});
  std::thread writer;
  std::atomic<bool> written{false};
  hooked::at_call(n, [&] {
    writer = std::thread([&] {
      wb.put(5, 20);
      written = true;
    });
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (!written.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  });
  const std::optional<int> during = wb.get(5);
  if (!hooked::fired()) {  // the read took fewer than n hashes: write after it
    hooked::at_call(0, nullptr);
    wb.put(5, 20);
  } else {
    writer.join();
  }
  CHECK((during == 10 || during == 20));
  CHECK(wb.get(5) == 20);
  const std::optional<int> cached = wb.store().peek(5);
  CHECK((cached == std::nullopt || cached == 20));
  wb.flush();
  CHECK(t->read([](table& x) { return x.rows.at(5); }) == 20);
}
