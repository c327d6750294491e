// cachet/eviction.hpp — the Eviction concept: how a policy plugs into sharded_store.
//
// Purpose: an eviction policy decides which entry of a shard leaves when the shard is full. The
// store keeps one policy object per shard, tells it about every insert, hit, update and removal,
// and asks it for a victim. A policy owns only its metadata: a small trivially copyable `hook` the
// store embeds in every entry's node (list links as 32-bit node indices, a counter, a bit), plus
// per-shard state (list heads, a heap of indices). It never allocates on the hit path.
//
// The contract. A policy is a type P with
//   - `P::hook`: trivially copyable, default-constructible; stored in each node. May be empty.
//   - `P::template shard_policy<Nodes>`: the per-shard state, constructed as
//     `shard_policy(Nodes* nodes, const policy_init&)`. `Nodes` gives `hook(i) -> P::hook&`,
//     `deadline(i) -> std::int64_t` (absolute ns, detail::k_never when the entry has no TTL) and
//     `hash(i) -> std::uint32_t` for a node index i, and `prefetch(i)`, a cache hint. Its members,
//     all noexcept, all called with the shard lock held:
//       on_insert(i)   a new entry i was added (its hook is value-initialised)
//       on_access(i)   get() hit entry i
//       on_update(i)   put() replaced entry i's value (its deadline may have changed)
//       on_remove(i)   entry i is leaving for any reason (erase, expiry, eviction, clear)
//       victim()       the entry to evict next, or detail::npos if this policy will not evict
//       clear()        forget every entry (the store is discarding them all)
//     and `static constexpr bool access_is_noop`: true when on_access does nothing, so the store
//     skips it.
//   "The shard lock held" excludes writers and other policy calls, not readers: on_access (and
//   on_access_batch) and on_miss may run in a drain of the store's reader gate while other
//   threads read the shard's table, keys, values and deadlines (docs/store.md, "How a hit runs").
//   They change only the policy's own state and the hooks; a hook a reader also touches
//   (on_access_concurrent, on_access_sampled_out) is read and written atomically by both.
//   Optional members the store calls when present (detected with `requires`):
//       on_miss(hash)              every get() miss, with the key's 32-bit hash (under
//                                  concurrency, a sample of them: see docs/store.md)
//       on_access_batch(indices, n)
//                                  n hits at once, oldest first, as n on_access() calls (the
//                                  reader gate delivers a stripe's ring so)
//       on_access_concurrent(i)    a hit, told by the reading thread itself while it is inside the
//                                  gate, concurrently with other readers and with drains (never
//                                  with a writer): it must be safe so (sieve sets a bit, s3fifo
//                                  raises a counter, atomically). Present: a hit through the gate
//                                  comes here, not to on_access (a hit under the lock still calls
//                                  on_access).
//       on_access_sampled_out(i)   from a reader inside the gate, for a hit the gate did not
//                                  record (lru: a second-chance bit), under the same rules
//       static constexpr std::uint32_t sampled_out_shift = k   (at most 16)
//                                  with on_access_sampled_out: while several threads record, the
//                                  gate records 2^k times fewer hits than for other policies, the
//                                  rest reaching on_access_sampled_out (lru: 4). For a policy
//                                  whose sampled-out hook keeps what the order needs (without
//                                  on_access_sampled_out the store does not compile); one thread
//                                  still records every hit.
//       admit(candidate_hash, victim) -> bool
//                                  asked before evicting `victim` to make room for a new key;
//                                  false rejects the new key (put_result::rejected_by_policy)
//       reserve()                  called by every put() before it changes anything: makes room
//                                  for one more entry, so that the on_remove/on_insert/on_update
//                                  calls of that put do not allocate. May throw std::bad_alloc
//                                  (the put then throws and nothing has changed). For state that
//                                  grows with the entries when there is no entry bound to size it
//                                  by up front (policy_init::capacity == 0).
//       set_capacity(capacity)     set_max_entries() changed the shard's entry bound (never
//                                  above the construction one); noexcept. Evictions down to the
//                                  new bound follow through victim().
//       static constexpr bool orders_by_deadline = true
//                                  the order follows the entries' deadlines: then a read that
//                                  moves a deadline (expire_after_access, an expiry_policy)
//                                  calls on_update(i) after on_access(i).
//       using shared_state = S     state every shard of a store shares (w_tinylfu_adaptive: its
//                                  simulation). The store builds one S(max_entries, seed) before
//                                  its shards (max_entries is 0 for a weight-bounded store; the
//                                  seed is the store's policy seed) and passes its address to each
//                                  shard as policy_init::shared (a void*; cast it back to S*); it
//                                  destroys it after the last shard. S synchronises itself: shards
//                                  call it under their own locks, concurrently. `void` = none.
//       walk(coldest_first, f)     calls f(i) -> bool for each entry in eviction order (coldest
//                                  first) or its reverse while f returns true; may reorder
//                                  nothing visible (it may apply buffered hits). What
//                                  sharded_store::coldest() / hottest() walk; without it they do
//                                  not compile.
//
// How the policies still to come fit this contract:
//   - SIEVE (Zhang et al., NSDI'24): hook = {link, visited bit}; on_access sets the bit (the only
//   write
//     on a hit); victim() moves the hand from tail toward head clearing bits and returns the first
//     unvisited entry, keeping the hand in the shard state.
//   - S3-FIFO (Yang et al., SOSP'23): hook = {link, 2-bit frequency, queue id}; small and main
//   FIFOs in
//     the shard state; on_remove of an entry leaving the small queue records hash(i) in a ghost
//     FIFO of 32-bit hashes (fixed ring + small table), and on_insert consults the ghost to place a
//     returning key straight into main. victim() performs the queue moves and returns the entry to
//     drop.
//   - W-TinyLFU (w_tinylfu.hpp): a count-min sketch in the shard state sees every access through
//     on_access and on_miss(hash). The window/main duel happens in victim(): when the window is
//     full, its oldest entry and main's probation victim are compared by sketch frequency and
//     victim() returns the loser. admit() is not used; new keys always enter the window.
//
// Thread safety: a shard_policy is used only under its shard's lock; it needs no synchronisation.
//
// Example (a policy that evicts the newest entry):
//   struct lifo {
//     struct hook { cachet::detail::link ln; };
//     template <class Nodes> class shard_policy {
//      public:
//       static constexpr bool access_is_noop = true;
//       shard_policy(Nodes* n, const cachet::policy_init&) : n_(n) {}
//       void on_insert(cachet::detail::index_t i) noexcept { list_.push_front(*n_, i); }
//       void on_access(cachet::detail::index_t) noexcept {}
//       void on_update(cachet::detail::index_t) noexcept {}
//       void on_remove(cachet::detail::index_t i) noexcept { list_.remove(*n_, i); }
//       cachet::detail::index_t victim() noexcept { return list_.head(); }
//       void clear() noexcept { list_ = {}; }
//      private:
//       Nodes* n_; cachet::detail::index_list list_;
//     };
//   };
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cachet/detail/slab.hpp"

