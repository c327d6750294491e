// detail/reader_gate.hpp: readers inside the gate never overlap a writer, owners and guests alike;
// with one thread every recorded hit reaches the drain callback, in order, before the next
// writer's work; under concurrency every delivered index was recorded (run under ThreadSanitizer).
#include <atomic>
#include <cachet/detail/reader_gate.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

using cachet::detail::reader_gate;

namespace {

struct sink {
  std::vector<std::uint32_t> got;
  static void deliver(void* self, const std::uint32_t* idx, std::uint32_t n) noexcept {
    static_cast<sink*>(self)->got.insert(static_cast<sink*>(self)->got.end(), idx, idx + n);
  }
};

// Runs f on a new thread and waits for it.
template <class F>
void on_thread(F f) {
  std::thread t(f);
  t.join();
}

}  // namespace

TEST_CASE("reader_gate: one thread's hits reach the drain in order, before the writer's work",
          "[reader_gate]") {
  sink out;
  reader_gate g(64, &sink::deliver, &out);  // every id owns a stripe
  const std::uint32_t half = reader_gate::k_ring / 2;
  for (std::uint32_t i = 0; i < half; ++i) {
    reader_gate::ticket t;
    REQUIRE(g.enter(t));
    CHECK(t.owner);
    CHECK_FALSE(g.leave_hit(t, 100 + i));
  }
  CHECK(g.hits() == half);
  CHECK(g.pending() == half);
  CHECK(out.got.empty());  // nothing is delivered until a drain
  {
    std::lock_guard<reader_gate> lock(g);
    CHECK(out.got.size() == half);
  }
  for (std::uint32_t i = 0; i < half; ++i) CHECK(out.got[i] == 100 + i);
  CHECK(g.pending() == 0);

  // The leave that fills the ring says so, and the owner's drain takes all of it.
  out.got.clear();
  for (std::uint32_t i = 0; i < reader_gate::k_ring; ++i) {
    reader_gate::ticket t;
    REQUIRE(g.enter(t));
    const bool full = g.leave_hit(t, i);
    CHECK(full == (i + 1 == reader_gate::k_ring));
    if (full) g.drain_if_free(t);
  }
  REQUIRE(out.got.size() == reader_gate::k_ring);
  for (std::uint32_t i = 0; i < reader_gate::k_ring; ++i) CHECK(out.got[i] == i);

  // A full ring drops hits while its drain cannot run (a writer holds the lock), keeps counting
  // them, and keeps asking to be drained; the next drain delivers what it held.
  out.got.clear();
  for (std::uint32_t i = 0; i < reader_gate::k_ring; ++i) {
    reader_gate::ticket t;
    REQUIRE(g.enter(t));
    g.leave_hit(t, 200 + i);  // full at the last: not drained yet
  }
  for (std::uint32_t i = 0; i < 3; ++i) {
    reader_gate::ticket t;
    REQUIRE(g.enter(t));
    CHECK(g.leave_hit(t, 300 + i));  // dropped: the ring is full
  }
  CHECK(g.pending() == reader_gate::k_ring);
  g.lock();
  g.unlock();
  REQUIRE(out.got.size() == reader_gate::k_ring);
  CHECK(out.got.front() == 200);
  CHECK(out.got.back() == 200 + reader_gate::k_ring - 1);

  // Misses and unrecorded hits deliver nothing; only hits are counted.
  out.got.clear();
  reader_gate::ticket a, b;
  REQUIRE(g.enter(a));
  g.leave_miss(a);
  REQUIRE(g.enter(b));
  CHECK_FALSE(g.leave_hit(b, reader_gate::k_none));
  g.lock();
  g.unlock();
  CHECK(out.got.empty());
  CHECK(g.hits() == half + 2 * reader_gate::k_ring + 3 + 1);
}

