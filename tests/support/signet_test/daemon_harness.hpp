// The real signetd as a child process, for the standalone-appliance integration tests. Each
// SignetDaemon owns a private var directory prepared by scripts/dev-setup (its own SoftHSM token
// directory, random PINs, signetd.toml with listen = 127.0.0.1:0, SQLite store under data/), so
// every test runs against a real token and a real database file of its own.
//
// Every wait here is bounded. The destructor SIGKILLs a child that is still running, and the child
// also dies with the thread that started it (PR_SET_PDEATHSIG): start daemons from the test's main
// thread, never from a short-lived worker thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "signet/web/client.hpp"
#include "signet_test/process.hpp"

namespace signet::test {

using namespace std::chrono_literals;

// Paths compiled in by CMake (SIGNETD_PATH, SIGNETCTL_PATH, SIGNET_SOURCE_DIR).
[[nodiscard]] std::string signetd_path();
[[nodiscard]] std::string signetctl_path();
[[nodiscard]] std::filesystem::path source_dir();

// Runs signetctl with `args`; bounded.
[[nodiscard]] ProcessOutcome run_signetctl(const std::vector<std::string>& args,
                                           std::chrono::milliseconds bound = 60s);

struct DaemonOptions {
    // Extra command-line flags after --config (e.g. "--worker-threads", "4").
    std::vector<std::string> flags;
    // How long start() waits for "listening" and then for /v1/health/ready to answer 200.
    std::chrono::milliseconds ready_timeout = 60s;
};

class SignetDaemon {
public:
    // Creates the var directory and runs scripts/dev-setup in it; does not start signetd.
    // Throws std::runtime_error (with dev-setup's output) on failure.
    explicit SignetDaemon(DaemonOptions options = {});
    // SIGKILLs a running child, reaps it, removes the var directory (kept when the environment
    // has SIGNET_KEEP_TEST_DIRS, for post-mortems).
    ~SignetDaemon();
    SignetDaemon(const SignetDaemon&) = delete;
    SignetDaemon& operator=(const SignetDaemon&) = delete;

    // Sets `key = value_toml` in `[section]` of signetd.toml (value in TOML syntax, e.g. "4096" or
    // "\"debug\""), adding the section when missing. Takes effect at the next start().
    void set_option(const std::string& section, const std::string& key,
                    const std::string& value_toml);
    // Appends raw text to signetd.toml (for tests of invalid configurations).
    void append_config(const std::string& text);

    // Spawns signetd, parses its stdout (URL, certificate fingerprint, setup token) and waits for
    // /v1/health/ready = 200 (with wait_ready = false: only until it is listening). Throws
    // std::runtime_error with the daemon's log when it exits or is not ready within the bound (the
    // child is killed then).
    void start(bool wait_ready = true);
    // Polls /v1/health/ready until 200 or the bound; true when ready.
    [[nodiscard]] bool wait_ready(std::chrono::milliseconds bound);
    // SIGTERM, then waits up to `bound`; SIGKILLs after the bound (status timed_out).
    ExitStatus stop(std::chrono::milliseconds bound = 30s);
    // SIGKILL and reap: a crash at an arbitrary instant.
    void kill9();
    // stop() (when running) and start() on the same var directory.
    void restart();
    // Sends `sig` without waiting.
    void send_signal(int sig) const;
    // Waits up to `bound` for the child to exit by itself; nullopt when it is still running.
    [[nodiscard]] std::optional<ExitStatus> wait_exit(std::chrono::milliseconds bound);
    [[nodiscard]] bool running() const noexcept { return pid_ > 0; }

    // Runs another signetd on this var directory to completion (bounded): for start-up refusals.
    [[nodiscard]] ProcessOutcome run_another(const std::vector<std::string>& extra_flags = {},
                                             std::chrono::milliseconds bound = 60s) const;

    [[nodiscard]] const std::filesystem::path& var_dir() const noexcept { return var_; }
    [[nodiscard]] std::filesystem::path data_dir() const { return var_ / "data"; }
    [[nodiscard]] std::filesystem::path db_path() const { return data_dir() / "signet.db"; }
    [[nodiscard]] std::filesystem::path config_path() const { return var_ / "signetd.toml"; }
    [[nodiscard]] std::filesystem::path pin_file() const { return var_ / "pin"; }
    [[nodiscard]] std::filesystem::path softhsm_conf() const { return var_ / "softhsm2.conf"; }

    // From the last start()'s stdout.
    [[nodiscard]] const std::string& url() const noexcept { return url_; }
    [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
    [[nodiscard]] const std::string& fingerprint() const noexcept { return fingerprint_; }
    [[nodiscard]] const std::optional<std::string>& setup_token() const noexcept {
        return setup_token_;
    }
    [[nodiscard]] const std::string& stdout_text() const noexcept { return stdout_; }
    // Everything every run wrote to stderr (the structured log).
    [[nodiscard]] std::string log() const;

    // Loopback client options pinned to the certificate printed at start-up.
    [[nodiscard]] web::ClientOptions client_options(std::chrono::milliseconds timeout = 60s) const;

private:
    [[nodiscard]] std::vector<std::string> command(const std::vector<std::string>& extra) const;
    [[nodiscard]] std::map<std::string, std::string> environment() const;
    // Reads whatever stdout has within `wait` and parses complete lines.
    void pump_stdout(std::chrono::milliseconds wait);
    void parse_line(const std::string& line);
    [[nodiscard]] bool ready_now() const;
    void reap_after_kill();
    void close_stdout() noexcept;

    DaemonOptions options_;
    std::filesystem::path var_;
    pid_t pid_ = -1;
    int stdout_fd_ = -1;
    std::string stdout_, partial_;
    std::string url_, fingerprint_;
    std::uint16_t port_ = 0;
    bool tls_ = true;
    std::optional<std::string> setup_token_;
};

}  // namespace signet::test
