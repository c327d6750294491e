#include <algorithm>
#include <cachet/detail/count_min_sketch.hpp>
#include <cachet/eviction/w_tinylfu.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "fake_nodes.hpp"
#include "model.hpp"

using cachet::removal_cause;
using cachet::detail::count_min_sketch;
using cachet::detail::index_t;
using cachet::detail::npos;
using namespace cachet_test;

namespace {

// A fixed, avalanching key hash, so the tests know the 32-bit hash the policy sees (the low half).
struct spread_hash {
  using is_avalanching = void;
  std::uint64_t operator()(int k) const noexcept {
    return cachet::detail::mix64(static_cast<std::uint64_t>(k) + 0x5151);
  }
};
std::uint32_t hash32(int k) { return static_cast<std::uint32_t>(spread_hash{}(k)); }

template <class P>
using wt_store = cachet::sharded_store<int, int, P, cachet::manual_clock, spread_hash>;

// A get that fills on a miss, as read-through does.
template <class S>
bool read(S& s, int k) {
  if (s.get(k)) return true;
  s.put(k, k);
  return false;
}

}  // namespace

static_assert(sizeof(cachet::w_tinylfu::hook) == 12, "w_tinylfu's documented hook size");
static_assert(cachet::eviction_policy<cachet::w_tinylfu_adaptive>);

TEST_CASE("w_tinylfu: sizes its window, protected segment and sketch from the capacity",
          "[w_tinylfu]") {
  using policy = cachet::w_tinylfu::shard_policy<fake_nodes<cachet::w_tinylfu>>;
  fake_nodes<cachet::w_tinylfu> n;
  struct want {
    std::size_t cap, window, prot, sketch_bytes;
  };
  // The sketch: 8 bytes per entry of capacity, rounded up to a power of two, and never under
  // k_min_sketch_words (4 KiB); it halves every 10 x capacity additions whatever its width.
  static_assert(cachet::w_tinylfu::k_min_sketch_words == 512);
  for (const want w : {want{1, 1, 0, 4096}, want{10, 1, 7, 4096}, want{100, 1, 79, 4096},
                       want{250, 3, 197, 4096}, want{512, 6, 404, 4096}, want{513, 6, 405, 8192},
                       want{1000, 10, 792, 8192}, want{1025, 11, 811, 16384}}) {
    policy p(&n, cachet::policy_init{w.cap, 1});
    INFO("capacity " << w.cap);
    CHECK(p.window_max() == w.window);
    CHECK(p.protected_max() == w.prot);
    CHECK(p.sketch().bytes() == w.sketch_bytes);
    CHECK(p.sketch().sample_size() == 10 * w.cap);
  }
}

TEST_CASE("w_tinylfu: set_capacity resizes the window and protected targets, not the sketch",
          "[w_tinylfu][resize]") {
  // What set_max_entries() tells the policy: the targets follow the new capacity as if the
  // policy had been built with it; the sketch keeps the size of the ceiling it was built for.
  using policy = cachet::w_tinylfu::shard_policy<fake_nodes<cachet::w_tinylfu>>;
  fake_nodes<cachet::w_tinylfu> n;
  policy p(&n, cachet::policy_init{1000, 1});
  p.set_capacity(250);
  CHECK(p.window_max() == 3);
  CHECK(p.protected_max() == 197);
  CHECK(p.sketch().bytes() == 8192);
  p.set_capacity(1000);
  CHECK(p.window_max() == 10);
  CHECK(p.protected_max() == 792);
}

TEST_CASE("w_tinylfu: the window's candidate duels main's victim by frequency", "[w_tinylfu]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  // Capacity 10: window 1, main 9 (protected at most 7).
  wt_store<cachet::w_tinylfu> s({.max_entries = 10, .shards = 1, .on_removal = rec.listener()},
                                clock);
  for (int k = 0; k < 10; ++k) s.put(k, k);  // filling: overflow enters probation, no eviction
  REQUIRE(s.size() == 10);
  REQUIRE(rec.take().empty());
  // Window [9]; probation, least recent first: 0 1 2 ... 8. Puts of new keys count nothing.
  for (int r = 0; r < 3; ++r) {
    s.get(0);  // 0: frequency 3, promoted to protected
    s.get(1);  // 1: frequency 3, protected
  }
  // Probation's least recent is now 2 (frequency 0).
  REQUIRE_FALSE(s.get(100));  // the miss counts: 100 has frequency 1
  s.put(100, 100);            // candidate 9 (0) vs victim 2 (0): a tie keeps the victim
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{9});
  s.put(101, 101);  // candidate 100 (1) vs victim 2 (0): 100 enters probation, 2 leaves
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{2});
  s.put(102, 102);  // candidate 101 (0) vs victim 3 (0): 101 leaves
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{101});
  CHECK(s.contains(100));
  CHECK(s.contains(0));
  CHECK(s.contains(1));
}

