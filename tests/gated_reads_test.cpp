// Hits through the shard's reader gate (sharded_store::get, detail/reader_gate.hpp): a write waits
// for a reader that is copying a value out of the same shard; a get that starts after a put
// returned sees that value or a later one; no read returns a torn value or another key's value,
// including values that own heap memory while they are replaced and erased (run under TSan and
// ASan); the policy keeps hearing hits.
#include <atomic>
#include <cachet/eviction/fifo.hpp>
#include <cachet/eviction/lru.hpp>
#include <cachet/eviction/s3fifo.hpp>
#include <cachet/eviction/sieve.hpp>
#include <cachet/eviction/w_tinylfu.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace {

// A value whose copy can be held open: the copy waits, inside the reader's section, until the test
// lets it go.
struct held_value {
  static inline std::atomic<bool> hold{false};
  static inline std::atomic<bool> copying{false};
  static inline std::atomic<bool> copy_done{false};
  int v = 0;
  explicit held_value(int x) : v(x) {}
  held_value(const held_value& o) : v(o.v) {
    if (hold.load()) {
      copying = true;
      while (hold.load()) std::this_thread::yield();
      copy_done = true;
    }
  }
  held_value(held_value&& o) noexcept : v(o.v) {}
  held_value& operator=(const held_value&) = default;
  held_value& operator=(held_value&&) noexcept = default;
};

}  // namespace

TEST_CASE("gated reads: a put waits for a reader copying a value out of its shard",
          "[gated_reads]") {
  cachet::sharded_store<int, held_value, cachet::lru> s({.max_entries = 64, .shards = 1});
  s.put(1, held_value(10));
  held_value::hold = true;
  std::thread reader([&] {
    auto got = s.get(1);
    CHECK(got.has_value());
    CHECK(got->v == 10);  // the reader copies the value it found, whole
  });
  while (!held_value::copying) std::this_thread::yield();
  std::atomic<bool> trying{false}, saw_copy_done{false};
  std::thread writer([&] {
    trying = true;
    s.put(1, held_value(20));
    saw_copy_done = held_value::copy_done.load();
  });
  while (!trying) std::this_thread::yield();
  for (int i = 0; i < 2000; ++i) std::this_thread::yield();  // time for a broken gate to let it in
  held_value::hold = false;
  reader.join();
  writer.join();
  CHECK(saw_copy_done);   // the put returned only after the reader had left
  auto after = s.get(1);  // starts after the put returned
  REQUIRE(after.has_value());
  CHECK(after->v == 20);
  CHECK(s.stats().hits == 2);
}

namespace {

// A value that names its key and version twice: a torn or foreign copy shows.
struct versioned {
  std::uint64_t key = 0, version = 0, check = 0;
  std::string pad;  // owns heap memory: a copy of a freed value shows under ASan
  versioned() = default;
  versioned(std::uint64_t k, std::uint64_t ver)
      : key(k), version(ver), check(k * 1000003 + ver), pad(48, char('a' + ver % 26)) {}
  bool whole() const { return check == key * 1000003 + version && pad.size() == 48; }
};

template <class Policy>
void check_linearizable_reads() {
  constexpr std::uint64_t keys = 64;
  cachet::sharded_store<std::uint64_t, versioned, Policy> s({.max_entries = 4096, .shards = 4});
  std::vector<std::atomic<std::uint64_t>> done(keys);  // the last version whose put returned
  // Odd while key k is between an erase and the put after it; even when its last put returned.
  std::vector<std::atomic<std::uint64_t>> gaps(keys);
  for (std::uint64_t k = 0; k < keys; ++k) {
    s.put(k, versioned(k, 1));
    done[k] = 1;
  }
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> stale{0}, torn{0}, foreign{0}, lost{0}, reads{0}, hits{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::uint64_t n = 0, k = std::uint64_t(r) * 17;
      while (!stop.load(std::memory_order_relaxed) || n < 2000) {
        k = (k * 5 + 3) % keys;
        const std::uint64_t gap = gaps[k].load();
        const std::uint64_t floor = done[k].load();
        if (auto v = s.get(k)) {
          hits.fetch_add(1, std::memory_order_relaxed);
          if (!v->whole()) torn.fetch_add(1);
          if (v->key != k) foreign.fetch_add(1);
          if (v->version < floor) stale.fetch_add(1);
        } else if (gap % 2 == 0 && gaps[k].load() == gap) {
          lost.fetch_add(1);  // present for the whole read, and missed
        }
        ++n;
      }
      reads.fetch_add(n);
    });
  }
  std::thread writer([&] {
    for (std::uint64_t ver = 2; ver < 1500; ++ver) {
      for (std::uint64_t k = ver % 4; k < keys; k += 4) {
        if (ver % 7 == 0) {
          gaps[k].fetch_add(1);
          s.erase(k);  // absent for a moment: a miss, never a stale hit
          s.put(k, versioned(k, ver));
          gaps[k].fetch_add(1);
        } else {
          s.put(k, versioned(k, ver));
        }
        done[k] = ver;
      }
    }
  });
  writer.join();
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(stale == 0);
  CHECK(torn == 0);
  CHECK(foreign == 0);
  CHECK(lost == 0);
  CHECK(reads >= 6000);
  CHECK(s.stats().hits >= hits.load());  // the store counted every hit the readers saw
}

}  // namespace

