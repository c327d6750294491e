// cachet/stats.hpp — the counters a store keeps, as a plain snapshot.
//
// Purpose: prove the cache helps. Each shard counts under its own lock into relaxed atomics (a
// plain load + store, no locked instruction, no shared cache line), and stats() sums the shards.
// Leave it on in production: it costs a few increments on lines the operation already owns.
//
// Thread safety: cache_stats is a value. A snapshot taken while other threads work is not atomic
// across shards or counters (each counter is exact, their sum is taken shard by shard).
//
// Example:
//   auto st = store.stats();
//   std::printf("hit ratio %.1f%%, %llu evicted\n", 100 * st.hit_ratio(), (unsigned long
//   long)st.evictions);
#pragma once

#include <cstdint>

namespace cachet {

struct cache_stats {
  std::uint64_t hits = 0;        // get() found a live entry
  std::uint64_t misses = 0;      // get() found nothing, or only an expired entry
  std::uint64_t inserts = 0;     // put() added a new entry
  std::uint64_t updates = 0;     // put() replaced the value of a present entry
  std::uint64_t rejections = 0;  // put() stored nothing (full, not admitted, too heavy)
  std::uint64_t evictions = 0;   // entries removed by the eviction policy
  std::uint64_t expirations =
      0;  // expired entries reclaimed (on access, by the sweep or cleanup())
  std::uint64_t explicit_removals = 0;  // erase(), erase_if(), or a refused put over the key
  std::uint64_t cleared = 0;            // entries removed by clear()
  std::uint64_t size = 0;               // entries now
  std::uint64_t weight = 0;             // total weight now (equals size when no weigher is set)

  std::uint64_t gets() const noexcept { return hits + misses; }
  std::uint64_t puts() const noexcept { return inserts + updates + rejections; }
  // hits / gets, or 0 when there were no gets.
  double hit_ratio() const noexcept {
    return gets() == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(gets());
  }
};

// One tenant of a cachet::tenant_store: the store's counters for that tenant's keys only, plus
// the entries erased to bring the tenant back within its quota (not in explicit_removals).
struct tenant_stats : cache_stats {
  std::uint64_t quota_evictions = 0;
};

}  // namespace cachet
