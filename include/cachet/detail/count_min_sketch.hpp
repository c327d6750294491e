// cachet/detail/count_min_sketch.hpp — a 4-bit count-min sketch with periodic halving: the
// frequency history of W-TinyLFU (eviction/w_tinylfu.hpp).
//
// IMPLEMENTATION DETAILS
// A count-min sketch (Cormode, Muthukrishnan, "An improved data stream summary: the count-min
// sketch and its applications", J. Algorithms 2005) estimates how often a key was seen as the
// smallest of `depth` counters the key hashes to, one per row; collisions only ever add, so the
// estimate never undercounts (until a counter saturates or the sketch ages). TinyLFU (Einziger,
// Friedman, Manes, "TinyLFU: a highly efficient cache admission policy", ACM ToS 2017) needs only
// to rank a handful of candidates, so the counters are 4 bits, saturating at 15, and the history
// ages by the paper's "reset": after `sample` additions every counter is halved, so a key hot
// long ago fades and the sketch tracks recent popularity.
//
// Layout: 64-bit words of 16 counters, as many words as the next power of two >= the expected
// number of entries (at least `min_words`, itself at least 8), so 16 counters per entry, 4 per
// row, as in Caffeine's FrequencySketch. Depth 4. The words form 64-byte blocks (8 words, one cache
// line, the table aligned to 64): a key picks one block, and row r uses one counter among the 32 of
// the block's words 2r and 2r + 1. So an increment or an estimate touches one cache line instead of
// four — the layout Caffeine adopted in 3.0 — for slightly more correlated collisions: two keys
// collide in a row only if they share a block, and then with probability 1/32.
//
// Hashing: the caller gives a 32-bit hash (the store's). It is mixed with a per-instance 64-bit
// seed by a bijective 64-bit finaliser; the high 32 bits pick the block and the low 20 bits the
// four counters (1 bit for the word of the pair, 4 for the counter, per row). A given
// (hash, seed) always lands on the same counters, so a run is reproducible.
//
// Increment: bumps each of the key's four counters that is below 15; if any moved, counts one
// addition, and when the additions reach `sample` (default 10 x expected entries, TinyLFU's
// W/C = 10) the sketch halves: every counter shifts right by one, a word at a time
// ((w >> 1) & 0x7777...), and the addition count becomes (additions - odd counters / 4) / 2, since
// the truncated halves of odd counters are lost: a quarter of them per addition of four counters
// (Caffeine 3's bookkeeping; Caffeine 2 halved first and then subtracted odd / 4, twice the loss,
// which put the next halving later).
//
// Cost: increment and estimate read one cache line, with shifts, masks and adds; no allocation.
// Halving is O(table) once per `sample` additions: amortised 8 x table / (10 x entries) word
// operations per addition, under two; more where a floor widens the table past the entries (a
// 512-word floor under 100 entries: about 4).
//
// Exception safety: the sized constructor and resize() allocate (std::bad_alloc); try_resize()
// swallows it and keeps the old table; everything else is noexcept.
// Thread safety: none; the owner synchronises (a shard's policy uses it under the shard lock).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace cachet::detail {

class count_min_sketch {
 public:
  static constexpr std::uint32_t k_max_count = 15;
  static constexpr std::uint64_t k_default_sample_factor = 10;
  static constexpr std::size_t k_block_words = 8;  // 64 bytes
  // Largest table: 2^30 words (8 GiB); more entries than this share counters.
  static constexpr std::size_t k_max_words = std::size_t{1} << 30;

  // An empty sketch: estimate() is 0 and increment() does nothing until resize().
  count_min_sketch() noexcept = default;

  // A sketch for `expected_entries` (at least `min_words` words: a power of two, 8 or more),
  // halving after `sample_factor` x expected_entries additions (at least 1), however wide the
  // floor makes it. Throws std::bad_alloc.
  explicit count_min_sketch(std::size_t expected_entries, std::uint64_t seed,
                            std::uint64_t sample_factor = k_default_sample_factor,
                            std::size_t min_words = k_block_words)
      : seed_(seed),
        sample_factor_(sample_factor != 0 ? sample_factor : 1),
        min_words_(words_for(min_words)) {
    resize(expected_entries);
  }