namespace cachet {

// What a shard's policy is told at construction.
struct policy_init {
  std::size_t capacity = 0;  // the shard's entry bound (0 = bounded by weight only)
  std::uint64_t seed = 0;    // distinct per shard, secret per process: randomised policies use it
  // The store's P::shared_state, when the policy declares one (see above); null otherwise, and
  // for a policy built outside a store.
  void* shared = nullptr;
};

namespace detail {
// P::shared_state, or void when P declares none.
template <class P>
struct policy_shared_state {
  using type = void;
};
template <class P>
requires requires { typename P::shared_state; }
struct policy_shared_state<P> {
  using type = typename P::shared_state;
};

// The Nodes interface a policy sees; used to check policies against the concept.
template <class Hook>
struct nodes_archetype {
  Hook& hook(index_t);
  std::int64_t deadline(index_t) const;
  std::uint32_t hash(index_t) const;
  void prefetch(index_t) const;
};

// For policies that buffer hits (lru, lfu, w_tinylfu): appends a batch of hit indices to the
// buffer `pending` (holding `count`), calling `drain()` whenever it fills, as one on_access() per
// index would.
template <std::size_t N, class Drain>
void append_hits(std::array<index_t, N>& pending, std::uint32_t& count, const index_t* idx,
                 std::uint32_t n, Drain&& drain) noexcept {
  while (n != 0) {
    const std::uint32_t take = std::min<std::uint32_t>(n, static_cast<std::uint32_t>(N) - count);
    std::copy_n(idx, take, pending.begin() + count);
    count += take;
    idx += take;
    n -= take;
    if (count == N) drain();
  }
}
}  // namespace detail

template <class P>
concept eviction_policy = std::is_trivially_copyable_v<typename P::hook> &&
    std::is_default_constructible_v<typename P::hook> &&
    requires(typename P::template shard_policy<detail::nodes_archetype<typename P::hook>> p,
             detail::index_t i) {
  typename P::template shard_policy<detail::nodes_archetype<typename P::hook>>;
  {
    P::template shard_policy<detail::nodes_archetype<typename P::hook>>::access_is_noop
    } -> std::convertible_to<bool>;
  { p.on_insert(i) }
  noexcept;
  { p.on_access(i) }
  noexcept;
  { p.on_update(i) }
  noexcept;
  { p.on_remove(i) }
  noexcept;
  { p.victim() }
  noexcept->std::same_as<detail::index_t>;
  { p.clear() }
  noexcept;
};

}  // namespace cachet
