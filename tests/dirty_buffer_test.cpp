// detail::dirty_buffer, write_back's buffer of unflushed writes, on one thread with explicit time
// points: queueing, coalescing, writes behind a write in flight, requeue to the front with the
// original epoch, the eligibility rules of collect(), covered(), erases, the slot bound and the
// rollback of a write that throws; then a model of write_back's flusher run against it. A test
// hook (dirty_buffer_test_access) counts queue items, stale ones included; it changes nothing.
#include <cachet/detail/dirty_buffer.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cachet::detail {

// Looks at the shards' queues. Locks each shard like the buffer does.
struct dirty_buffer_test_access {
  // Queue items, live and stale.
  template <class B>
  static std::size_t queued(B& b) {
    std::size_t n = 0;
    for (auto& s : b.shards_) {
      std::lock_guard<std::mutex> g(s.mu);
      n += s.queue.size();
    }
    return n;
  }
  // Queue items whose ticket no longer matches their key's entry.
  template <class B>
  static std::size_t stale(B& b) {
    std::size_t n = 0;
    for (auto& s : b.shards_) {
      std::lock_guard<std::mutex> g(s.mu);
      for (const auto& q : s.queue) {
        auto it = s.map.find(q.key);
        if (it == s.map.end() || it->second.ticket != q.ticket) ++n;
      }
    }
    return n;
  }
};

}  // namespace cachet::detail

namespace {

using namespace std::chrono_literals;
using access = cachet::detail::dirty_buffer_test_access;
using time_point = std::chrono::steady_clock::time_point;

static_assert(sizeof(std::size_t) == 8, "shard_hash puts the shard in the top 6 of 64 bits");

// Key k lives in shard k / 100 (the buffer shards by the top 6 bits of the hash), so a test picks
// which keys share a queue: 1, 2, 3 do; 1, 101, 201 do not.
struct shard_hash {
  std::size_t operator()(int k) const noexcept {
    return static_cast<std::size_t>((static_cast<std::uint64_t>(k / 100) << 58) |
                                    static_cast<std::uint64_t>(k % 100));
  }
};

using buffer = cachet::detail::dirty_buffer<int, int, shard_hash, std::equal_to<int>>;
using item = buffer::item;
using status = buffer::record_status;

constexpr std::chrono::nanoseconds k_delay = 10s;
constexpr std::int64_t k_none = buffer::k_no_deadline;
const time_point t0 = time_point{} + 1h;

buffer::record_result put(buffer& b, int k, int v, time_point now) {
  return b.record(k, std::optional<int>(v), k_none, now);
}
buffer::record_result erase(buffer& b, int k, time_point now) {
  return b.record(k, std::optional<int>(), k_none, now);
}

// The dirty value of `k` (an optional: nullopt for an erase), or nothing if `k` is not dirty.
std::optional<std::optional<int>> dirty_value(buffer& b, int k) {
  std::optional<std::optional<int>> r;
  b.lookup(k, [&](const std::optional<int>& v, std::int64_t) { r = v; });
  return r;
}

struct collected {
  std::vector<item> batch;
  std::optional<time_point> next_due;
  std::vector<int> keys() const {
    std::vector<int> ks;
    for (const item& i : batch) ks.push_back(i.key);
    return ks;
  }
};

collected collect(buffer& b, time_point now, std::uint64_t target = 0, bool pressure = false,
                  std::size_t max = 100) {
  collected c;
  b.collect(c.batch, max, target, pressure, now, c.next_due);
  return c;
}

}  // namespace

