// cachet/detail/invalidation_guard.hpp — keeps a cache fill from outliving a racing invalidation.
//
// IMPLEMENTATION DETAILS
// The race: a load reads the old row; a writer updates the row and erases the cache entry; the load
// then puts the old row into the cache, where it is served until its TTL. The guard is a striped
// generation counter (4096 stripes by key hash). A writer bumps its key's stripe *before* erasing;
// a load notes the stripe before loading, puts its result, then re-reads the stripe and erases its
// own fill if it moved. If the re-read sees no change, every later writer's erase follows the put.
// All seq_cst, so the two orders cannot both be missed. Unrelated keys sharing a stripe only cost
// an occasional dropped fill (the next read loads again), never a stale entry.
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
  // After putting the loaded value: true if an invalidation of `key` (or of a key sharing its
  // stripe) happened since begin(), in which case the caller must erase what it put.
  template <class K>
  bool raced(const K& key, std::uint64_t token) const noexcept {
    return stripe(key).load(std::memory_order_seq_cst) != token;
  }
  // A writer, before erasing `key` from the cache.
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
