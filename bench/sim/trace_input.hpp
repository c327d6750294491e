// bench/sim/trace_input.hpp — opens a trace file, decompressing .gz/.zst/.xz/.bz2 through a pipe.
//
// Purpose: lets cachet-sim (and the tests) read the compressed traces in ../shared/traces without
// linking zlib or libzstd: a file whose name ends in .gz, .zst (.zstd), .xz or .bz2 is fed to
// `gzip -dc`, `zstd -dc`, `xz -dc` or `bzip2 -dc` on its standard input, and the trace is read from
// the tool's output. The tool is started with posix_spawnp (found on PATH), never through a shell,
// so the file name needs no quoting. "-" is standard input.
//
// Thread safety: a trace_input is used by one thread. Exception safety: the constructor and
// finish() throw input_error (cannot open, cannot start the tool, the tool failed); the destructor
// closes the pipe and reaps the tool without throwing.
//
// Example:
//   cachet_sim::trace t = cachet_sim::read_trace_file("lirs-gli.trace.gz", {.format = lirs});
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#include "trace_reader.hpp"

extern char** environ;  // POSIX: declared by no standard header

namespace cachet_sim {

// The file could not be opened or read, or its decompressor could not run or failed.
class input_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The decompressor for a file name's extension ("gzip", "zstd", "xz", "bzip2"), or nullptr.
inline const char* decompressor_for(const std::string& path) noexcept {
  if (path.ends_with(".gz")) return "gzip";
  if (path.ends_with(".zst") || path.ends_with(".zstd")) return "zstd";
  if (path.ends_with(".xz")) return "xz";
  if (path.ends_with(".bz2")) return "bzip2";
  return nullptr;
}

// An open trace: a FILE* to read and, for a compressed file, the decompressor behind it.
class trace_input {
 public:
  explicit trace_input(const std::string& path) : path_(path) {
    if (path == "-") {
      in_ = stdin;
      return;
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw input_error("cannot open '" + path + "': " + std::strerror(errno));
    const char* tool = decompressor_for(path);
    if (tool == nullptr) {
      in_ = ::fdopen(fd, "r");
      if (in_ == nullptr) {
        const int e = errno;
        ::close(fd);
        throw input_error("cannot read '" + path + "': " + std::strerror(e));
      }
      return;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      const int e = errno;
      ::close(fd);
      throw input_error(std::string("cannot create a pipe: ") + std::strerror(e));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 0);    // the file on the tool's stdin
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);  // the tool's stdout into our pipe
    char dash_dc[] = "-dc";
    char* argv[] = {const_cast<char*>(tool), dash_dc, nullptr};
    const int rc = ::posix_spawnp(&pid_, tool, &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fd);
    ::close(p[1]);
    if (rc != 0) {
      ::close(p[0]);
      pid_ = -1;
      throw input_error("cannot run '" + std::string(tool) + " -dc' to read '" + path +
                        "': " + std::strerror(rc));
    }
    tool_ = tool;
    in_ = ::fdopen(p[0], "r");
    if (in_ == nullptr) {
      const int e = errno;
      ::close(p[0]);
      throw input_error(std::string("cannot read the pipe: ") + std::strerror(e));
    }
  }
  trace_input(const trace_input&) = delete;
  trace_input& operator=(const trace_input&) = delete;
  ~trace_input() {
    if (in_ != nullptr && in_ != stdin) std::fclose(in_);  // a tool still writing gets SIGPIPE
    if (pid_ > 0) reap();
  }

  std::FILE* get() const noexcept { return in_; }

  // Closes the input; throws input_error if the decompressor did not exit with status 0.
  void finish() {
    if (in_ != nullptr && in_ != stdin) std::fclose(in_);
    in_ = nullptr;
    if (pid_ <= 0) return;
    const int status = reap();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw input_error("'" + tool_ + " -dc' failed on '" + path_ + "' (" +
                        (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                           : std::string("killed by a signal")) +
                        ")");
    }
  }

 private:
  int reap() noexcept {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

  std::string path_;
  std::string tool_;
  std::FILE* in_ = nullptr;
  pid_t pid_ = -1;
};

// Reads the trace at `path` ("-" = stdin), decompressing by extension. Throws input_error,
// trace_error (malformed line) and std::invalid_argument (bad options).
inline trace read_trace_file(const std::string& path, const reader_options& opts) {
  trace_input in(path);
  trace t;
  try {
    t = read_trace(in.get(), opts);
  } catch (const std::system_error& e) {
    throw input_error("cannot read '" + path + "': " + e.what());
  }
  in.finish();
  return t;
}

}  // namespace cachet_sim
