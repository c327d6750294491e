// w_tinylfu_adaptive: the shadow caches (detail/tinylfu_shadow.hpp) and the choice of shape they
// drive. The hit-ratio tests of the adaptive policy through a store are in w_tinylfu_test.cpp.
#include <array>
#include <cachet/detail/tinylfu_shadow.hpp>
#include <cachet/eviction/w_tinylfu.hpp>
#include <cachet/hash.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <list>
#include <map>
#include <random>
#include <unordered_map>
#include <vector>

#include "fake_nodes.hpp"

using cachet::detail::index_t;
using cachet::detail::tinylfu_shadow;
using cachet_test::fake_nodes;

namespace {

// An estimate the test sets by hand.
struct counts {
  std::map<std::uint32_t, std::uint32_t> c;
  std::uint32_t operator()(std::uint32_t h) const {
    const auto it = c.find(h);
    return it == c.end() ? 0 : it->second;
  }
};

constexpr std::uint32_t k_no_random = 15;  // warm threshold 15: no estimate is above it

// A shard policy driven the way sharded_store drives it, with every get a read-through (a miss
// inserts), keyed by 32-bit hash.
template <class P>
class driver {
 public:
  explicit driver(std::size_t cap, std::uint64_t seed = 1, void* shared = nullptr)
      : cap_(cap), p_(&n_, cachet::policy_init{cap, seed, shared}) {}
  bool read(std::uint32_t h) {
    if (const auto it = where_.find(h); it != where_.end()) {
      p_.on_access(it->second);
      return true;
    }
    p_.on_miss(h);
    index_t i;
    if (where_.size() == cap_) {
      i = p_.victim();
      p_.on_remove(i);
      where_.erase(n_.hashes[i]);
    } else {
      i = static_cast<index_t>(n_.hooks.size());
      n_.hooks.emplace_back();
      n_.hashes.push_back(0);
    }
    n_.hooks[i] = {};
    n_.hashes[i] = h;
    where_[h] = i;
    p_.on_insert(i);
    return false;
  }
  typename P::template shard_policy<fake_nodes<P>>& policy() {
    p_.flush();
    return p_;
  }

 private:
  std::size_t cap_;
  fake_nodes<P> n_;
  typename P::template shard_policy<fake_nodes<P>> p_;
  std::unordered_map<std::uint32_t, index_t> where_;
};

std::uint32_t key_hash(std::uint64_t k) {
  return static_cast<std::uint32_t>(cachet::detail::mix64(k + 0x77));
}

// Zipf(0.8) over `keys` keys, as hashes.
std::vector<std::uint32_t> zipf_stream(int keys, int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<double> w;
  for (int k = 0; k < keys; ++k) w.push_back(1.0 / std::pow(k + 1, 0.8));
  std::discrete_distribution<int> d(w.begin(), w.end());
  std::vector<std::uint32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(key_hash(static_cast<std::uint64_t>(d(rng))));
  return out;
}

// Each read uniform over the 400 most recent of a stream of new keys, one new key every 4 reads:
// recency pays, a 1% window does not.
std::vector<std::uint32_t> drifting_stream(int n) {
  std::mt19937 rng(9);
  std::vector<std::uint32_t> out;
  for (int t = 0; t < n; ++t) {
    const int newest = 400 + t / 4;
    out.push_back(key_hash(static_cast<std::uint64_t>(newest - static_cast<int>(rng() % 400))));
  }
  return out;
}

struct no_random_traits : cachet::w_tinylfu_traits {
  static constexpr std::uint32_t warm_threshold = k_no_random;
};
// Shadows as large as the cache (no sampling) for caches up to 4096 entries.
struct exact_adaptive_traits : no_random_traits {
  static constexpr bool adaptive = true;
  static constexpr std::uint32_t sim_min_entries = 4096;
  static constexpr std::uint32_t sim_max_entries = 4096;
};

}  // namespace

