// cachet/detail/invalidation_guard.hpp — tickets that keep a cache fill from outliving a racing
// invalidation.
//
// IMPLEMENTATION DETAILS
// The race: a load reads the old row; a writer updates the row and erases the cache entry; the load
// then puts the old row into the cache, where it is served until its TTL. The guard is a striped
// generation counter (4096 stripes by key hash). A writer bumps its key's stripe *before* it
// changes the store; a load notes the stripe (its ticket) before reading the source, and fills
// through the store's put_if() with the condition "the stripe still equals the ticket", evaluated
// under the store's lock for the key. The writer's erase takes the same lock after its bump, so
// either the fill came first and the erase removes it, or the fill sees the bump and is refused
// (all seq_cst, and the lock orders the two). Unrelated keys sharing a stripe only cost an
// occasional refused fill (the next read loads again), never a stale entry.
//
// Invalidating every key at once (tiered_store's clear_local()) bumps one more counter, the epoch,
// which begin() and raced() read besides the stripe: a token is stripe + epoch. Both only grow, so
// the sum moves whenever either does and cannot come back to an old value (no ABA). begin() reads
// the stripe, then the epoch; an epoch bump between the two reads lands in the token, as if it had
// come before begin(), which is harmless: the caller reads its source after begin() returns, so
// after that bump. The epoch sits on a line of its own and is written only by invalidate_all(): for
// the patterns, which never call it, it is one more load of a line every core keeps shared.
// Users: detail/guarded_loader.hpp (the patterns) and tiered_store.hpp (its L1).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace cachet::detail {

template <class Hash>
class invalidation_guard {
 public:
  // Before loading `key`: a token to pass to raced().
  template <class K>
  std::uint64_t begin(const K& key) const noexcept {
    return token_of(key);
  }
  // True if an invalidation of `key` (or of a key sharing its stripe), or invalidate_all(),
  // happened since begin(): the fill must not land. Called inside the store's put_if(), under its
  // lock.
  template <class K>
  bool raced(const K& key, std::uint64_t token) const noexcept {
    return token_of(key) != token;
  }
  // A writer, before it changes `key`'s entry in the store. Moves `key`'s token by exactly one.
  template <class K>
  void invalidate(const K& key) noexcept {
    stripe(key).fetch_add(1, std::memory_order_seq_cst);
  }
  // Every key at once: every token taken before this call is raced from now on.
  void invalidate_all() noexcept { epoch_.value.fetch_add(1, std::memory_order_seq_cst); }

 private:
  static constexpr std::size_t k_stripes = 4096;
  template <class K>
  std::atomic<std::uint64_t>& stripe(const K& key) const noexcept {
    return stripes_[static_cast<std::size_t>(hash_(key)) % k_stripes];
  }

  template <class K>
  std::uint64_t token_of(const K& key) const noexcept {
    const std::uint64_t s = stripe(key).load(std::memory_order_seq_cst);
    return s + epoch_.value.load(std::memory_order_seq_cst);
  }

  struct alignas(64) padded_counter {
    std::atomic<std::uint64_t> value{0};
  };

  Hash hash_{};
  mutable std::array<std::atomic<std::uint64_t>, k_stripes> stripes_{};
  padded_counter epoch_;
};

}  // namespace cachet::detail
