// The Nodes a policy sees, without a store: for driving a policy's shard_policy directly in tests.
#pragma once

#include <cachet/detail/slab.hpp>
#include <cstdint>
#include <vector>

namespace cachet_test {

template <class P>
struct fake_nodes {
  std::vector<typename P::hook> hooks;
  std::vector<std::uint32_t> hashes;
  typename P::hook& hook(cachet::detail::index_t i) { return hooks[i]; }
  std::int64_t deadline(cachet::detail::index_t) const { return cachet::detail::k_never; }
  std::uint32_t hash(cachet::detail::index_t i) const { return hashes[i]; }
  void prefetch(cachet::detail::index_t) const {}
};

}  // namespace cachet_test
