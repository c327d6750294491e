// The replaceable global allocation functions, with a per-thread switch to fail the next one; see
// alloc_failure.hpp. Every form allocates with malloc and frees with free, so the throwing and
// nothrow forms, and the sized and unsized deletes, all match one another (also under ASan, which
// would otherwise pair its own operator delete with this malloc).
#include "alloc_failure.hpp"

#include <cstddef>
#include <cstdlib>
#include <new>

namespace {
thread_local bool t_fail_next = false;

void* allocate(std::size_t n) {
  if (t_fail_next) {
    t_fail_next = false;
    throw std::bad_alloc();
  }
  if (n == 0) n = 1;
  for (;;) {
    if (void* p = std::malloc(n)) return p;
    const std::new_handler h = std::get_new_handler();
    if (h == nullptr) throw std::bad_alloc();
    h();
  }
}
}  // namespace

namespace cachet_test {
void fail_next_allocation() noexcept { t_fail_next = true; }
bool allocation_failure_pending() noexcept { return t_fail_next; }
void cancel_allocation_failure() noexcept { t_fail_next = false; }
}  // namespace cachet_test

void* operator new(std::size_t n) { return allocate(n); }
void* operator new[](std::size_t n) { return allocate(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