TEST_CASE("reader_gate: a reader that finds a writer inside leaves at once", "[reader_gate]") {
  sink out;
  reader_gate g(2, &sink::deliver, &out);
  g.lock();
  on_thread([&] {
    reader_gate::ticket t;
    CHECK_FALSE(g.enter(t));
  });
  g.unlock();
  reader_gate::ticket t;
  CHECK(g.enter(t));
  g.leave_hit(t, 7);
  CHECK(g.hits() == 1);
}

// The writer-waits check for a reader of either kind. With `guest`, a one-stripe gate, and a
// thread that holds the lowest free id (so stripe 0's owner, or someone else's id 0) while the
// reader runs: the reader has another id, and reads as a guest.
void writer_waits_for(bool guest) {
  sink out;
  reader_gate g(guest ? 1 : 64, &sink::deliver, &out);
  std::atomic<bool> release_holder{false}, held{false};
  std::thread holder;
  if (guest) {
    holder = std::thread([&] {
      (void)cachet::detail::gate_thread_id();
      held = true;
      while (!release_holder.load()) std::this_thread::yield();
    });
    while (!held.load()) std::this_thread::yield();
  }
  std::atomic<int> step{0};
  std::atomic<bool> reader_left{false}, saw_left{false}, owner{false};
  std::thread reader([&] {
    reader_gate::ticket t;
    REQUIRE(g.enter(t));
    owner = t.owner;
    step = 1;
    while (step.load() != 2) std::this_thread::yield();
    for (int i = 0; i < 2000; ++i) std::this_thread::yield();  // give a broken gate time
    reader_left = true;
    g.leave_hit(t, 3);
  });
  while (step.load() != 1) std::this_thread::yield();
  std::thread writer([&] {
    step = 2;
    g.lock();
    saw_left = reader_left.load();
    g.unlock();
  });
  reader.join();
  writer.join();
  release_holder = true;
  if (holder.joinable()) holder.join();
  CHECK(owner == !guest);
  CHECK(saw_left);
  // An owner's hit was recorded and the writer drained it. A guest delivers its own hit if the
  // lock is free when it leaves, which here depends on whether the writer got to it first.
  if (guest) {
    CHECK(out.got.size() <= 1);
  } else {
    CHECK(out.got == std::vector<std::uint32_t>{3});
  }
  CHECK(g.hits() == 1);
}

TEST_CASE("reader_gate: a writer's lock waits until the reader inside has left", "[reader_gate]") {
  SECTION("an owner") { writer_waits_for(false); }
  SECTION("a guest") { writer_waits_for(true); }
}

TEST_CASE("reader_gate: a guest hands its recorded hits to the drain itself, still inside",
          "[reader_gate]") {
  // Delivered while the guest is still inside its read section: no writer can have removed the
  // entry in between.
  struct inside_sink {
    const reader_gate* g = nullptr;
    std::vector<std::uint32_t> got, inside;
    static void deliver(void* self, const std::uint32_t* idx, std::uint32_t n) noexcept {
      auto& me = *static_cast<inside_sink*>(self);
      me.got.insert(me.got.end(), idx, idx + n);
      me.inside.push_back(me.g->readers_inside());
    }
  } out;
  reader_gate g(1, &inside_sink::deliver, &out);
  out.g = &g;
  std::atomic<bool> release_holder{false}, held{false};
  std::thread holder([&] {  // holds the lowest free id: the thread below is not stripe 0's owner
    (void)cachet::detail::gate_thread_id();
    held = true;
    while (!release_holder.load()) std::this_thread::yield();
  });
  while (!held.load()) std::this_thread::yield();
  on_thread([&] {
    for (std::uint32_t i = 0; i < 3; ++i) {
      reader_gate::ticket t;
      REQUIRE(g.enter(t));
      REQUIRE_FALSE(t.owner);
      CHECK_FALSE(g.leave_hit(t, 40 + i));
    }
    reader_gate::ticket t;  // an unrecorded hit: counted, not delivered
    REQUIRE(g.enter(t));
    g.leave_hit(t, reader_gate::k_none);
  });
  CHECK(out.got == std::vector<std::uint32_t>{40, 41, 42});  // at once, in order
  CHECK(out.inside == std::vector<std::uint32_t>{1, 1, 1});
  release_holder = true;
  holder.join();
  CHECK(g.hits() == 4);
  CHECK(g.pending() == 0);
}