  count_min_sketch(count_min_sketch&&) noexcept = default;
  count_min_sketch& operator=(count_min_sketch&&) noexcept = default;

  // Re-sizes for `expected_entries`, forgetting every count. Throws std::bad_alloc (the sketch is
  // unchanged then).
  void resize(std::size_t expected_entries) {
    const std::size_t n = words_for(std::max(expected_entries, min_words_));
    auto* p = static_cast<std::uint64_t*>(
        ::operator new (n * sizeof(std::uint64_t), std::align_val_t{k_block_words * 8}));
    std::fill(p, p + n, std::uint64_t{0});
    table_.reset(p);
    words_ = n;
    block_mask_ = n / k_block_words - 1;
    sample_ = sample_factor_ * std::max<std::size_t>(expected_entries, 1);
    additions_ = 0;
  }
  // resize(), but on std::bad_alloc keeps the current table and counts; returns whether it
  // resized.
  bool try_resize(std::size_t expected_entries) noexcept {
    try {
      resize(expected_entries);
      return true;
    } catch (const std::bad_alloc&) {
      return false;
    }
  }

  // Counts one occurrence of the key with this hash; halves every counter when the additions
  // reach the sample size. Returns whether any counter moved (false once all four are at 15).
  bool increment(std::uint32_t hash) noexcept { return increment(hash, 1) != 0; }

  // Counts `times` occurrences of the key with this hash, leaving the sketch exactly as `times`
  // calls of increment(hash) in a row would (halvings included), in O(1 + halvings) time: an
  // occurrence moves every counter of the key below 15, so it is an addition while the least of
  // them is below 15, and `times` of them raise each counter c to min(15, c + times). Returns the
  // number of additions.
  std::uint64_t increment(std::uint32_t hash, std::uint64_t times) noexcept {
    return increment_located(locate(hash), times);
  }

  // The sketch's own 64-bit hash of a key hash, which picks the key's counters: what increment(),
  // estimate() and prefetch() compute first. A caller that prefetches a key and then counts it
  // computes it once with these.
  std::uint64_t locate(std::uint32_t hash) const noexcept { return mix(hash); }
  void prefetch_located(std::uint64_t located) const noexcept {
    if (table_) __builtin_prefetch(table_.get() + block_of(located), 1, 3);
  }
  std::uint64_t increment_located(std::uint64_t located, std::uint64_t times) noexcept {
    if (!table_ || times == 0) return 0;
    const slots k = slots_of(located);
    std::uint64_t total = 0;
    for (;;) {
      const std::uint64_t c0 = k.count(0), c1 = k.count(1), c2 = k.count(2), c3 = k.count(3);
      const std::uint64_t least = std::min(std::min(c0, c1), std::min(c2, c3));
      if (least == k_max_count) return total;  // saturated: nothing more is an addition
      // Occurrences applied in this step: all of them, or up to the one that triggers a halving.
      const std::uint64_t to_halving = sample_ - std::min(additions_, sample_ - 1);
      const std::uint64_t step = std::min(times, to_halving);
      const std::uint64_t added = std::min(step, k_max_count - least);
      k.raise(0, c0, step);
      k.raise(1, c1, step);
      k.raise(2, c2, step);
      k.raise(3, c3, step);
      total += added;
      additions_ += added;
      times -= step;
      if (additions_ < sample_) return total;  // times is 0 here, or the key saturated
      halve();
      if (times == 0) return total;
    }
  }

  // The estimated count of the key with this hash, 0..15: the least of its four counters.
  std::uint32_t estimate(std::uint32_t hash) const noexcept {
    if (!table_) return 0;
    const slots k = slots_of(mix(hash));
    return static_cast<std::uint32_t>(
        std::min(std::min(k.count(0), k.count(1)), std::min(k.count(2), k.count(3))));
  }

