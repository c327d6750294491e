// cachet/eviction/lru.hpp — least recently used.
//
// Purpose: evicts the entry of the shard that was read or written longest ago. The safe default when
// recency predicts reuse (sessions, user profiles); weak against one-off scans, which flush it.
//
// Order: a hit (get) and an update (put over an existing key) make the entry the most recent; an
// insert is the most recent. Exact per shard: with one shard this is textbook LRU.
//
// Hit cost: the hit relinks the entry to the head of an index-linked list under the (exclusive) shard
// lock: three nodes written. The store does not buffer hits for LRU; bench/RESULTS.md shows what that
// costs against the policies whose hit writes nothing.
//
// Thread safety: used only under the shard lock (see eviction.hpp). Memory: 8 bytes per entry.
// Example: cachet::sharded_store<std::string, std::string, cachet::lru> s({.max_entries = 1000});
#pragma once

#include "cachet/eviction.hpp"

namespace cachet {

struct lru {
  struct hook {
    detail::link ln;
  };

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = false;
    shard_policy(Nodes* n, const policy_init&) noexcept : n_(n) {}
    void on_insert(detail::index_t i) noexcept { list_.push_front(*n_, i); }
    void on_access(detail::index_t i) noexcept { list_.move_to_front(*n_, i); }
    void on_update(detail::index_t i) noexcept { list_.move_to_front(*n_, i); }
    void on_remove(detail::index_t i) noexcept { list_.remove(*n_, i); }
    detail::index_t victim() noexcept { return list_.tail(); }
    void clear() noexcept { list_ = {}; }

   private:
    Nodes* n_;
    detail::index_list list_;
  };
};

static_assert(eviction_policy<lru>);

}  // namespace cachet