TEST_CASE("w_tinylfu: a one-hit wonder is not admitted over a frequent victim", "[w_tinylfu]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  wt_store<cachet::w_tinylfu> s({.max_entries = 10, .shards = 1, .on_removal = rec.listener()},
                                clock);
  for (int k = 0; k < 10; ++k) s.put(k, k);
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 9; ++k) REQUIRE(s.get(k));  // main's entries: frequency 3
  }
  REQUIRE_FALSE(read(s, 50));  // candidate 9 (0) loses to a victim of frequency 3
  REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{9});
  for (int k = 51; k < 60; ++k) {  // each newcomer (1) pushes the previous one (1) out
    REQUIRE_FALSE(read(s, k));
    REQUIRE(rec.take_keys(removal_cause::evicted) == std::vector<int>{k - 1});
  }
  for (int k = 0; k < 9; ++k) CHECK(s.contains(k));
  // A newcomer that is read while in the window builds frequency and does get in.
  for (int r = 0; r < 4; ++r) {  // 59: frequency 5 > 3 (a read in between, or it counts once)
    REQUIRE(s.get(59));
    REQUIRE_FALSE(s.get(1000));
  }
  REQUIRE_FALSE(read(s, 60));
  const auto out = rec.take_keys(removal_cause::evicted);
  REQUIRE(out.size() == 1);
  CHECK(out[0] >= 0);
  CHECK(out[0] < 9);
  CHECK(s.contains(59));
}

TEST_CASE("w_tinylfu: frequent keys survive a scan that flushes an LRU", "[w_tinylfu]") {
  auto survivors = [](auto& s) {
    for (int k = 0; k < 20; ++k) read(s, k);
    for (int r = 0; r < 5; ++r) {
      for (int k = 0; k < 20; ++k) s.get(k);
    }
    for (int k = 1000; k < 2000; ++k) read(s, k);  // a one-off scan 10 times the cache
    int n = 0;
    for (int k = 0; k < 20; ++k) n += s.contains(k) ? 1 : 0;
    return n;
  };
  cachet::manual_clock clock;
  wt_store<cachet::w_tinylfu> w({.max_entries = 100, .shards = 1}, clock);
  wt_store<cachet::lru> l({.max_entries = 100, .shards = 1}, clock);
  CHECK(survivors(w) == 20);
  CHECK(survivors(l) == 0);
}

TEST_CASE("w_tinylfu: halving lets a formerly hot key go", "[w_tinylfu]") {
  // Capacity 10: the sketch halves every 100 additions. Key 0 is hot, then never read again.
  cachet::manual_clock clock;
  recorder<int, int> rec;
  wt_store<cachet::w_tinylfu> s({.max_entries = 10, .shards = 1, .on_removal = rec.listener()},
                                clock);
  for (int k = 0; k < 10; ++k) s.put(k, k);
  for (int r = 0; r < 15; ++r) s.get(0);
  // Keys 1..8 are read twice a round; a newcomer read three times joins main each round; key 0
  // drops to probation as protected fills, and its 15 fades by half every ~100 additions.
  bool evicted0 = false;
  for (int round = 0; round < 40 && !evicted0; ++round) {
    for (int k = 1; k < 9; ++k) s.get(k);
    const int fresh = 100 + round;
    read(s, fresh);
    s.get(fresh);
    s.get(fresh);
    for (int k = 1; k < 9; ++k) s.get(k);
    for (int key : rec.take_keys(removal_cause::evicted)) evicted0 = evicted0 || key == 0;
  }
  CHECK(evicted0);
}

