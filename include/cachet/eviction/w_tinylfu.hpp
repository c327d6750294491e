// cachet/eviction/w_tinylfu.hpp — Window TinyLFU: an LRU admission window in front of a
// segmented-LRU main space guarded by a frequency sketch.
//
// Purpose: high hit ratios on skewed workloads that drift over time (web, catalogue and database
// caches), resisting the one-off scans that flush LRU and the stale popularity that pins LFU.
// Einziger, Friedman, Manes, "TinyLFU: a highly efficient cache admission policy", ACM ToS 2017;
// the policy of Caffeine (Java), whose 2.6.2 release this follows rule for rule (differences
// below).
//
// The rules. A shard of capacity C is split into
//   - the window, an LRU of W = ceil(C / 100) entries (1%, at least 1) that every new key enters;
//   - the main space, C - W entries, a segmented LRU: `probation` (entries on trial) and
//     `protected` (entries hit while in main), at most 80% of the main space.
// A hit moves the entry to the front of its queue; a hit in probation promotes it to the front of
// protected, and if protected then holds more than its share its least recent entry drops to the
// front of probation. An update (put over a present key) counts as a hit.
// When the window overflows, its least recent entry (the candidate) leaves for the main space. If
// the shard is not full it simply enters probation. If it is full, the candidate duels with
// main's victim (the least recent entry of probation; of protected if probation is empty) and
// the loser is evicted. The winner is decided by a count-min sketch of 4-bit counters
// (detail/count_min_sketch.hpp) that sees every access (get hits, get misses and updates),
// except that consecutive accesses to one key count once (below), and halves all counters every
// 10 x C additions:
//   candidate estimate >  victim estimate + margin          -> the candidate enters probation;
//   candidate estimate <= 5 (and not above)                 -> the candidate is evicted;
//   otherwise (a warm candidate losing to a hotter victim)  -> admitted with probability 1/128.
// The margin is 0 (the adaptive policy may choose 1, see below). Ties keep the victim, so a loop
// or scan cannot churn main. The last rule is Caffeine's defence
// against hash flooding: an attacker who drives a victim's counters to 15 through colliding keys
// would otherwise lock every newcomer out of main; a warm candidate still gets in now and then,
// and the threshold keeps the jitter off cold one-hit wonders, so the hit ratio does not suffer.
// The random draws come from a xorshift64* generator seeded from policy_init::seed, which a store
// draws per process (an attacker cannot time keys against the draws) unless its hash names a seed
// (hash.hpp); with a fixed seed a run is reproducible.
// Correlated accesses: an access to the same key as the shard's previous access (a get, miss or
// update; a put of a new key is not one) adds nothing to the sketch. A key read 36 times in a row
// is one burst of use, not 36 (LRU-K's "correlated references": O'Neil, O'Neil, Weikum, SIGMOD
// 1993); counted, it would hold 15 counts through four halvings and, as main's victim, beat
// every candidate meanwhile. That is what happens at the start of the ps trace (one key 36 times,
// then seldom), where counting every access costs 1.7 points at 100 entries.
//
// Differences from Caffeine 2.6.2, each deliberate: (1) the sketch counts from the first access,
// where Caffeine allocates its sketch only once the cache is half full and ignores the accesses
// before (on the LIRS traces, counting from the start scores 6 to 9 points higher on gli at 500
// and 1000 entries and 0.9 higher on cs at 1000, and 1.3 to 2.3 lower on multi2 at 500 and ps at
// 100; bench/sim/caffeine_2_6_model.py, a model of Caffeine 2.6.2, matches this policy without
// (4) to 0.25 points on those rows once its warm-up is switched to this rule); (2) the sketch
// packs a key's four counters into one cache line (Caffeine 3's layout) rather than four, and
// after a halving counts its additions as Caffeine 3 does (detail/count_min_sketch.hpp; with
// Caffeine 2's count the model loses 2.5 points on loop at 1000 entries); (3) no hit is dropped
// (Caffeine's read buffer is lossy under contention); (4) consecutive accesses to one key count
// once (above). On the shared traces (4) lifts ps at 100 entries from 25.7 to 27.4 and multi2 at
// 500 from 48.2 to 49.1, and the mean over all rows against Caffeine from +0.50 to +0.62 points
// (bench/RESULTS.md); (5) the sketch of a small cache, below.
// The sketch of a small cache: a sketch is never narrower than k_min_sketch_words = 512 words
// (4 KiB, the width Caffeine gives 512 entries; Caffeine's floor is 8 words), and still halves
// every 10 x C additions; the adaptive simulation's sketch has the same floor. Sized for C alone,
// the shared traces at 100 to 250 entries lost up to 1.3 points (16 hash seeds, issue 18 in
// bench/RESULTS.md: adaptive, ps at 100 entries 27.64 -> 28.94 with the floor, cpp at 200 83.74 ->
// 84.29; static, cs at 200 10.15 -> 11.25, 2_pools at 100 47.89 -> 48.93), and no row of 512
// entries or more moves but through the simulation's sketch (OLTP at 5,000: -0.12). Other widths
// did worse: a 1,024-word floor cost loop at 256 and multi2 at 1,000 up to 0.4; 4 x C words at
// every size gained 0.2 on OLTP at 1,000 and 2,000 but lost 0.3 at 5,000, for 24 more bytes per
// entry everywhere. Why a narrow sketch costs the small rows was not isolated. The price is
// memory in small shards: one of 256 entries or fewer holds 4 KiB of sketch (was 2 KiB at 256
// entries: 8 bytes more per entry); from 257 entries nothing changes, and a store picks at least
// 256 entries per shard unless told its shard count.
//
// Parameters and defaults (w_tinylfu_traits; basic_w_tinylfu<Traits> takes your own):
//   window_percent = 1      TinyLFU's evaluation: a 1% window is enough to let a burst of new
//                           keys build frequency before it is judged, and leaves 99% to the
//                           frequency-guarded main space. Recency-heavy workloads want more (see
//                           adaptive).
//   protected_percent = 80  segmented LRU's usual split; probation's 20% is where candidates and
//                           demoted entries compete.
//   sample_factor = 10      halve the sketch every 10 x C additions (TinyLFU's W/C = 10): long
//                           enough to rank keys, short enough that yesterday's favourites fade.
//   warm_threshold = 5, random_admit_mask = 127
//                           Caffeine's hash-flooding rule above: 15 halves to 7, so 6+ is "warm".
//   adaptive = false        true: the cache learns its window size and admission margin from
//                           shadow caches ("miniature simulation": Waldspurger et al., "Cache
//                           modeling and optimization using miniature simulations", USENIX ATC
//                           2017). Eight shadows (detail/tinylfu_shadow.hpp) run W-TinyLFU over
//                           key hashes only, one per shape: window 1, 10, 40 or 80%, each with
//                           margin 0 or 1. They model the whole store, not one shard: the store
//                           builds one simulation (adaptive_sim, the policy's shared_state) that
//                           every shard feeds and follows. It is fed the accesses (get hits, get
//                           misses, updates) of the keys whose 32-bit hash falls below
//                           size / C x 2^32, a spatially sampled stream, where C is the store's
//                           max_entries and size, each shadow's capacity, is C >> sim_shift
//                           clamped to [sim_min_entries, sim_max_entries] (defaults 1/32, 256,
//                           2,048) and to C; it counts them in a sketch of its own (sized for
//                           `size`, halving every 10 x size sampled additions, so on the real
//                           sketch's clock). Every 10 x min(size, sim_period_entries = 128)
//                           sampled accesses each shadow's score becomes half its old score plus
//                           its hits in the period, and the shape of the best score is chosen if
//                           it beats the shape in force by more than 2%, or by more than 0.5% three
//                           periods in a row with a window at least as large (shape_choice); each
//                           shard takes up the chosen shape at its next eviction (at first the
//                           static 1% window with margin 0). A shard's window trades entries with
//                           its protected share (window 1 .. W + protected, so 80% at most),
//                           moving at most 256 entries per eviction; the rest carries over to the
//                           next eviction.
//                           Weight-bounded stores size the simulation from the bounds their shards
//                           report as they grow (rebuilding it, forgetting the shadows, each time
//                           the total doubles).
//                           Why one simulation per store (issue 18, bench/RESULTS.md): shards
//                           that adapted alone saw 1/64 of the stream each, so a period of 10 x
//                           their capacity outlasted the shared traces and every shard of a
//                           default store ran the 1% window to the end (OLTP at 100,000 entries:
//                           1.5 points below LRU); and one large shard decided once or twice per
//                           trace. Pooled, the shapes are compared on 64 times the accesses, and
//                           the period no longer grows with the cache. The 2% hysteresis keeps a
//                           short trace (cpp, 9,047 accesses) from switching on near-ties, each
//                           switch costing more than the tie was worth; the streak lets a shape
//                           that stays a little ahead take over on a long one (OLTP).
//                           Why: on the shared traces (bench/RESULTS.md) the best static window
//                           runs from 1% (loops, gli, cs) to 60-80% (sprite); Caffeine's hill
//                           climbing moves 6.25% of C per 10 x C accesses and had not arrived when
//                           the shorter traces ended (sprite at 1000 entries: 84.6 against LRU's
//                           90.6), and climbing on one noisy hit ratio also stepped the wrong way.
//                           Shadows compare every shape on the same accesses each period. Margin 1
//                           (a candidate must be seen twice more than the victim) keeps main still
//                           on loops, where every candidate was seen once more than the victim
//                           (cs at 100 entries: 2.1 with margin 0, 5.6 when chosen).
//                           The adaptive policy also lowers warm_threshold to 2: a candidate seen
//                           3 to 5 times that loses its duel is admitted 1 time in 128 too. On
//                           the shared traces that lifted multi2 at 500 entries from 48.2 to 49.1
//                           and ps at 100 from 26.6 to 27.6 (mean gap to the best column 0.37 ->
//                           0.31, before correlated accesses counted once); the static policy
//                           keeps Caffeine's 5, where 2 costs it more rows below Caffeine than it
//                           gains (bench/RESULTS.md).
//   w_tinylfu is the static 1% window; w_tinylfu_adaptive turns on the shadows.
//
// Mapping onto the store's contract (eviction.hpp). The store asks victim() only when a new key
// must make room, just before on_insert() puts it in the window; so victim() plays the window
// overflow that insert is about to cause: if the window is at its size, victim() runs the duel
// between the window's least recent entry and main's victim, moves the candidate to probation if
// it wins, and returns the loser. If the window has room (after erases, or while several victims
// are needed for a heavy entry) the new key needs no duel: victim() returns main's victim (the
// window's LRU when main is empty). While the shard is filling, on_insert() moves window overflow
// into probation without a duel. The policy defines no admit(): a new key always enters the
// window (W-TinyLFU admits to main, not to the cache), so put() never returns
// rejected_by_policy. on_miss(hash) feeds the sketch, so a key's first get counts even though it
// is not cached; a put that inserts a new key does not count (in cache-aside and read-through it
// follows the get miss that already did), so a key written without being read starts cold.
// clear() forgets the entries but keeps the sketch: key popularity outlives the entries.
//
// Weight-bounded stores (max_entries = 0): the sizes above are taken from the most entries the
// shard has held, and the sketch starts at 64 entries and is rebuilt twice as large (forgetting
// its counts) whenever that peak outgrows it.
//
// Hit cost: a hit appends the entry's index to a 64-slot per-shard buffer under the shard lock,
// as lru does. The buffer is replayed when it fills and before anything else the policy is told
// or asked (insert, update, removal, miss, victim choice), exactly as if each hit had been
// applied when it happened (see drain()): the sketch counts the hits in order, a run of hits on
// one entry once; the queues relink once per distinct entry (newest hit last, as in lru)
// when no hit of the batch was in probation, and otherwise replay the hits in order, since a
// promotion demotes protected's least recent entry. In a steady state most hits land in
// protected or the window, so most batches take the first way; a hot key's shard, whose batches
// are mostly that key, does one relink and one sketch step per run. The policy prefetches the
// batch's sketch lines, and list neighbours a few hits ahead. No allocation.
// w_tinylfu_adaptive adds, per access, a compare of the hash with the sampling threshold (read
// from the simulation, on a line no one writes), and for the sampled accesses (all of them up to
// 256 entries in the store, then 256 / C, 1 in 32 from 8,192 to 65,536, fewer above) the
// simulation's lock, taken with try_lock (an access that finds it held is not fed), a sketch
// step, and an access to each of the eight shadows: a probe of a small open-addressing index and
// a relink, and on a shadow miss two sketch estimates for the duel. The choice of shape is a loop
// over 8 scores. Measured in bench/RESULTS.md.
//
// Memory: the hook is 12 bytes (two 32-bit links, the queue id and a 16-bit drain mark); the sketch
// adds 8 bytes per entry rounded up to a power of two: 8 x bit_ceil(max(C, 8)) / C, 8 to 16 bytes
// for C >= 8. So 20 to 28 bytes per entry: 20.2 at C = 1000, 20.4 at C = 1,000,000 per shard, 28
// just past a power of two. Per shard, about 430 bytes more (lists, hit buffer).
// w_tinylfu_adaptive adds one simulation per store: 8 shadows of `size` hashes (9 bytes per hash
// + a 16-bit index of 2 to 4 slots per hash) and a sketch of 8 x bit_ceil(size) bytes, about 1 KB
// besides; so about 30 KB from 256 to 8,192 entries in the store, C / 32 x (8 x 13 to 17 + 8 to
// 16) bytes from 8,192 to 65,536 (3.5 to 4.8 bytes per entry), and about 230 KB above (0.23 bytes
// per entry at 1,000,000). Per shard, a pointer and three words. Small stores pay the most per
// entry: at C = 100 (exact shadows of 100 hashes) about 13 KB, 130 bytes per entry.
//
// Thread safety: a shard policy is used only under its shard lock (see eviction.hpp); the shared
// simulation has a lock of its own (adaptive_sim below). Exception safety: the store's
// constructor allocates the simulation, the shard policy's the sketch (and, built outside a
// store, a simulation of its own) (std::bad_alloc); every member is noexcept; a weight-bounded
// shard's sketch rebuild that fails to allocate keeps the old sketch, and a simulation rebuild
// that fails leaves the store in its current shape, adapting no more.
// Example: cachet::sharded_store<std::string, std::string, cachet::w_tinylfu> s(
//              {.max_entries = 100'000});
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>

