// EtcdCoordinator: the Coordinator port over etcd's v3 JSON gateway (paths /v3/kv/range,
// /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke, /v3/watch,
// /v3/maintenance/status: stable from etcd 3.4 through 3.6). Keys and values travel base64; a
// failed txn's JSON omits "succeeded" (read as false); int64 fields arrive as JSON strings.
//
// Connections: one keep-alive HTTP/1.1 connection per calling thread and endpoint, reused; TLS
// with a client certificate when configured (mTLS to the member). A call goes to the preferred
// endpoint (the appliance's local member) and fails over to the next one only when the request
// certainly did not reach the first (connect refused or timed out); once sent, a lost answer is
// HaErrc::outcome_unknown and only idempotent calls (range, lease keepalive/revoke, status) are
// retried on another endpoint.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "signet/core/logger.hpp"
#include "signet/ha/coordinator.hpp"

namespace signet::ha {

struct EtcdEndpoint {
    std::string name;  // member name, for status and logs
    std::string host = "127.0.0.1";
    std::uint16_t port = 2379;
};

struct EtcdOptions {
    std::vector<EtcdEndpoint> endpoints;  // first = preferred (the local member)
    bool tls = false;
    std::string ca_file;           // trust anchor for the members' certificates
    std::string client_cert_file;  // PEM, for mutual TLS
    std::string client_key_file;
    Milliseconds connect_timeout{300};
};

// Parses "name=http://127.0.0.1:2379,other=https://10.0.0.2:2379" or "http://host:port,..."
// (names default to the host:port). invalid_argument names the bad entry.
[[nodiscard]] Result<std::vector<EtcdEndpoint>> parse_endpoints(const std::string& text,
                                                                bool* tls = nullptr);

// Thread-safe: any number of threads may call concurrently. A start-up failure (no endpoints, a
// TLS file that cannot be loaded) throws ErrorException(invalid_argument) naming it.
[[nodiscard]] std::shared_ptr<Coordinator> make_etcd_coordinator(
    EtcdOptions options, std::shared_ptr<Logger> logger = null_logger());

}  // namespace signet::ha