TEST_CASE("w_tinylfu: erased and cleared entries leave the policy", "[w_tinylfu]") {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  wt_store<cachet::w_tinylfu> s({.max_entries = 200, .shards = 1, .on_removal = rec.listener()},
                                clock);
  for (int k = 0; k < 200; ++k) read(s, k);
  for (int k = 0; k < 200; k += 3) REQUIRE(s.erase(k));
  for (int k = 0; k < 200; k += 2) s.get(k);
  for (int k = 1000; k < 1067; ++k) read(s, k);  // refills the 67 erased slots: no eviction
  CHECK(rec.take_keys(removal_cause::evicted).empty());
  read(s, 5000);
  CHECK(rec.take_keys(removal_cause::evicted).size() == 1);
  s.clear();
  CHECK(s.size() == 0);
  rec.take();
  for (int k = 0; k < 300; ++k) read(s, k);
  CHECK(s.size() == 200);
  CHECK(rec.take_keys(removal_cause::evicted).size() == 100);
}

TEST_CASE("w_tinylfu: a weight-bounded store sizes the policy from the entries it holds",
          "[w_tinylfu]") {
  cachet::manual_clock clock;
  wt_store<cachet::w_tinylfu> s(
      {.max_weight = 1000, .weigher = [](const int&, const int& v) { return v; }, .shards = 1},
      clock);
  std::mt19937 rng(3);
  int hot_hits = 0;
  for (int op = 0; op < 50'000; ++op) {
    const bool hot = rng() % 4 == 0;
    const int k = hot ? static_cast<int>(rng() % 20) : 100 + static_cast<int>(rng() % 5000);
    if (s.get(k)) {
      hot_hits += hot ? 1 : 0;
    } else {
      s.put(k, 1 + k % 7);  // weights 1..7
    }
    REQUIRE(s.stats().weight <= 1000);
  }
  // The 20 hot keys (a quarter of the reads) stay cached almost always.
  CHECK(hot_hits > 11'000);
}

TEST_CASE("w_tinylfu: warm candidates beat a hotter victim about 1 time in 128", "[w_tinylfu]") {
  // Drives a shard policy directly: capacity 10, entries 0..9 inserted, so the window holds 9 and
  // probation's least recent entry is 0. Victim 0 is seen 15 times, candidate 9 `fc` times.
  using P = cachet::w_tinylfu;
  auto admitted = [](std::uint32_t fc, std::uint64_t seed) {
    fake_nodes<P> n;
    n.hooks.resize(10);
    for (std::uint32_t i = 0; i < 10; ++i) n.hashes.push_back(0x1000193u * (i + 1));
    P::shard_policy<fake_nodes<P>> p(&n, cachet::policy_init{10, seed});
    for (index_t i = 0; i < 10; ++i) p.on_insert(i);
    REQUIRE(p.window_size() == 1);
    const std::uint32_t other = 0xABCDEFu;  // no entry's: read in between, as a repeat counts once
    for (int r = 0; r < 15; ++r) {
      p.on_miss(n.hashes[0]);
      p.on_miss(other);
    }
    for (std::uint32_t r = 0; r < fc; ++r) {
      p.on_miss(n.hashes[9]);
      p.on_miss(other);
    }
    REQUIRE(p.sketch().estimate(n.hashes[0]) == 15);
    REQUIRE(p.sketch().estimate(n.hashes[9]) == fc);
    const index_t v = p.victim();
    REQUIRE((v == 0 || v == 9));
    return v == 0;
  };
  int warm = 0, cold = 0;
  const int trials = 12'800;
  for (int t = 0; t < trials; ++t) {
    warm += admitted(8, 1000 + static_cast<std::uint64_t>(t)) ? 1 : 0;
    if (t < 2000) cold += admitted(5, 1000 + static_cast<std::uint64_t>(t)) ? 1 : 0;
  }
  CHECK(cold == 0);   // frequency 5 or less: never
  CHECK(warm >= 60);  // expected 100 (1/128); far outside [60, 145] means a broken rule
  CHECK(warm <= 145);
  CHECK(admitted(8, 7) == admitted(8, 7));  // reproducible for a seed
}

TEMPLATE_TEST_CASE("w_tinylfu: consecutive accesses to one key count once in the sketch",
                   "[w_tinylfu]", cachet::w_tinylfu, cachet::w_tinylfu_adaptive) {
  // Capacity 1000: nothing is evicted. The adaptive policy samples hashes below about 25.6% of
  // 2^32 for its shadows, whose accesses take their own path through the hit buffer: keys with
  // small hashes are sampled, keys with large ones are not; both must follow the rule.
  using P = TestType;
  for (const std::uint32_t base : {1u, 0xF0000000u}) {
    INFO("hashes from " << base);
    fake_nodes<P> n;
    n.hooks.resize(2);
    n.hashes = {base, base + 1};
    typename P::template shard_policy<fake_nodes<P>> p(&n, cachet::policy_init{1000, 1});
    const auto est = [&](index_t i) { return p.sketch().estimate(n.hashes[i]); };
    p.on_miss(n.hashes[0]);  // a get that misses, then the put that fills
    p.on_insert(0);
    for (int r = 0; r < 5; ++r) p.on_access(0);  // the same key again and again: one burst
    p.flush();
    CHECK(est(0) == 1);
    p.on_miss(n.hashes[1]);
    p.on_insert(1);
    p.on_access(0);  // another key came in between: counts
    p.on_access(0);
    p.on_access(1);
    p.on_access(0);
    p.flush();
    CHECK(est(0) == 3);
    CHECK(est(1) == 2);
    p.on_update(0);  // an update right after a read of the same key
    CHECK(est(0) == 3);
    p.on_update(1);
    p.on_miss(n.hashes[1]);  // (a miss of a key that is present: the rule sees only the hash)
    CHECK(est(1) == 3);
    for (int r = 0; r < 130; ++r) p.on_access(1);  // a run across two drains of the buffer
    p.flush();
    CHECK(est(1) == 3);
    p.on_access(0);
    p.flush();
    CHECK(est(0) == 4);
  }
}

// ---- reference model ------------------------------------------------------------------------
//
// The rules of w_tinylfu.hpp written the slow, obvious way: every entry carries its queue and a
// recency stamp, queue sizes are counted by scanning, and the least recent entry is a linear
// search. The sketch is a count_min_sketch (tested on its own in count_min_sketch_test.cpp) fed
// the same events with the policy's seed, so the model knows the estimates the policy compares.
// The one random rule (a warm candidate losing on frequency is admitted 1 time in 128) is
// checked as "either outcome"; the model then follows the store.
namespace {

enum class wq { window, probation, protect };

struct wt_entry {
  int key;
  int value;
  wq q;
  std::uint64_t stamp;
};

class wt_model {
 public:
  explicit wt_model(std::size_t cap)
      : cap_(cap),
        window_max_(std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(cap / 100.0)))),
        protected_max_(cap > window_max_
                           ? static_cast<std::size_t>(std::floor((cap - window_max_) * 0.8))
                           : 0),
        sketch_(cap, cachet::w_tinylfu::k_sketch_seed, count_min_sketch::k_default_sample_factor,
                cachet::w_tinylfu::k_min_sketch_words) {}

  std::vector<wt_entry>& entries() { return entries_; }
  std::size_t random_duels = 0;
  std::size_t duels = 0;

  wt_entry* find(int key) {
    for (auto& e : entries_)
      if (e.key == key) return &e;
    return nullptr;
  }
  void miss(int key) { count(hash32(key)); }
  void hit(wt_entry& e) {
    count(hash32(e.key));
    switch (e.q) {
      case wq::window:
      case wq::protect:
        front(e, e.q);
        break;
      case wq::probation:
        front(e, wq::protect);
        while (count(wq::protect) > protected_max_) front(*lru(wq::protect), wq::probation);
        break;
    }
  }
  void insert(int key, int value) {
    entries_.push_back({key, value, wq::window, 0});
    front(entries_.back(), wq::window);
    while (count(wq::window) > window_max_) front(*lru(wq::window), wq::probation);
  }
  void erase(int key) {
    std::erase_if(entries_, [&](auto& e) { return e.key == key; });
  }
  // The store evicted `key` to make room for a new one: check it against the rules.
  void evicted(int key) {
    REQUIRE(entries_.size() == cap_);
    wt_entry* v = lru(wq::probation);
    if (v == nullptr) v = lru(wq::protect);
    wt_entry* c = lru(wq::window);
    if (count(wq::window) < window_max_ || c == nullptr) {
      REQUIRE(key == (v != nullptr ? v : c)->key);
    } else if (v == nullptr) {
      REQUIRE(key == c->key);
    } else {
      ++duels;
      const std::uint32_t fc = sketch_.estimate(hash32(c->key));
      const std::uint32_t fv = sketch_.estimate(hash32(v->key));
      INFO("candidate " << c->key << " (" << fc << ") vs victim " << v->key << " (" << fv << ")");
      if (fc > fv) {
        REQUIRE(key == v->key);
      } else if (fc <= 5) {
        REQUIRE(key == c->key);
      } else {
        ++random_duels;
        REQUIRE((key == c->key || key == v->key));
      }
      if (key == v->key) front(*c, wq::probation);
    }
    erase(key);
  }

 private:
  void front(wt_entry& e, wq q) {
    e.q = q;
    e.stamp = ++clock_;
  }
  std::size_t count(wq q) const {
    return static_cast<std::size_t>(
        std::count_if(entries_.begin(), entries_.end(), [&](auto& e) { return e.q == q; }));
  }
  wt_entry* lru(wq q) {
    wt_entry* best = nullptr;
    for (auto& e : entries_)
      if (e.q == q && (best == nullptr || e.stamp < best->stamp)) best = &e;
    return best;
  }

  // An access adds to the sketch unless it repeats the previous access's key.
  void count(std::uint32_t h) {
    if (!has_last_ || h != last_) sketch_.increment(h);
    last_ = h;
    has_last_ = true;
  }

  std::size_t cap_, window_max_, protected_max_;
  count_min_sketch sketch_;
  std::uint32_t last_ = 0;
  bool has_last_ = false;
  std::vector<wt_entry> entries_;
  std::uint64_t clock_ = 0;
};