#include "cachet/detail/count_min_sketch.hpp"
#include "cachet/detail/spin_mutex.hpp"
#include "cachet/detail/tinylfu_shadow.hpp"
#include "cachet/eviction.hpp"

namespace cachet {

// The tunables of basic_w_tinylfu; derive from it and override what you need.
struct w_tinylfu_traits {
  static constexpr std::uint32_t window_percent = 1;       // 1..99
  static constexpr std::uint32_t protected_percent = 80;   // of the main space, 0..100
  static constexpr std::uint64_t sample_factor = 10;       // sketch halves every factor x C
  static constexpr std::uint32_t warm_threshold = 5;       // see "the rules"
  static constexpr std::uint32_t random_admit_mask = 127;  // 2^k - 1: admit 1 in 2^k
  static constexpr bool adaptive = false;                  // learn window and margin
  // adaptive only: each shadow cache holds C >> sim_shift hashes (C: the store's entries),
  // clamped to [sim_min_entries, sim_max_entries] and to C (see "adaptive").
  static constexpr std::uint32_t sim_shift = 5;
  static constexpr std::uint32_t sim_min_entries = 256;
  static constexpr std::uint32_t sim_max_entries = 2048;
  // adaptive only: a shape is chosen every sample_factor x min(shadow size,
  // sim_period_entries) sampled accesses.
  static constexpr std::uint32_t sim_period_entries = 128;
};

struct w_tinylfu_adaptive_traits : w_tinylfu_traits {
  static constexpr bool adaptive = true;
  // A warm candidate is any seen 3+ times, not 6+ (see "adaptive" above).
  static constexpr std::uint32_t warm_threshold = 2;
};

template <class Traits = w_tinylfu_traits>
struct basic_w_tinylfu {
  static_assert(Traits::window_percent >= 1 && Traits::window_percent <= 99,
                "w_tinylfu traits: window_percent must be in 1..99");
  static_assert(Traits::protected_percent <= 100,
                "w_tinylfu traits: protected_percent must be in 0..100");
  static_assert(Traits::sample_factor >= 1, "w_tinylfu traits: sample_factor must be >= 1");
  static_assert(std::has_single_bit(Traits::random_admit_mask + 1),
                "w_tinylfu traits: random_admit_mask must be 2^k - 1");
  static_assert(Traits::sim_min_entries >= 1 &&
                    Traits::sim_min_entries <= Traits::sim_max_entries &&
                    Traits::sim_max_entries <= detail::tinylfu_shadow::k_max_capacity,
                "w_tinylfu traits: need 1 <= sim_min_entries <= sim_max_entries <= 65534");
  static_assert(Traits::sim_shift < 32, "w_tinylfu traits: sim_shift must be < 32");