TEST_CASE("tinylfu_shadow: follows W-TinyLFU's rules on hashes", "[w_tinylfu][shadow]") {
  tinylfu_shadow s;
  counts est;
  // Capacity 4: window 1, protected at most 2, margin 1.
  s.reset({.capacity = 4, .window = 1, .protect = 2, .margin = 1}, 1);
  auto access = [&](std::uint32_t h) { return s.access(h, est, k_no_random, 127); };
  for (std::uint32_t h = 1; h <= 4; ++h) CHECK_FALSE(access(h));  // filling: no duel
  CHECK(s.size() == 4);
  // Window [4]; probation, least recent first: 1 2 3.
  CHECK(access(4));  // a window hit
  CHECK(access(1));  // a probation hit: promoted
  CHECK(s.hits() == 2);
  // Full. New 5: candidate 4 (est 1) vs victim 2 (est 0): 1 > 0 + margin 1 is false: 4 leaves.
  est.c = {{4, 1}};
  CHECK_FALSE(access(5));
  CHECK_FALSE(s.contains(4));
  CHECK(s.contains(2));
  // New 6: candidate 5 (est 2) beats victim 2 (est 0) by more than the margin: 2 leaves.
  est.c = {{5, 2}};
  CHECK_FALSE(access(6));
  CHECK_FALSE(s.contains(2));
  CHECK(s.contains(5));
  CHECK(s.size() == 4);
  // Probation is now 3 5 (least recent first), protected 1. Promote 3 and 5: protected holds 2.
  CHECK(access(3));
  CHECK(access(5));
  // Protected 5 3 1 is over its 2: its least recent, 1, dropped back to probation.
  est.c = {{6, 9}};
  CHECK_FALSE(access(7));  // candidate 6 (9) beats victim 1 (0)
  CHECK_FALSE(s.contains(1));
  CHECK(s.contains(6));
  CHECK(s.contains(7));
  // A protected hit that overflows protected demotes its least recent entry to probation.
  CHECK(access(6));  // 6 was in probation: promoted; protected 3 5 6 > 2: 3 drops to probation
  est.c = {{7, 9}};
  CHECK_FALSE(access(8));  // candidate 7 (9) vs victim 3 (0): 3 leaves
  CHECK_FALSE(s.contains(3));
  CHECK(s.hits() == 5);
}

TEST_CASE("tinylfu_shadow: an all-window shadow is an exact LRU, even with long probe chains",
          "[w_tinylfu][shadow]") {
  // window == capacity: main stays empty and every eviction takes the window's least recent
  // hash, so the shadow must agree with a plain LRU on every access. Half the hashes share one
  // home slot (h * 0x9E3779B1 lands in the same top bits), to exercise probing and
  // backward-shift deletion, wrap-around included.
  constexpr std::uint32_t cap = 100;
  tinylfu_shadow s;
  s.reset({.capacity = cap, .window = cap, .protect = 0, .margin = 0}, 1);
  // The inverse of 0x9E3779B1 modulo 2^32, so that hash * 0x9E3779B1 == product.
  std::uint32_t inv = 1;
  for (int i = 0; i < 5; ++i) inv *= 2 - 0x9E3779B1u * inv;
  REQUIRE(inv * 0x9E3779B1u == 1u);
  std::vector<std::uint32_t> pool;
  for (std::uint32_t k = 0; k < 150; ++k) pool.push_back(inv * (0xFFFFFF00u + k));  // last slot
  for (std::uint32_t k = 0; k < 150; ++k) pool.push_back(key_hash(k));
  std::list<std::uint32_t> lru;
  std::unordered_map<std::uint32_t, std::list<std::uint32_t>::iterator> pos;
  std::mt19937 rng(3);
  const counts none;
  std::uint64_t hits = 0;
  for (int t = 0; t < 200'000; ++t) {
    const std::uint32_t h = pool[rng() % pool.size()];
    const bool want = pos.count(h) != 0;
    if (want) {
      lru.erase(pos[h]);
    } else if (lru.size() == cap) {
      pos.erase(lru.back());
      lru.pop_back();
    }
    lru.push_front(h);
    pos[h] = lru.begin();
    hits += want ? 1 : 0;
    REQUIRE(s.access(h, none, k_no_random, 127) == want);
  }
  CHECK(s.hits() == hits);
  CHECK(s.size() == cap);
  for (const std::uint32_t h : pool) REQUIRE(s.contains(h) == (pos.count(h) != 0));
}