TEST_CASE("dirty_buffer: a new key is queued and due max_delay after its write",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  const auto r1 = put(b, 1, 10, t0);
  CHECK(r1.status == status::added);
  CHECK(r1.size == 1);
  const auto r2 = b.record(2, std::optional<int>(20), 12345, t0);  // a deadline, kept for lookup
  CHECK(r2.status == status::added);
  CHECK(r2.size == 2);
  CHECK(b.size() == 2);
  CHECK(access::queued(b) == 2);
  CHECK(dirty_value(b, 1) == std::optional<int>(10));
  std::int64_t deadline = 0;
  CHECK(b.lookup(2, [&](const std::optional<int>&, std::int64_t d) { deadline = d; }));
  CHECK(deadline == 12345);
  CHECK_FALSE(b.lookup(3, [](const std::optional<int>&, std::int64_t) { FAIL("not dirty"); }));

  auto early = collect(b, t0 + k_delay - 1ns);
  CHECK(early.batch.empty());
  REQUIRE(early.next_due);
  CHECK(*early.next_due == t0 + k_delay);

  auto due = collect(b, t0 + k_delay);
  REQUIRE(due.keys() == std::vector<int>{1, 2});  // one shard: in the order written
  CHECK(due.batch[0].value == 10);
  CHECK(due.batch[1].value == 20);
  CHECK(due.batch[0].epoch() == 1);
  CHECK(due.batch[0].since() == t0);
  CHECK_FALSE(due.next_due);
  CHECK(b.size() == 2);                                // in flight, still dirty
  CHECK(dirty_value(b, 1) == std::optional<int>(10));  // and still served to reads
  CHECK(access::queued(b) == 0);

  CHECK(b.complete(due.batch[0]));
  CHECK(b.complete(due.batch[1]));
  CHECK(b.size() == 0);
  CHECK_FALSE(dirty_value(b, 1));
  CHECK(collect(b, t0 + 100h).batch.empty());
}

TEST_CASE("dirty_buffer: writes before collect coalesce into the queued one",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  CHECK(put(b, 1, 10, t0).status == status::added);
  CHECK(put(b, 1, 11, t0 + 5s).status == status::coalesced);
  CHECK(put(b, 1, 12, t0 + 9s).status == status::coalesced);
  CHECK(b.size() == 1);
  CHECK(access::queued(b) == 1);  // no new queue item: the first one carries the newest value
  CHECK(dirty_value(b, 1) == std::optional<int>(12));

  // Due from the first write: rewriting a key does not postpone it.
  auto early = collect(b, t0 + 9s);
  CHECK(early.batch.empty());
  REQUIRE(early.next_due);
  CHECK(*early.next_due == t0 + k_delay);
  auto due = collect(b, t0 + k_delay);
  REQUIRE(due.batch.size() == 1);
  CHECK(due.batch[0].value == 12);
  CHECK(due.batch[0].since() == t0);
  CHECK(b.complete(due.batch[0]));
  CHECK(b.size() == 0);
}

TEST_CASE("dirty_buffer: a write of a key in flight queues behind it and keeps the key dirty",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  put(b, 1, 10, t0);
  auto first = collect(b, t0 + k_delay);
  REQUIRE(first.batch.size() == 1);
  const time_point t1 = t0 + k_delay + 1s;
  const auto r = put(b, 1, 11, t1);
  CHECK(r.status == status::queued_behind);
  CHECK(b.size() == 1);  // the same key: no second slot
  CHECK(access::queued(b) == 1);
  CHECK(dirty_value(b, 1) == std::optional<int>(11));

  CHECK_FALSE(b.complete(first.batch[0]));  // the Source has 10; 11 is still to be written
  CHECK(b.size() == 1);
  CHECK(dirty_value(b, 1) == std::optional<int>(11));

  auto early = collect(b, t1 + k_delay - 1ns);  // the queued write is due from its own time
  CHECK(early.batch.empty());
  REQUIRE(early.next_due);
  CHECK(*early.next_due == t1 + k_delay);
  auto second = collect(b, t1 + k_delay);
  REQUIRE(second.batch.size() == 1);
  CHECK(second.batch[0].value == 11);
  CHECK(second.batch[0].since() == t1);
  CHECK(b.complete(second.batch[0]));
  CHECK(b.size() == 0);
  CHECK_FALSE(dirty_value(b, 1));
}

TEST_CASE("dirty_buffer: a failed write goes back to the front of its queue with its epoch",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  put(b, 1, 10, t0);  // epoch 1
  const std::uint64_t target = b.next_epoch();
  REQUIRE(target == 1);
  put(b, 2, 20, t0 + 1s);  // epoch 2, same shard, behind key 1
  CHECK_FALSE(b.covered(target));

  auto c = collect(b, t0, target);  // nothing is due: the flush target alone makes key 1 eligible
  REQUIRE(c.keys() == std::vector<int>{1});
  REQUIRE(c.next_due);
  CHECK(*c.next_due == t0 + 1s + k_delay);
  CHECK(b.covered(target));  // key 1 is in flight, not queued

  CHECK_FALSE(b.requeue(c.batch[0]));  // the Source failed; no newer write to supersede
  CHECK_FALSE(b.covered(target));      // the flush() waiting for it still waits
  CHECK(b.size() == 2);

  SECTION("the flush target still takes it, ahead of the newer write") {
    auto again = collect(b, t0, target);
    REQUIRE(again.keys() == std::vector<int>{1});
    CHECK(again.batch[0].epoch() == 1);
    CHECK(again.batch[0].since() == t0);
    CHECK(again.batch[0].value == 10);
  }
  SECTION("it is first in its queue") {
    auto one = collect(b, t0, 0, true, 1);
    REQUIRE(one.keys() == std::vector<int>{1});
    CHECK(one.batch[0].epoch() == 1);
  }
}