  enum class queue : std::uint8_t { window, probation, protect };

  struct hook {
    detail::link ln;
    queue q = queue::window;
    std::uint16_t mark = 0;  // the drain that last moved this entry (see drain())
  };

  using traits_type = Traits;
  // The seed of every shard's sketch. The store's hash is already secret (seeded per process, or
  // re-mixed under the process seed when it does not declare is_avalanching; see hash.hpp), so the
  // sketch needs no secret of its own; the random admission, not the hash, is what stands against
  // an attacker who finds collisions. Public so tests can model the sketch.
  static constexpr std::uint64_t k_sketch_seed = 0x7A11F0CA5EEDULL;
  // The narrowest sketch, in 64-bit words (4 KiB): a small cache's sketch is sized as if for 512
  // entries (it still halves every sample_factor x C additions). See "the sketch of a small
  // cache" above. Public so tests can model the sketch.
  static constexpr std::size_t k_min_sketch_words = 512;

  // ---- the shapes, and the simulation that chooses among them (adaptive; see "adaptive")
  // The shapes tried: every window with every margin (shape k: window k % 4, margin k / 4).
  static constexpr std::array<std::uint32_t, 4> k_window_percents = {1, 10, 40, 80};
  static constexpr std::size_t k_shapes = 2 * k_window_percents.size();
  static constexpr std::uint32_t shape_window_percent(std::size_t k) noexcept {
    return k_window_percents[k % k_window_percents.size()];
  }
  static constexpr std::uint32_t shape_margin(std::size_t k) noexcept {
    return static_cast<std::uint32_t>(k / k_window_percents.size());
  }
  // The shape to follow after a period, given every shape's score and the shape in force (N for
  // none yet): the best score (the lowest index among equals), if it beats the shape in force by
  // more than 2%; otherwise the shape in force.
  template <std::size_t N>
  static constexpr std::size_t next_shape(const std::array<std::uint64_t, N>& scores,
                                          std::size_t current) noexcept {
    static_assert(N > 0);
    std::size_t best = 0;
    for (std::size_t k = 1; k < N; ++k) {
      if (scores[k] > scores[best]) best = k;
    }
    if (current < N && scores[best] * 100 <= scores[current] * 102) return current;
    return best;
  }
  // The choice of shape period after period: next_shape(), and besides, a shape that has the best
  // score, a window at least as large as the one in force, and beats the shape in force by more
  // than 0.5% three periods in a row replaces it. The 2% step keeps a short trace from switching
  // on one noisy period; the streak lets a shape that is steadily a little better take over (OLTP
  // at 50,000 entries sat at a 10% window for six periods in which 40% scored about 1% more, and
  // ended 0.5 below LRU). The streak never shrinks the window: a smaller window is the move that
  // can fall below LRU, and switching the window costs hits while entries move, so that takes the
  // 2% step (sprite at 1,000 entries, one seed in 64: three periods of 40% about 0.7% ahead of
  // 80% near the trace's end moved the window and cost 0.5 points).
  struct shape_choice {
    static constexpr std::uint32_t k_streak = 3;
    std::size_t current = k_shapes;     // the shape in force (k_shapes: none yet)
    std::size_t challenger = k_shapes;  // the shape on a streak
    std::uint32_t streak = 0;           // its periods in a row