struct wt_workload {
  int keys = 24;
  std::size_t capacity = 8;
  int ops = 20'000;
  double zipf = 0;            // > 0: key i drawn with weight 1/(i+1)^zipf
  int get_percent = 40;       // the rest: puts 40 : erases 8 : contains 6 (of 54)
  bool fill_on_miss = false;  // a get miss is followed by a put (read-through)
  std::uint64_t seed = 1;
};

void run_wt_model(const wt_workload& w) {
  cachet::manual_clock clock;
  recorder<int, int> rec;
  wt_store<cachet::w_tinylfu> store(
      {.max_entries = w.capacity, .shards = 1, .on_removal = rec.listener()}, clock);
  wt_model model(w.capacity);
  std::mt19937_64 rng(w.seed);
  std::discrete_distribution<int> zipf;
  if (w.zipf > 0) {
    std::vector<double> weights;
    for (int k = 0; k < w.keys; ++k) weights.push_back(1.0 / std::pow(k + 1, w.zipf));
    zipf = std::discrete_distribution<int>(weights.begin(), weights.end());
  }
  auto pick_key = [&] {
    return w.zipf > 0 ? zipf(rng) : std::uniform_int_distribution<int>(0, w.keys - 1)(rng);
  };
  int value_seq = 0;
  auto do_put = [&](int key) {
    wt_entry* e = model.find(key);
    const int value = ++value_seq;
    const auto r = store.put(key, value);
    auto events = rec.take();
    if (e != nullptr) {
      REQUIRE(r == cachet::put_result::replaced);
      REQUIRE(events.size() == 1);
      e->value = value;
      model.hit(*e);
      return;
    }
    REQUIRE(r == cachet::put_result::inserted);
    for (auto& ev : events) {
      INFO("evicted key " << ev.key);
      REQUIRE(ev.cause == removal_cause::evicted);
      wt_entry* gone = model.find(ev.key);
      REQUIRE(gone != nullptr);
      REQUIRE(ev.value == gone->value);
      model.evicted(ev.key);
    }
    REQUIRE(model.entries().size() < w.capacity);
    model.insert(key, value);
  };
  for (int op = 0; op < w.ops; ++op) {
    const int key = pick_key();
    const int r = std::uniform_int_distribution<int>(0, 99)(rng);
    const int kind = r < w.get_percent ? 0 : 40 + (r - w.get_percent) * 54 / (100 - w.get_percent);
    INFO("op " << op << " kind " << kind << " key " << key);
    wt_entry* e = model.find(key);
    if (kind < 40) {
      const auto got = store.get(key);
      REQUIRE(rec.take().empty());
      if (e != nullptr) {
        REQUIRE(got == std::optional<int>(e->value));
        model.hit(*e);
      } else {
        REQUIRE_FALSE(got.has_value());
        model.miss(key);
        if (w.fill_on_miss) do_put(key);
      }
    } else if (kind < 80) {
      do_put(key);
    } else if (kind < 88) {
      REQUIRE(store.erase(key) == (e != nullptr));
      rec.take();
      if (e != nullptr) model.erase(key);
    } else {
      REQUIRE(store.contains(key) == (e != nullptr));
    }
    REQUIRE(store.size() == model.entries().size());
    if (op % 97 == 0) {
      std::vector<std::pair<int, int>> got, want;
      store.for_each([&](int k, int v) { got.emplace_back(k, v); });
      for (auto& m : model.entries()) want.emplace_back(m.key, m.value);
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      REQUIRE(got == want);
    }
  }
  INFO("duels " << model.duels << ", random-zone duels " << model.random_duels);
  CHECK(model.duels > 0);
}

}  // namespace