TEST_CASE("dirty_buffer: a failed batch requeued last first keeps its order",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  for (int k = 1; k <= 4; ++k) put(b, k, k, t0 + std::chrono::seconds(k));
  auto c = collect(b, t0, 0, true, 3);
  REQUIRE(c.keys() == std::vector<int>{1, 2, 3});
  for (std::size_t i = c.batch.size(); i-- > 0;) b.requeue(c.batch[i]);
  auto again = collect(b, t0, 0, true);
  CHECK(again.keys() == std::vector<int>{1, 2, 3, 4});
}

TEST_CASE("dirty_buffer: a requeued write supersedes the newer write of its key, which goes stale",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  put(b, 1, 10, t0);  // epoch 1
  const std::uint64_t target = b.next_epoch();
  auto c = collect(b, t0, target);
  REQUIRE(c.keys() == std::vector<int>{1});
  CHECK(put(b, 1, 11, t0 + 1s).status == status::queued_behind);  // epoch 2, at the back

  CHECK(b.requeue(c.batch[0]));  // superseded: 10 will never be written, 11 goes in its place
  CHECK(b.size() == 1);
  CHECK(access::queued(b) == 2);
  CHECK(access::stale(b) == 1);
  CHECK_FALSE(b.covered(target));  // the live item has the failed write's epoch
  CHECK(dirty_value(b, 1) == std::optional<int>(11));

  auto retry = collect(b, t0, target);  // the stale item is skipped, not sent a second time
  REQUIRE(retry.batch.size() == 1);
  CHECK(retry.batch[0].key == 1);
  CHECK(retry.batch[0].value == 11);
  CHECK(retry.batch[0].epoch() == 1);
  CHECK(retry.batch[0].since() == t0);
  CHECK(access::queued(b) == 0);  // and popped
  CHECK(b.covered(target));
  CHECK(b.complete(retry.batch[0]));
  CHECK(b.size() == 0);
  CHECK(collect(b, t0 + 100h, 100, true).batch.empty());
}

TEST_CASE("dirty_buffer: collect takes at most max writes and reports when more are due",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  put(b, 1, 1, t0);
  put(b, 2, 2, t0 + 1s);
  put(b, 3, 3, t0 + 2s);
  put(b, 101, 101, t0 + 3s);
  put(b, 201, 201, t0 + 4s);
  const time_point now = t0 + 1h;  // all due
  std::vector<int> seen;
  std::vector<item> in_flight;
  for (int round = 0; round < 3; ++round) {
    auto c = collect(b, now, 0, false, 2);
    CHECK(c.batch.size() == (round < 2 ? 2u : 1u));
    if (round == 0) {
      REQUIRE(c.next_due);  // it stopped at key 3, due already
      CHECK(*c.next_due <= now);
    } else if (round == 2) {
      CHECK_FALSE(c.next_due);  // not full: it looked everywhere, and nothing is left
    }
    for (item& i : c.batch) {
      seen.push_back(i.key);
      in_flight.push_back(std::move(i));
    }
  }
  REQUIRE(seen.size() == 5);
  std::vector<int> shard0;  // one queue is FIFO across batches
  for (int k : seen) {
    if (k < 100) shard0.push_back(k);
  }
  CHECK(shard0 == std::vector<int>{1, 2, 3});
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int>{1, 2, 3, 101, 201});
  for (item& i : in_flight) CHECK(b.complete(i));
  CHECK(b.size() == 0);
}

TEST_CASE("dirty_buffer: a huge max_delay saturates: never due by time",
          "[write_back][dirty_buffer]") {
  buffer b(100, std::chrono::nanoseconds::max());
  put(b, 1, 1, t0);
  auto c = collect(b, t0 + 24h * 365 * 200);  // t0 + max_delay overflows unless clamped
  CHECK(c.batch.empty());
  REQUIRE(c.next_due);
  CHECK(*c.next_due == time_point::max());
  CHECK(collect(b, t0, 0, true).keys() == std::vector<int>{1});  // pressure still takes it
}

