// cachet/redis/detail/sigpipe_guard.hpp — keep a write to a dead server from killing the process.
//
// IMPLEMENTATION DETAILS
// hiredis writes with write(2), not send(..., MSG_NOSIGNAL). Writing to a socket whose peer is gone
// (a Redis that was killed) raises SIGPIPE, whose default action ends the process: a cache outage
// would become a service outage. A library must not change the process-wide disposition, so for
// the duration of one command this guard blocks SIGPIPE in the calling thread only; a SIGPIPE the
// command raises stays pending (the write fails with EPIPE, which hiredis reports), and the guard
// consumes it with a zero-timeout sigtimedwait() before restoring the mask. A SIGPIPE that was
// already pending before the guard is left alone. libpq protects its socket writes the same way
// (pq_block_sigpipe / pq_reset_sigpipe in fe-secure.c). Cost: three or four syscalls per command,
// next to a network round trip. On non-POSIX platforms the guard does nothing.
#pragma once

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#define CACHET_REDIS_SIGPIPE_GUARD 1
#endif

namespace cachet::detail {

class sigpipe_guard {
 public:
#if defined(CACHET_REDIS_SIGPIPE_GUARD)
  sigpipe_guard() noexcept {
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    blocked_ = pthread_sigmask(SIG_BLOCK, &block, &old_) == 0;
  }
  ~sigpipe_guard() {
    if (!blocked_) return;
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        const timespec zero{0, 0};
        while (sigtimedwait(&pipe, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
#endif
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

 private:
#if defined(CACHET_REDIS_SIGPIPE_GUARD)
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
#endif
};

}  // namespace cachet::detail
