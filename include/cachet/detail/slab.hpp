// cachet/detail/slab.hpp — per-shard node storage addressed by 32-bit indices.
//
// IMPLEMENTATION DETAILS
// Every entry of a shard lives in one `node` inside the shard's slab. Nodes never move, so the
// shard's hash table stores only a 4-byte index per slot and eviction policies link nodes with
// 4-byte indices (an LRU list costs 8 bytes per entry instead of 16 for pointers). This is what
// keeps the store under 48 bytes of overhead per entry with a TTL and a weight on (see
// bench/RESULTS.md).
//
// A shard with an entry bound takes one flat block for its first min(bound, k_flat_max) slots at
// its first insert: index -> node is then one compare and one multiply, which is most of what an
// LRU hit's bookkeeping costs (every hook it touches is reached by index; the chunked lookup
// below took about a sixth of an LRU hit's instructions, bench/RESULTS.md). The block is raw
// storage and a node is constructed in it when its slot is first handed out, so the pages behind
// it are touched in slot order as entries arrive (the OS backs them then; what the block reserves
// beyond that is address space). Slots past the flat block, and every slot of a shard without an
// entry bound, live in chunks whose sizes double (16, 32, 64, ...), so index -> (chunk, offset) is
// two shifts and no chunk is ever reallocated; when the bound is known the last chunk is cut to
// fit it, so a full shard wastes no slots. Freed nodes form a LIFO free list threaded through
// their `hash` field; a free node has deadline == k_free. Slots [0, high_water) have been handed
// out at least once; the expiry sweep and for_each walk that range.
//
// `key` and `value` are alive exactly while the node is in use; the metadata is always alive.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace cachet::detail {

using index_t = std::uint32_t;
inline constexpr index_t npos = std::numeric_limits<index_t>::max();
// Largest number of nodes one shard may hold (indices npos and npos - 1 are reserved as markers).
inline constexpr std::size_t k_max_shard_entries = std::numeric_limits<index_t>::max() - 2;

inline constexpr std::int64_t k_never = std::numeric_limits<std::int64_t>::max();
inline constexpr std::int64_t k_free = std::numeric_limits<std::int64_t>::min();

template <class K, class V, class Hook>
struct node {
  // Key, value and deadline first: a hit reads exactly these, and at a 48-byte node stride they
  // then share one cache line three times out of four.
  union {
    K key;
  };
  union {
    V value;
  };
  std::int64_t deadline = k_free;  // absolute ns; k_never = no expiry; k_free = slot unused
  std::uint32_t hash = 0;          // low 32 bits of the key's hash; next free index when unused
  std::uint32_t stamp = 0;         // incremented on every write to this slot
  std::uint32_t weight = 0;
  [[no_unique_address]] Hook hook{};

  node() noexcept {}
  ~node() {}
  node(const node&) = delete;
  node& operator=(const node&) = delete;
};

template <class K, class V, class Hook>
class slab {
 public:
  using node_type = node<K, V, Hook>;

  // `bound` = most nodes ever live at once (0 = unknown), used to size the last chunk.
  explicit slab(std::size_t bound = 0) noexcept : bound_(bound) {}
  slab(slab&& o) noexcept
      : flat_(std::exchange(o.flat_, nullptr)),
        flat_n_(std::exchange(o.flat_n_, 0)),
        chunks_(std::exchange(o.chunks_, {})),
        allocated_(std::exchange(o.allocated_, 0)),
        high_water_(std::exchange(o.high_water_, 0)),
        free_head_(std::exchange(o.free_head_, npos)),
        bound_(o.bound_) {}
  slab& operator=(slab&& o) noexcept {
    if (this != &o) {
      destroy_all();
      release_flat();
      flat_ = std::exchange(o.flat_, nullptr);
      flat_n_ = std::exchange(o.flat_n_, 0);
      chunks_ = std::exchange(o.chunks_, {});
      allocated_ = std::exchange(o.allocated_, 0);
      high_water_ = std::exchange(o.high_water_, 0);
      free_head_ = std::exchange(o.free_head_, npos);
      bound_ = o.bound_;
    }
    return *this;
  }
  ~slab() {
    destroy_all();
    release_flat();
  }

  node_type& operator[](index_t i) noexcept {
    if (i < flat_n_) [[likely]]
      return flat_[i];
    const std::uint64_t j = std::uint64_t{i} - flat_n_ + k_first;
    const int c = std::bit_width(j) - 1 - k_first_log2;
    return chunks_[c][j - (k_first << c)];
  }
  const node_type& operator[](index_t i) const noexcept { return const_cast<slab&>(*this)[i]; }

  // Policies reach an entry's metadata through these (see eviction.hpp).
  Hook& hook(index_t i) noexcept { return (*this)[i].hook; }
  std::int64_t deadline(index_t i) const noexcept { return (*this)[i].deadline; }
  std::uint32_t hash(index_t i) const noexcept { return (*this)[i].hash; }
  // A hint that node i's metadata will be written soon.
  void prefetch(index_t i) const noexcept { __builtin_prefetch(&(*this)[i], 1, 3); }

  // A free slot, its metadata reset except `stamp`. Throws std::bad_alloc when a chunk cannot be
  // had.
  index_t allocate() {
    if (free_head_ != npos) {
      const index_t i = free_head_;
      free_head_ = (*this)[i].hash;
      return i;
    }
    if (high_water_ == allocated_) grow();
    if (high_water_ < flat_n_) ::new (static_cast<void*>(flat_ + high_water_)) node_type();
    return high_water_++;
  }

  // Returns a slot whose key and value were already destroyed.
  void release(index_t i) noexcept {
    node_type& n = (*this)[i];
    n.deadline = k_free;
    n.hash = free_head_;
    free_head_ = i;
  }

