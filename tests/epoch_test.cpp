// Epoch-based reclamation (detail/epoch.hpp): an object retired while a reader is pinned outlives
// that pin and is destroyed after it; every retired object is destroyed exactly once, by the
// domain's destructor at the latest; threads come and go (slot reuse, exit before and after the
// domain); out-of-memory in retire(); and a stress test, meant for AddressSanitizer, where readers
// copy heap-allocated strings out of nodes that writers replace and retire.
#include <algorithm>
#include <atomic>
#include <cachet/detail/epoch.hpp>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "alloc_failure.hpp"

using cachet::detail::epoch_domain;
using cachet::detail::epoch_guard;

namespace {

// The reclaim function of the counting tests: `p` is a counter, bumped once per destroy.
void count_reclaim(void* p, void*) noexcept {
  static_cast<std::atomic<int>*>(p)->fetch_add(1, std::memory_order_relaxed);
}

// Enough collections to advance the epoch at least twice when nobody blocks it.
void collect_a_few(epoch_domain& d) {
  for (int i = 0; i < 4; ++i) d.collect();
}

// Blocks the calling thread until `flag` is set (no timing involved).
void wait_for(const std::atomic<bool>& flag) {
  while (!flag.load(std::memory_order_acquire)) std::this_thread::yield();
}

// A node whose value owns heap memory (longer than any small-string buffer), all of one letter:
// a reader that copies a torn or freed string sees a wrong length or mixed letters (and ASan
// reports the freed read).
constexpr std::size_t k_text_len = 48;
struct text_node {
  explicit text_node(char c) : text(k_text_len, c) {}
  std::string text;
};

bool valid_text(const std::string& s) {
  return s.size() == k_text_len && s[0] >= 'a' && s[0] <= 'z' &&
         std::all_of(s.begin(), s.end(), [&](char c) { return c == s[0]; });
}

struct node_counts {
  std::atomic<std::int64_t> made{0};
  std::atomic<std::int64_t> destroyed{0};
};

void destroy_text_node(void* p, void* ctx) noexcept {
  delete static_cast<text_node*>(p);
  static_cast<node_counts*>(ctx)->destroyed.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

TEST_CASE("epoch: options out of range are refused with the option's name", "[epoch]") {
  CHECK_THROWS_WITH(epoch_domain(0), Catch::Contains("max_threads"));
  CHECK_THROWS_WITH(epoch_domain(65537), Catch::Contains("max_threads"));
  CHECK_THROWS_WITH(epoch_domain(4, 0), Catch::Contains("reclaim_period"));
  CHECK_NOTHROW(epoch_domain(1, 1));
}

TEST_CASE("epoch: an object retired while this thread is pinned survives the pin", "[epoch]") {
  epoch_domain d(4, 1);
  std::atomic<int> freed{0};
  {
    auto guard = d.pin();
    CHECK(d.pinned());
    d.retire(&freed, &count_reclaim);
    collect_a_few(d);
    CHECK(freed.load() == 0);
  }
  CHECK_FALSE(d.pinned());
  collect_a_few(d);
  CHECK(freed.load() == 1);
  collect_a_few(d);
  CHECK(freed.load() == 1);
}

TEST_CASE("epoch: nested pins unpin with the outermost guard", "[epoch]") {
  epoch_domain d(4, 1);
  std::atomic<int> freed{0};
  auto outer = d.pin();
  {
    auto inner = d.pin();
    d.retire(&freed, &count_reclaim);
  }
  CHECK(d.pinned());
  collect_a_few(d);
  CHECK(freed.load() == 0);
  epoch_guard moved = std::move(outer);
  CHECK_FALSE(static_cast<bool>(outer));
  CHECK(d.pinned());
  moved.reset();
  CHECK_FALSE(d.pinned());
  collect_a_few(d);
  CHECK(freed.load() == 1);
}

TEST_CASE("epoch: a reader pinned on another thread holds back reclamation until it unpins",
          "[epoch]") {
  epoch_domain d(4, 1);
  std::atomic<int> freed{0};
  std::atomic<bool> pinned{false}, release{false};
  std::thread reader([&] {
    auto guard = d.pin();
    pinned.store(true, std::memory_order_release);
    wait_for(release);
  });
  wait_for(pinned);
  d.retire(&freed, &count_reclaim);
  const std::uint64_t e = d.epoch();
  for (int i = 0; i < 100; ++i) d.collect();
  CHECK(freed.load() == 0);
  CHECK(d.epoch() <= e + 1);  // the reader's pin lets the epoch move once at most
  release.store(true, std::memory_order_release);
  reader.join();
  collect_a_few(d);
  CHECK(freed.load() == 1);
  CHECK(d.epoch() >= e + 2);
}

TEST_CASE("epoch: retire forms: delete, a stateless deleter, a reclaim function with context",
          "[epoch]") {
  static std::atomic<int> deleter_calls{0};
  deleter_calls = 0;
  node_counts counts;
  {
    epoch_domain d(4, 1000);
    d.retire(new text_node('a'));
    d.retire(new text_node('b'), [](text_node* n) noexcept {
      deleter_calls.fetch_add(1);
      delete n;
    });
    d.retire(new text_node('c'), &destroy_text_node, &counts);
    CHECK(d.pending_local() == 3);
    d.synchronize();  // ASan/LSan check the deletes
    CHECK(d.pending_local() == 0);
    CHECK(deleter_calls.load() == 1);
    CHECK(counts.destroyed.load() == 1);
  }
}

TEST_CASE("epoch: the destructor destroys everything still retired, exactly once", "[epoch]") {
  constexpr int n = 1000;
  std::vector<std::atomic<int>> freed(n);
  {
    epoch_domain d(4, 1u << 20);  // never collects on its own
    auto guard = d.pin();         // and nothing would be ready anyway
    for (auto& f : freed) d.retire(&f, &count_reclaim);
    CHECK(d.pending_local() == n);
    guard.reset();
  }
  for (auto& f : freed) REQUIRE(f.load() == 1);
}

TEST_CASE("epoch: a deleter may retire into the same domain", "[epoch]") {
  struct chain {
    epoch_domain* d;
    std::atomic<int>* freed;
    int left;
  };
  std::atomic<int> freed{0};
  epoch_domain d(4, 1);
  // Each link, when destroyed, retires the next one; all five are destroyed exactly once.
  static constexpr cachet::detail::epoch_reclaim_fn destroy = [](void* p, void*) noexcept {
    auto* c = static_cast<chain*>(p);
    c->freed->fetch_add(1);
    if (c->left > 0) c->d->retire(new chain{c->d, c->freed, c->left - 1}, destroy);
    delete c;
  };
  d.retire(new chain{&d, &freed, 4}, destroy);
  for (int i = 0; i < 20 && freed.load() < 5; ++i) d.collect();
  CHECK(freed.load() == 5);
}

TEST_CASE("epoch: domains are independent", "[epoch]") {
  epoch_domain a(4, 1), b(4, 1);
  std::atomic<int> freed_a{0}, freed_b{0};
  auto guard = a.pin();  // pins a only
  CHECK(a.pinned());
  CHECK_FALSE(b.pinned());
  a.retire(&freed_a, &count_reclaim);
  b.retire(&freed_b, &count_reclaim);
  collect_a_few(a);
  collect_a_few(b);
  CHECK(freed_a.load() == 0);
  CHECK(freed_b.load() == 1);
  guard.reset();
  collect_a_few(a);
  CHECK(freed_a.load() == 1);
}

TEST_CASE("epoch: many domains on one thread (more than the thread-local cache holds)", "[epoch]") {
  std::vector<std::unique_ptr<epoch_domain>> ds;
  for (int i = 0; i < 9; ++i) ds.push_back(std::make_unique<epoch_domain>(4, 1));
  std::vector<std::atomic<int>> freed(ds.size());
  std::vector<epoch_guard> guards;
  for (auto& d : ds) guards.push_back(d->pin());
  for (std::size_t i = 0; i < ds.size(); ++i) {
    CHECK(ds[i]->pinned());
    ds[i]->retire(&freed[i], &count_reclaim);
  }
  guards.clear();
  for (std::size_t i = 0; i < ds.size(); ++i) {
    CHECK_FALSE(ds[i]->pinned());
    collect_a_few(*ds[i]);
    CHECK(freed[i].load() == 1);
  }
}

TEST_CASE("epoch: slots run out, try_pin says so, pin throws, and exited threads free theirs",
          "[epoch]") {
  epoch_domain d(2, 1);
  std::atomic<int> freed{0};
  auto mine = d.pin();  // slot 1 of 2
  mine.reset();
  std::atomic<bool> registered{false}, release{false};
  std::thread holder([&] {  // slot 2 of 2, held (unpinned) until released
    d.pin().reset();
    registered.store(true, std::memory_order_release);
    wait_for(release);
  });
  wait_for(registered);
  std::thread third([&] {
    CHECK_FALSE(static_cast<bool>(d.try_pin()));
    CHECK_THROWS_AS(d.pin(), std::length_error);
    // Not registered, so retire waits out a grace period and destroys at once.
    d.retire(&freed, &count_reclaim);
    CHECK(freed.load() == 1);
  });
  third.join();
  release.store(true, std::memory_order_release);
  holder.join();  // its slot is free again
  std::thread fourth([&] {
    auto g = d.try_pin();
    CHECK(static_cast<bool>(g));
  });
  fourth.join();
}

TEST_CASE("epoch: an exiting thread's retired objects are freed by others", "[epoch]") {
  epoch_domain d(4, 1u << 20);  // the thread never collects on its own
  std::vector<std::atomic<int>> freed(10);
  std::thread t([&] {
    for (auto& f : freed) d.retire(&f, &count_reclaim);
    CHECK(d.pending_local() == freed.size());
  });
  t.join();  // its limbo list is now the domain's orphan list
  d.synchronize();
  for (auto& f : freed) CHECK(f.load() == 1);
}

TEST_CASE("epoch: a thread may outlive a domain it used, and use a new one", "[epoch]") {
  auto first = std::make_unique<epoch_domain>(4, 1);
  std::atomic<int> step{0};
  std::atomic<epoch_domain*> current{first.get()};
  std::thread t([&] {
    current.load()->pin().reset();  // registers in the first domain
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    auto g = current.load()->pin();  // the second domain, perhaps at the same address
    CHECK(current.load()->pinned());
    g.reset();
    CHECK_FALSE(current.load()->pinned());
    step.store(3);
  });
  while (step.load() != 1) std::this_thread::yield();
  first.reset();
  auto second = std::make_unique<epoch_domain>(4, 1);
  current.store(second.get());
  step.store(2);
  t.join();  // exits holding a slot in a dead domain and one in a live one
  std::atomic<int> freed{0};
  second->retire(&freed, &count_reclaim);
  collect_a_few(*second);
  CHECK(freed.load() == 1);
  CHECK(step.load() == 3);
}

TEST_CASE("epoch: retire under std::bad_alloc waits out a grace period and destroys at once",
          "[epoch]") {
  epoch_domain d(4, 1000);
  d.pin().reset();  // register first, so the allocation that fails is the limbo list's
  REQUIRE(d.pending_local() == 0);
  std::atomic<int> freed{0};
  std::atomic<bool> pinned{false}, release{false}, saw_early_free{false};
  std::thread reader([&] {
    auto g = d.pin();
    pinned.store(true, std::memory_order_release);
    while (!release.load(std::memory_order_acquire)) {
      if (freed.load() != 0) saw_early_free.store(true);
      std::this_thread::yield();
    }
  });
  wait_for(pinned);
  std::thread releaser([&] {
    // The retire below blocks until the reader unpins: let it go after a while (ordering only,
    // never part of the verdict).
    for (int i = 0; i < 1000; ++i) std::this_thread::yield();
    release.store(true, std::memory_order_release);
  });
  cachet_test::fail_next_allocation();
  d.retire(&freed, &count_reclaim);
  CHECK_FALSE(cachet_test::allocation_failure_pending());
  CHECK(freed.load() == 1);  // destroyed inside retire, after the reader left
  CHECK(d.pending_local() == 0);
  releaser.join();
  reader.join();
  CHECK_FALSE(saw_early_free.load());
}

TEST_CASE("epoch: every retired object is destroyed exactly once, threads coming and going",
          "[epoch][stress]") {
  constexpr int k_waves = 6, k_threads = 3, k_per_thread = 2000;
  std::vector<std::atomic<int>> freed(k_waves * k_threads * k_per_thread);
  std::atomic<bool> bad_count{false};
  {
    epoch_domain d(8, 16);
    std::atomic<bool> stop{false};
    // A reader pinning and unpinning all along, so advances sometimes fail.
    std::thread reader([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        auto g = d.pin();
        auto nested = d.pin();
      }
    });
    for (int w = 0; w < k_waves; ++w) {
      std::vector<std::thread> ts;
      for (int t = 0; t < k_threads; ++t) {
        ts.emplace_back([&, base = (w * k_threads + t) * k_per_thread] {
          for (int i = 0; i < k_per_thread; ++i) {
            if (i % 7 == 0) auto g = d.pin();
            d.retire(&freed[base + i], &count_reclaim);
          }
          // What this thread destroyed so far was destroyed once.
          for (const auto& f : freed) {
            if (f.load(std::memory_order_relaxed) > 1) bad_count.store(true);
          }
        });
      }
      for (auto& t : ts) t.join();
    }
    stop.store(true);
    reader.join();
  }  // the destructor destroys the rest
  CHECK_FALSE(bad_count.load());
  int wrong = 0;
  for (const auto& f : freed) wrong += f.load() != 1;
  CHECK(wrong == 0);
}

TEST_CASE("epoch: readers copy strings out of nodes that writers replace and retire",
          "[epoch][stress]") {
  // Readers pin, load the current node, copy its heap-allocated string and check it; writers
  // publish fresh nodes and retire the old ones. Reader threads come in waves that exit, more of
  // them over the test than the domain has slots, so slots are reused. ASan turns a node freed
  // too early into a report; a torn or stale-freed copy also fails valid_text. Bounded by
  // iteration counts, about a second under ASan on 2 cores.
  constexpr int k_waves = 8, k_readers = 3, k_reads = 20000, k_writers = 2;
  node_counts counts;
  std::atomic<int> bad_reads{0}, failed_pins{0};
  std::atomic<std::int64_t> replaced{0};
  {
    epoch_domain d(8, 32);
    std::atomic<text_node*> head{new text_node('a')};
    counts.made.fetch_add(1);
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < k_writers; ++w) {
      writers.emplace_back([&, w] {
        std::uint32_t x = 2463534242u + static_cast<std::uint32_t>(w);
        while (!stop.load(std::memory_order_relaxed)) {
          x ^= x << 13;
          x ^= x >> 17;
          x ^= x << 5;
          auto* fresh = new text_node(static_cast<char>('a' + x % 26));
          counts.made.fetch_add(1, std::memory_order_relaxed);
          text_node* old = head.exchange(fresh, std::memory_order_acq_rel);
          d.retire(old, &destroy_text_node, &counts);
          replaced.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (int wave = 0; wave < k_waves; ++wave) {
      std::vector<std::thread> readers;
      for (int r = 0; r < k_readers; ++r) {
        readers.emplace_back([&, r] {
          for (int i = 0; i < k_reads; ++i) {
            epoch_guard g = d.try_pin();
            if (!g) {
              failed_pins.fetch_add(1);
              return;
            }
            const text_node* n = head.load(std::memory_order_acquire);
            std::string copy = n->text;
            if ((i + r) % 16 == 0) {  // a nested pin now and then, reading again
              auto inner = d.pin();
              copy = head.load(std::memory_order_acquire)->text;
            }
            if (!valid_text(copy)) bad_reads.fetch_add(1);
          }
        });
      }
      for (auto& t : readers) t.join();
    }
    stop.store(true);
    for (auto& t : writers) t.join();
    delete head.load();
    counts.destroyed.fetch_add(1);
  }
  CHECK(bad_reads.load() == 0);
  CHECK(failed_pins.load() == 0);
  CHECK(replaced.load() > 0);
  CHECK(counts.destroyed.load() == counts.made.load());
}
