#include "signet_test/daemon_harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace signet::test {

#if !defined(SIGNETD_PATH) || !defined(SIGNETCTL_PATH) || !defined(SIGNET_SOURCE_DIR)
#error "the daemon harness needs SIGNETD_PATH, SIGNETCTL_PATH and SIGNET_SOURCE_DIR"
#endif

std::string signetd_path() { return SIGNETD_PATH; }
std::string signetctl_path() { return SIGNETCTL_PATH; }
std::filesystem::path source_dir() { return SIGNET_SOURCE_DIR; }

namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error failure(const std::string& what) {
    return std::runtime_error(what + ": " + std::strerror(errno));
}

std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

ProcessOutcome run_signetctl(const std::vector<std::string>& args,
                             std::chrono::milliseconds bound) {
    std::vector<std::string> argv{signetctl_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, {}, bound);
}

SignetDaemon::SignetDaemon(DaemonOptions options) : options_(std::move(options)) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/signet-daemon-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw failure("mkdtemp " + tmpl);
    var_ = tmpl;
    const ProcessOutcome setup =
        run_process({"/bin/bash", (source_dir() / "scripts" / "dev-setup").string()},
                    {{"SIGNET_VAR", var_.string()}, {"SIGNET_LISTEN", "127.0.0.1:0"}}, 60s);
    if (!setup.status.exited_with(0)) {
        throw std::runtime_error("scripts/dev-setup failed (" + setup.status.describe() + "):\n" +
                                 setup.out + setup.err);
    }
}

SignetDaemon::~SignetDaemon() {
    if (running()) kill9();
    close_stdout();
    std::error_code ec;
    if (!std::getenv("SIGNET_KEEP_TEST_DIRS")) std::filesystem::remove_all(var_, ec);
}

void SignetDaemon::set_option(const std::string& section, const std::string& key,
                              const std::string& value_toml) {
    std::istringstream in(read_text(config_path()));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    const std::string header = "[" + section + "]";
    const std::string setting = key + " = " + value_toml;
    std::string current;
    std::optional<std::size_t> header_at;
    bool replaced = false;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (starts_with(lines[i], "[")) current = lines[i];
        if (lines[i] == header) header_at = i;
        if (current == header &&
            (starts_with(lines[i], key + " ") || starts_with(lines[i], key + "="))) {
            lines[i] = setting;
            replaced = true;
        }
    }
    if (!replaced && header_at) {
        lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(*header_at) + 1, setting);
    } else if (!replaced) {
        lines.push_back("");
        lines.push_back(header);
        lines.push_back(setting);
    }
    std::ofstream outf(config_path(), std::ios::trunc);
    for (const auto& l : lines) outf << l << "\n";
}

void SignetDaemon::append_config(const std::string& text) {
    std::ofstream(config_path(), std::ios::app) << text;
}