    std::size_t next(const std::array<std::uint64_t, k_shapes>& scores) noexcept {
      const std::size_t chosen = next_shape(scores, current);
      if (chosen != current) {
        current = chosen;
        streak = 0;
        return current;
      }
      if (current >= k_shapes) return current;
      std::size_t best = 0;
      for (std::size_t k = 1; k < k_shapes; ++k) {
        if (scores[k] > scores[best]) best = k;
      }
      if (best == current || scores[best] * 1000 <= scores[current] * 1005 ||
          shape_window_percent(best) < shape_window_percent(current)) {
        streak = 0;
        return current;
      }
      streak = best == challenger ? streak + 1 : 1;
      challenger = best;
      if (streak >= k_streak) {
        current = best;
        streak = 0;
      }
      return current;
    }
  };
  // Static sizes for a cache of `base` entries.
  static std::size_t window_target(std::size_t base) noexcept {
    return std::max<std::size_t>(1, (base * Traits::window_percent + 99) / 100);
  }
  static std::size_t protected_target(std::size_t base) noexcept {
    const std::size_t w = window_target(base);
    return base > w ? (base - w) * Traits::protected_percent / 100 : 0;
  }
  static std::size_t window_for(std::size_t capacity, std::uint32_t pct) noexcept {
    return std::max<std::size_t>(1, (capacity * pct + 99) / 100);
  }
  // A shadow of `capacity` hashes with window percentage `pct`, trading with protected's share as
  // the real window does.
  static detail::tinylfu_shadow::shape shadow_shape(std::size_t capacity, std::uint32_t pct,
                                                    std::uint32_t margin) noexcept {
    const std::size_t w0 = window_target(capacity), p0 = protected_target(capacity);
    const std::size_t w = std::min(window_for(capacity, pct), w0 + p0);
    return {.capacity = static_cast<std::uint32_t>(capacity),
            .window = static_cast<std::uint32_t>(w),
            .protect = static_cast<std::uint32_t>(w0 + p0 - w),
            .margin = margin};
  }
  static constexpr std::uint64_t seed_mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
  }

