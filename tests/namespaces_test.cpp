// cachet/namespaces.hpp: a bump makes every key of one namespace unreachable in O(1) and leaves
// the others alone; old entries age out through the store; puts, gets and bumps race cleanly
// under TSan and ASan.
#include <atomic>
#include <cachet/namespaces.hpp>
#include <cachet/sharded_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
using store_t = cachet::sharded_store<cachet::versioned_key<std::string>, int, cachet::lru,
                                      cachet::manual_clock>;
using spaces_t = cachet::versioned_namespaces<store_t>;
}  // namespace

TEST_CASE("versioned_namespaces: a bump drops its namespace's keys, not the others'",
          "[namespaces]") {
  cachet::manual_clock clock;
  spaces_t spaces(store_t::options_type{.max_entries = 1000, .default_ttl = 60s}, clock);
  auto books = spaces.open("books");
  auto music = spaces.open("music");
  CHECK(spaces.open("books").name() == "books");  // the same namespace again
  CHECK(books.name() == "books");
  spaces.put(books, "a", 1);
  spaces.put(books, "b", 2);
  spaces.put(music, "a", 10);  // the same key in another namespace is another entry
  CHECK(spaces.get(books, "a") == 1);
  CHECK(spaces.get(music, "a") == 10);

  CHECK(spaces.bump(books) == 1);
  CHECK(spaces.version(books) == 1);
  CHECK_FALSE(spaces.get(books, "a"));
  CHECK_FALSE(spaces.peek(books, "b"));
  CHECK(spaces.get(music, "a") == 10);  // untouched
  CHECK(spaces.store().size() == 3);    // O(1): nothing was erased...

  spaces.put(books, "a", 3);  // the new version is an ordinary namespace
  CHECK(spaces.get(books, "a") == 3);
  CHECK(spaces.erase(books, "a"));
  CHECK_FALSE(spaces.get(books, "a"));

  clock.advance(61s);  // ...the old entries age out through the store's TTL
  spaces.store().cleanup();
  CHECK(spaces.store().size() == 0);

  spaces.put(music, "x", 1, 5s);  // a per-entry TTL passes through
  clock.advance(6s);
  CHECK_FALSE(spaces.get(music, "x"));
}

TEST_CASE("versioned_namespaces: an unread old version is evicted like any other entry",
          "[namespaces]") {
  spaces_t spaces(store_t::options_type{.max_entries = 100, .shards = 1});
  auto ns = spaces.open("n");
  for (int i = 0; i < 100; ++i) spaces.put(ns, std::to_string(i), i);
  spaces.bump(ns);
  for (int i = 0; i < 100; ++i) spaces.put(ns, std::to_string(i), -i);
  CHECK(spaces.store().size() == 100);  // the bound holds: the old version went first (lru)
  for (int i = 0; i < 100; ++i) CHECK(spaces.get(ns, std::to_string(i)) == -i);
}

TEST_CASE("versioned_namespaces: puts, gets and bumps racing (TSan, ASan)",
          "[namespaces][threads]") {
  // Writers put each key with the version they read just before (put then writes under that
  // version or a later one); a bumper bumps; a reader gets. A value found is never from the
  // future: at most the version read after the get. (Which entries a get can reach after a bump
  // is the deterministic test above; here the sanitizers watch the versions and the store.)
  using wide_store =
      cachet::sharded_store<cachet::versioned_key<std::string>, std::uint32_t, cachet::lru>;
  cachet::versioned_namespaces<wide_store> spaces(wide_store::options_type{.max_entries = 4096});
  auto ns = spaces.open("hot");
  std::atomic<int> wrong{0}, found{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20'000; ++i) {
        spaces.put(ns, std::to_string((i + t) % 64), spaces.version(ns));
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 2'000; ++i) spaces.bump(ns);
  });
  for (int i = 0; i < 40'000; ++i) {
    const std::optional<std::uint32_t> got = spaces.get(ns, std::to_string(i % 64));
    const std::uint32_t after = spaces.version(ns);
    if (got) {
      found.fetch_add(1);
      if (*got > after) wrong.fetch_add(1);
    }
  }
  for (std::thread& th : threads) th.join();
  INFO("gets that found a value: " << found.load());
  CHECK(wrong.load() == 0);
}

TEST_CASE("versioned_key: the same key in two spaces hashes apart", "[namespaces]") {
  cachet::hash<cachet::versioned_key<std::string>> h;
  const cachet::versioned_key<std::string> a{1, "k"}, b{2, "k"}, c{1, "k"};
  CHECK(h(a) != h(b));
  CHECK(h(a) == h(c));
  CHECK_FALSE(a == b);
}
