// Real etcd members (Debian's /usr/bin/etcd) on 127.0.0.1 for HA tests: each member with its own
// client and peer ports and its own data directory under a temporary directory, started as child
// processes and stopped by PID (SIGKILL in the destructor). Nothing else on the machine is touched.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "signet_test/temp_dir.hpp"

namespace signet::test {

struct EtcdClusterOptions {
    std::size_t members = 3;
    std::chrono::milliseconds heartbeat{50};
    std::chrono::milliseconds election{500};  // etcd's minimum lease TTL is 1.5 x this, rounded up
    bool tls = false;  // mutual TLS on client and peer URLs with a CA made for the cluster
    std::string name_prefix = "m";
};

struct EtcdMember {
    std::string name;  // "<prefix><index>"
    std::uint16_t client_port = 0;
    std::uint16_t peer_port = 0;
    std::filesystem::path data_dir;
    std::filesystem::path log_file;
    pid_t pid = -1;  // -1: not running
};

class EtcdCluster {
public:
    // Starts every member and waits (bounded, ~15 s) until the cluster has a leader; throws with
    // the members' log tails on failure.
    explicit EtcdCluster(EtcdClusterOptions options = {});
    ~EtcdCluster();  // SIGKILLs every member still running and removes the directories
    EtcdCluster(const EtcdCluster&) = delete;
    EtcdCluster& operator=(const EtcdCluster&) = delete;

    [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
    [[nodiscard]] const EtcdMember& member(std::size_t i) const { return members_.at(i); }
    // "m0=http://127.0.0.1:P0,m1=..." (https with tls), in member order, or for one member.
    [[nodiscard]] std::string endpoints() const;
    [[nodiscard]] std::string endpoint(std::size_t i) const;
    // With tls: the CA and a client certificate/key the members accept.
    [[nodiscard]] std::filesystem::path ca_file() const;
    [[nodiscard]] std::filesystem::path client_cert_file() const;
    [[nodiscard]] std::filesystem::path client_key_file() const;

    void kill(std::size_t i);     // SIGKILL and reap
    void pause(std::size_t i);    // SIGSTOP
    void resume(std::size_t i);   // SIGCONT
    void restart(std::size_t i);  // start a killed member again on its data directory
    // Starts killed member i again as a one-member cluster on its data directory
    // (--force-new-cluster): what an operator does on the survivor of a pair without a witness.
    void force_new_cluster(std::size_t i);
    // Index of the current leader among running members, asked over HTTP; -1 when none answers
    // within `timeout`.
    [[nodiscard]] int leader(std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
    // Waits until a leader exists (bounded by `timeout`); false when none appeared.
    [[nodiscard]] bool wait_for_leader(std::chrono::milliseconds timeout) const;
    // Last lines of member i's log (for failure messages).
    [[nodiscard]] std::string log_tail(std::size_t i, std::size_t lines = 20) const;
    // POSTs a JSON body to member i's gateway (with the client certificate under tls) with curl,
    // for calls the Coordinator port does not offer (e.g. /v3/kv/compaction); returns the
    // response body. Throws when curl fails or runs past `timeout`.
    [[nodiscard]] std::string post_json(
        std::size_t i, const std::string& path, const std::string& body,
        std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

private:
    void spawn(std::size_t i, bool initial, bool force_new = false);
    void wait_accepting(std::size_t i);
    void assign_ports();
    void make_certificates();
    [[nodiscard]] bool exited_early(std::size_t i);  // reaps member i if it has exited
    EtcdClusterOptions options_;
    TempDir dir_;
    std::string cluster_token_;  // unique per cluster, so members of two clusters never join
    std::vector<EtcdMember> members_;
};

}  // namespace signet::test