  // The miniature simulation of w_tinylfu_adaptive: eight shadows, one per shape, of the whole
  // cache (every shard together), fed the accesses of a hash-sampled set of keys, with a sketch of
  // their own over that sampled stream. A store builds one and its shards share it (the store's
  // shared_state, passed in policy_init::shared); a shard policy built without one owns one. Each
  // period the simulation picks the shape to follow and publishes it; each shard takes it up at
  // its next eviction. See "adaptive" above.
  //
  // Thread safety: observe() and resize() lock the simulation (a spin lock of its own, taken while
  // a shard's lock is held, never the other way round); sampled() and shape() read atomics.
  // observe() only tries the lock: an access whose shard finds another shard feeding the
  // simulation at that moment is not fed (the shapes are scored on a little less; each shard's
  // own decisions stay exact). With one thread nothing is skipped, so a run is reproducible.
  // Exception safety: the constructor throws std::bad_alloc; resize() that cannot allocate stops
  // the sampling (the shape in force stays).
  class adaptive_sim {
   public:
    // `capacity`: the entries of every shard together; 0 for a weight-bounded store, sized as its
    // shards report their growth (resize()). `seed`: the random admissions of the shadows.
    adaptive_sim(std::size_t capacity, std::uint64_t seed)
        : bounded_(capacity != 0), capacity_(capacity), seed_(seed) {
      if (capacity != 0) build(capacity);
    }
    adaptive_sim(const adaptive_sim&) = delete;
    adaptive_sim& operator=(const adaptive_sim&) = delete;

    // Whether accesses to the key with this hash are fed to the simulation.
    bool sampled(std::uint32_t hash) const noexcept {
      return hash < threshold_.load(std::memory_order_relaxed);
    }
    // The shape chosen last (k_shapes until the first choice).
    std::size_t shape() const noexcept { return current_.load(std::memory_order_relaxed); }

    // Feeds one access (a get hit or miss, or an update) to a sampled key: the sketch counts it
    // unless it repeats the last access fed, then every shadow plays it; every period, the
    // shape is chosen.
    void observe(std::uint32_t hash) noexcept {
      std::unique_lock<detail::spin_mutex> lock(mu_, std::try_to_lock);
      if (!lock.owns_lock()) return;
      if (!sampled(hash)) return;  // resized since the caller looked
      if (!has_last_ || last_hash_ != hash) sketch_.increment(hash);
      last_hash_ = hash;
      has_last_ = true;
      const auto estimate = [this](std::uint32_t h) noexcept { return sketch_.estimate(h); };
      for (auto& sh : shadows_) {
        sh.access(hash, estimate, Traits::warm_threshold, Traits::random_admit_mask);
      }
      if (++seen_ >= period_) choose();
    }

    // A shard's entry bound went from `from` to `to` (set_max_entries(), or a weight-bounded
    // shard that grew). A bounded store's simulation is rebuilt for the new total; a
    // weight-bounded one's when the total has doubled since it was built. Rebuilding forgets the
    // shadows and their scores but keeps the shape in force.
    void resize(std::size_t from, std::size_t to) noexcept {
      std::lock_guard<detail::spin_mutex> lock(mu_);
      capacity_ = capacity_ - from + to;
      if (capacity_ == built_ || (!bounded_ && capacity_ < 2 * built_)) return;
      try {
        build(capacity_);
      } catch (...) {  // std::bad_alloc: sample nothing, adapt no more
        threshold_.store(0, std::memory_order_relaxed);
        for (auto& sh : shadows_) sh.reset({}, 1);  // capacity 0: allocates nothing
      }
    }

    // For tests (not synchronised: call it while no shard is in use).
    const detail::tinylfu_shadow& shadow(std::size_t k) const noexcept { return shadows_[k]; }
    const detail::count_min_sketch& sketch() const noexcept { return sketch_; }
    std::size_t capacity() const noexcept { return built_; }

   private:
    // Sizes the shadows for a cache of `capacity` entries and empties them. Throws
    // std::bad_alloc (then nothing is sampled).
    void build(std::size_t capacity) {
      threshold_.store(0, std::memory_order_relaxed);
      built_ = capacity;
      const std::size_t size = std::min<std::size_t>(
          capacity, std::clamp<std::size_t>(capacity >> Traits::sim_shift, Traits::sim_min_entries,
                                            Traits::sim_max_entries));
      if (!sketch_.try_resize(size)) throw std::bad_alloc();
      for (std::size_t k = 0; k < k_shapes; ++k) {
        shadows_[k].reset(shadow_shape(size, shape_window_percent(k), shape_margin(k)),
                          seed_mix(seed_ + k));
      }
      period_ = Traits::sample_factor * std::min<std::size_t>(size, Traits::sim_period_entries);
      seen_ = 0;
      scores_ = {};
      last_hits_ = {};
      choice_.streak = 0;  // the shape in force stays
      has_last_ = false;
      // Hashes below the threshold are fed: a sample of size / capacity of the keys.
      threshold_.store(capacity == 0 ? 0 : (std::uint64_t{size} << 32) / capacity,
                       std::memory_order_relaxed);
    }
    void choose() noexcept {
      seen_ = 0;
      for (std::size_t k = 0; k < k_shapes; ++k) {
        const std::uint64_t hits = shadows_[k].hits();
        scores_[k] = scores_[k] / 2 + (hits - last_hits_[k]);
        last_hits_[k] = hits;
      }
      // Every score is this period's before any is compared (next_shape()).
      current_.store(choice_.next(scores_), std::memory_order_relaxed);
    }

