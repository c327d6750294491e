// cachet/codec.hpp — how keys and values become bytes and back: for a remote store and for a
// snapshot file.
//
// Purpose: redis_store keeps bytes, and a snapshot (snapshot.hpp) writes them to a file; a codec
// is the pair of functions between a C++ type and those bytes. The `codec<C, T>` concept is the customisation point: a type C with
//   static void C::encode(const T& value, std::string& out);      // APPENDS the bytes to `out`
//   static std::optional<T> C::decode(std::string_view bytes);     // nullopt = malformed
// encode appends rather than returns so that a key is built in place after the store's key prefix
// (one allocation per key). decode must not trust its input: the bytes come from a server other
// processes (or other versions of this program) write to, and a wrong length or a garbled text
// must come back as nullopt, never as undefined behaviour. Both are static: a codec is stateless.
//
// Provided:
//   - string_codec: std::string, the bytes as they are (binary-safe: NULs included).
//   - trivial_codec<T>: a trivially copyable T as its object representation (sizeof(T) bytes);
//     decode refuses any other length. The bytes are those of this build's ABI (endianness,
//     padding, layout): only processes built for the same platform from the same definition of T
//     may share the keys. T must have no invalid object representations (no bool, no enum whose
//     values are restricted, no pointers), since decode accepts any bytes of the right length.
//   - decimal_codec<I>: an integer as its decimal text ("42", "-7"); decode accepts exactly what
//     std::to_chars writes. Readable in redis-cli and the same on every platform.
//   - default_codec<T>: string_codec for std::string, else trivial_codec<T> for a trivially
//     copyable T; any other T has no default (pass a codec).
//   - default_key_codec<K>: string_codec for std::string, decimal_codec for integers, else
//     trivial_codec<K>. Keys are what an operator reads in redis-cli, so integers are text.
//
// Thread safety: stateless functions, callable from any thread.
// Exception safety: encode may throw std::bad_alloc (the string grows); decode of the provided
// codecs throws only std::bad_alloc.
//
// Example:
//   struct point { std::int32_t x, y; };
//   std::string bytes;
//   cachet::trivial_codec<point>::encode(point{1, 2}, bytes);            // 8 bytes
//   auto p = cachet::trivial_codec<point>::decode(bytes);                 // point{1, 2}
//   auto bad = cachet::trivial_codec<point>::decode(std::string_view("x"));  // nullopt
#pragma once

#include <array>
#include <bit>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace cachet {
namespace detail {
// The integers decimal_codec takes: every integral type but bool.
template <class I>
concept decimal_integer = std::integral<I> && !std::same_as<I, bool>;
}  // namespace detail

// A codec C for T: static encode(const T&, std::string&) that appends T's bytes, and static
// decode(std::string_view) -> std::optional<T> that returns nullopt for bytes it did not write.
template <class C, class T>
concept codec = requires(const T& value, std::string& out, std::string_view bytes) {
  { C::encode(value, out) } -> std::same_as<void>;
  { C::decode(bytes) } -> std::same_as<std::optional<T>>;
};

// std::string as its own bytes.
struct string_codec {
  static void encode(const std::string& value, std::string& out) { out.append(value); }
  static std::optional<std::string> decode(std::string_view bytes) { return std::string(bytes); }
};

// A trivially copyable T as its sizeof(T) bytes of object representation (see the file comment for
// what that requires of T and of the processes sharing the keys).
template <class T>
requires std::is_trivially_copyable_v<T>
struct trivial_codec {
  static void encode(const T& value, std::string& out) {
    const auto bytes = std::bit_cast<std::array<char, sizeof(T)>>(value);
    out.append(bytes.data(), bytes.size());
  }
  static std::optional<T> decode(std::string_view bytes) {
    if (bytes.size() != sizeof(T)) return std::nullopt;
    std::array<char, sizeof(T)> buf;
    std::memcpy(buf.data(), bytes.data(), sizeof(T));
    return std::bit_cast<T>(buf);
  }
};

// An integer as its decimal text. decode refuses anything but the canonical form ("+1", " 1",
// "01" and "-0" are malformed), so one value has one key.
template <detail::decimal_integer I>
struct decimal_codec {
  static void encode(const I& value, std::string& out) {
    std::array<char, 24> buf;  // the longest 64-bit integer is 20 digits and a sign
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    out.append(buf.data(), r.ptr);
  }
  static std::optional<I> decode(std::string_view bytes) {
    if (bytes.empty() || bytes.size() > 21) return std::nullopt;
    const bool negative = bytes.front() == '-';
    const std::string_view digits = negative ? bytes.substr(1) : bytes;
    if (digits.empty() || (digits.front() == '0' && (digits.size() > 1 || negative))) {
      return std::nullopt;
    }
    I value{};
    const auto r = std::from_chars(bytes.data(), bytes.data() + bytes.size(), value);
    if (r.ec != std::errc{} || r.ptr != bytes.data() + bytes.size()) return std::nullopt;
    return value;
  }
};

namespace detail {
// Picks a value codec; `void` when T has no default.
template <class T>
struct default_codec_for {
  using type = void;
};
template <>
struct default_codec_for<std::string> {
  using type = string_codec;
};
template <class T>
requires std::is_trivially_copyable_v<T>
struct default_codec_for<T> {
  using type = trivial_codec<T>;
};

template <class K>
struct default_key_codec_for : default_codec_for<K> {};
template <decimal_integer I>
struct default_key_codec_for<I> {
  using type = decimal_codec<I>;
};
}  // namespace detail

// The codec redis_store uses for a value type V unless told otherwise (void: no default).
template <class T>
using default_codec = typename detail::default_codec_for<T>::type;

// The codec redis_store uses for a key type K unless told otherwise (void: no default).
template <class K>
using default_key_codec = typename detail::default_key_codec_for<K>::type;

}  // namespace cachet
