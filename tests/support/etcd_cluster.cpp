#include "signet_test/etcd_cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "signet/ha/etcd_coordinator.hpp"
#include "signet_test/process.hpp"

namespace signet::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kEtcdBinary = "/usr/bin/etcd";
constexpr auto kStartBound = 15s;  // a 3-member cluster elects in ~1 s here; 15 s is "broken"
constexpr auto kPollStep = 50ms;

std::runtime_error failure(const std::string& what) {
    return std::runtime_error("etcd cluster: " + what + " (" + std::strerror(errno) + ")");
}

// RAII for a file descriptor.
class Fd {
public:
    explicit Fd(int fd = -1) noexcept : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    [[nodiscard]] int get() const noexcept { return fd_; }
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_;
};

// A free loopback port not handed to another member of this cluster yet. Another process may
// take it before etcd binds it; the caller retries the start on "address already in use".
std::uint16_t free_port(std::set<std::uint16_t>& taken) {
    for (int tries = 0; tries < 100; ++tries) {
        const auto port = free_loopback_port();
        if (taken.insert(port).second) return port;
    }
    throw std::runtime_error("etcd cluster: no free loopback port");
}

bool port_accepts(std::uint16_t port) {
    Fd s(::socket(AF_INET, SOCK_STREAM, 0));
    if (s.get() < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return ::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

// Runs a tool (openssl, curl) to completion within `timeout`; returns its stdout. Throws with its
// stderr when it fails.
std::string run_tool(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    const ProcessOutcome r = run_process(argv, {}, timeout);
    if (!r.status.exited_with(0)) {
        throw std::runtime_error("etcd cluster: " + argv[0] + " failed (" + r.status.describe() +
                                 "): " + r.err);
    }
    return r.out;
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

EtcdCluster::EtcdCluster(EtcdClusterOptions options)
    : options_(std::move(options)), dir_("signet-etcd") {
    if (options_.members == 0) throw std::invalid_argument("etcd cluster: zero members");
    static std::atomic<unsigned> counter{0};
    cluster_token_ = "signet-" + std::to_string(::getpid()) + "-" +
                     std::to_string(counter.fetch_add(1)) + "-" +
                     std::to_string(Clock::now().time_since_epoch().count());
    members_.resize(options_.members);
    for (std::size_t i = 0; i < members_.size(); ++i) {
        auto& m = members_[i];
        m.name = options_.name_prefix + std::to_string(i);
        m.data_dir = dir_.path() / (m.name + ".etcd");
        m.log_file = dir_.path() / (m.name + ".log");
    }
    if (options_.tls) make_certificates();

    // Ports are only probably free (see free_port); a clash shows as a member exiting at once
    // with "address already in use", and the whole start is retried on new ports.
    for (int attempt = 0;; ++attempt) {
        assign_ports();
        for (std::size_t i = 0; i < members_.size(); ++i) spawn(i, true);
        const auto deadline = Clock::now() + kStartBound;
        bool died = false;
        bool port_clash = false;
        while (Clock::now() < deadline) {
            for (std::size_t i = 0; i < members_.size(); ++i) {
                if (members_[i].pid != -1 && exited_early(i)) {
                    died = true;
                    if (read_file(members_[i].log_file).find("address already in use") !=
                        std::string::npos) {
                        port_clash = true;
                    }
                }
            }
            if (died) break;
            if (leader(300ms) >= 0) return;
            std::this_thread::sleep_for(kPollStep);
        }
        std::string tails;
        for (std::size_t i = 0; i < members_.size(); ++i) {
            tails += "\n--- " + members_[i].name + ":\n" + log_tail(i);
        }
        for (std::size_t i = 0; i < members_.size(); ++i) {
            if (members_[i].pid != -1) kill(i);
        }
        if (port_clash && attempt < 2) {
            for (auto& m : members_) std::filesystem::remove_all(m.data_dir);
            continue;
        }
        throw std::runtime_error("etcd cluster: no leader within 15 s" + tails);
    }
}

EtcdCluster::~EtcdCluster() {
    for (auto& m : members_) {
        if (m.pid != -1) kill_and_reap(m.pid);
        m.pid = -1;
    }
}

void EtcdCluster::assign_ports() {
    std::set<std::uint16_t> taken;
    for (auto& m : members_) {
        m.client_port = free_port(taken);
        m.peer_port = free_port(taken);
    }
}

void EtcdCluster::make_certificates() {
    const auto tls = dir_.path() / "tls";
    std::filesystem::create_directories(tls);
    const auto p = [&](const char* name) { return (tls / name).string(); };
    const auto ec_key = std::vector<std::string>{"-newkey", "ec", "-pkeyopt",
                                                 "ec_paramgen_curve:prime256v1", "-nodes"};
    const auto openssl = [&](std::vector<std::string> args) {
        args.insert(args.begin(), "/usr/bin/openssl");
        (void)run_tool(args, 20s);
    };
    auto ca = std::vector<std::string>{"req", "-x509"};
    ca.insert(ca.end(), ec_key.begin(), ec_key.end());
    ca.insert(ca.end(), {"-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "2", "-subj",
                         "/CN=signet-test-etcd-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                         "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    openssl(ca);
    // One certificate for every member: server (client URLs and peer URLs) and client (a member
    // dials its peers with it), valid for 127.0.0.1 only.
    dir_.write_file("tls/server.ext",
                    "subjectAltName=IP:127.0.0.1\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n",
                    std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    dir_.write_file("tls/client.ext",
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=clientAuth\n",
                    std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    int serial = 2;
    for (const char* who : {"server", "client"}) {
        const std::string w = who;
        auto req = std::vector<std::string>{"req"};
        req.insert(req.end(), ec_key.begin(), ec_key.end());
        req.insert(req.end(), {"-keyout", p((w + ".key").c_str()), "-out", p((w + ".csr").c_str()),
                               "-subj", "/CN=signet-test-etcd-" + w});
        openssl(req);
        openssl({"x509", "-req", "-in", p((w + ".csr").c_str()), "-CA", p("ca.crt"), "-CAkey",
                 p("ca.key"), "-set_serial", std::to_string(serial++), "-days", "2", "-out",
                 p((w + ".crt").c_str()), "-extfile", p((w + ".ext").c_str())});
    }
}

void EtcdCluster::spawn(std::size_t i, bool initial, bool force_new) {
    const std::string scheme = options_.tls ? "https" : "http";
    const auto url = [&](std::uint16_t port) {
        return scheme + "://127.0.0.1:" + std::to_string(port);
    };
    std::string initial_cluster;
    for (const auto& m : members_) {
        if (!initial_cluster.empty()) initial_cluster += ",";
        initial_cluster += m.name + "=" + url(m.peer_port);
    }
    auto& m = members_[i];
    std::vector<std::string> argv = {kEtcdBinary,
                                     "--name",
                                     m.name,
                                     "--data-dir",
                                     m.data_dir.string(),
                                     "--listen-client-urls",
                                     url(m.client_port),
                                     "--advertise-client-urls",
                                     url(m.client_port),
                                     "--listen-peer-urls",
                                     url(m.peer_port),
                                     "--initial-advertise-peer-urls",
                                     url(m.peer_port),
                                     "--initial-cluster",
                                     initial_cluster,
                                     "--initial-cluster-state",
                                     initial ? "new" : "existing",
                                     "--initial-cluster-token",
                                     cluster_token_,
                                     "--heartbeat-interval",
                                     std::to_string(options_.heartbeat.count()),
                                     "--election-timeout",
                                     std::to_string(options_.election.count()),
                                     "--pre-vote=true",
                                     "--logger=zap",
                                     "--log-outputs=" + m.log_file.string()};
    if (force_new) argv.emplace_back("--force-new-cluster");
    if (options_.tls) {
        const auto tls = dir_.path() / "tls";
        argv.insert(argv.end(),
                    {"--cert-file", (tls / "server.crt").string(), "--key-file",
                     (tls / "server.key").string(), "--trusted-ca-file", (tls / "ca.crt").string(),
                     "--client-cert-auth", "--peer-cert-file", (tls / "server.crt").string(),
                     "--peer-key-file", (tls / "server.key").string(), "--peer-trusted-ca-file",
                     (tls / "ca.crt").string(), "--peer-client-cert-auth"});
    }
    // Early failures (bad flag, bind error) go to stderr before the logger exists: same file.
    Fd log(::open(m.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (log.get() < 0) throw failure("open " + m.log_file.string());
    m.pid = spawn_process(argv, {}, log.get(), log.get(), "ETCD_");  // etcd reads ETCD_* as flags
}

bool EtcdCluster::exited_early(std::size_t i) {
    auto& m = members_.at(i);
    int st = 0;
    if (m.pid != -1 && ::waitpid(m.pid, &st, WNOHANG) == m.pid) {
        m.pid = -1;
        return true;
    }
    return false;
}

std::string EtcdCluster::endpoint(std::size_t i) const {
    const auto& m = members_.at(i);
    return m.name + "=" + (options_.tls ? "https" : "http") +
           "://127.0.0.1:" + std::to_string(m.client_port);
}

std::string EtcdCluster::endpoints() const {
    std::string out;
    for (std::size_t i = 0; i < members_.size(); ++i) {
        if (i > 0) out += ",";
        out += endpoint(i);
    }
    return out;
}

std::filesystem::path EtcdCluster::ca_file() const { return dir_.path() / "tls" / "ca.crt"; }
std::filesystem::path EtcdCluster::client_cert_file() const {
    return dir_.path() / "tls" / "client.crt";
}
std::filesystem::path EtcdCluster::client_key_file() const {
    return dir_.path() / "tls" / "client.key";
}

void EtcdCluster::kill(std::size_t i) {
    auto& m = members_.at(i);
    if (m.pid == -1) return;
    kill_and_reap(m.pid);
    m.pid = -1;
}

void EtcdCluster::pause(std::size_t i) {
    const auto& m = members_.at(i);
    if (m.pid == -1 || ::kill(m.pid, SIGSTOP) != 0) {
        throw std::logic_error("etcd cluster: pause of a member that is not running");
    }
}

void EtcdCluster::resume(std::size_t i) {
    const auto& m = members_.at(i);
    if (m.pid == -1 || ::kill(m.pid, SIGCONT) != 0) {
        throw std::logic_error("etcd cluster: resume of a member that is not running");
    }
}

void EtcdCluster::restart(std::size_t i) {
    if (members_.at(i).pid != -1) {
        throw std::logic_error("etcd cluster: restart of a member that is running");
    }
    spawn(i, false);
    wait_accepting(i);
}

void EtcdCluster::force_new_cluster(std::size_t i) {
    if (members_.at(i).pid != -1) {
        throw std::logic_error("etcd cluster: force_new_cluster of a member that is running");
    }
    spawn(i, false, true);
    wait_accepting(i);
}

void EtcdCluster::wait_accepting(std::size_t i) {
    // Returns once the member accepts client connections, so the caller's next call reaches it.
    const auto deadline = Clock::now() + kStartBound;
    while (!port_accepts(members_[i].client_port)) {
        if (exited_early(i) || Clock::now() >= deadline) {
            const auto tail = log_tail(i);
            kill(i);
            throw std::runtime_error("etcd cluster: " + members_[i].name + " did not come back:\n" +
                                     tail);
        }
        std::this_thread::sleep_for(kPollStep);
    }
}

int EtcdCluster::leader(std::chrono::milliseconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    ha::EtcdOptions opts;
    std::vector<int> index;
    for (std::size_t i = 0; i < members_.size(); ++i) {
        if (members_[i].pid == -1) continue;
        opts.endpoints.push_back({members_[i].name, "127.0.0.1", members_[i].client_port});
        index.push_back(static_cast<int>(i));
    }
    if (index.empty()) return -1;
    opts.tls = options_.tls;
    if (options_.tls) {
        opts.ca_file = ca_file().string();
        opts.client_cert_file = client_cert_file().string();
        opts.client_key_file = client_key_file().string();
    }
    opts.connect_timeout = 200ms;
    const auto coordinator = ha::make_etcd_coordinator(opts);
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        const auto status = coordinator->members(std::clamp(left, 50ms, 500ms));
        for (std::size_t k = 0; k < status.size(); ++k) {
            if (status[k].reachable && status[k].is_leader) return index[k];
        }
        if (Clock::now() + kPollStep >= deadline) return -1;
        std::this_thread::sleep_for(kPollStep);
    }
}

bool EtcdCluster::wait_for_leader(std::chrono::milliseconds timeout) const {
    return leader(timeout) >= 0;
}

std::string EtcdCluster::log_tail(std::size_t i, std::size_t lines) const {
    std::ifstream f(members_.at(i).log_file);
    std::deque<std::string> tail;
    for (std::string line; std::getline(f, line);) {
        tail.push_back(std::move(line));
        if (tail.size() > lines) tail.pop_front();
    }
    std::string out;
    for (const auto& l : tail) out += l + "\n";
    return out;
}

std::string EtcdCluster::post_json(std::size_t i, const std::string& path, const std::string& body,
                                   std::chrono::milliseconds timeout) const {
    const auto& m = members_.at(i);
    const std::string url = std::string(options_.tls ? "https" : "http") +
                            "://127.0.0.1:" + std::to_string(m.client_port) + path;
    const auto seconds = std::max<long long>(1, (timeout.count() + 999) / 1000);
    std::vector<std::string> argv = {"/usr/bin/curl",
                                     "-sS",
                                     "--max-time",
                                     std::to_string(seconds),
                                     "-X",
                                     "POST",
                                     "-H",
                                     "Content-Type: application/json",
                                     "--data-binary",
                                     body};
    if (options_.tls) {
        argv.insert(argv.end(), {"--cacert", ca_file().string(), "--cert",
                                 client_cert_file().string(), "--key", client_key_file().string()});
    }
    argv.push_back(url);
    return run_tool(argv, timeout + 2s);
}

}  // namespace signet::test