TEST_CASE("reader_gate: a thread's id is given back when it ends", "[reader_gate]") {
  (void)cachet::detail::gate_thread_id();  // this thread holds one
  int first = -2, second = -2;
  on_thread([&] { first = cachet::detail::gate_thread_id(); });
  on_thread([&] { second = cachet::detail::gate_thread_id(); });
  CHECK(first >= 0);
  CHECK(second == first);  // the lowest free id, freed by the first thread
}

TEST_CASE("reader_gate: readers never see a writer's half-done work; a delivered index is live",
          "[reader_gate][stress]") {
  // live[i]: entry i exists (the writer flips them under the lock). A reader records i only if it
  // saw it live; the drain checks it still is: an index reaches the policy before any write.
  struct counting_sink {
    const bool* live = nullptr;
    std::uint64_t delivered = 0, stale = 0;  // under the gate's lock
    static void deliver(void* self, const std::uint32_t* idx, std::uint32_t n) noexcept {
      auto& me = *static_cast<counting_sink*>(self);
      for (std::uint32_t k = 0; k < n; ++k) {
        ++me.delivered;
        if (idx[k] >= 4 || !me.live[idx[k]]) ++me.stale;
      }
    }
  };
  // Four readers on two stripes (owners and guests at once) and on 64 (all owners).
  for (std::size_t stripes : {std::size_t{2}, std::size_t{64}}) {
    bool live[4] = {true, true, true,
                    true};  // plain: the gate alone keeps readers and writer apart
    counting_sink out;
    out.live = live;
    reader_gate g(stripes, &counting_sink::deliver, &out);
    std::uint64_t a = 0, b = 0;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> reads{0}, torn{0};
    std::vector<std::thread> readers;
    for (std::uint32_t r = 0; r < 4; ++r) {
      readers.emplace_back([&, r] {
        std::uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed) || n < 1000) {
          reader_gate::ticket t;
          if (g.enter(t)) {
            if (a != b) torn.fetch_add(1);
            const bool record = live[r] && g.sample();
            if (g.leave_hit(t, record ? r : reader_gate::k_none)) g.drain_if_free(t);
          } else {
            std::lock_guard<reader_gate> lock(g);
            if (a != b) torn.fetch_add(1);
          }
          ++n;
        }
        reads.fetch_add(n);
      });
    }
    for (std::uint64_t i = 1; i <= 20000; ++i) {
      std::lock_guard<reader_gate> lock(g);
      a = i;
      live[i % 4] = !live[i % 4];
      b = i;
    }
    stop = true;
    for (auto& t : readers) t.join();
    CHECK(torn == 0);
    g.lock();  // drains what is left
    g.unlock();
    CHECK(out.delivered <= g.hits());
    CHECK(out.delivered > 0);
    CHECK(out.stale == 0);
    CHECK(g.pending() == 0);
    CHECK(reads >= 4000);
  }
}

TEST_CASE("reader_gate: hits are sampled while several stripes record, all of them with one",
          "[reader_gate]") {
  sink out;
  reader_gate g(64, &sink::deliver, &out);
  auto record = [&](std::uint32_t base, std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) {
      reader_gate::ticket t;
      REQUIRE(g.enter(t));
      g.leave_hit(t, base + i);
    }
  };
  // Two threads with hits in their rings: the writer's drain finds two recording stripes.
  std::thread a(record, 10, 3);
  a.join();
  record(20, 3);
  g.lock();
  g.unlock();
  CHECK(out.got.size() == 6);
  CHECK(g.sample_shift() == 2);  // two recording stripes: one hit in four
  int sampled = 0;
  for (int i = 0; i < 64; ++i) sampled += g.sample() ? 1 : 0;
  CHECK(sampled == 16);
  // This thread alone, through its own drains: a window of them finds one stripe.
  for (int w = 0; w < 16; ++w) {
    for (std::uint32_t i = 0; i < reader_gate::k_ring; ++i) {
      reader_gate::ticket t;
      REQUIRE(g.enter(t));
      if (g.leave_hit(t, i)) g.drain_if_free(t);
    }
  }
  CHECK(g.sample_shift() == 0);
  for (int i = 0; i < 8; ++i) CHECK(g.sample());
}

