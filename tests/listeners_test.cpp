// sharded_store's eviction listener (store_options::on_eviction: under the shard lock, as the
// entry leaves) and rejection listener (store_options::on_rejection: refused writes).
#include <atomic>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct heard {
  int key;
  int value;
  cachet::removal_cause cause;
  bool under_lock;  // true: on_eviction; false: on_removal
};

}  // namespace

TEMPLATE_TEST_CASE("on_eviction: hears evictions and expirations, before on_removal", "[listeners]",
                   cachet::lru, cachet::fifo, cachet::sieve, cachet::s3fifo, cachet::ttl,
                   cachet::lfu, cachet::random) {
  cachet::manual_clock clock;
  std::vector<heard> log;
  cachet_test::int_store<TestType> s({.max_entries = 2,
                                      .shards = 1,
                                      .on_removal =
                                          [&](const int& k, const int& v, cachet::removal_cause c) {
                                            log.push_back({k, v, c, false});
                                          },
                                      .on_eviction =
                                          [&](const int& k, const int& v, cachet::removal_cause c) {
                                            log.push_back({k, v, c, true});
                                          }},
                                     clock);
  s.put(1, 10, 5s);
  s.put(2, 20);
  s.put(2, 21);  // replaced: not an eviction
  s.erase(2);    // explicit: not an eviction
  clock.advance(5s);
  CHECK_FALSE(s.get(1).has_value());  // expired
  REQUIRE(log.size() == 4);
  CHECK((log[0].cause == cachet::removal_cause::replaced && !log[0].under_lock));
  CHECK((log[1].cause == cachet::removal_cause::explicit_erase && !log[1].under_lock));
  CHECK((log[2].key == 1 && log[2].value == 10 && log[2].cause == cachet::removal_cause::expired &&
         log[2].under_lock));
  CHECK((log[3].key == 1 && log[3].cause == cachet::removal_cause::expired && !log[3].under_lock));

  log.clear();
  s.put(3, 30);
  s.put(4, 40);
  s.put(5, 50);  // full: one of 3 and 4 is evicted
  REQUIRE(log.size() == 2);
  CHECK((log[0].cause == cachet::removal_cause::evicted && log[0].under_lock));
  CHECK((log[1].cause == cachet::removal_cause::evicted && !log[1].under_lock));
  CHECK(log[0].key == log[1].key);
  CHECK(log[0].value == log[0].key * 10);
  CHECK_FALSE(s.contains(log[0].key));

  log.clear();
  s.clear();  // cleared: not an eviction
  for (const heard& h : log) CHECK_FALSE(h.under_lock);
}

TEST_CASE("on_eviction: runs under the shard lock, so the removal and the listener are one step",
          "[listeners][threads]") {
  // The listener keeps a side index in step with the store and stops at a gate. A reader of the
  // evicted key, started once the listener is inside, must not get its answer before the listener
  // returns: it waits on the shard lock the eviction holds. (Were the listener run after the lock,
  // the reader would see the key gone from the store while the side index still has it.)
  std::mutex mu;
  std::condition_variable cv;
  bool inside = false, open = false;
  std::set<int> side;
  std::atomic<int> seq{0};
  int listener_done = -1;
  cachet_test::int_store<cachet::fifo> s(
      {.max_entries = 1,
       .shards = 1,
       .on_removal = [](const int&, const int&, cachet::removal_cause) {},
       .on_eviction =
           [&](const int& k, const int&, cachet::removal_cause) {
             std::unique_lock<std::mutex> g(mu);
             inside = true;
             cv.notify_all();
             cv.wait(g, [&] { return open; });
             side.erase(k);
             listener_done = seq.fetch_add(1);
           }});
  s.put(1, 1);
  side.insert(1);
  std::thread writer([&] { s.put(2, 2); });  // evicts 1, stops in the listener
  {
    std::unique_lock<std::mutex> g(mu);
    const bool entered = cv.wait_for(g, 10s, [&] { return inside; });
    if (!entered) {  // no listener call: let the writer finish before failing
      open = true;
      g.unlock();
      writer.join();
      FAIL("the eviction listener was not called");
    }
  }
  std::atomic<int> reader_done{-1};
  std::optional<int> read;
  std::thread reader([&] {
    read = s.get(1);
    reader_done = seq.fetch_add(1);
  });
  // Give a broken store the chance to answer early (bounded; the correct one cannot answer).
  for (int i = 0; i < 200 && reader_done.load() < 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(reader_done.load() == -1);
  {
    std::lock_guard<std::mutex> g(mu);
    open = true;
  }
  cv.notify_all();
  writer.join();
  reader.join();
  CHECK(listener_done < reader_done.load());
  CHECK_FALSE(read.has_value());
  CHECK(side.empty());
}

TEST_CASE("on_rejection: hears refused writes with what they offered", "[listeners]") {
  struct refusal {
    int key;
    int value;
    cachet::put_result why;
  };
  std::vector<refusal> log;
  std::size_t size_seen = 0;
  cachet_test::int_store<cachet::no_eviction>* self = nullptr;
  cachet_test::int_store<cachet::no_eviction> s(
      {.max_entries = 2,
       .shards = 1,
       .on_rejection = [&](const int& k, const int& v, cachet::put_result r) {
         log.push_back({k, v, r});
         size_seen = self->size();  // outside the lock: may call the store
       }});
  self = &s;
  CHECK(s.put(1, 10) == cachet::put_result::inserted);
  CHECK(s.put(2, 20) == cachet::put_result::inserted);
  CHECK(s.put(3, 30) == cachet::put_result::rejected_full);
  REQUIRE(log.size() == 1);
  CHECK((log[0].key == 3 && log[0].value == 30 && log[0].why == cachet::put_result::rejected_full));
  CHECK(size_seen == 2);
  CHECK(s.put_if_absent(4, 40) == std::nullopt);
  CHECK(s.get_or_insert(5, 50) == 50);
  CHECK(s.compute(6, [](std::optional<int>) { return std::optional<int>(60); }) == std::nullopt);
  REQUIRE(log.size() == 4);
  CHECK((log[1].key == 4 && log[1].value == 40));
  CHECK((log[2].key == 5 && log[2].value == 50));
  CHECK((log[3].key == 6 && log[3].value == 60));
  // Not refusals: a write that replaces, a put_if whose condition is false, an insert that finds.
  CHECK(s.put(1, 11) == cachet::put_result::replaced);
  CHECK(s.put_if(2, 21, []() noexcept { return false; }) == cachet::put_result::rejected_stale);
  CHECK(s.put_if_absent(2, 22) == 20);
  CHECK(log.size() == 4);
}

TEST_CASE("on_rejection: a value too heavy for a shard", "[listeners]") {
  std::vector<cachet::put_result> log;
  cachet::sharded_store<int, std::string> s(
      {.max_weight = 8,
       .weigher = [](const int&,
                     const std::string& v) { return static_cast<std::uint32_t>(v.size()); },
       .shards = 1,
       .on_rejection =
           [&](const int&, const std::string& v, cachet::put_result r) {
             CHECK(v == "far too heavy");
             log.push_back(r);
           }});
  CHECK(s.put(1, "far too heavy") == cachet::put_result::rejected_too_heavy);
  REQUIRE(log.size() == 1);
  CHECK(log[0] == cachet::put_result::rejected_too_heavy);
}
