// A redis_store of a user type, with a codec of its own.
//
// A codec is two static functions (cachet/codec.hpp): encode appends the bytes, decode turns
// bytes back into a value or says they are malformed. This one writes a length-prefixed name after
// a fixed-size id, and refuses anything that does not parse exactly. The example checks the codec
// without a server; with CACHET_REDIS_SOCKET set to a redis-server's unix socket it also
// round-trips a user through Redis. Exits non-zero if a check fails.
#include <cachet/redis/redis_store.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace {

struct user {
  std::uint64_t id = 0;
  std::string name;
  friend bool operator==(const user&, const user&) = default;
};

// id (8 bytes, this platform's byte order), name length (4 bytes), name.
struct user_codec {
  static void encode(const user& u, std::string& out) {
    const auto len = static_cast<std::uint32_t>(u.name.size());
    out.append(reinterpret_cast<const char*>(&u.id), sizeof u.id);
    out.append(reinterpret_cast<const char*>(&len), sizeof len);
    out.append(u.name);
  }
  static std::optional<user> decode(std::string_view bytes) {
    user u;
    std::uint32_t len = 0;
    if (bytes.size() < sizeof u.id + sizeof len) return std::nullopt;
    std::memcpy(&u.id, bytes.data(), sizeof u.id);
    std::memcpy(&len, bytes.data() + sizeof u.id, sizeof len);
    bytes.remove_prefix(sizeof u.id + sizeof len);
    if (bytes.size() != len) return std::nullopt;
    u.name.assign(bytes);
    return u;
  }
};

static_assert(cachet::codec<user_codec, user>);
using user_store = cachet::redis_store<std::uint64_t, user, user_codec>;
static_assert(cachet::store<user_store>);

bool check(bool ok, const char* what) {
  if (!ok) std::fprintf(stderr, "redis_codec: FAILED: %s\n", what);
  return ok;
}

}  // namespace

int main() {
  bool ok = true;
  const user ada{42, std::string("Ada\0Lovelace", 12)};
  std::string bytes;
  user_codec::encode(ada, bytes);
  ok &= check(user_codec::decode(bytes) == ada, "round trip");
  ok &= check(!user_codec::decode(bytes.substr(0, bytes.size() - 1)), "truncated is malformed");
  ok &= check(!user_codec::decode(bytes + "x"), "trailing bytes are malformed");

  if (const char* socket = std::getenv("CACHET_REDIS_SOCKET")) {
    user_store users({.unix_socket = socket, .key_prefix = "example:users:"});
    ok &= check(users.put(ada.id, ada) == cachet::put_result::inserted, "put");
    ok &= check(users.get(ada.id) == ada, "get");
    users.erase(ada.id);
    const auto st = users.stats();
    std::printf("redis_codec: hits=%llu misses=%llu breaker=%s\n",
                static_cast<unsigned long long>(st.hits),
                static_cast<unsigned long long>(st.misses), cachet::to_string(st.breaker).data());
  }
  return ok ? 0 : 1;
}