  // A hint that the key with this hash will be incremented or estimated soon.
  void prefetch(std::uint32_t hash) const noexcept { prefetch_located(locate(hash)); }

  // Halves every counter (TinyLFU's reset); called by increment() every sample_size() additions.
  void halve() noexcept {
    std::uint64_t odd = 0;
    std::uint64_t* t = table_.get();
    for (std::size_t i = 0; i < words(); ++i) {
      odd += static_cast<std::uint64_t>(std::popcount(t[i] & k_one_mask));
      t[i] = (t[i] >> 1) & k_reset_mask;
    }
    const std::uint64_t lost = odd / 4;
    additions_ = additions_ > lost ? (additions_ - lost) / 2 : 0;
  }

  // Forgets every count (keeps the table).
  void clear() noexcept {
    if (table_) std::fill(table_.get(), table_.get() + words_, std::uint64_t{0});
    additions_ = 0;
  }

  std::size_t words() const noexcept { return table_ ? words_ : 0; }
  std::size_t bytes() const noexcept { return words() * sizeof(std::uint64_t); }
  std::uint64_t sample_size() const noexcept { return sample_; }
  // Additions since the last halving (as adjusted by it).
  std::uint64_t additions() const noexcept { return additions_; }

  // Table words for `expected_entries`: the next power of two, 8 to k_max_words.
  static std::size_t words_for(std::size_t expected_entries) noexcept {
    return std::bit_ceil(std::clamp<std::size_t>(expected_entries, k_block_words, k_max_words));
  }

 private:
  static constexpr std::uint64_t k_reset_mask = 0x7777777777777777ULL;
  static constexpr std::uint64_t k_one_mask = 0x1111111111111111ULL;

  struct aligned_delete {
    void operator()(std::uint64_t* p) const noexcept {
      ::operator delete (p, std::align_val_t{k_block_words * 8});
    }
  };

  // A key's four counters: row r's is nibble shift[r] / 4 of word[r], one of the block's words
  // 2r and 2r + 1. Bits 5r .. 5r + 4 of the mixed hash pick it (1 bit the word, 4 the nibble).
  struct slots {
    std::uint64_t* word[4];
    unsigned shift[4];
    std::uint64_t count(unsigned row) const noexcept { return (*word[row] >> shift[row]) & 0xF; }
    // Raises row's counter, now c, by `by`, saturating at 15.
    void raise(unsigned row, std::uint64_t c, std::uint64_t by) const noexcept {
      *word[row] += (std::min<std::uint64_t>(k_max_count, c + by) - c) << shift[row];
    }
  };
  slots slots_of(std::uint64_t x) const noexcept {
    std::uint64_t* block = table_.get() + block_of(x);
    const auto bits = [x](unsigned row) { return static_cast<unsigned>(x >> (row * 5)) & 31; };
    return {{block + (bits(0) & 1), block + 2 + (bits(1) & 1), block + 4 + (bits(2) & 1),
             block + 6 + (bits(3) & 1)},
            {(bits(0) >> 1) * 4, (bits(1) >> 1) * 4, (bits(2) >> 1) * 4, (bits(3) >> 1) * 4}};
  }

  std::uint64_t mix(std::uint32_t hash) const noexcept {
    std::uint64_t x = (std::uint64_t{hash} ^ seed_) * 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 29;
    return x;
  }
  std::size_t block_of(std::uint64_t x) const noexcept {
    return static_cast<std::size_t>((x >> 32) & block_mask_) * k_block_words;
  }

  std::unique_ptr<std::uint64_t, aligned_delete> table_;
  std::size_t words_ = 0;
  std::size_t block_mask_ = 0;
  std::uint64_t seed_ = 0;
  std::uint64_t sample_factor_ = k_default_sample_factor;
  std::size_t min_words_ = k_block_words;  // the table's floor, whatever the entries
  std::uint64_t sample_ = 0;
  std::uint64_t additions_ = 0;
};

}  // namespace cachet::detail
