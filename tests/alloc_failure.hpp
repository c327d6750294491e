// tests/alloc_failure.hpp — make one heap allocation fail, to test what std::bad_alloc does.
//
// alloc_failure.cpp replaces the global ::operator new (plain and array forms, throwing and
// nothrow; not the aligned forms) with malloc-based ones that can be told to fail once. It must be
// linked into any test binary that includes this header (the CMake build globs it in; a standalone
// build of one test file adds tests/alloc_failure.cpp to the command line).
//
// Arm the failure as close as possible to the allocation it aims at (inside a weigher or a
// predicate the store calls just before), since anything on the thread that allocates first takes
// it; check allocation_failure_pending() afterwards so that a test cannot pass because nothing
// failed.
//
// Thread safety: the switch is per thread.
#pragma once

namespace cachet_test {

// The next ::operator new on this thread throws std::bad_alloc (the nothrow form returns null);
// the ones after it succeed.
void fail_next_allocation() noexcept;

// True while the failure armed by fail_next_allocation() on this thread has not happened yet.
bool allocation_failure_pending() noexcept;

// Disarms a failure that has not happened.
void cancel_allocation_failure() noexcept;

}  // namespace cachet_test