    // Read on every sampled-or-not test, written only by build(): a line of their own.
    alignas(64) std::atomic<std::uint64_t> threshold_{0};  // sampled hashes are below this
    std::atomic<std::size_t> current_{k_shapes};           // the shape chosen; none at first
    alignas(64) detail::spin_mutex mu_;
    const bool bounded_;
    std::size_t capacity_;   // the shards' bounds together, as reported
    std::size_t built_ = 0;  // the capacity the shadows model
    std::uint64_t seed_;
    detail::count_min_sketch sketch_{8, k_sketch_seed, Traits::sample_factor, k_min_sketch_words};
    std::array<detail::tinylfu_shadow, k_shapes> shadows_;
    std::array<std::uint64_t, k_shapes> scores_{};     // hits per period, decayed by half
    std::array<std::uint64_t, k_shapes> last_hits_{};  // shadow hits at the last choice
    std::uint64_t seen_ = 0;                           // accesses fed since the last choice
    std::uint64_t period_ = 0;                         // accesses fed between choices
    shape_choice choice_;                              // the shape in force, and a streak
    std::uint32_t last_hash_ = 0;
    bool has_last_ = false;
  };
  // What a store builds once and hands every shard (eviction.hpp): the simulation, when adaptive.
  using shared_state = std::conditional_t<Traits::adaptive, adaptive_sim, void>;

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = false;
    // Throws std::bad_alloc (the sketch; adaptive without init.shared: the simulation).
    shard_policy(Nodes* n, const policy_init& init)
        : n_(n),
          sketch_(init.capacity != 0 ? init.capacity : k_unbounded_sketch, k_sketch_seed,
                  Traits::sample_factor, k_min_sketch_words),
          bounded_(init.capacity != 0),
          sketch_base_(init.capacity != 0 ? init.capacity : k_unbounded_sketch),
          rng_(seed_mix(init.seed) | 1) {
      resize_to(init.capacity);
      if constexpr (Traits::adaptive) {
        if (init.shared != nullptr) {
          sim_.sim = static_cast<adaptive_sim*>(init.shared);
        } else {
          sim_.own = std::make_unique<adaptive_sim>(init.capacity, init.seed);
          sim_.sim = sim_.own.get();
        }
        sim_.reported = init.capacity;
      }
    }

    // The store's set_max_entries(): the window and protected targets follow the new capacity
    // (the queues settle on the next inserts and hits); the sketch keeps its size (it was sized
    // to the ceiling); the adaptive simulation is rebuilt for the store's new size, or, without
    // the memory, adaptation stops.
    void set_capacity(std::size_t capacity) noexcept {
      if (!bounded_ || capacity == base_) return;
      drain();
      resize_to(capacity);
      if constexpr (Traits::adaptive) report_size(capacity);
    }

    void on_insert(detail::index_t i) noexcept {
      drain();
      n_->hook(i).q = queue::window;
      window_.push_front(*n_, i);
      if (!bounded_) grow_unbounded();
      while (window_.size() > window_max_) to_probation(window_.tail());
    }
    // Buffered: see "Hit cost" above.
    void on_access(detail::index_t i) noexcept {
      pending_[pending_count_++] = i;
      if (pending_count_ == k_buffer) drain();
    }
    // A batch of hits (the store's reader gate delivers its rings so): as on_access() on each.
    void on_access_batch(const detail::index_t* idx, std::uint32_t n) noexcept {
      detail::append_hits(pending_, pending_count_, idx, n, [this] { drain(); });
    }
    void on_update(detail::index_t i) noexcept {
      drain();
      const std::uint32_t hash = n_->hash(i);
      if (!repeats_last(hash)) sketch_.increment(hash);
      if (sampled(hash)) observe(hash);
      touch(i);
    }
    void on_miss(std::uint32_t hash) noexcept {
      drain();  // the order of additions decides when the sketch halves
      if (!repeats_last(hash)) sketch_.increment(hash);
      if (sampled(hash)) observe(hash);
    }
    void on_remove(detail::index_t i) noexcept {
      drain();
      list(n_->hook(i).q).remove(*n_, i);
    }

    detail::index_t victim() noexcept {
      drain();
      if constexpr (Traits::adaptive) {
        adopt_shape();
        resize_window();
      }
      const detail::index_t v = main_victim();
      if (window_.size() < window_max_) {
        return v != detail::npos ? v : window_.tail();  // the newcomer fits in the window
      }
      const detail::index_t c = window_.tail();
      if (v == detail::npos) return c;
      if (!admit_candidate(n_->hash(c), n_->hash(v))) return c;
      to_probation(c);
      return v;
    }

    // Coldest first: probation (main's victims come from there) from its least recent end, then
    // the window from its least recent end (its candidates), then protected from its least recent
    // end; or the reverse. For hottest() / coldest(): f(i) per entry while it returns true. Which
    // of a window candidate and main's victim goes first is the frequency duel's call at eviction
    // time, so this is the order of the queues, not exactly the order of eviction.
    template <class F>
    void walk(bool coldest_first, F&& f) {
      drain();
      if (coldest_first) {
        if (probation_.walk(*n_, true, f) && window_.walk(*n_, true, f)) {
          protected_.walk(*n_, true, f);
        }
      } else {
        if (protected_.walk(*n_, false, f) && window_.walk(*n_, false, f)) {
          probation_.walk(*n_, false, f);
        }
      }
    }

    void clear() noexcept {
      pending_count_ = 0;
      window_ = {};
      probation_ = {};
      protected_ = {};
    }

    // Introspection for tests and benchmarks. It reads the state as of the last drain of the hit
    // buffer: call it after an insert, update, removal or victim choice, or after flush().
    void flush() noexcept { drain(); }
    std::size_t window_size() const noexcept { return window_.size(); }
    std::size_t probation_size() const noexcept { return probation_.size(); }
    std::size_t protected_size() const noexcept { return protected_.size(); }
    std::size_t window_max() const noexcept { return window_max_; }
    std::size_t protected_max() const noexcept { return protected_max_; }
    const detail::count_min_sketch& sketch() const noexcept { return sketch_; }
    // adaptive only: the admission margin in force, and the shadow caches (see "adaptive").
    std::uint32_t admit_margin() const noexcept { return margin_; }
    // The simulation is the store's, shared by its shards: read it while no shard is in use.
    static constexpr std::size_t shadow_count() noexcept { return k_shapes; }
    const detail::tinylfu_shadow& shadow(std::size_t k) const noexcept requires Traits::adaptive {
      return sim_.sim->shadow(k);
    }
    const adaptive_sim& simulation() const noexcept requires Traits::adaptive { return *sim_.sim; }
    static constexpr std::uint32_t shadow_window_percent(std::size_t k) noexcept {
      return shape_window_percent(k);
    }
    static constexpr std::uint32_t shadow_margin(std::size_t k) noexcept { return shape_margin(k); }
    template <std::size_t N>
    static constexpr std::size_t next_shape(const std::array<std::uint64_t, N>& scores,
                                            std::size_t current) noexcept {
      return basic_w_tinylfu::next_shape(scores, current);
    }

