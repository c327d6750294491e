// cachet/source.hpp — the user's source of truth, as concepts: Loader and Source.
//
// Purpose: the access patterns (cache_aside, read_through, ...) talk to the user's database through
// these concepts; anything that fits works, with no base class.
//   - A Loader<L, K, V> is either a callable `l(key) -> std::optional<V>` (a plain lambda) or an
//     object with `l.load(key) -> std::optional<V>`. std::nullopt means "the source has no such
//     key" (and may be negatively cached); an exception means "the load failed" (never cached).
//   - A BulkLoader<L, K, V> is a Loader that can also answer many keys in one round trip:
//     `l.load_all(std::span<const K> keys)` returns the rows it found, as a range of pairs
//     (`std::vector<std::pair<K, V>>`, `std::map<K, V>`, `absl::flat_hash_map<K, V>`, ...), in
//     any order. A key with no pair in the result does not exist (as if load() had returned
//     std::nullopt); a pair's second may also be a std::optional<V>. It is what a
//     `SELECT id, ... WHERE id IN (...)` naturally yields: push one pair per row. Pairs for keys
//     that were not asked for are ignored; for a key returned twice, the last pair wins. An
//     exception fails the whole batch.
//   - A Source<S, K, V> is a Loader with an object interface plus `store(key, value)` and
//     `erase(key)`, for the write patterns.
// `cachet::load_from(l, key)` calls either Loader form; `cachet::load_all_from(l, keys)` calls
// load_all() when the Loader has it and load() once per key when it does not, and lines the answers
// up with the keys either way. The `check_loader` / `check_source` helpers turn a near miss into a
// static_assert that names the missing member; load_all_from() rejects a load_all member that does
// not fit, rather than silently loading key by key.
//
// Thread safety: the patterns call a Loader from whatever thread missed, possibly from several
// threads at once for different keys, never while a cache lock is held. It must be thread-safe.
// Exception safety: whatever the user's code throws reaches the caller (see each pattern).
//
// Example:
//   auto loader = [&db](const int& id) -> std::optional<User> { return db.find_user(id); };
//   static_assert(cachet::loader<decltype(loader), int, User>);
//
//   struct user_loader {  // one query for a whole batch
//     Db* db;
//     std::optional<User> load(const int& id) { return db->find_user(id); }
//     std::vector<std::pair<int, User>> load_all(std::span<const int> ids) {
//       std::vector<std::pair<int, User>> rows;
//       for (auto& row : db->query("SELECT id, name FROM users WHERE id IN (...)", ids))
//         rows.emplace_back(row.id, User{row.name});
//       return rows;
//     }
//   };
//   static_assert(cachet::bulk_loader<user_loader, int, User>);
#pragma once

#include <absl/container/flat_hash_map.h>

#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/hash.hpp"

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

// What load_all() may return: an input range of pair-likes whose `first` is the key and whose
// `second` converts to std::optional<V> (a V, or std::nullopt for "absent").
template <class R, class K, class V>
concept bulk_load_result = std::ranges::input_range<R> &&
    requires(std::ranges::range_reference_t<R> row) {
  { row.first } -> std::convertible_to<const K&>;
  { std::move(row.second) } -> std::convertible_to<std::optional<V>>;
};

template <class L, class K, class V>
concept bulk_loader = loader<L, K, V> && requires(L& l, std::span<const K> keys) {
  { l.load_all(keys) } -> bulk_load_result<K, V>;
};

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

// Loads `keys` and returns one answer per key, in the order of `keys` (std::nullopt: no such key).
// With a BulkLoader: one l.load_all(keys) call, whose pairs are matched to the keys by `Hash` and
// `KeyEqual` (pass the cache's own, for key types cachet::hash cannot hash); duplicate keys are
// passed on as given and each gets the answer. Otherwise: load_from(l, key) for each key in turn,
// on this thread. Throws what the loader throws (the first failing load() ends the loop), and
// std::bad_alloc; allocates the result and, for a BulkLoader, an index of the keys.
template <class K, class V, class Hash = cachet::hash<K>, class KeyEqual = std::equal_to<>, class L>
requires loader<L, K, V> std::vector<std::optional<V>> load_all_from(L& l,
                                                                     std::span<const K> keys) {
  static_assert(
      bulk_loader<L, K, V> || !requires { &L::load_all; },
      "cachet: this Loader's load_all does not fit: it must be callable as "
      "load_all(std::span<const K>) and return a range of pairs (key, value) whose "
      "value converts to std::optional<V>");
  std::vector<std::optional<V>> out(keys.size());
  if constexpr (bulk_loader<L, K, V>) {
    if (keys.empty()) return out;
    // Key -> position of its first occurrence; later occurrences copy that answer at the end.
    absl::flat_hash_map<K, std::size_t, Hash, KeyEqual> index;
    index.reserve(keys.size());
    std::vector<std::pair<std::size_t, std::size_t>> repeats;  // (position, first position)
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto [it, inserted] = index.try_emplace(keys[i], i);
      if (!inserted) repeats.emplace_back(i, it->second);
    }
    using result_t = decltype(l.load_all(keys));
    // Move the values out of a result we own; copy them from a view or a reference we were lent.
    constexpr bool k_owned = !std::is_lvalue_reference_v<result_t> &&
                             !std::ranges::borrowed_range<std::remove_cvref_t<result_t>>;
    auto&& rows = l.load_all(keys);
    for (auto&& row : rows) {
      const K& key = row.first;  // binds a temporary if the row's key type differs
      const auto it = index.find(key);
      if (it == index.end()) continue;
      if constexpr (k_owned) {
        out[it->second] = static_cast<std::optional<V>>(std::move(row.second));
      } else {
        out[it->second] = static_cast<std::optional<V>>(row.second);
      }
    }
    for (const auto& [pos, first] : repeats) out[pos] = out[first];
  } else {
    for (std::size_t i = 0; i < keys.size(); ++i) out[i] = load_from<K, V>(l, keys[i]);
  }
  return out;
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
