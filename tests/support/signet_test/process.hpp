// Child processes for tests: fork/exec with the output on given descriptors, bounded waits, and
// run-to-completion with captured output. Children die with the test process
// (PR_SET_PDEATHSIG), so start them from the test's main thread, never from a short-lived worker.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace signet::test {

using namespace std::chrono_literals;

// How a child process ended.
struct ExitStatus {
    enum class Kind { exited, signaled, timed_out };
    Kind kind = Kind::timed_out;
    int value = -1;  // exit code or signal number
    [[nodiscard]] bool exited_with(int code) const { return kind == Kind::exited && value == code; }
    [[nodiscard]] std::string describe() const;
};

// A finished child process: its status and everything it wrote.
struct ProcessOutcome {
    ExitStatus status;
    std::string out;
    std::string err;
};

// Runs `argv` (argv[0] is a path) to completion with `env` overriding the inherited environment;
// SIGKILLs it when `bound` passes (status.kind == timed_out).
[[nodiscard]] ProcessOutcome run_process(const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& env = {},
                                         std::chrono::milliseconds bound = 60s);

// fork + exec of `argv` (argv[0] is a path) with stdout/stderr on `out_fd`/`err_fd` and stdin on
// /dev/null. The environment is the inherited one less variables starting with `drop_prefix`
// (when not empty), with `env` on top. Throws std::runtime_error when fork fails.
[[nodiscard]] pid_t spawn_process(const std::vector<std::string>& argv,
                                  const std::map<std::string, std::string>& env, int out_fd,
                                  int err_fd, std::string_view drop_prefix = {});
// Waits for `pid` up to `bound`; nullopt while it is still running.
[[nodiscard]] std::optional<ExitStatus> wait_bounded(pid_t pid, std::chrono::milliseconds bound);
// SIGKILL (which also ends a SIGSTOPped process) and reap.
void kill_and_reap(pid_t pid);

// A free TCP port on 127.0.0.1, below the ephemeral range (bound once, then released: another
// test may still take it before the caller binds it, so callers retry on "address already in
// use").
[[nodiscard]] std::uint16_t free_loopback_port();

}  // namespace signet::test
