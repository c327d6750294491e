// cachet/eviction/no_eviction.hpp — never evict (Redis `noeviction`).
//
// Purpose: for a store that must never evict an entry to make room. When a shard is full, put() of
// a new key returns put_result::rejected_full and stores nothing. Replacing the value of a present
// key works when the new value fits (with a weight bound: in the weight the old value frees plus
// what is left); a heavier value that does not fit is refused (rejected_full, or
// rejected_too_heavy) and the key's old entry is removed all the same (reported to the listener as
// `replaced`), since the store never serves a value older than a write it refused. Expired entries
// are still reclaimed, which frees room.
//
// Thread safety: stateless. Memory: 0 bytes per entry.
// Example:
//   cachet::sharded_store<int, int, cachet::no_eviction> s({.max_entries = 2, .shards = 1});
//   s.put(1, 1); s.put(2, 2);
//   assert(s.put(3, 3) == cachet::put_result::rejected_full);
#pragma once

#include "cachet/eviction.hpp"

namespace cachet {

struct no_eviction {
  struct hook {};

  template <class Nodes>
  class shard_policy {
   public:
    static constexpr bool access_is_noop = true;
    shard_policy(Nodes*, const policy_init&) noexcept {}
    void on_insert(detail::index_t) noexcept {}
    void on_access(detail::index_t) noexcept {}
    void on_update(detail::index_t) noexcept {}
    void on_remove(detail::index_t) noexcept {}
    detail::index_t victim() noexcept { return detail::npos; }
    void clear() noexcept {}
  };
};

static_assert(eviction_policy<no_eviction>);

}  // namespace cachet