TEST_CASE("dirty_buffer: a flush target and pressure make writes eligible before they are due",
          "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  put(b, 1, 1, t0);  // epoch 1
  put(b, 101, 101, t0);
  const std::uint64_t first = b.next_epoch();
  put(b, 2, 2, t0);  // epoch 2
  put(b, 102, 102, t0);
  CHECK_FALSE(b.covered(first));

  auto none = collect(b, t0);
  CHECK(none.batch.empty());
  REQUIRE(none.next_due);
  CHECK(*none.next_due == t0 + k_delay);

  auto flushed = collect(b, t0, first);  // only the writes made before the flush
  auto keys = flushed.keys();
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<int>{1, 101});
  CHECK(b.covered(first));
  const std::uint64_t second = b.next_epoch();
  CHECK_FALSE(b.covered(second));

  auto pushed = collect(b, t0, 0, true);  // pressure: everything, due or not
  keys = pushed.keys();
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<int>{2, 102});
  CHECK(b.covered(second));
  for (item& i : flushed.batch) CHECK(b.complete(i));
  for (item& i : pushed.batch) CHECK(b.complete(i));
  CHECK(b.size() == 0);
}

TEST_CASE("dirty_buffer: covered() counts live queued writes only", "[write_back][dirty_buffer]") {
  // A stale item never reaches the front of a queue through this interface (a requeue puts the
  // live item in front of the one it supersedes, and collect() pops stale items as it meets
  // them), so covered()'s skip of a stale front is defensive; here: stale items, writes in flight
  // and writes after the target do not hold covered() up.
  buffer b(100, k_delay);
  put(b, 1, 10, t0);  // epoch 1
  put(b, 2, 20, t0);
  const std::uint64_t target = b.next_epoch();
  auto c = collect(b, t0, target, false, 1);
  REQUIRE(c.keys() == std::vector<int>{1});
  put(b, 3, 30, t0);                                         // epoch 2
  CHECK(put(b, 1, 11, t0).status == status::queued_behind);  // epoch 2
  CHECK(b.requeue(c.batch[0]));                              // 1 (epoch 1) | 2 | 3 | stale
  CHECK(access::stale(b) == 1);
  CHECK_FALSE(b.covered(target));
  auto d = collect(b, t0, target);  // 1 and 2 (epoch 1); 3 has epoch 2: left, the stale one behind
  REQUIRE(d.keys() == std::vector<int>{1, 2});
  CHECK(access::queued(b) == 2);  // 3 and the stale item
  CHECK(access::stale(b) == 1);
  CHECK(b.covered(target));  // in flight and after the target: not waited for
  for (item& i : d.batch) CHECK(b.complete(i));
  CHECK(b.covered(target));
  CHECK_FALSE(b.covered(b.next_epoch()));  // 3 is before this one
}

TEST_CASE("dirty_buffer: an erase is recorded like a write", "[write_back][dirty_buffer]") {
  buffer b(100, k_delay);
  const auto r = erase(b, 1, t0);
  CHECK(r.status == status::added);
  CHECK(b.size() == 1);
  CHECK(dirty_value(b, 1) == std::optional<std::optional<int>>(std::optional<int>()));
  CHECK(put(b, 1, 5, t0).status == status::coalesced);
  CHECK(erase(b, 1, t0).status == status::coalesced);
  auto c = collect(b, t0 + k_delay);
  REQUIRE(c.batch.size() == 1);
  CHECK_FALSE(c.batch[0].value);
  CHECK(put(b, 1, 7, t0).status == status::queued_behind);
  CHECK(erase(b, 1, t0).status == status::coalesced);
  CHECK_FALSE(b.complete(c.batch[0]));
  auto d = collect(b, t0 + k_delay);
  REQUIRE(d.batch.size() == 1);
  CHECK_FALSE(d.batch[0].value);
  CHECK(b.complete(d.batch[0]));
  CHECK(b.size() == 0);
}

