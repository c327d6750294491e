// cachet/store.hpp — the Store concept: what a storage backend meets so every access pattern works
// over it.
//
// Purpose: the access patterns (cache_aside, read_through, write_through, write_back) talk to where
// entries live only through this contract. sharded_store (in-process) meets it; a Redis-backed
// store or a two-tier store meets it the same way, and the patterns work over it unchanged. The
// concept is checked where a pattern is instantiated, so a backend that misses a member fails to
// compile with the member's name in the message, not deep inside a pattern.
//
// The contract, member by member (K = key_type, V = mapped_type):
//   - types: key_type, mapped_type, clock_type (a cachet::clock), hasher and key_equal (the
//     patterns key their single-flight table and invalidation tickets with them), and
//     `rebind_value<V2>`: the same backend holding V2 (read_through stores its metadata with the
//     value). clock() returns the clock its TTLs run on.
//   - get(key) -> std::optional<V>: the live value, counted as a hit or miss and reported to the
//     eviction policy. peek(key): the same without counting or touching the policy (the patterns'
//     second look inside a load). contains(key) -> bool.
//   - put(key, value) with the store's default TTL, put(key, value, ttl) with `ttl` (a positive
//     std::chrono::nanoseconds, or cachet::no_expiry): -> put_result; stored(r) tells whether the
//     value is now in the store. A put that is refused for a present key must not leave the old
//     value readable (sharded_store removes it).
//   - erase(key) -> bool: whether a live entry was removed.
//   - put_if(key, value, [ttl,] still_valid) -> put_result: the guarded fill. `still_valid` is a
//     noexcept bool() the store calls atomically with the write, under the same exclusion as
//     erase() of that key; if it returns false nothing is written (put_result::rejected_stale). The
//     patterns pass "no invalidation of this key since my load began" (detail/invalidation_guard),
//     and invalidate by bumping the ticket before erase(): so a fill that raced an invalidation is
//     either erased by it or refused, and is never readable in between. A backend without a lock
//     of its own (Redis) meets this with a compare-and-set, a version or a script; what it may not
//     do is write first and check afterwards.
// Thread safety: every member must be safe to call from any thread at once; operations on one key
// must be linearisable. Exceptions: whatever a member throws reaches the pattern's caller, and the
// patterns leave their own bookkeeping consistent (see each pattern).
//
// Example:
//   static_assert(cachet::store<cachet::sharded_store<int, std::string>>);
//   template <cachet::store S> void warm(S& s) { s.put(1, "one"); }
#pragma once

#include <chrono>
#include <concepts>
#include <optional>

#include "cachet/clock.hpp"
#include "cachet/options.hpp"

namespace cachet {
namespace detail {
// The guard a store's put_if() is called with, for checking the concept.
struct store_condition_archetype {
  bool operator()() const noexcept { return true; }
};
}  // namespace detail

// The types a Store names.
template <class S>
concept store_types = requires {
  typename S::key_type;
  typename S::mapped_type;
  typename S::clock_type;
  typename S::hasher;
  typename S::key_equal;
  typename S::template rebind_value<int>;
};

// The members a Store has, given its types.
template <class S, class K = typename S::key_type, class V = typename S::mapped_type>
concept store_members = requires(S& s, const S& cs, const K& key, K k, V v,
                                 std::chrono::nanoseconds ttl,
                                 detail::store_condition_archetype cond) {
  { s.get(key) } -> std::same_as<std::optional<V>>;
  { s.peek(key) } -> std::same_as<std::optional<V>>;
  { s.contains(key) } -> std::convertible_to<bool>;
  { s.put(std::move(k), std::move(v)) } -> std::same_as<put_result>;
  { s.put(std::move(k), std::move(v), ttl) } -> std::same_as<put_result>;
  { s.put_if(std::move(k), std::move(v), cond) } -> std::same_as<put_result>;
  { s.put_if(std::move(k), std::move(v), ttl, cond) } -> std::same_as<put_result>;
  { s.erase(key) } -> std::convertible_to<bool>;
  { cs.clock() } -> std::convertible_to<typename S::clock_type>;
};

template <class S>
concept store = store_types<S> && clock<typename S::clock_type> && store_members<S>;

// A store that can also insert a key only where it has none, atomically with every other writer
// of the key: put_if_absent(key, value) -> std::optional<V>, nullopt if it wrote, else the value
// it holds. sharded_store does it under its shard lock; redis_store with SET NX GET, across
// processes. (Not a requirement of the patterns; for code that needs a first writer to win.)
template <class S>
concept put_if_absent_store = store<S> &&
    requires(S& s, typename S::key_type k, typename S::mapped_type v) {
  {
    s.put_if_absent(std::move(k), std::move(v))
    } -> std::same_as<std::optional<typename S::mapped_type>>;
};

// A static_assert per missing piece, for a clear error where a pattern is instantiated.
template <class S>
constexpr bool check_store() {
  static_assert(store<S>,
                "cachet: this type does not meet cachet::store: it needs key_type, mapped_type, "
                "clock_type, hasher, key_equal, rebind_value<V2>, get/peek/contains(key), "
                "put(key, value[, ttl]), put_if(key, value[, ttl], still_valid), erase(key) and "
                "clock(); see cachet/store.hpp");
  return true;
}

}  // namespace cachet