TEST_CASE("w_tinylfu: matches the reference model", "[w_tinylfu][model]") {
  // Mixed operations on a tiny cache (window 1, protected 5, halving every 80 additions).
  for (std::uint64_t seed : {1, 2, 3}) {
    INFO("seed " << seed);
    run_wt_model({.seed = seed});
  }
  // Read-through over a skewed key space: long hit runs, promotions, demotions, halvings, and
  // hot candidates in the random-admission zone.
  run_wt_model({.keys = 3000,
                .capacity = 200,
                .ops = 60'000,
                .zipf = 0.9,
                .get_percent = 97,
                .fill_on_miss = true,
                .seed = 11});
  // Most keys hot, a cache barely smaller than the key space.
  run_wt_model({.keys = 220,
                .capacity = 200,
                .ops = 40'000,
                .zipf = 0.3,
                .get_percent = 90,
                .fill_on_miss = true,
                .seed = 12});
}

// ---- adaptive window ------------------------------------------------------------------------

namespace {

// Hit ratio of read-through over `keys`, for a store of `cap` entries in `shards` shards.
template <class P>
double hit_ratio(const std::vector<int>& keys, std::size_t cap, std::size_t shards = 1) {
  cachet::manual_clock clock;
  wt_store<P> s({.max_entries = cap, .shards = shards}, clock);
  std::size_t hits = 0;
  for (int k : keys) hits += read(s, k) ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(keys.size());
}

}  // namespace

