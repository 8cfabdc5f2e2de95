#include "signet_test/pair_harness.hpp"

#include <stdexcept>
#include <thread>

namespace signet::test {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

void TestPair::configure(SignetDaemon& d, std::size_t i) const {
    const std::uint16_t port = free_loopback_port();
    d.set_option("server", "listen", "\"127.0.0.1:" + std::to_string(port) + "\"");
    d.set_option("ha", "mode", "\"" + options_.mode + "\"");
    d.set_option("ha", "name", "\"" + names_.at(i) + "\"");
    d.set_option("ha", "cluster", "\"test\"");
    // The local member first: m0 for a, m1 for b; then the others.
    std::string endpoints = etcd_->endpoint(i);
    for (std::size_t m = 0; m < etcd_->size(); ++m) {
        if (m != i) endpoints += "," + etcd_->endpoint(m);
    }
    d.set_option("ha", "etcd_endpoints", "\"" + endpoints + "\"");
    d.set_option("ha", "nonce_allocation", "\"" + options_.allocation + "\"");
    d.set_option("ha", "nonce_block", std::to_string(options_.nonce_block));
    d.set_option("ha", "so_pin_file", "\"" + (d.var_dir() / "so-pin").string() + "\"");
    d.set_option("ha", "advertise_url", "\"https://127.0.0.1:" + std::to_string(port) + "\"");
    d.set_option("ha", "forward", options_.forward ? "true" : "false");
    if (options_.forward_timeout_ms > 0) {
        d.set_option("ha", "forward_timeout_ms", std::to_string(options_.forward_timeout_ms));
    }
}

TestPair::TestPair(PairOptions options) : options_(std::move(options)) {
    EtcdClusterOptions eo;
    eo.members = options_.etcd_members;
    etcd_ = std::make_unique<EtcdCluster>(eo);
    a_ = std::make_unique<SignetDaemon>();
    b_ = std::make_unique<SignetDaemon>();
    configure(*a_, 0);
    configure(*b_, 1);
    const std::string first = options_.mode == "dual-active" ? "dual" : "active";
    a_->start(false);
    if (!a_->wait_ready(60s)) {
        throw std::runtime_error("appliance a did not become ready:\n" + logs());
    }
    admin_ = complete_setup(*a_);
    if (!wait_role(0, first, 20s)) throw std::runtime_error("a is not " + first + ":\n" + logs());
    b_->start(false);
    const std::string second = options_.mode == "dual-active" ? "dual" : "standby";
    if (!wait_role(1, second, 60s)) {
        throw std::runtime_error("b did not become " + second + ":\n" + logs());
    }
    // A standby is never "ready"; wait for its HSM self-test by its log line instead.
    const auto deadline = Clock::now() + 60s;
    while (b_->log().find("event=ready") == std::string::npos) {
        if (Clock::now() > deadline) throw std::runtime_error("b's self-test:\n" + logs());
        std::this_thread::sleep_for(50ms);
    }
}

TestPair::~TestPair() = default;

ApiClient TestPair::api(std::size_t i, const std::string& token) const {
    const SignetDaemon& d = i == 0 ? *a_ : *b_;
    return ApiClient(d.client_options(10s), token.empty() ? admin_.token : token);
}

ApiReply TestPair::ha_status(std::size_t i) const {
    const SignetDaemon& d = i == 0 ? *a_ : *b_;
    ApiClient c(d.client_options(3s), admin_.token);
    auto r = c.try_request("GET", "/v1/ha/status");
    if (!r) return ApiReply{};
    return *r;
}

std::string TestPair::role(std::size_t i) const {
    const ApiReply r = ha_status(i);
    if (r.status != 200 || !r.json.is_object()) return {};
    const auto* role = r.json.as_object().if_contains("role");
    return role && role->is_string() ? std::string(role->as_string()) : std::string();
}

bool TestPair::wait_role(std::size_t i, const std::string& role_name,
                         std::chrono::milliseconds bound) const {
    const auto deadline = Clock::now() + bound;
    while (Clock::now() < deadline) {
        if (role(i) == role_name) return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

bool TestPair::wait_signing(std::size_t i, std::chrono::milliseconds bound) const {
    SignetDaemon& d = i == 0 ? *a_ : *b_;
    return d.wait_ready(bound);
}

void TestPair::pair_hsms() {
    for (std::size_t i = 0; i < 2; ++i) {
        const std::size_t peer = 1 - i;
        const ApiReply st = ha_status(peer);
        if (st.status != 200) throw std::runtime_error("no HA status from " + name(peer));
        const std::string fp = str(st.object(), "transport_sha256");
        ApiClient c = api(i);
        const ApiReply r =
            c.post("/v1/ha/pair", json::object{{"peer", name(peer)}, {"transport_sha256", fp}});
        if (r.status != 200 && r.status != 201) {
            throw std::runtime_error("pairing " + name(i) + " -> " + name(peer) +
                                     " failed: " + r.describe() + "\n" + logs());
        }
    }
}

json::object TestPair::create_replicated_key(std::size_t i, const std::string& algorithm,
                                             const json::object& policy) {
    ApiClient admin = api(i);
    json::object key = create_key(admin, algorithm, "replicated", policy, true);
    const std::string id = str(key, "id");
    ApiClient other = api(1 - i);
    const auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline) {
        const ApiReply r = other.get("/v1/keys/" + id);
        if (r.status == 200) {
            const auto* holders = r.object().if_contains("holders");
            if (holders && holders->is_array() && holders->as_array().size() >= 2) return key;
        }
        std::this_thread::sleep_for(50ms);
    }
    throw std::runtime_error("key " + id + " did not reach " + name(1 - i) + "'s HSM:\n" + logs());
}

ClientCredentials TestPair::create_signer(const std::string& client_name) {
    ApiClient admin = api(0);
    const ClientCredentials signer = create_client(admin, client_name, "signer");
    ApiClient on_b = api(1, signer.token);
    const auto deadline = Clock::now() + 20s;
    while (on_b.get("/v1/keys").status != 200) {
        if (Clock::now() > deadline) {
            throw std::runtime_error("client " + signer.id + " did not reach b:\n" + logs());
        }
        std::this_thread::sleep_for(20ms);
    }
    return signer;
}

std::string TestPair::logs() const {
    std::string out = "--- a:\n" + a_->log() + "\n--- b:\n" + (b_ ? b_->log() : "");
    for (std::size_t m = 0; m < etcd_->size(); ++m) {
        out += "\n--- etcd " + etcd_->member(m).name + ":\n" + etcd_->log_tail(m, 10);
    }
    return out;
}

}  // namespace signet::test
