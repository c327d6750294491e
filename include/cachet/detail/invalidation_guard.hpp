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
// (all seq_cst, and the lock orders the two). detail/guarded_loader.hpp is the only user. Unrelated
// keys sharing a stripe only cost an occasional refused fill (the next read loads again), never a
// stale entry.
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
    return stripe(key).load(std::memory_order_seq_cst);
  }
  // True if an invalidation of `key` (or of a key sharing its stripe) happened since begin():
  // the fill must not land. Called inside the store's put_if(), under its lock.
  template <class K>
  bool raced(const K& key, std::uint64_t token) const noexcept {
    return stripe(key).load(std::memory_order_seq_cst) != token;
  }
  // A writer, before it changes `key`'s entry in the store.
  template <class K>
  void invalidate(const K& key) noexcept {
    stripe(key).fetch_add(1, std::memory_order_seq_cst);
  }

 private:
  static constexpr std::size_t k_stripes = 4096;
  template <class K>
  std::atomic<std::uint64_t>& stripe(const K& key) const noexcept {
    return stripes_[static_cast<std::size_t>(hash_(key)) % k_stripes];
  }

  Hash hash_{};
  mutable std::array<std::atomic<std::uint64_t>, k_stripes> stripes_{};
};

}  // namespace cachet::detail