TEST_CASE("w_tinylfu_adaptive: grows the window when recency pays", "[w_tinylfu]") {
  // A working set that drifts: each read is uniform over the 400 most recently introduced keys
  // and a new key is introduced every 4 reads. LRU suits this; a 1% window does not.
  std::mt19937 rng(9);
  std::vector<int> keys;
  for (int t = 0; t < 200'000; ++t) {
    const int newest = 400 + t / 4;
    keys.push_back(newest - static_cast<int>(rng() % 400));
  }
  const double lru = hit_ratio<cachet::lru>(keys, 300);
  const double fixed = hit_ratio<cachet::w_tinylfu>(keys, 300);
  const double adaptive = hit_ratio<cachet::w_tinylfu_adaptive>(keys, 300);
  INFO("lru " << lru << ", w_tinylfu " << fixed << ", adaptive " << adaptive);
  REQUIRE(lru > fixed + 0.3);
  CHECK(adaptive - fixed > 0.6 * (lru - fixed));  // closes most of the gap
}

TEST_CASE("w_tinylfu_adaptive: a sharded store adapts as one", "[w_tinylfu]") {
  // The drifting working set again, over a store of 64 shards of 40 entries. Each shard sees 1/64
  // of the stream: alone, its shadows (40 hashes) would model 40 entries on 1/64 of the reads and
  // choose on noise. The store's one simulation models all 2,560 entries (shadows of 256 hashes)
  // on the sampled reads of every shard, and every shard follows it.
  std::mt19937 rng(5);
  std::vector<int> keys;
  for (int t = 0; t < 200'000; ++t) {
    const int newest = 3400 + t / 4;
    keys.push_back(newest - static_cast<int>(rng() % 3400));
  }
  const double lru = hit_ratio<cachet::lru>(keys, 2560, 64);
  const double fixed = hit_ratio<cachet::w_tinylfu>(keys, 2560, 64);
  const double adaptive = hit_ratio<cachet::w_tinylfu_adaptive>(keys, 2560, 64);
  INFO("lru " << lru << ", w_tinylfu " << fixed << ", adaptive " << adaptive);
  REQUIRE(lru > fixed + 0.1);
  CHECK(adaptive - fixed > 0.8 * (lru - fixed));
}

