// bench/redis_bench_server.hpp — a redis-server of the benchmark's own, for the Redis-tier benches.
//
// redis_child starts `redis-server` (from PATH) in a fresh temporary directory, listening on a
// unix socket there and on a free loopback TCP port, with persistence off, and waits (at most 10 s)
// until it answers PING; its destructor SIGKILLs it, reaps it and removes the directory. The child
// also dies with the thread that forked it (PR_SET_PDEATHSIG), so a crashed benchmark leaves no
// server behind: call kill(), restart(), pause() and resume() from the thread that constructed
// it (restart() forks the new server from the calling thread). Throws std::runtime_error if the
// server cannot be started.
//
// For outage benchmarks: kill() SIGKILLs the server and reaps it (the directory and the socket
// file stay, so clients get ECONNREFUSED); restart() starts a fresh, empty server on the same unix
// socket and port; pause() SIGSTOPs it (connects still complete into the listen backlog, commands
// go unanswered until resume(), which SIGCONTs it).
#pragma once

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace cachet_bench {

class redis_child {
 public:
  redis_child() : port_(free_port()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cachet-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    start();
  }
  redis_child(const redis_child&) = delete;
  redis_child& operator=(const redis_child&) = delete;
  ~redis_child() { stop(); }

  std::string socket() const { return (dir_ / "redis.sock").string(); }
  int port() const { return port_; }
  // The server's temporary directory (removed with it): room for a benchmark's scratch files.
  const std::filesystem::path& dir() const { return dir_; }

  // SIGKILLs the server and reaps it; the directory (and the stale socket file) stay. Does nothing
  // if it is not running.
  void kill() noexcept {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  // kill(), then a fresh server (empty: persistence is off) on the same socket and port; waits
  // (at most 10 s) until it answers PING. Throws std::runtime_error if it does not.
  void restart() {
    kill();
    start();
  }

  // SIGSTOP / SIGCONT the server: while paused, connects complete (into the listen backlog) but no
  // command is answered. The destructor's SIGKILL ends a paused server too.
  void pause() noexcept {
    if (pid_ > 0) ::kill(pid_, SIGSTOP);
  }
  void resume() noexcept {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }

  // One command on a fresh unix-socket connection; nullptr if Redis could not be reached. The
  // caller frees the reply (freeReplyObject).
  redisReply* command(const std::vector<std::string>& args) const {
    redisContext* c = redisConnectUnix(socket().c_str());
    if (c == nullptr) return nullptr;
    redisReply* r = nullptr;
    if (c->err == 0) {
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (const std::string& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      r = static_cast<redisReply*>(
          redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
    }
    redisFree(c);
    return r;
  }

 private:
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
  }
  // Forks redis-server on dir_'s socket and port_, then waits (at most 10 s) for PING. On failure
  // kills it, removes the directory and throws.
  void start() {
    std::vector<std::string> args{"redis-server",
                                  "--port",
                                  std::to_string(port_),
                                  "--bind",
                                  "127.0.0.1",
                                  "--unixsocket",
                                  socket(),
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--logfile",
                                  (dir_ / "redis.log").string()};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) {
      stop();
      throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 1000; ++i) {
      if (redisReply* r = command({"PING"})) {
        freeReplyObject(r);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop();
    throw std::runtime_error("redis-server did not start (is it in PATH?)");
  }
  void stop() noexcept {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int port_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

}  // namespace cachet_bench