TEST_CASE("tinylfu_shadow: the 1% margin-0 shadow makes the static policy's every decision",
          "[w_tinylfu][shadow]") {
  // The adaptive policy feeds its shadows every access and shares its sketch with them, so with
  // shadows as large as the cache (no sampling) and no random admission, its first shadow
  // (window 1%, margin 0) must hit exactly when the static w_tinylfu would.
  using adaptive = cachet::basic_w_tinylfu<exact_adaptive_traits>;
  using fixed = cachet::basic_w_tinylfu<no_random_traits>;
  for (const std::size_t cap : {50, 300, 1000}) {
    const auto stream = zipf_stream(6000, 60'000, static_cast<unsigned>(cap));
    driver<adaptive> a(cap);
    driver<fixed> f(cap);
    std::uint64_t fixed_hits = 0;
    for (const std::uint32_t h : stream) {
      a.read(h);
      fixed_hits += f.read(h) ? 1 : 0;
    }
    auto& p = a.policy();
    REQUIRE(adaptive::shard_policy<fake_nodes<adaptive>>::shadow_window_percent(0) == 1);
    REQUIRE(adaptive::shard_policy<fake_nodes<adaptive>>::shadow_margin(0) == 0);
    INFO("capacity " << cap);
    CHECK(p.shadow(0).shape_of().capacity == cap);
    CHECK(p.shadow(0).hits() == fixed_hits);
    // The other shapes saw the same accesses and made other decisions.
    bool some_differ = false;
    for (std::size_t k = 1; k < p.shadow_count(); ++k) {
      some_differ = some_differ || p.shadow(k).hits() != fixed_hits;
    }
    CHECK(some_differ);
  }
}

TEST_CASE("w_tinylfu_adaptive: follows the best shadow's window and margin",
          "[w_tinylfu][shadow]") {
  using P = cachet::w_tinylfu_adaptive;
  using policy = P::shard_policy<fake_nodes<P>>;
  constexpr std::size_t cap = 1000;  // shadows of 256 hashes, fed a 25.6% sample
  {
    // Recency traffic: the shape in force ends with a large window.
    driver<P> d(cap);
    for (const std::uint32_t h : drifting_stream(200'000)) d.read(h);
    auto& p = d.policy();
    std::size_t best = 0;
    for (std::size_t k = 1; k < policy::shadow_count(); ++k) {
      if (p.shadow(k).hits() > p.shadow(best).hits()) best = k;
    }
    INFO("best shadow " << best << ", window_max " << p.window_max());
    CHECK(p.shadow(0).shape_of().capacity == 256);
    CHECK(policy::shadow_window_percent(best) >= 40);
    CHECK(p.window_max() >= cap * 40 / 100);
    CHECK(p.window_max() + p.protected_max() == 10 + 792);  // the window trades with protected
  }
  {
    // A loop over 1.5 x C keys: LRU and a large window get nothing; a small window and a main
    // space that holds still (margin 1: a candidate seen once more than the victim, as every
    // key of a loop is just after its turn, stays out) get up to C / 1.5C.
    driver<P> d(cap);
    std::uint64_t hits = 0, reads = 0;
    for (int pass = 0; pass < 40; ++pass) {
      for (std::uint64_t k = 0; k < 1500; ++k) {
        const bool hit = d.read(key_hash(k));
        if (pass >= 20) {
          hits += hit ? 1 : 0;
          ++reads;
        }
      }
    }
    auto& p = d.policy();
    INFO("window_max " << p.window_max() << ", margin " << p.admit_margin());
    CHECK(p.window_max() <= cap * 10 / 100);
    CHECK(p.admit_margin() == 1);
    // About 0.66 with the margin in force in the real duel; 0.61 when it is chosen but not applied.
    CHECK(static_cast<double>(hits) / static_cast<double>(reads) > 0.63);
    // The shadows were fed the keys whose hash is below 256 / 1000 of 2^32: about 25.6% of reads.
    const double fed = static_cast<double>(p.shadow(0).accesses()) / (40.0 * 1500.0);
    CHECK(fed > 0.22);
    CHECK(fed < 0.30);
  }
}

TEST_CASE("w_tinylfu_adaptive: a shape replaces the one in force only by beating it by over 2%",
          "[w_tinylfu][shadow]") {
  using policy = cachet::w_tinylfu_adaptive::shard_policy<fake_nodes<cachet::w_tinylfu_adaptive>>;
  constexpr std::size_t none = policy::shadow_count();
  using scores = std::array<std::uint64_t, policy::shadow_count()>;
  // No shape in force yet: the best score, the lowest index among equals.
  CHECK(policy::next_shape(scores{5, 9, 3, 9, 0, 0, 0, 0}, none) == 1);
  CHECK(policy::next_shape(scores{}, none) == 0);
  // Shape 2 in force with 1000: 1020 (exactly 2% more) does not move it, 1021 does.
  CHECK(policy::next_shape(scores{0, 0, 1000, 1020, 0, 0, 0, 0}, 2) == 2);
  CHECK(policy::next_shape(scores{0, 0, 1000, 1021, 0, 0, 0, 0}, 2) == 3);
  // Shapes before the one in force are weighed like the others (each against this period's
  // scores: once, a shape before the one in force was weighed against its old score).
  CHECK(policy::next_shape(scores{1021, 0, 1000, 0, 0, 0, 0, 0}, 2) == 0);
  CHECK(policy::next_shape(scores{1020, 0, 1000, 0, 0, 0, 0, 0}, 2) == 2);
  // Equal scores, or a shape in force that is best, stay.
  CHECK(policy::next_shape(scores{7, 7, 7, 7, 7, 7, 7, 7}, 5) == 5);
  CHECK(policy::next_shape(scores{1, 2, 3, 4, 5, 6, 7, 100}, 7) == 7);
  // A shape in force that scored nothing gives way to any hit.
  CHECK(policy::next_shape(scores{0, 0, 0, 0, 0, 0, 1, 0}, 4) == 6);
}

TEST_CASE(
    "w_tinylfu_adaptive: a shape a little ahead three periods in a row takes over, if its window "
    "is no smaller",
    "[w_tinylfu][shadow]") {
  using P = cachet::w_tinylfu_adaptive;
  using scores = std::array<std::uint64_t, P::k_shapes>;
  P::shape_choice c;
  CHECK(c.next(scores{}) == 0);  // the first choice: the best (all equal: the lowest index)
  // Shape 2 scores 1% above shape 0 (more than 0.5%, under 2%): the third period in a row does it.
  const scores ahead{1000, 0, 1010, 0, 0, 0, 0, 0};
  CHECK(c.next(ahead) == 0);
  CHECK(c.next(ahead) == 0);
  CHECK(c.next(ahead) == 2);
  CHECK(c.current == 2);
  // A streak is broken by a period where the challenger is not ahead, or another shape leads.
  const scores back{1000, 0, 1010, 1016, 0, 0, 0, 0};  // shape 3 0.6% above shape 2
  const scores even{0, 0, 1000, 1004, 0, 0, 0, 0};     // 0.4%: not ahead enough
  const scores other{0, 0, 1000, 0, 0, 1008, 0, 0};    // shape 5 leads
  CHECK(c.next(back) == 2);
  CHECK(c.next(back) == 2);
  CHECK(c.next(even) == 2);
  CHECK(c.next(back) == 2);
  CHECK(c.next(other) == 2);
  CHECK(c.next(back) == 2);
  CHECK(c.next(back) == 2);
  CHECK(c.next(back) == 3);
  // More than 2% ahead still switches at once, and resets the streak.
  CHECK(c.next(scores{0, 0, 0, 1000, 0, 0, 0, 1021}) == 7);
  CHECK(c.streak == 0);
  // The streak never shrinks the window: shape 6 (40%) 1% above shape 7 (80%) period after period
  // starts no streak; shape 3 (80%, the other margin) does, and takes over on the third.
  REQUIRE(P::shape_window_percent(6) < P::shape_window_percent(7));
  REQUIRE(P::shape_window_percent(3) == P::shape_window_percent(7));
  const scores smaller{0, 0, 0, 0, 0, 0, 1010, 1000};
  for (int period = 0; period < 5; ++period) {
    CHECK(c.next(smaller) == 7);
    CHECK(c.streak == 0);
  }
  const scores same_window{0, 0, 0, 1010, 0, 0, 0, 1000};
  CHECK(c.next(same_window) == 7);
  CHECK(c.next(same_window) == 7);
  CHECK(c.next(same_window) == 3);
  // A smaller window more than 2% ahead still wins at once (the step, not the streak).
  CHECK(c.next(scores{0, 0, 1021, 1000, 0, 0, 0, 0}) == 2);
}

TEST_CASE("w_tinylfu_adaptive: old periods fade, so a change of traffic changes the shape",
          "[w_tinylfu][shadow]") {
  // 40 periods (10 x C reads each) of recency traffic, then 8 periods of a loop. Each period
  // halves the shadows' past scores, so the loop's periods soon outweigh the long past.
  using P = cachet::w_tinylfu_adaptive;
  constexpr std::size_t cap = 1000;
  driver<P> d(cap);
  for (const std::uint32_t h : drifting_stream(400'000)) d.read(h);
  REQUIRE(d.policy().window_max() >= cap * 40 / 100);
  for (int pass = 0; pass < 54; ++pass) {
    for (std::uint64_t k = 0; k < 1500; ++k) d.read(key_hash(1'000'000 + k));
  }
  INFO("window_max " << d.policy().window_max());
  CHECK(d.policy().window_max() <= cap * 10 / 100);
}

TEST_CASE("w_tinylfu_adaptive: a weight-bounded shard builds its shadows as it grows",
          "[w_tinylfu][shadow]") {
  using P = cachet::w_tinylfu_adaptive;
  fake_nodes<P> n;
  P::shard_policy<fake_nodes<P>> p(&n, cachet::policy_init{0, 1});
  CHECK(p.shadow(0).shape_of().capacity == 0);  // no size yet: nothing to model
  for (index_t i = 0; i < 3000; ++i) {
    n.hooks.emplace_back();
    n.hashes.push_back(key_hash(i));
    p.on_insert(i);
  }
  // The sketch (64 at first) is rebuilt for twice the live entries whenever they outgrow it: last
  // at 2,111 live entries, each time reported to the simulation, which is rebuilt when the
  // total doubles: last for 2,111 entries, shadows of 256 hashes (2,111 / 32, at least 256).
  CHECK(p.simulation().capacity() == 2111);
  CHECK(p.shadow(0).shape_of().capacity == 256);
  for (std::size_t k = 1; k < p.shadow_count(); ++k) {
    CHECK(p.shadow(k).shape_of().capacity == p.shadow(0).shape_of().capacity);
  }
}

TEST_CASE("w_tinylfu_adaptive: shards that share a simulation feed it and follow its choice",
          "[w_tinylfu][shadow]") {
  // Two shards of 500 entries, as a store of 1,000 builds them: one simulation for both. Each
  // shard sees half of the drifting stream (split by the hash's low bit); the simulation sees
  // every access of a sampled key, from both shards, and both shards take up the large window it
  // chooses.
  using P = cachet::w_tinylfu_adaptive;
  P::shared_state sim(1000, 7);
  driver<P> a(500, 1, &sim), b(500, 2, &sim);
  const std::uint64_t threshold = (std::uint64_t{256} << 32) / 1000;  // shadows of 256 of 1,000
  std::uint64_t sampled_a = 0, sampled_b = 0;
  for (const std::uint32_t h : drifting_stream(200'000)) {
    const bool to_a = (h & 1) == 0;
    (to_a ? a : b).read(h);
    if (h < threshold) ++(to_a ? sampled_a : sampled_b);
  }
  a.policy();  // flush both hit buffers
  b.policy();
  INFO("sampled from a " << sampled_a << ", from b " << sampled_b);
  REQUIRE(sampled_a > 10'000);
  REQUIRE(sampled_b > 10'000);
  CHECK(&a.policy().simulation() == &sim);
  CHECK(&b.policy().simulation() == &sim);
  CHECK(sim.capacity() == 1000);
  CHECK(sim.shadow(0).accesses() == sampled_a + sampled_b);  // one thread: nothing skipped
  const std::size_t shape = sim.shape();
  REQUIRE(shape < P::k_shapes);
  CHECK(P::shape_window_percent(shape) >= 40);
  for (driver<P>* d : {&a, &b}) {
    auto& p = d->policy();
    INFO("window_max " << p.window_max());
    CHECK(p.window_max() >= 500 * 40 / 100);  // both shards follow the one choice
  }
}

TEST_CASE("w_tinylfu_adaptive: the shared simulation follows the shards' bounds",
          "[w_tinylfu][shadow]") {
  using P = cachet::w_tinylfu_adaptive;
  P::shared_state sim(16'384, 7);
  CHECK(sim.capacity() == 16'384);
  CHECK(sim.shadow(0).shape_of().capacity == 512);  // 16,384 / 32
  fake_nodes<P> n1, n2;
  P::shard_policy<fake_nodes<P>> a(&n1, cachet::policy_init{8192, 1, &sim});
  P::shard_policy<fake_nodes<P>> b(&n2, cachet::policy_init{8192, 2, &sim});
  a.set_capacity(2048);  // the store's set_max_entries(4096) reaches every shard
  b.set_capacity(2048);
  CHECK(sim.capacity() == 4096);
  CHECK(sim.shadow(0).shape_of().capacity == 256);  // 4,096 / 32 = 128, at least 256
  // Its sketch, sized for 256 hashes, is no narrower than a shard's can be (w_tinylfu.hpp, "the
  // sketch of a small cache").
  CHECK(sim.sketch().words() == P::k_min_sketch_words);
  CHECK(sim.sketch().sample_size() == 10 * 256);
  a.set_capacity(8192);
  b.set_capacity(8192);
  CHECK(sim.capacity() == 16'384);
  CHECK(sim.shadow(0).shape_of().capacity == 512);
}