TEST_CASE("gated reads: no stale, torn or foreign value under concurrent puts and erases",
          "[gated_reads][stress]") {
  SECTION("lru (hits through the rings)") { check_linearizable_reads<cachet::lru>(); }
  SECTION("sieve (hits set the bit directly)") { check_linearizable_reads<cachet::sieve>(); }
  SECTION("s3fifo") { check_linearizable_reads<cachet::s3fifo>(); }
  SECTION("fifo (no hit bookkeeping)") { check_linearizable_reads<cachet::fifo>(); }
  SECTION("w_tinylfu_adaptive") { check_linearizable_reads<cachet::w_tinylfu_adaptive>(); }
}

TEST_CASE("gated reads: with one thread, an LRU hears every hit in order", "[gated_reads]") {
  cachet::sharded_store<int, int, cachet::lru> s({.max_entries = 4, .shards = 1});
  for (int k = 0; k < 4; ++k) s.put(k, k);
  // 40 hits on 0 and 1 (more than a ring holds), then one on 2: 3 is the least recent.
  for (int i = 0; i < 20; ++i) {
    CHECK(s.get(0));
    CHECK(s.get(1));
  }
  CHECK(s.get(2));
  s.put(9, 9);  // evicts the least recently used
  CHECK_FALSE(s.contains(3));
  CHECK(s.contains(0));
  CHECK(s.contains(1));
  CHECK(s.contains(2));
  CHECK(s.stats().hits == 41);
}

namespace {

// lru with counters on what the gate tells it; with_shift<k> also declares its own
// sampled_out_shift.
std::uint64_t g_recorded = 0;         // hits delivered to the policy (under the shard lock)
std::atomic<std::uint64_t> g_out{0};  // hits the gate left out (from readers)

struct counting_lru : cachet::lru {
  template <class Nodes>
  struct shard_policy : cachet::lru::shard_policy<Nodes> {
    using base = cachet::lru::shard_policy<Nodes>;
    using base::base;
    void on_access(cachet::detail::index_t i) noexcept {
      ++g_recorded;
      base::on_access(i);
    }
    void on_access_batch(const cachet::detail::index_t* idx, std::uint32_t n) noexcept {
      g_recorded += n;
      base::on_access_batch(idx, n);
    }
    void on_access_sampled_out(cachet::detail::index_t i) noexcept {
      g_out.fetch_add(1, std::memory_order_relaxed);
      base::on_access_sampled_out(i);
    }
  };
};
template <std::uint32_t Shift>
struct with_shift : counting_lru {
  static constexpr std::uint32_t sampled_out_shift = Shift;
};

// Two threads record hits in one shard, then a put drains both: from then on the gate samples.
// Returns how many of 256 further hits by this thread reached the policy.
template <class Policy>
std::uint64_t recorded_of_256_after_two_threads() {
  cachet::sharded_store<int, int, Policy> s({.max_entries = 64, .shards = 1});
  for (int k = 0; k < 16; ++k) s.put(k, k);
  // This thread reads first: it holds its gate id (its stripe) while the other takes another.
  for (int k = 0; k < 3; ++k) CHECK(s.get(k));
  std::thread other([&] {
    for (int k = 0; k < 3; ++k) CHECK(s.get(k));
  });
  other.join();
  s.put(0, 0);  // the writer drains two recording stripes
  g_recorded = 0;
  g_out = 0;
  for (int i = 0; i < 256; ++i) CHECK(s.get(i % 16));
  s.put(1, 1);  // hands over what is still in the ring
  CHECK(g_recorded + g_out.load() == 256);
  return g_recorded;
}

}  // namespace