   private:
    static constexpr std::size_t k_unbounded_sketch = 64;
    static constexpr std::size_t k_transfer_bound = 256;  // entries moved per eviction

    // Applies the buffered hits exactly as if each had been applied when it happened. The sketch
    // and the queues do not read each other, so they are replayed in two passes:
    //  1. the sketch, in order (the order of additions decides when it halves), a run of hits on
    //     one entry as one access (correlated accesses count once); this pass also notes whether
    //     a hit was in probation;
    //  2. the queues. A probation hit promotes, and a promotion demotes protected's least recent
    //     entry, so the order of hits matters: then they are replayed in order (a run relinks
    //     once: its first hit leaves the entry at the front of its queue). Without one, the
    //     window and protected are two plain LRU lists, and as in lru each ends with the entries
    //     hit in this batch first, by their last hit, newest first: one relink per distinct
    //     entry, found by walking the batch backwards and marking what is done.
    // Pass 1 first prefetches every hit's sketch line; pass 2 prefetches list neighbours two hits
    // ahead.
    void drain() noexcept {
      const std::uint32_t n = pending_count_;
      if (n == 0) return;
      pending_count_ = 0;
      bool promotes = false;
      std::array<std::uint64_t, k_buffer> located;  // each hit's sketch hash, computed once
      for (std::uint32_t k = 0; k < n; ++k) {
        located[k] = sketch_.locate(n_->hash(pending_[k]));
        sketch_.prefetch_located(located[k]);
      }
      // A run of hits on one entry counts once. Runs follow each other on distinct entries, so
      // only the first can continue the shard's last access (repeats_last()).
      const bool first_repeats = repeats_last(n_->hash(pending_[0]));
      last_hash_ = n_->hash(pending_[n - 1]);
      for (std::uint32_t k = 0; k < n; ++k) {
        const detail::index_t i = pending_[k];
        std::uint32_t run = 1;
        while (k + run < n && pending_[k + run] == i) ++run;
        if (k != 0 || !first_repeats) sketch_.increment_located(located[k], 1);
        if constexpr (Traits::adaptive) {
          const std::uint32_t hash = n_->hash(i);
          if (sampled(hash)) [[unlikely]] {
            // The shadows see the sketch as of each access: the run's count is in.
            for (std::uint32_t r = 0; r < run; ++r) observe(hash);
          }
        }
        promotes = promotes || n_->hook(i).q == queue::probation;
        k += run - 1;
      }
      if (promotes) {
        for (std::uint32_t k = 0; k < n; ++k) {
          prefetch_neighbours(k + 2 < n ? pending_[k + 2] : detail::npos);
          const detail::index_t i = pending_[k];
          touch(i);
          while (k + 1 < n && pending_[k + 1] == i) ++k;
        }
        return;
      }
      if (++epoch_ == 0) {  // marks would be ambiguous after wrapping: reset them all
        for (detail::index_list* l : {&window_, &probation_, &protected_}) {
          for (detail::index_t i = l->head(); i != detail::npos; i = n_->hook(i).ln.next) {
            n_->hook(i).mark = 0;
          }
        }
        epoch_ = 1;
      }
      detail::index_list moved_window, moved_protected;
      for (std::uint32_t k = n; k-- > 0;) {
        prefetch_neighbours(k >= 2 ? pending_[k - 2] : detail::npos);
        const detail::index_t i = pending_[k];
        hook& h = n_->hook(i);
        if (h.mark == epoch_) continue;  // a later hit of this entry was already applied
        h.mark = epoch_;
        if (h.q == queue::window) {
          window_.remove(*n_, i);
          moved_window.push_back(*n_, i);
        } else {
          protected_.remove(*n_, i);
          moved_protected.push_back(*n_, i);
        }
      }
      window_.splice_front(*n_, moved_window);
      protected_.splice_front(*n_, moved_protected);
    }

    void prefetch_neighbours(detail::index_t i) const noexcept {
      if (i == detail::npos) return;
      const detail::link& l = n_->hook(i).ln;
      if (l.prev != detail::npos) n_->prefetch(l.prev);
      if (l.next != detail::npos) n_->prefetch(l.next);
    }

    detail::index_list& list(queue q) noexcept {
      return q == queue::window ? window_ : q == queue::probation ? probation_ : protected_;
    }

    bool admit_candidate(std::uint32_t candidate, std::uint32_t victim) noexcept {
      const std::uint32_t fc = sketch_.estimate(candidate);
      if (fc > sketch_.estimate(victim) + margin_) return true;
      if (fc <= Traits::warm_threshold) return false;
      return ((next_random() >> 32) & Traits::random_admit_mask) == 0;
    }

    // Whether this access (of the key with this hash) repeats the shard's last access reported to
    // the policy; it becomes the last. See "correlated accesses" above.
    bool repeats_last(std::uint32_t hash) noexcept {
      const bool repeat = has_last_ && last_hash_ == hash;
      last_hash_ = hash;
      has_last_ = true;
      return repeat;
    }

    detail::index_t main_victim() const noexcept {
      return !probation_.empty() ? probation_.tail() : protected_.tail();
    }

    void to_probation(detail::index_t i) noexcept {
      auto& h = n_->hook(i);
      list(h.q).remove(*n_, i);
      h.q = queue::probation;
      probation_.push_front(*n_, i);
    }