TEST_CASE("dirty_buffer: a new key at capacity is refused and changes nothing",
          "[write_back][dirty_buffer]") {
  using string_buffer =
      cachet::detail::dirty_buffer<int, std::string, shard_hash, std::equal_to<int>>;
  string_buffer b(2, k_delay);
  int ran = 0;
  const auto count = [&] { ++ran; };
  auto rec = [&](int k, std::string v) {
    std::optional<std::string> o(std::move(v));
    return b.record(k, std::move(o), k_none, t0, count).status;
  };
  CHECK(rec(1, "a") == status::added);
  CHECK(rec(2, "b") == status::added);
  CHECK(ran == 2);
  std::optional<std::string> v(std::string(100, 'x'));
  const auto full = b.record(3, std::move(v), k_none, t0, count);
  CHECK(full.status == status::full);
  CHECK(ran == 2);                    // on_recorded did not run
  CHECK(v == std::string(100, 'x'));  // the value was not moved from: the caller keeps it
  CHECK(b.size() == 2);
  CHECK_FALSE(b.lookup(3, [](const auto&, std::int64_t) {}));
  CHECK(rec(1, "a2") == status::coalesced);  // a dirty key needs no new slot

  std::vector<string_buffer::item> batch;
  std::optional<time_point> next_due;
  b.collect(batch, 1, 0, true, t0, next_due);
  REQUIRE(batch.size() == 1);
  CHECK(rec(1, "a3") == status::queued_behind);  // nor does a key in flight
  CHECK_FALSE(b.complete(batch[0]));
  CHECK(rec(3, "c") == status::full);  // still two dirty keys
  b.collect(batch, 2, 0, true, t0, next_due);
  REQUIRE(batch.size() == 2);
  CHECK(b.complete(batch[0]));
  CHECK(b.size() == 1);
  const auto added = b.record(3, std::optional<std::string>("c"), k_none, t0);
  CHECK(added.status == status::added);
  CHECK(added.size == 2);
  CHECK(b.complete(batch[1]));
}

namespace {

// A key whose copies throw on demand (its moves never do).
int copies_left = -1;  // < 0: never throw
struct touchy_key {
  int k;
  explicit touchy_key(int v) : k(v) {}
  touchy_key(const touchy_key& o) : k(o.k) {
    if (copies_left == 0) throw std::runtime_error("key copy");
    if (copies_left > 0) --copies_left;
  }
  touchy_key(touchy_key&& o) noexcept : k(o.k) {}
  touchy_key& operator=(const touchy_key&) = default;
  touchy_key& operator=(touchy_key&&) noexcept = default;
  friend bool operator==(const touchy_key& a, const touchy_key& b) { return a.k == b.k; }
};
struct touchy_hash {
  std::size_t operator()(const touchy_key& key) const noexcept { return shard_hash{}(key.k); }
};

}  // namespace

TEST_CASE("dirty_buffer: a record that throws has no effect", "[write_back][dirty_buffer]") {
  cachet::detail::dirty_buffer<touchy_key, int, touchy_hash, std::equal_to<touchy_key>> b(1,
                                                                                          k_delay);
  int ran = 0;
  const auto count = [&] { ++ran; };
  const touchy_key key(1);
  for (int allowed : {0, 1}) {  // the map's copy throws; the queue's copy throws
    INFO("copies allowed: " << allowed);
    copies_left = allowed;
    CHECK_THROWS_AS(b.record(key, std::optional<int>(1), k_none, t0, count), std::runtime_error);
    copies_left = -1;
    CHECK(ran == 0);
    CHECK(b.size() == 0);  // the slot was given back
    CHECK_FALSE(b.lookup(key, [](const auto&, std::int64_t) {}));
  }
  const auto r = b.record(key, std::optional<int>(2), k_none, t0, count);  // capacity 1: room
  CHECK(r.status == decltype(b)::record_status::added);
  CHECK(ran == 1);
  std::vector<decltype(b)::item> batch;
  std::optional<time_point> next_due;
  b.collect(batch, 10, 0, true, t0, next_due);
  REQUIRE(batch.size() == 1);  // one queue item: the failed records left none behind
  CHECK(batch[0].value == 2);
  CHECK(b.complete(batch[0]));
}