TEST_CASE("gated reads: lru's sampled_out_shift makes its sample sparser, one thread exact",
          "[gated_reads]") {
  // Two recording stripes: one hit in 4, and 2^Shift times fewer with the policy's shift.
  CHECK(recorded_of_256_after_two_threads<with_shift<0>>() == 64);
  CHECK(recorded_of_256_after_two_threads<with_shift<3>>() == 8);
  CHECK(recorded_of_256_after_two_threads<counting_lru>() == 4);  // lru's own: one in 64
  // One thread: every hit recorded, whatever the shift.
  cachet::sharded_store<int, int, with_shift<3>> s({.max_entries = 64, .shards = 1});
  for (int k = 0; k < 16; ++k) s.put(k, k);
  g_recorded = 0;
  g_out = 0;
  for (int i = 0; i < 256; ++i) CHECK(s.get(i % 16));
  s.put(1, 1);
  CHECK(g_recorded == 256);
  CHECK(g_out == 0);
}

namespace {

// Readers that hit and miss while a writer replaces entries: every hit and every miss is counted
// once, wherever it was answered (an owner's stripe, or under the lock). Under w_tinylfu a miss
// also reaches the sketch, under the gate's drain lock, while the other readers go on (TSan).
template <class Policy>
void count_hits_and_misses() {
  cachet::sharded_store<std::uint64_t, std::uint64_t, Policy> s({.max_entries = 1024, .shards = 2});
  for (std::uint64_t k = 0; k < 64; ++k) s.put(k, k);
  std::atomic<std::uint64_t> hits{0}, misses{0}, wrong{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed) && n < 200000; ++n) {
      s.put(n % 64, n % 64);
    }
  });
  std::vector<std::thread> readers;
  for (std::uint64_t r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::uint64_t h = 0, m = 0;
      for (std::uint64_t i = 0; i < 6000; ++i) {
        const std::uint64_t k = (i * 7 + r) % 128;  // half of them never put
        if (auto v = s.get(k)) {
          ++h;
          if (*v != k) wrong.fetch_add(1);
        } else {
          ++m;
          if (k < 64) wrong.fetch_add(1);  // present all along
        }
      }
      hits.fetch_add(h);
      misses.fetch_add(m);
    });
  }
  for (auto& t : readers) t.join();
  stop = true;
  writer.join();
  CHECK(wrong == 0);
  CHECK(hits + misses == 18000);
  CHECK(misses > 8000);
  const auto st = s.stats();
  CHECK(st.hits == hits.load());
  CHECK(st.misses == misses.load());
}

}  // namespace

TEST_CASE("gated reads: every hit and miss is counted once, from any thread", "[gated_reads]") {
  SECTION("lru (misses counted on the stripes)") { count_hits_and_misses<cachet::lru>(); }
  SECTION("w_tinylfu (misses also told to the sketch)") {
    count_hits_and_misses<cachet::w_tinylfu>();
  }
  SECTION("w_tinylfu_adaptive") { count_hits_and_misses<cachet::w_tinylfu_adaptive>(); }
}
