// detail/reader_gate.hpp: readers inside the gate never overlap a writer; with one thread every
// recorded hit reaches the drain callback, in order, before the next writer's work; under
// concurrency every delivered index was recorded (run under ThreadSanitizer).
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
  static void deliver(void* self, std::uint32_t i) noexcept {
    static_cast<sink*>(self)->got.push_back(i);
  }
};

}  // namespace

TEST_CASE("reader_gate: one thread's hits reach the drain in order, before the writer's work",
          "[reader_gate]") {
  sink out;
  reader_gate g(4, &sink::deliver, &out);
  for (std::uint32_t i = 0; i < 10; ++i) {
    reader_gate::ticket t;
    REQUIRE(g.enter(t, true));
    CHECK_FALSE(t.last);
    g.leave_hit(t, 100 + i);
  }
  CHECK(g.hits() == 10);
  CHECK(g.pending() == 10);
  CHECK(out.got.empty());  // nothing is delivered until a drain
  {
    std::lock_guard<reader_gate> lock(g);
    CHECK(out.got.size() == 10);
  }
  for (std::uint32_t i = 0; i < 10; ++i) CHECK(out.got[i] == 100 + i);
  CHECK(g.pending() == 0);

  // The ring's last slot says so, and a drain after leaving takes all sixteen.
  out.got.clear();
  for (std::uint32_t i = 0; i < reader_gate::k_ring; ++i) {
    reader_gate::ticket t;
    REQUIRE(g.enter(t, true));
    CHECK(t.last == (i + 1 == reader_gate::k_ring));
    g.leave_hit(t, i);
    if (t.last) g.drain_if_free();
  }
  REQUIRE(out.got.size() == reader_gate::k_ring);
  for (std::uint32_t i = 0; i < reader_gate::k_ring; ++i) CHECK(out.got[i] == i);

  // Misses and unrecorded hits deliver nothing; only hits are counted.
  out.got.clear();
  reader_gate::ticket a, b;
  REQUIRE(g.enter(a, true));
  g.leave_miss(a);
  REQUIRE(g.enter(b, true));
  g.leave_hit(b, reader_gate::k_none);
  g.lock();
  g.unlock();
  CHECK(out.got.empty());
  CHECK(g.hits() == 10 + reader_gate::k_ring + 1);
}

TEST_CASE("reader_gate: a reader that finds a writer inside leaves at once", "[reader_gate]") {
  sink out;
  reader_gate g(2, &sink::deliver, &out);
  g.lock();
  std::thread reader([&] {
    reader_gate::ticket t;
    CHECK_FALSE(g.enter(t, true));
  });
  reader.join();
  g.unlock();
  reader_gate::ticket t;
  CHECK(g.enter(t, true));
  g.leave_hit(t, 7);
  CHECK(g.hits() == 1);
}

TEST_CASE("reader_gate: a writer's lock waits until the reader inside has left", "[reader_gate]") {
  sink out;
  reader_gate g(2, &sink::deliver, &out);
  reader_gate::ticket t;
  REQUIRE(g.enter(t, true));
  std::atomic<bool> trying{false}, reader_left{false}, saw_left{false};
  std::thread writer([&] {
    trying = true;
    g.lock();
    saw_left = reader_left.load();
    g.unlock();
  });
  while (!trying) std::this_thread::yield();
  for (int i = 0; i < 2000; ++i) std::this_thread::yield();  // give a broken gate time to let it in
  reader_left = true;
  g.leave_hit(t, 3);
  writer.join();
  CHECK(saw_left);
  CHECK(out.got == std::vector<std::uint32_t>{3});  // the writer drained the reader's hit
}

TEST_CASE("reader_gate: readers never see a writer's half-done work; delivered = recorded",
          "[reader_gate][stress]") {
  struct counting_sink {
    std::uint64_t delivered = 0, foreign = 0;  // under the gate's lock
    static void deliver(void* self, std::uint32_t i) noexcept {
      auto& me = *static_cast<counting_sink*>(self);
      ++me.delivered;
      if (i >= 3) ++me.foreign;  // only the readers' own numbers were recorded
    }
  } out;
  reader_gate g(4, &counting_sink::deliver, &out);
  std::uint64_t a = 0, b = 0;  // plain: the gate alone keeps readers and the writer apart
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0}, torn{0};
  std::vector<std::thread> readers;
  for (std::uint32_t r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed) || n < 1000) {
        reader_gate::ticket t;
        if (g.enter(t, true)) {
          if (a != b) torn.fetch_add(1);
          g.leave_hit(t, r);
          if (t.last) g.drain_if_free();
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
    b = i;
  }
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(torn == 0);
  g.lock();  // drains what is left
  g.unlock();
  CHECK(out.delivered <= g.hits());
  CHECK(out.delivered > 0);
  CHECK(out.foreign == 0);
  CHECK(g.pending() == 0);
  CHECK(reads >= 3000);
}

TEST_CASE("reader_gate: hits are sampled while several stripes record, all of them with one",
          "[reader_gate]") {
  sink out;
  reader_gate g(8, &sink::deliver, &out);
  auto record_three = [&](std::uint32_t base) {
    for (std::uint32_t i = 0; i < 3; ++i) {
      reader_gate::ticket t;
      REQUIRE(g.enter(t, true));
      g.leave_hit(t, base + i);
    }
  };
  std::thread a(record_three, 10), b(record_three, 20);  // two threads: two stripes
  a.join();
  b.join();
  g.lock();
  g.unlock();
  CHECK(out.got.size() == 6);
  CHECK(g.sample_shift() == 2);  // two recording stripes: one hit in four
  int sampled = 0;
  for (int i = 0; i < 64; ++i) sampled += g.sample() ? 1 : 0;
  CHECK(sampled == 16);
  record_three(30);  // this thread alone now
  g.lock();
  g.unlock();
  CHECK(g.sample_shift() == 0);
  for (int i = 0; i < 8; ++i) CHECK(g.sample());
}
