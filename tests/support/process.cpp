#include "signet_test/process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace signet::test {
namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error failure(const std::string& what) {
    return std::runtime_error(what + ": " + std::strerror(errno));
}

std::vector<std::string> merged_environment(const std::map<std::string, std::string>& over,
                                            std::string_view drop_prefix) {
    std::vector<std::string> out;
    for (char** e = environ; e && *e; ++e) {
        const std::string entry(*e);
        if (over.count(entry.substr(0, entry.find('=')))) continue;
        if (!drop_prefix.empty() && entry.rfind(drop_prefix, 0) == 0) continue;
        out.push_back(entry);
    }
    for (const auto& [k, v] : over) out.push_back(k + "=" + v);
    return out;
}

ExitStatus to_exit_status(int st) {
    if (WIFEXITED(st)) return {ExitStatus::Kind::exited, WEXITSTATUS(st)};
    if (WIFSIGNALED(st)) return {ExitStatus::Kind::signaled, WTERMSIG(st)};
    return {};
}

}  // namespace

// Everything the child touches between fork and exec is prepared before the fork
// (async-signal-safe calls only).
pid_t spawn_process(const std::vector<std::string>& argv,
                    const std::map<std::string, std::string>& env, int out_fd, int err_fd,
                    std::string_view drop_prefix) {
    const std::vector<std::string> env_strings = merged_environment(env, drop_prefix);
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw failure("fork");
    if (pid == 0) {
        // The child must not outlive a test process that dies (ctest timeout, crash).
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        const int in = ::open("/dev/null", O_RDONLY);
        if (in >= 0) ::dup2(in, 0);
        ::dup2(out_fd, 1);
        ::dup2(err_fd, 2);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execve(args[0], args.data(), envp.data());
        ::_exit(127);
    }
    return pid;
}

std::optional<ExitStatus> wait_bounded(pid_t pid, std::chrono::milliseconds bound) {
    const auto deadline = Clock::now() + bound;
    for (;;) {
        int st = 0;
        const pid_t r = ::waitpid(pid, &st, WNOHANG);
        if (r == pid) return to_exit_status(st);
        if (r < 0 && errno != EINTR) return ExitStatus{ExitStatus::Kind::exited, -1};
        if (Clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(10ms);
    }
}

void kill_and_reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    (void)wait_bounded(pid, 10s);  // SIGKILL cannot be ignored; the bound only guards D state
}

std::string ExitStatus::describe() const {
    switch (kind) {
        case Kind::exited: return "exit code " + std::to_string(value);
        case Kind::signaled:
            return "signal " + std::to_string(value) + " (" + strsignal(value) + ")";
        case Kind::timed_out: return "still running when the bound passed (killed)";
    }
    return "?";
}

ProcessOutcome run_process(const std::vector<std::string>& argv,
                           const std::map<std::string, std::string>& env,
                           std::chrono::milliseconds bound) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw failure("pipe2");
    if (::pipe2(err, O_CLOEXEC) != 0) {
        ::close(out[0]);
        ::close(out[1]);
        throw failure("pipe2");
    }
    const pid_t pid = spawn_process(argv, env, out[1], err[1]);
    ::close(out[1]);
    ::close(err[1]);
    ProcessOutcome result;
    const auto deadline = Clock::now() + bound;
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0 && Clock::now() < deadline) {
        if (::poll(fds, 2, 50) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                (i == 0 ? result.out : result.err).append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_fds;
            }
        }
    }
    for (auto& f : fds) {
        if (f.fd >= 0) ::close(f.fd);
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (auto st = wait_bounded(pid, std::max(left, std::chrono::milliseconds(0)))) {
        result.status = *st;
    } else {
        kill_and_reap(pid);
        result.status = {};
    }
    return result;
}

namespace {

// Binds 127.0.0.1:port (0: any) and returns the port bound, or 0 when it is taken.
std::uint16_t try_bind_loopback(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw failure("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    socklen_t len = sizeof addr;
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                       ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    ::close(fd);
    return bound ? ntohs(addr.sin_port) : 0;
}

}  // namespace

std::uint16_t free_loopback_port() {
    // Below Linux's ephemeral range (32768-60999 by default), so that no outgoing connection of a
    // test running alongside takes the port before the caller binds it.
    static std::mutex mu;
    static std::mt19937 pick(std::random_device{}());
    for (int attempt = 0; attempt < 200; ++attempt) {
        std::uint16_t candidate = 0;
        {
            const std::lock_guard lock(mu);
            candidate =
                static_cast<std::uint16_t>(std::uniform_int_distribution<int>(20000, 32000)(pick));
        }
        if (try_bind_loopback(candidate) != 0) return candidate;
    }
    if (const std::uint16_t any = try_bind_loopback(0); any != 0) return any;
    throw std::runtime_error("cannot find a free loopback port");
}

}  // namespace signet::test