TEST_CASE("reader_gate: a sparse gate samples 2^sparse times fewer hits, all of them with one",
          "[reader_gate]") {
  sink out;
  reader_gate g(64, &sink::deliver, &out, 4);
  auto record = [&](std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) {
      reader_gate::ticket t;
      REQUIRE(g.enter(t));
      g.leave_hit(t, i);
    }
  };
  record(3);  // one stripe records: every hit, sparse or not
  CHECK(g.pending() == 3);
  on_thread([&] { record(3); });
  g.lock();  // finds two recording stripes
  g.unlock();
  CHECK(out.got.size() == 6);
  CHECK(g.sample_shift() == 2 + 4);  // one hit in 64
  int sampled = 0;
  for (int i = 0; i < 256; ++i) sampled += g.sample() ? 1 : 0;
  CHECK(sampled == 4);
  record(3);
  g.lock();  // one stripe recorded since: every hit again
  g.unlock();
  CHECK(g.sample_shift() == 0);
}

TEST_CASE("reader_gate: an owner counts its misses; a guest leaves them to its caller",
          "[reader_gate]") {
  sink out;
  const int me = cachet::detail::gate_thread_id();
  REQUIRE(me >= 0);
  reader_gate g(64, &sink::deliver, &out);  // this thread owns a stripe of it
  for (int i = 0; i < 5; ++i) {
    reader_gate::ticket t;
    REQUIRE(g.enter(t));
    CHECK(g.leave_absent(t));
  }
  CHECK(g.misses() == 5);
  CHECK(g.hits() == 0);
  CHECK(g.readers_inside() == 0);
  CHECK(out.got.empty());

  // On a gate of one stripe, a thread whose id is not 0 is a guest: this one, or else a new one
  // (this one holds 0).
  reader_gate one(1, &sink::deliver, &out);
  std::atomic<bool> entered{false}, was_owner{true}, counted{true};
  auto as_guest = [&] {
    reader_gate::ticket t;
    entered = one.enter(t);
    if (!entered) return;
    was_owner = t.owner;
    counted = one.leave_absent(t);
  };
  if (me != 0) {
    as_guest();
  } else {
    on_thread(as_guest);
  }
  REQUIRE(entered);
  CHECK_FALSE(was_owner);
  CHECK_FALSE(counted);  // the caller counts it, under the lock
  CHECK(one.misses() == 0);
  CHECK(one.readers_inside() == 0);  // and it has left
  CHECK(one.try_lock());
  one.unlock();
}

TEST_CASE("reader_gate: ring positions wrap past 2^16 claims and lose nothing", "[reader_gate]") {
  sink out;
  reader_gate g(64, &sink::deliver, &out);
  constexpr std::uint32_t n = 70000;  // the 16-bit tail and head wrap once
  std::uint32_t shut_out = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    reader_gate::ticket t;
    if (!g.enter(t)) {
      ++shut_out;
      continue;
    }
    if (g.leave_hit(t, i)) g.drain_if_free(t);
    if (i % 13 == 0) {  // a writer's drain at odd points: the ring wraps when it is part full
      g.lock();
      g.unlock();
    }
  }
  REQUIRE(shut_out == 0);
  g.lock();
  g.unlock();
  CHECK(g.pending() == 0);
  REQUIRE(out.got.size() == n);
  std::uint32_t out_of_place = 0;
  for (std::uint32_t i = 0; i < n; ++i) out_of_place += out.got[i] != i ? 1 : 0;
  CHECK(out_of_place == 0);
  CHECK(g.hits() == n);
}
