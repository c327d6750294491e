// cachet/snapshot.hpp — warm restart: save a store's live entries to a file, load them back.
//
// Purpose: a restarted service starts with a cold cache and sends its whole load to the database.
// save(store, path) writes every live entry with its remaining time to live; load(store, path)
// puts them back, each with what is left of that time (minus the wall-clock time between the save
// and the load), so a deploy restarts warm. Keys and values go through codecs (codec.hpp): by
// default default_key_codec<K> and default_codec<V>, as redis_store uses.
//
//   cachet::sharded_store<std::string, std::string> users({.max_entries = 100'000});
//   cachet::save(users, "/var/cache/svc/users.snap");   // at shutdown (or periodically)
//   ...
//   auto r = cachet::load(users, "/var/cache/svc/users.snap");  // at startup
//   // r.loaded, r.expired (their time ran out meanwhile), r.rejected (the store refused them)
//
// Crash safety: save() writes a temporary file beside `path`, flushes and fsyncs it, and renames it
// over `path` (then fsyncs the directory), so `path` is always a complete old snapshot or a
// complete new one, never a mix. load() reads and checks the whole file (its format version, every
// record's bounds and codec, the record count and an XXH3 checksum) before it puts anything: a
// corrupt, truncated or foreign file throws snapshot_error and leaves the store as it was.
//
// Format (version 1; integers little-endian):
//   header   "CACHETSN" | u32 version | u32 flags (0) | i64 saved_at (system_clock, ns) | u64 0
//   record   u32 key length | key bytes | u32 value length | value bytes | i64 ttl ns (-1: none)
//   trailer  "CACHETEN" | u64 record count | u64 XXH3-64 of everything before the trailer
// A file written by another version is refused with a message naming both versions.
//
// Thread safety: save() may run while other threads use the store: it sees each entry present and
// unchanged for the whole call once (for_each_with_ttl's weak consistency). load() puts entries
// one by one (put()'s guarantees each); other threads may use the store meanwhile. Concurrent
// save() calls to one path are safe (each writes its own temporary file; the last rename wins).
// Exception safety: save() throws snapshot_error for an I/O failure (the old file at `path`, if
// any, is untouched and the temporary removed), and what the codecs throw. load() throws
// snapshot_error for a missing, unreadable or invalid file (nothing put), and what put() throws
// while putting (the entries before it stay).
// Memory: load() holds the whole file and its decoded entries before putting them.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/codec.hpp"
#include "cachet/options.hpp"

namespace cachet {

// A snapshot could not be written, or a file is not a snapshot this version can load.
class snapshot_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct save_result {
  std::size_t entries = 0;  // entries written
  std::uint64_t bytes = 0;  // size of the file
};

struct load_result {
  std::size_t loaded = 0;    // entries put
  std::size_t expired = 0;   // entries whose time to live ran out between save and load
  std::size_t rejected = 0;  // entries the store refused (full with no_eviction, too heavy, ...)
};

namespace detail {

inline constexpr std::uint32_t k_snapshot_version = 1;
inline constexpr char k_snapshot_magic[8] = {'C', 'A', 'C', 'H', 'E', 'T', 'S', 'N'};
inline constexpr char k_snapshot_end[8] = {'C', 'A', 'C', 'H', 'E', 'T', 'E', 'N'};
inline constexpr std::size_t k_snapshot_header = 32;
inline constexpr std::size_t k_snapshot_trailer = 24;

template <class S>
concept snapshot_store = requires(S& s, typename S::key_type k, typename S::mapped_type v) {
  s.for_each_with_ttl(
      [](const typename S::key_type&, const typename S::mapped_type&, std::chrono::nanoseconds) {});
  { s.put(std::move(k), std::move(v), std::chrono::nanoseconds(1)) } -> std::same_as<put_result>;
};

// The codecs save() and load() use: the ones given, or (void) the defaults, checked.
template <class KeyCodec, class ValueCodec, class Store>
struct snapshot_codecs {
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  using key = std::conditional_t<std::is_void_v<KeyCodec>, default_key_codec<key_type>, KeyCodec>;
  using value =
      std::conditional_t<std::is_void_v<ValueCodec>, default_codec<mapped_type>, ValueCodec>;
  static_assert(!std::is_void_v<key> && codec<key, key_type>,
                "cachet::save/load: no default codec for this key type: pass one (codec.hpp)");
  static_assert(!std::is_void_v<value> && codec<value, mapped_type>,
                "cachet::save/load: no default codec for this value type: pass one (codec.hpp)");
};

inline void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline std::uint64_t get_le(std::string_view in, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= std::uint64_t{static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)])} << (8 * i);
  }
  return v;
}

