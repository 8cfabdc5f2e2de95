// PairMembers: how the appliances of a pair reach each other. Each appliance publishes its API URL
// and its TLS certificate's fingerprint at <prefix>appliances/<name> when it starts; a thread reads
// the peers' records every second, so lookups (asked on the I/O thread when routing a request)
// never wait on etcd. The fingerprint pins the peer in both directions of a forwarded request:
// the forwarder accepts only that server certificate, and a request that claims to come from the
// peer is believed only on a connection presenting it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "signet/core/logger.hpp"
#include "signet/ha/coordinator.hpp"

namespace signet::daemon {

struct PairMember {
    std::string name;
    std::string url;
    std::string tls_sha256;  // lower-case hex, no separators
};

class PairMembers {
public:
    PairMembers(std::shared_ptr<ha::Coordinator> etcd, std::string prefix, std::string self,
                ha::Milliseconds timeout, std::shared_ptr<Logger> logger);
    ~PairMembers();  // stop()
    PairMembers(const PairMembers&) = delete;
    PairMembers& operator=(const PairMembers&) = delete;

    // Writes this appliance's record, reads the others' and starts the refresh thread.
    [[nodiscard]] Result<void> publish(const std::string& url, const std::string& tls_sha256);
    void stop();

    // Another appliance's record, as of the last refresh (at most about a second old).
    [[nodiscard]] std::optional<PairMember> find(const std::string& name) const;
    // The other appliance whose certificate has this fingerprint (any case, ':' allowed). On a
    // miss the records are read again at once (at most every 500 ms): a peer that re-joined with a
    // new certificate is known from its first forwarded request. May wait on etcd: not for the
    // I/O thread.
    [[nodiscard]] std::optional<PairMember> by_certificate(const std::string& sha256);

private:
    [[nodiscard]] Result<void> refresh();
    void loop();

    const std::shared_ptr<ha::Coordinator> etcd_;
    const std::string prefix_;  // <pair prefix>appliances/
    const std::string fenced_;  // <pair prefix>fenced/ (rejoin.hpp)
    const std::string self_;
    const ha::Milliseconds timeout_;
    const std::shared_ptr<Logger> logger_;
    mutable std::mutex mu_;
    std::map<std::string, PairMember> peers_;  // by name, this appliance and fenced ones excluded
    std::int64_t revision_ = 0;                // etcd revision peers_ was read at; mu_
    bool stopping_ = false;                    // mu_
    std::chrono::steady_clock::time_point last_miss_refresh_{};  // mu_
    std::condition_variable cv_;
    std::thread thread_;
};

// "AB:cd:.." -> "abcd..".
[[nodiscard]] std::string plain_fingerprint(const std::string& sha256);

}  // namespace signet::daemon