  // The most slots the flat block holds (48 MiB of 48-byte nodes); a larger bound continues in
  // chunks, so a huge bound never asks for one huge block.
  static constexpr std::size_t k_flat_max = std::size_t{1} << 20;

  index_t high_water() const noexcept { return high_water_; }
  std::size_t allocated_bytes() const noexcept { return allocated_ * sizeof(node_type); }

 private:
  static constexpr int k_first_log2 = 4;
  static constexpr std::uint64_t k_first = std::uint64_t{1} << k_first_log2;
  static constexpr int k_max_chunks = 33;

  void grow() {
    if (allocated_ == 0 && bound_ != 0) {
      const std::size_t n = std::min(bound_, std::min(k_flat_max, k_max_shard_entries));
      flat_ = static_cast<node_type*>(
          ::operator new (n * sizeof(node_type), std::align_val_t{alignof(node_type)}));
      flat_n_ = n;
      allocated_ = n;
      return;
    }
    const int c =
        static_cast<int>(std::bit_width(std::uint64_t{allocated_ - flat_n_} + k_first) - 1) -
        k_first_log2;
    std::size_t n = static_cast<std::size_t>(k_first << c);
    if (bound_ != 0) {
      // A chunk cut to the bound is the last one: an index past it would land outside it.
      if (allocated_ >= bound_) throw std::length_error("cachet: shard slab bound exceeded");
      if (allocated_ + n > bound_) n = bound_ - allocated_;
    }
    if (allocated_ + n > k_max_shard_entries) throw std::length_error("cachet: shard is full");
    chunks_[c] = std::unique_ptr<node_type[]>(new node_type[n]);
    allocated_ += n;
  }

  void destroy_all() noexcept {
    for (index_t i = 0; i < high_water_; ++i) {
      node_type& n = (*this)[i];
      if (n.deadline != k_free) {
        n.key.~K();
        n.value.~V();
        n.deadline = k_free;
      }
    }
    // The flat block's nodes were constructed one by one (allocate()): end them likewise (a node's
    // own destructor is empty; its hook's may not be). The chunks' nodes end with their arrays.
    if constexpr (!std::is_trivially_destructible_v<Hook>) {
      const std::size_t built = std::min<std::size_t>(high_water_, flat_n_);
      for (std::size_t i = 0; i < built; ++i) flat_[i].~node_type();
    }
    high_water_ = 0;
  }
  // Returns the flat block, whose nodes destroy_all() has ended.
  void release_flat() noexcept {
    if (flat_ == nullptr) return;
    ::operator delete (static_cast<void*>(flat_), std::align_val_t{alignof(node_type)});
    flat_ = nullptr;
    flat_n_ = 0;
  }

  node_type* flat_ = nullptr;  // slots [0, flat_n_), constructed up to high_water
  std::size_t flat_n_ = 0;
  std::array<std::unique_ptr<node_type[]>, k_max_chunks> chunks_{};
  std::size_t allocated_ = 0;
  index_t high_water_ = 0;
  index_t free_head_ = npos;
  std::size_t bound_ = 0;
};

// Doubly linked list of node indices through a `link` member of each node's hook. Head = newest.
struct link {
  index_t prev = npos;
  index_t next = npos;
};

class index_list {
 public:
  template <class Nodes>
  void push_front(Nodes& n, index_t i) noexcept {
    link& l = n.hook(i).ln;
    l.prev = npos;
    l.next = head_;
    if (head_ != npos)
      n.hook(head_).ln.prev = i;
    else
      tail_ = i;
    head_ = i;
    ++size_;
  }
  template <class Nodes>
  void push_back(Nodes& n, index_t i) noexcept {
    link& l = n.hook(i).ln;
    l.next = npos;
    l.prev = tail_;
    if (tail_ != npos)
      n.hook(tail_).ln.next = i;
    else
      head_ = i;
    tail_ = i;
    ++size_;
  }
  template <class Nodes>
  void remove(Nodes& n, index_t i) noexcept {
    link& l = n.hook(i).ln;
    if (l.prev != npos)
      n.hook(l.prev).ln.next = l.next;
    else
      head_ = l.next;
    if (l.next != npos)
      n.hook(l.next).ln.prev = l.prev;
    else
      tail_ = l.prev;
    --size_;
  }
  template <class Nodes>
  void move_to_front(Nodes& n, index_t i) noexcept {
    if (head_ == i) return;
    remove(n, i);
    push_front(n, i);
  }
  // Moves all of `o` in front of this list's head, keeping o's order; o becomes empty.
  template <class Nodes>
  void splice_front(Nodes& n, index_list& o) noexcept {
    if (o.head_ == npos) return;
    if (head_ != npos) {
      n.hook(o.tail_).ln.next = head_;
      n.hook(head_).ln.prev = o.tail_;
    } else {
      tail_ = o.tail_;
    }
    head_ = o.head_;
    size_ += o.size_;
    o = index_list{};
  }

  index_t head() const noexcept { return head_; }
  index_t tail() const noexcept { return tail_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return head_ == npos; }

  // Calls f(i) for each entry from the tail to the head (tail_first) or from the head to the tail,
  // while f returns true. Returns false if f stopped the walk. (For hottest() / coldest().)
  template <class Nodes, class F>
  bool walk(Nodes& n, bool tail_first, F&& f) const {
    for (index_t i = tail_first ? tail_ : head_; i != npos;) {
      const index_t next = tail_first ? n.hook(i).ln.prev : n.hook(i).ln.next;
      if (!f(i)) return false;
      i = next;
    }
    return true;
  }

 private:
  index_t head_ = npos;
  index_t tail_ = npos;
  std::size_t size_ = 0;
};

}  // namespace cachet::detail