std::vector<std::string> SignetDaemon::command(const std::vector<std::string>& extra) const {
    std::vector<std::string> argv{signetd_path(), "--config", config_path().string()};
    argv.insert(argv.end(), options_.flags.begin(), options_.flags.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}

std::map<std::string, std::string> SignetDaemon::environment() const {
    // The test process may have its own SOFTHSM2_CONF (test::test_hsm()); signetd uses this one.
    return {{"SOFTHSM2_CONF", softhsm_conf().string()}};
}

std::string SignetDaemon::log() const { return read_text(var_ / "signetd.log"); }

void SignetDaemon::close_stdout() noexcept {
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    stdout_fd_ = -1;
}

void SignetDaemon::parse_line(const std::string& line) {
    constexpr std::string_view kListening = "signetd listening on ";
    constexpr std::string_view kFingerprint = "TLS certificate SHA-256: ";
    constexpr std::string_view kToken = "One-time setup token: ";
    if (starts_with(line, kListening)) {
        url_ = line.substr(kListening.size());
        tls_ = starts_with(url_, "https://");
        port_ = static_cast<std::uint16_t>(std::stoi(url_.substr(url_.rfind(':') + 1)));
    } else if (starts_with(line, kFingerprint)) {
        fingerprint_ = line.substr(kFingerprint.size());
    } else if (starts_with(line, kToken)) {
        setup_token_ = line.substr(kToken.size());
    }
}

void SignetDaemon::pump_stdout(std::chrono::milliseconds wait) {
    if (stdout_fd_ < 0) return;
    pollfd p{stdout_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return;
    char buf[4096];
    const ssize_t n = ::read(stdout_fd_, buf, sizeof buf);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_stdout();
        return;
    }
    stdout_.append(buf, static_cast<std::size_t>(n));
    partial_.append(buf, static_cast<std::size_t>(n));
    for (auto nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n')) {
        parse_line(partial_.substr(0, nl));
        partial_.erase(0, nl + 1);
    }
}

web::ClientOptions SignetDaemon::client_options(std::chrono::milliseconds timeout) const {
    web::ClientOptions o;
    o.host = "127.0.0.1";
    o.port = port_;
    o.tls = tls_;
    o.pinned_sha256 = fingerprint_;
    o.timeout = timeout;
    return o;
}

bool SignetDaemon::ready_now() const {
    web::HttpClient client(client_options(2s));
    auto r = client.request("GET", "/v1/health/ready");
    return r && r->status == 200;
}

bool SignetDaemon::wait_ready(std::chrono::milliseconds bound) {
    const auto deadline = Clock::now() + bound;
    while (Clock::now() < deadline) {
        if (ready_now()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

void SignetDaemon::start(bool wait_ready) {
    if (running()) throw std::logic_error("signetd is already running");
    url_.clear();
    fingerprint_.clear();
    setup_token_.reset();
    stdout_.clear();
    partial_.clear();
    port_ = 0;
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw failure("pipe2");
    const int log_fd =
        ::open((var_ / "signetd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        ::close(out[0]);
        ::close(out[1]);
        throw failure("open signetd.log");
    }
    pid_ = spawn_process(command({}), environment(), out[1], log_fd);
    ::close(out[1]);
    ::close(log_fd);
    stdout_fd_ = out[0];
    ::fcntl(stdout_fd_, F_SETFL, ::fcntl(stdout_fd_, F_GETFL) | O_NONBLOCK);

    const auto deadline = Clock::now() + options_.ready_timeout;
    while (Clock::now() < deadline) {
        pump_stdout(50ms);
        if (auto st = wait_bounded(pid_, 0ms)) {
            pid_ = -1;
            close_stdout();
            throw std::runtime_error("signetd ended (" + st->describe() +
                                     ") before it was ready; stdout:\n" + stdout_ + "\nlog:\n" +
                                     log());
        }
        const bool announced = !url_.empty() && (!tls_ || !fingerprint_.empty());
        if (announced && !wait_ready) {
            pump_stdout(0ms);
            return;
        }
        if (announced && ready_now()) {
            // The setup token line is written with the others in one flush; drain what is left.
            pump_stdout(0ms);
            return;
        }
        if (announced) std::this_thread::sleep_for(50ms);
    }
    kill9();
    throw std::runtime_error("signetd was not ready within the bound; stdout:\n" + stdout_ +
                             "\nlog:\n" + log());
}

ExitStatus SignetDaemon::stop(std::chrono::milliseconds bound) {
    if (!running()) throw std::logic_error("signetd is not running");
    ::kill(pid_, SIGTERM);
    auto st = wait_bounded(pid_, bound);
    if (!st) {
        kill9();
        return {};
    }
    pid_ = -1;
    close_stdout();
    return *st;
}

void SignetDaemon::kill9() {
    if (!running()) return;
    kill_and_reap(pid_);
    pid_ = -1;
    close_stdout();
}

void SignetDaemon::restart() {
    if (running()) {
        const ExitStatus st = stop();
        if (!st.exited_with(0)) throw std::runtime_error("signetd stop: " + st.describe());
    }
    start();
}

void SignetDaemon::send_signal(int sig) const {
    if (running()) ::kill(pid_, sig);
}

std::optional<ExitStatus> SignetDaemon::wait_exit(std::chrono::milliseconds bound) {
    if (!running()) throw std::logic_error("signetd is not running");
    auto st = wait_bounded(pid_, bound);
    if (st) {
        pid_ = -1;
        close_stdout();
    }
    return st;
}

ProcessOutcome SignetDaemon::run_another(const std::vector<std::string>& extra_flags,
                                         std::chrono::milliseconds bound) const {
    return run_process(command(extra_flags), environment(), bound);
}

}  // namespace signet::test
