// cachet/source.hpp — the user's source of truth, as concepts: Loader and Source.
//
// Purpose: the access patterns (cache_aside, read_through, ...) talk to the user's database through
// these concepts; anything that fits works, with no base class.
//   - A Loader<L, K, V> is either a callable `l(key) -> std::optional<V>` (a plain lambda) or an
//     object with `l.load(key) -> std::optional<V>`. std::nullopt means "the source has no such
//     key" (and may be negatively cached); an exception means "the load failed" (never cached).
//   - A Source<S, K, V> is a Loader with an object interface plus `store(key, value)` and
//     `erase(key)`, for the write patterns.
// `cachet::load_from(l, key)` calls either form. The `check_loader` / `check_source` helpers turn a
// near miss into a static_assert that names the missing member.
//
// Thread safety: the patterns call a Loader from whatever thread missed, possibly from several
// threads at once for different keys, never while a cache lock is held. It must be thread-safe.
// Exception safety: whatever the user's code throws reaches the caller (see each pattern).
//
// Example:
//   auto loader = [&db](const int& id) -> std::optional<User> { return db.find_user(id); };
//   static_assert(cachet::loader<decltype(loader), int, User>);
#pragma once

#include <concepts>
#include <optional>
#include <type_traits>

namespace cachet {

template <class L, class K, class V>
concept callable_loader = requires(L& l, const K& key) {
  { l(key) } -> std::convertible_to<std::optional<V>>;
};

template <class L, class K, class V>
concept object_loader = requires(L& l, const K& key) {
  { l.load(key) } -> std::convertible_to<std::optional<V>>;
};

template <class L, class K, class V>
concept loader = callable_loader<L, K, V> || object_loader<L, K, V>;

template <class S, class K, class V>
concept source = object_loader<S, K, V> && requires(S& s, const K& key, const V& value) {
  s.store(key, value);
  s.erase(key);
};

// Calls a Loader of either form.
template <class K, class V, class L>
requires loader<L, K, V> std::optional<V> load_from(L& l, const K& key) {
  if constexpr (object_loader<L, K, V>) {
    return l.load(key);
  } else {
    return l(key);
  }
}

// A static_assert per missing piece, for a clear error at the pattern's instantiation.
template <class L, class K, class V>
constexpr bool check_loader() {
  static_assert(loader<L, K, V>,
                "cachet: a Loader must be callable as loader(key) or have loader.load(key), "
                "returning something convertible to std::optional<V>");
  return true;
}

template <class S, class K, class V>
constexpr bool check_source() {
  static_assert(object_loader<S, K, V>,
                "cachet: a Source needs load(key) returning std::optional<V>");
  static_assert(
      requires(S & s, const K& key, const V& value) { s.store(key, value); },
      "cachet: a Source needs store(key, value)");
  static_assert(
      requires(S & s, const K& key) { s.erase(key); }, "cachet: a Source needs erase(key)");
  return true;
}

}  // namespace cachet
