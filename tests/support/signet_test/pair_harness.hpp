// Two real signetd appliances ("a" and "b") in a pair on three real etcd members on loopback: m0
// is a's local member, m1 b's, m2 the witness. Each appliance has its own var directory (SoftHSM
// tokens, PINs, SQLite store) from scripts/dev-setup and lists its local member first. Everything
// is started and stopped by the harness; every wait is bounded.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/etcd_cluster.hpp"

namespace signet::test {

struct PairOptions {
    std::string mode = "hot-standby";  // or "dual-active"
    std::string allocation = "fast";   // or "strict", "dense"
    std::size_t nonce_block = 100;
    std::size_t etcd_members = 3;  // 3: a, b and a witness; 2: no witness
    bool forward = true;  // [ha] forward: requests this appliance cannot serve go to the peer
    int forward_timeout_ms = 0;  // [ha] forward_timeout_ms; 0: the default
};

class TestPair {
public:
    // Starts etcd, then a (waits until it is active, or dual), then b (waits until it answers
    // /v1/ha/status with a role), and completes first-run setup on a. Throws with the logs on
    // failure.
    explicit TestPair(PairOptions options = {});
    ~TestPair();
    TestPair(const TestPair&) = delete;
    TestPair& operator=(const TestPair&) = delete;

    [[nodiscard]] EtcdCluster& etcd() { return *etcd_; }
    [[nodiscard]] SignetDaemon& appliance(std::size_t i) { return i == 0 ? *a_ : *b_; }
    [[nodiscard]] const std::string& name(std::size_t i) const { return names_.at(i); }
    [[nodiscard]] const ClientCredentials& admin() const noexcept { return admin_; }

    // An API client for appliance i with `token` (default: the admin's).
    [[nodiscard]] ApiClient api(std::size_t i, const std::string& token = {}) const;
    // GET /v1/ha/status on appliance i as admin (null json when it does not answer).
    [[nodiscard]] ApiReply ha_status(std::size_t i) const;
    [[nodiscard]] std::string role(std::size_t i) const;  // "" when it does not answer
    // Polls until appliance i reports `role`; false after `bound`.
    [[nodiscard]] bool wait_role(std::size_t i, const std::string& role,
                                 std::chrono::milliseconds bound) const;
    // Polls until appliance i answers ready (it signs); false after `bound`.
    [[nodiscard]] bool wait_signing(std::size_t i, std::chrono::milliseconds bound) const;
    // The pairing ceremony in both directions: POST /v1/ha/pair on each appliance with the other's
    // transport key fingerprint (from GET /v1/ha/status), as an operator would read it off the
    // peer's console. Replicable keys then reach both HSMs.
    void pair_hsms();
    // Creates a replicable key on appliance `i` and waits (bounded) until the other appliance's
    // HSM holds it too (its description lists both holders). Returns the description from `i`.
    json::object create_replicated_key(std::size_t i, const std::string& algorithm,
                                       const json::object& policy = {});
    // A signer client created on a, returned once b accepts its token too (the client record has
    // reached b through etcd).
    [[nodiscard]] ClientCredentials create_signer(const std::string& name = "app");
    // Both logs and the etcd members' tails, for failure messages.
    [[nodiscard]] std::string logs() const;

private:
    void configure(SignetDaemon& d, std::size_t i) const;
    PairOptions options_;
    std::unique_ptr<EtcdCluster> etcd_;
    std::unique_ptr<SignetDaemon> a_, b_;
    std::vector<std::string> names_{"a", "b"};
    ClientCredentials admin_;
};

}  // namespace signet::test
