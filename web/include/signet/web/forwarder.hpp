// Forwarding of signing requests to the paired appliance over mutual TLS (docs/ha.md,
// "Forwarding"): the hot standby sends them to the active, and in dual-active an appliance sends
// a request for a key only the peer's HSM holds to the peer. The client's credentials stay on the
// appliance that received them: the peer is told which client was authenticated here
// (X-Signet-Forwarded-Caller) and believes it only on a connection that presents this
// appliance's TLS certificate. The peer's answer goes back as it is, with X-Signet-Served-By.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"
#include "signet/web/http.hpp"
#include "signet/web/metrics.hpp"
#include "signet/web/service.hpp"

struct ssl_ctx_st;

namespace signet::web {

inline constexpr std::string_view kForwardedCallerHeader = "X-Signet-Forwarded-Caller";
inline constexpr std::string_view kForwardedForHeader = "X-Signet-Forwarded-For";
inline constexpr std::string_view kServedByHeader = "X-Signet-Served-By";

struct ForwarderOptions {
    // Presents this appliance's certificate and HSM-backed key to the peer.
    std::function<Result<void>(ssl_ctx_st*)> tls_identity;
    // Bounds one forwarded request end to end (connect, TLS, the peer's work, the answer).
    std::chrono::milliseconds timeout{10'000};
    std::size_t max_idle = 16;  // kept-alive connections to one peer
    // Forwards in flight at once; beyond it 503 peer_busy, so that a peer that hangs cannot hold
    // every worker of this appliance.
    std::size_t max_in_flight = 4;
    std::shared_ptr<Logger> logger;
    std::shared_ptr<Registry> metrics;  // signet_ha_forwarded_total{peer,outcome}
};

// Thread-safe: each call takes a kept-alive connection to the peer from a pool (or opens one).
class PeerForwarder {
public:
    explicit PeerForwarder(ForwarderOptions options);
    ~PeerForwarder();
    PeerForwarder(const PeerForwarder&) = delete;
    PeerForwarder& operator=(const PeerForwarder&) = delete;

    // Sends `req` (method, target, body) to `to` on behalf of `caller` and returns the peer's
    // answer. If the peer cannot be reached (nothing was sent): 503 peer_unreachable. If the
    // request was sent but no answer came: 502 peer_outcome_unknown, because the peer may have
    // signed (a nonce it took is then spent, never issued again). 503 peer_busy when
    // max_in_flight forwards are already waiting.
    [[nodiscard]] Response forward(const PeerRoute& to, const Request& req, const Caller& caller);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace signet::web