TEST_CASE("dirty_buffer: a model of write_back's flusher loses, reorders and repeats nothing",
          "[write_back][dirty_buffer]") {
  // Random writes, erases, clock steps, batches and flushes, driven the way write_back drives the
  // buffer: collect a batch; meanwhile maybe write a key of it; the Source takes a prefix; complete
  // that and requeue the rest last first. Every write gets a sequence number (a put's value is its
  // number), so per key "in order, once" means "the numbers the Source takes increase".
  const unsigned seed = GENERATE(range(1u, 51u));
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  constexpr std::size_t k_capacity = 6;
  buffer b(k_capacity, k_delay);
  time_point now = t0;
  int seq = 0;
  std::map<int, int> last;            // key -> number of its last write
  std::map<int, bool> last_is_erase;  // key -> that write was an erase
  std::map<int, int> taken;           // key -> number of the last write the Source took
  std::map<int, bool> pending;        // key -> has a write the Source has not taken
  std::map<int, bool> written_in_flight;
  const auto pending_count = [&] {
    std::size_t n = 0;
    for (const auto& [k, p] : pending) n += p ? 1 : 0;
    return n;
  };
  const auto check_state = [&] {
    REQUIRE(b.size() == pending_count());
    for (const auto& [k, p] : pending) {
      const auto v = dirty_value(b, k);
      REQUIRE(v.has_value() == p);
      if (p) REQUIRE(*v == (last_is_erase[k] ? std::optional<int>() : std::optional<int>(last[k])));
    }
  };
  const auto write = [&](int k) {
    const int n = ++seq;
    const bool is_erase = rng() % 5 == 0;
    const auto r = is_erase ? erase(b, k, now) : put(b, k, n, now);
    if (r.status == status::full) {
      REQUIRE(pending_count() == k_capacity);
      REQUIRE_FALSE(pending[k]);
      return;
    }
    last[k] = n;
    last_is_erase[k] = is_erase;
    pending[k] = true;
    written_in_flight[k] = true;
  };
  // One batch. Returns how many writes it held.
  const auto round = [&](std::uint64_t target, bool pressure, bool may_fail) {
    collected c = collect(b, now, target, pressure, 1 + rng() % 4);
    std::vector<int> numbers;  // the write each item carries: the key's last one, at collect time
    for (const item& i : c.batch) {
      REQUIRE(pending[i.key]);
      REQUIRE(i.value ==
              (last_is_erase[i.key] ? std::optional<int>() : std::optional<int>(last[i.key])));
      numbers.push_back(last[i.key]);
      written_in_flight[i.key] = false;
    }
    if (!c.batch.empty() && rng() % 3 == 0) write(c.batch[rng() % c.batch.size()].key);
    const std::size_t written =
        may_fail && rng() % 3 == 0 ? rng() % (c.batch.size() + 1) : c.batch.size();
    const bool one_by_one = rng() % 2 == 0;  // complete(item), or complete(span) like write_back
    std::size_t expect_freed = 0;
    for (std::size_t i = 0; i < written; ++i) {
      const int k = c.batch[i].key;
      const auto prev = taken.find(k);
      REQUIRE((prev == taken.end() || prev->second < numbers[i]));  // in order, never twice
      taken[k] = numbers[i];
      const bool should_free = !written_in_flight[k];  // unless a newer write is queued
      if (one_by_one) REQUIRE(b.complete(c.batch[i]) == should_free);
      if (should_free) pending[k] = false;
      expect_freed += should_free ? 1 : 0;
    }
    if (!one_by_one) {
      REQUIRE(b.complete(std::span<const item>(c.batch.data(), written)) == expect_freed);
    }
    for (std::size_t i = c.batch.size(); i-- > written;) b.requeue(c.batch[i]);
    check_state();
    return c.batch.size();
  };
  for (int step = 0; step < 400; ++step) {
    const unsigned op = rng() % 20;
    if (op < 10) {
      write(static_cast<int>(rng() % 5) + (rng() % 2 == 0 ? 0 : 100));
      check_state();
    } else if (op < 12) {
      now += std::chrono::seconds(rng() % 6);
    } else if (op < 19) {
      round(0, rng() % 4 == 0, true);
    } else {  // flush(): every write recorded before next_epoch() reaches the Source
      const std::map<int, int> before = last;
      const std::uint64_t target = b.next_epoch();
      int rounds = 0;
      while (round(target, false, rounds < 3) > 0) ++rounds;
      REQUIRE(b.covered(target));
      for (const auto& [k, n] : before) {
        INFO("key " << k);
        REQUIRE(taken.count(k) == 1);
        REQUIRE(taken[k] >= n);
      }
    }
  }
  while (round(0, true, false) > 0) {
  }
  CHECK(b.size() == 0);
  CHECK(taken == last);  // every key's last write, and only it, is the Source's last
}