TEST_CASE("w_tinylfu_adaptive: keeps up with the static window when frequency pays",
          "[w_tinylfu]") {
  // Zipf(0.9) over 20,000 keys, with a one-off scan of 2,000 keys every 10,000 reads.
  std::mt19937 rng(4);
  std::vector<double> weights;
  for (int k = 0; k < 20'000; ++k) weights.push_back(1.0 / std::pow(k + 1, 0.9));
  std::discrete_distribution<int> zipf(weights.begin(), weights.end());
  std::vector<int> keys;
  int scan = 1'000'000;
  for (int t = 0; t < 200'000; ++t) {
    keys.push_back(zipf(rng));
    if (t % 10'000 == 0) {
      for (int k = 0; k < 2000; ++k) keys.push_back(scan++);
    }
  }
  const double lru = hit_ratio<cachet::lru>(keys, 500);
  const double fixed = hit_ratio<cachet::w_tinylfu>(keys, 500);
  const double adaptive = hit_ratio<cachet::w_tinylfu_adaptive>(keys, 500);
  INFO("lru " << lru << ", w_tinylfu " << fixed << ", adaptive " << adaptive);
  CHECK(fixed > lru + 0.05);
  CHECK(adaptive > fixed - 0.01);
}

// The batch replay's fast way (one relink per distinct entry, found with a 16-bit drain mark)
// must leave window and protected in exact last-hit order, including after the mark wraps.
TEST_CASE("w_tinylfu: hits without promotions keep exact LRU order across 70,000 batches",
          "[w_tinylfu]") {
  using P = cachet::w_tinylfu;
  using policy = P::shard_policy<fake_nodes<P>>;
  constexpr index_t keys = 100;
  fake_nodes<P> n;
  n.hooks.resize(keys);
  for (index_t i = 0; i < keys; ++i) n.hashes.push_back(hash32(static_cast<int>(i)));
  policy p(&n, cachet::policy_init{1000, 3});  // window 10, protected up to 792: nothing evicts
  for (index_t i = 0; i < keys; ++i) p.on_insert(i);  // 90 overflow the window into probation
  for (index_t i = 0; i < keys; ++i) p.on_access(i);  // promotes them (the in-order way)
  p.flush();
  REQUIRE(p.window_size() == 10);
  REQUIRE(p.protected_size() == 90);
  REQUIRE(p.probation_size() == 0);

  // From here on no hit is in probation: every batch takes the one-relink-per-entry way.
  std::vector<std::uint64_t> last(keys, 0);
  std::uint64_t now = 0;
  for (index_t i = 0; i < keys; ++i) last[i] = ++now;
  // Each queue from most to least recent, read off the hooks' links.
  auto queue_order = [&](P::queue q) {
    index_t head = npos;
    for (index_t i = 0; i < keys; ++i) {
      if (n.hooks[i].q == q && n.hooks[i].ln.prev == npos) head = i;
    }
    std::vector<index_t> out;
    for (index_t i = head; i != npos; i = n.hooks[i].ln.next) out.push_back(i);
    return out;
  };
  auto model_order = [&](P::queue q) {
    std::vector<index_t> out;
    for (index_t i = 0; i < keys; ++i) {
      if (n.hooks[i].q == q) out.push_back(i);
    }
    std::sort(out.begin(), out.end(), [&](index_t a, index_t b) { return last[a] > last[b]; });
    return out;
  };
  std::mt19937 rng(9);
  for (int batch = 0; batch < 70'000; ++batch) {
    for (int k = 0; k < 64; ++k) {
      // Skewed, so batches hold repeats and runs: a quarter of hits go to keys 0..3. The last key
      // is hit only in the first batch (drain mark 1) and in the first batch after the mark wraps
      // (mark 1 again): a stale mark left from before the wrap would skip that hit.
      const bool lone = k == 0 && (batch == 0 || batch == 65'535);
      const index_t i = lone ? keys - 1 : (rng() & 3) == 0 ? rng() % 4 : rng() % (keys - 1);
      p.on_access(i);
      last[i] = ++now;
    }
    // Check around the 16-bit mark's wrap (batch 65,535 is the 65,536th merged drain) and now and
    // then elsewhere.
    if ((batch >= 65'530 && batch <= 65'545) || batch % 5000 == 0) {
      p.flush();  // a no-op here: the 64th hit already drained the buffer
      INFO("batch " << batch);
      REQUIRE(queue_order(P::queue::window) == model_order(P::queue::window));
      REQUIRE(queue_order(P::queue::protect) == model_order(P::queue::protect));
    }
  }
  CHECK(p.probation_size() == 0);
}