[[noreturn]] inline void snapshot_io_error(const std::string& what, const std::filesystem::path& p,
                                           int err) {
  throw snapshot_error("cachet: snapshot " + what + " '" + p.string() +
                       "': " + std::generic_category().message(err));
}

// A file written through a buffer, fsynced, and renamed over its target; removed if abandoned.
class snapshot_writer {
 public:
  explicit snapshot_writer(const std::filesystem::path& target) : target_(target) {
    static std::atomic<std::uint64_t> counter{0};
    tmp_ = target;
    tmp_ += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(++counter);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) snapshot_io_error("cannot create", tmp_, errno);
    XXH3_64bits_reset(&hash_);
  }
  snapshot_writer(const snapshot_writer&) = delete;
  snapshot_writer& operator=(const snapshot_writer&) = delete;
  ~snapshot_writer() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) {
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

  // Appends to the file and to the checksum (unless `hashed` is false: the trailer's checksum).
  void write(std::string_view bytes, bool hashed = true) {
    if (hashed) XXH3_64bits_update(&hash_, bytes.data(), bytes.size());
    buf_.append(bytes);
    bytes_ += bytes.size();
    if (buf_.size() >= (std::size_t{1} << 20)) flush();
  }
  std::uint64_t digest() const noexcept { return XXH3_64bits_digest(&hash_); }
  std::uint64_t bytes() const noexcept { return bytes_; }

  void commit() {
    flush();
    if (::fsync(fd_) != 0) snapshot_io_error("cannot sync", tmp_, errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) snapshot_io_error("cannot close", tmp_, errno);
    if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
      snapshot_io_error("cannot rename over", target_, errno);
    }
    committed_ = true;
    // Make the rename itself durable; a failure here leaves a complete file, so it is ignored.
    const std::filesystem::path dir =
        target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  void flush() {
    std::size_t done = 0;
    while (done < buf_.size()) {
      const ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        snapshot_io_error("cannot write", tmp_, errno);
      }
      done += static_cast<std::size_t>(n);
    }
    buf_.clear();
  }

  std::filesystem::path target_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::string buf_;
  std::uint64_t bytes_ = 0;
  XXH3_state_t hash_;
};

inline std::string read_whole_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) snapshot_io_error("cannot open", path, errno);
  std::string data;
  char chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      snapshot_io_error("cannot read", path, err);
    }
    if (n == 0) break;
    data.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}

[[noreturn]] inline void snapshot_invalid(const std::filesystem::path& p, const std::string& why) {
  throw snapshot_error("cachet: '" + p.string() + "' is not a valid snapshot: " + why);
}

}  // namespace detail

// Writes every live entry of `store` with its remaining time to live to `path` (replacing the file
// there atomically). KeyCodec and ValueCodec default (void) to default_key_codec<K> and
// default_codec<V>. Returns how many entries and bytes it wrote. Blocks on each shard lock in turn
// while a batch of entries is copied (see for_each_with_ttl), and on the disk.
template <class KeyCodec = void, class ValueCodec = void, detail::snapshot_store Store>
save_result save(Store& store, const std::filesystem::path& path) {
  using K = typename Store::key_type;
  using V = typename Store::mapped_type;
  using KC = typename detail::snapshot_codecs<KeyCodec, ValueCodec, Store>::key;
  using VC = typename detail::snapshot_codecs<KeyCodec, ValueCodec, Store>::value;
  detail::snapshot_writer w(path);
  std::string rec(detail::k_snapshot_magic, 8);
  detail::put_le(rec, detail::k_snapshot_version, 4);
  detail::put_le(rec, 0, 4);
  const auto saved_at = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  detail::put_le(rec, static_cast<std::uint64_t>(saved_at), 8);
  detail::put_le(rec, 0, 8);
  w.write(rec);
  save_result r;
  std::string key, value;
  store.for_each_with_ttl([&](const K& k, const V& v, std::chrono::nanoseconds ttl) {
    key.clear();
    value.clear();
    KC::encode(k, key);
    VC::encode(v, value);
    if (key.size() > 0xffffffffu || value.size() > 0xffffffffu) {
      throw snapshot_error("cachet: snapshot: an entry of 4 GiB or more cannot be saved");
    }
    rec.clear();
    detail::put_le(rec, key.size(), 4);
    rec += key;
    detail::put_le(rec, value.size(), 4);
    rec += value;
    detail::put_le(
        rec, ttl == no_expiry ? ~std::uint64_t{0} : static_cast<std::uint64_t>(ttl.count()), 8);
    w.write(rec);
    ++r.entries;
  });
  rec.assign(detail::k_snapshot_end, 8);
  detail::put_le(rec, r.entries, 8);
  detail::put_le(rec, w.digest(), 8);
  w.write(rec, false);
  r.bytes = w.bytes();
  w.commit();
  return r;
}

