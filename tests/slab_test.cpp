// detail/slab.hpp: a bounded slab's first slots lie in one flat block whose nodes are built one by
// one as slots are handed out; slots past it (a bound above k_flat_max, or no bound) lie in
// doubling chunks. Every slot keeps its address, every node built is ended once, and keys and
// values that own memory are destroyed with the slab (ASan checks the leaks).
#include <cachet/detail/slab.hpp>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using cachet::detail::index_t;

// A hook that counts how many are alive: the slab builds and ends nodes, hooks included.
struct counted_hook {
  static inline long alive = 0;
  std::uint64_t tag = 0xC0FFEE;
  counted_hook() noexcept { ++alive; }
  counted_hook(const counted_hook&) = delete;
  counted_hook& operator=(const counted_hook&) = delete;
  ~counted_hook() { --alive; }
};

template <class Slab, class K, class V>
index_t put(Slab& s, K key, V value) {
  const index_t i = s.allocate();
  auto& n = s[i];
  ::new (static_cast<void*>(&n.key)) K(std::move(key));
  ::new (static_cast<void*>(&n.value)) V(std::move(value));
  n.deadline = cachet::detail::k_never;
  return i;
}

}  // namespace

TEST_CASE("slab: a bounded slab's slots are one flat block, built as they are handed out",
          "[slab]") {
  using slab = cachet::detail::slab<std::uint64_t, std::uint64_t, counted_hook>;
  {
    slab s(1000);
    CHECK(counted_hook::alive == 0);
    std::vector<index_t> got;
    for (int k = 0; k < 3; ++k) got.push_back(put(s, std::uint64_t(k), std::uint64_t(10 * k)));
    CHECK(got == std::vector<index_t>{0, 1, 2});
    // Three nodes built, not the block's thousand (nor a first chunk's sixteen).
    CHECK(counted_hook::alive == 3);
    CHECK(s.high_water() == 3);
    CHECK(&s[1] == &s[0] + 1);
    CHECK(&s[2] == &s[0] + 2);
    CHECK(s[2].hook.tag == 0xC0FFEE);
    CHECK(s[2].value == 20);
    for (int k = 3; k < 1000; ++k) put(s, std::uint64_t(k), std::uint64_t(10 * k));
    CHECK(&s[999] == &s[0] + 999);
    CHECK(counted_hook::alive == 1000);
    CHECK_THROWS_AS(s.allocate(), std::length_error);  // the bound is the bound
    // A released slot comes back first, and is not built again.
    s.release(500);
    CHECK(s.allocate() == 500);
    CHECK(counted_hook::alive == 1000);
  }
  CHECK(counted_hook::alive == 0);
}

TEST_CASE("slab: past the flat block, slots continue in chunks", "[slab]") {
  using slab = cachet::detail::slab<std::uint64_t, std::uint64_t, counted_hook>;
  const std::size_t flat = slab::k_flat_max;
  const std::size_t bound = flat + 100;
  {
    slab s(bound);
    for (std::size_t k = 0; k < bound; ++k) {
      REQUIRE(put(s, std::uint64_t(k), std::uint64_t(k) * 3) == k);
    }
    CHECK(&s[index_t(flat - 1)] == &s[0] + (flat - 1));
    // Every slot holds its own node, on both sides of the block's end.
    for (std::size_t k = flat - 50; k < bound; ++k) {
      REQUIRE(s[index_t(k)].key == k);
      REQUIRE(s[index_t(k)].value == 3 * k);
    }
    CHECK(&s[index_t(flat + 1)] == &s[index_t(flat)] + 1);  // the first chunk is contiguous
    CHECK_THROWS_AS(s.allocate(), std::length_error);
    CHECK(counted_hook::alive == long(flat) + 16 + 32 + 52);  // flat nodes + chunks 16, 32, 52
  }
  CHECK(counted_hook::alive == 0);
}

TEST_CASE("slab: without a bound every slot lies in doubling chunks", "[slab]") {
  using slab = cachet::detail::slab<std::uint64_t, std::uint64_t, counted_hook>;
  {
    slab s;
    for (std::uint64_t k = 0; k < 100; ++k) REQUIRE(put(s, k, k + 1) == k);
    CHECK(counted_hook::alive == 16 + 32 + 64);  // chunks are built whole
    CHECK(&s[15] == &s[0] + 15);
    CHECK(&s[47] == &s[16] + 31);
    for (std::uint64_t k = 0; k < 100; ++k) REQUIRE(s[index_t(k)].value == k + 1);
  }
  CHECK(counted_hook::alive == 0);
}

TEST_CASE("slab: keys and values that own memory end with the slab, and a move keeps them",
          "[slab]") {
  using slab = cachet::detail::slab<std::string, std::string, counted_hook>;
  const std::string pad(40, 'x');  // past the small-string buffer: ASan sees a leak
  {
    slab a(64);
    for (int k = 0; k < 40; ++k) put(a, pad + std::to_string(k), pad + "v" + std::to_string(k));
    a[7].key.~basic_string();  // a removed entry: its key and value are gone, its slot freed
    a[7].value.~basic_string();
    a.release(7);
    slab b(std::move(a));
    CHECK(b[39].value == pad + "v39");
    slab c(8);
    put(c, pad + "c", pad + "c");
    c = std::move(b);  // c's own entry ends here
    CHECK(c[0].key == pad + "0");
    CHECK(c.high_water() == 40);
    CHECK(counted_hook::alive == 40);
  }
  CHECK(counted_hook::alive == 0);
}