    void touch(detail::index_t i) noexcept {
      auto& h = n_->hook(i);
      switch (h.q) {
        case queue::window:
          window_.move_to_front(*n_, i);
          break;
        case queue::protect:
          protected_.move_to_front(*n_, i);
          break;
        case queue::probation:
          probation_.remove(*n_, i);
          h.q = queue::protect;
          protected_.push_front(*n_, i);
          demote();
          break;
      }
    }

    void demote() noexcept {
      while (protected_.size() > protected_max_) to_probation(protected_.tail());
    }

    // Grows the sizes to those of `base`, keeping what adaptation moved.
    void resize_to(std::size_t base) noexcept {
      window_max_ += window_target(base) - window_target(base_);
      protected_max_ += protected_target(base) - protected_target(base_);
      base_ = base;
    }
    void grow_unbounded() noexcept {
      const std::size_t live = window_.size() + probation_.size() + protected_.size();
      if (live <= base_) return;
      resize_to(live);
      if (live > sketch_base_ && sketch_.try_resize(2 * live)) {
        sketch_base_ = 2 * live;
        if constexpr (Traits::adaptive) report_size(live);
      }
    }

    // Whether the simulation sees accesses to this hash: always false without it.
    bool sampled(std::uint32_t hash) const noexcept {
      if constexpr (Traits::adaptive) {
        return sim_.sim->sampled(hash);
      } else {
        return false;
      }
    }
    [[gnu::noinline]] void observe(std::uint32_t hash) noexcept {
      if constexpr (Traits::adaptive) sim_.sim->observe(hash);
    }
    // Tells the simulation this shard's bound is now `size`.
    void report_size(std::size_t size) noexcept {
      if constexpr (Traits::adaptive) {
        sim_.sim->resize(sim_.reported, size);
        sim_.reported = size;
      }
    }
    // Takes up the shape the simulation chose last, if it is not the one in force.
    void adopt_shape() noexcept {
      if constexpr (Traits::adaptive) {
        const std::size_t best = sim_.sim->shape();
        if (best == sim_.applied) return;
        sim_.applied = best;
        margin_ = shape_margin(best);
        const std::size_t target = std::min(window_for(base_, shape_window_percent(best)),
                                            window_target(base_) + protected_target(base_));
        adjustment_ = static_cast<std::int64_t>(target) - static_cast<std::int64_t>(window_max_);
      }
    }
    // Moves the window toward the chosen size, at most k_transfer_bound entries per eviction.
    void resize_window() noexcept {
      if (adjustment_ > 0) {
        grow_window();
      } else if (adjustment_ < 0) {
        shrink_window();
      }
    }
    // Moves up to k_transfer_bound entries of quota from protected to the window: main's least
    // recent entries join the window's most recent end.
    void grow_window() noexcept {
      std::size_t quota = std::min<std::size_t>(
          {static_cast<std::size_t>(adjustment_), protected_max_, k_transfer_bound});
      protected_max_ -= quota;
      window_max_ += quota;
      adjustment_ -= static_cast<std::int64_t>(quota);
      if (quota == 0) adjustment_ = 0;  // protected has nothing left to give
      demote();
      for (; quota != 0; --quota) {
        const detail::index_t i = main_victim();
        if (i == detail::npos) break;
        auto& h = n_->hook(i);
        list(h.q).remove(*n_, i);
        h.q = queue::window;
        window_.push_front(*n_, i);
      }
    }
    // Moves up to k_transfer_bound entries of quota from the window (kept >= 1) to protected's
    // share: the window's least recent entries join probation's most recent end.
    void shrink_window() noexcept {
      std::size_t quota = std::min<std::size_t>(
          {static_cast<std::size_t>(-adjustment_), window_max_ - 1, k_transfer_bound});
      window_max_ -= quota;
      protected_max_ += quota;
      adjustment_ += static_cast<std::int64_t>(quota);
      if (quota == 0) adjustment_ = 0;  // the window is at its minimum
      while (window_.size() > window_max_) to_probation(window_.tail());
    }

    std::uint64_t next_random() noexcept {  // xorshift64*
      rng_ ^= rng_ >> 12;
      rng_ ^= rng_ << 25;
      rng_ ^= rng_ >> 27;
      return rng_ * 0x2545F4914F6CDD1DULL;
    }

    static constexpr std::uint32_t k_buffer = 64;

    Nodes* n_;
    std::uint32_t pending_count_ = 0;
    std::uint16_t epoch_ = 0;
    std::array<detail::index_t, k_buffer> pending_;
    detail::index_list window_, probation_, protected_;
    detail::count_min_sketch sketch_;
    bool bounded_;
    std::size_t base_ = 0;  // the capacity the sizes are for
    std::size_t window_max_ = window_target(0);
    std::size_t protected_max_ = protected_target(0);
    std::size_t sketch_base_;
    std::uint64_t rng_;
    std::uint32_t last_hash_ = 0;  // the hash of the last access counted or repeated
    bool has_last_ = false;
    // adaptation
    struct no_sim {};
    struct sim_state {
      adaptive_sim* sim = nullptr;        // the store's, or own.get()
      std::unique_ptr<adaptive_sim> own;  // without a store's
      std::size_t reported = 0;           // the bound last reported to the simulation
      std::size_t applied = k_shapes;     // the shape in force; none at first
    };
    [[no_unique_address]] std::conditional_t<Traits::adaptive, sim_state, no_sim> sim_;
    std::uint32_t margin_ = 0;     // admission margin in force (adaptive; 0 otherwise)
    std::int64_t adjustment_ = 0;  // window entries still to move (adaptive)
  };
};

using w_tinylfu = basic_w_tinylfu<>;
using w_tinylfu_adaptive = basic_w_tinylfu<w_tinylfu_adaptive_traits>;

static_assert(eviction_policy<w_tinylfu>);
static_assert(eviction_policy<w_tinylfu_adaptive>);

}  // namespace cachet