// Puts every entry of the snapshot at `path` into `store`, each with the time to live it had at
// the save minus the wall-clock time since (entries whose time ran out are skipped and counted).
// The whole file is read and checked first: if it is missing, unreadable, truncated, corrupt, of
// another format version, or holds bytes a codec refuses, snapshot_error is thrown and nothing is
// put. A put the store refuses is counted in `rejected`.
template <class KeyCodec = void, class ValueCodec = void, detail::snapshot_store Store>
load_result load(Store& store, const std::filesystem::path& path) {
  using K = typename Store::key_type;
  using V = typename Store::mapped_type;
  using KC = typename detail::snapshot_codecs<KeyCodec, ValueCodec, Store>::key;
  using VC = typename detail::snapshot_codecs<KeyCodec, ValueCodec, Store>::value;
  const std::string data = detail::read_whole_file(path);
  const std::string_view in(data);
  if (in.size() < detail::k_snapshot_header + detail::k_snapshot_trailer) {
    detail::snapshot_invalid(path, "too short (" + std::to_string(in.size()) + " bytes)");
  }
  if (in.substr(0, 8) != std::string_view(detail::k_snapshot_magic, 8)) {
    detail::snapshot_invalid(path, "no snapshot header");
  }
  const auto version = static_cast<std::uint32_t>(detail::get_le(in, 8, 4));
  if (version != detail::k_snapshot_version) {
    detail::snapshot_invalid(path, "format version " + std::to_string(version) +
                                       ", this build reads version " +
                                       std::to_string(detail::k_snapshot_version));
  }
  const std::size_t end = in.size() - detail::k_snapshot_trailer;
  if (in.substr(end, 8) != std::string_view(detail::k_snapshot_end, 8)) {
    detail::snapshot_invalid(path, "no trailer (truncated?)");
  }
  if (XXH3_64bits(in.data(), end) != detail::get_le(in, end + 16, 8)) {
    detail::snapshot_invalid(path, "checksum mismatch (corrupt)");
  }
  const auto saved_at = static_cast<std::int64_t>(detail::get_le(in, 16, 8));
  std::vector<std::tuple<K, V, std::int64_t>> entries;
  std::size_t at = detail::k_snapshot_header;
  auto need = [&](std::size_t n) {
    if (n > end - at) {
      detail::snapshot_invalid(path, "record " + std::to_string(entries.size()) + " overruns");
    }
  };
  while (at < end) {
    need(4);
    const std::size_t klen = detail::get_le(in, at, 4);
    at += 4;
    need(klen);
    std::optional<K> k = KC::decode(in.substr(at, klen));
    at += klen;
    need(4);
    const std::size_t vlen = detail::get_le(in, at, 4);
    at += 4;
    need(vlen);
    std::optional<V> v = VC::decode(in.substr(at, vlen));
    at += vlen;
    need(8);
    const auto ttl = static_cast<std::int64_t>(detail::get_le(in, at, 8));
    at += 8;
    if (!k || !v) {
      detail::snapshot_invalid(path, "record " + std::to_string(entries.size()) +
                                         ": the codec refused its " + (k ? "value" : "key"));
    }
    if (ttl == 0 || ttl < -1) {
      detail::snapshot_invalid(path, "record " + std::to_string(entries.size()) + ": bad ttl");
    }
    entries.emplace_back(std::move(*k), std::move(*v), ttl);
  }
  if (detail::get_le(in, end + 8, 8) != entries.size()) {
    detail::snapshot_invalid(path, "record count mismatch");
  }
  const std::int64_t now_wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
  const std::int64_t elapsed = now_wall > saved_at ? now_wall - saved_at : 0;
  load_result r;
  for (auto& [k, v, ttl] : entries) {
    std::chrono::nanoseconds left = no_expiry;
    if (ttl != -1) {
      if (ttl <= elapsed) {
        ++r.expired;
        continue;
      }
      left = std::chrono::nanoseconds(ttl - elapsed);
    }
    if (stored(store.put(std::move(k), std::move(v), left))) {
      ++r.loaded;
    } else {
      ++r.rejected;
    }
  }
  return r;
}

}  // namespace cachet
