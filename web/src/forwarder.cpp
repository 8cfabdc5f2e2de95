#include "signet/web/forwarder.hpp"

#include <boost/url/parse.hpp>
#include <map>
#include <mutex>
#include <vector>

#include "signet/web/client.hpp"
#include "signet/web/errors.hpp"

namespace signet::web {
namespace {

// Request headers the peer needs to serve the request as this appliance would have.
constexpr std::string_view kPassedRequestHeaders[] = {"Content-Type", "Accept"};
// Answer headers a client may rely on.
constexpr std::string_view kPassedResponseHeaders[] = {"Retry-After", "Location"};

Result<ClientOptions> client_options_for(const PeerRoute& to, const ForwarderOptions& o) {
    const auto url = boost::urls::parse_absolute_uri(to.url);
    if (!url || url->scheme() != "https" || !url->has_port() || url->host().empty()) {
        return make_error(Errc::invalid_argument,
                          "appliance " + to.appliance + " advertises '" + to.url +
                              "': forwarding needs an https://host:port URL");
    }
    ClientOptions c;
    c.host = url->host_address();
    c.port = url->port_number();
    c.tls = true;
    c.pinned_sha256 = to.tls_sha256;
    c.tls_identity = o.tls_identity;
    c.timeout = o.timeout;
    return c;
}

}  // namespace

struct PeerForwarder::Impl {
    explicit Impl(ForwarderOptions o) : opts(std::move(o)) {}

    // An idle connection to `to` (same URL and pin), or a new one.
    Result<std::unique_ptr<HttpClient>> take(const PeerRoute& to, const std::string& pool_key) {
        {
            const std::lock_guard lock(mu);
            auto& idle = pools[pool_key];
            if (!idle.empty()) {
                auto c = std::move(idle.back());
                idle.pop_back();
                return c;
            }
        }
        return std::make_unique<HttpClient>(SIGNET_TRY(client_options_for(to, opts)));
    }

    void give_back(const std::string& pool_key, std::unique_ptr<HttpClient> c) {
        const std::lock_guard lock(mu);
        auto& idle = pools[pool_key];
        if (idle.size() < opts.max_idle) idle.push_back(std::move(c));
    }

    void count(const std::string& peer, const char* outcome) {
        if (opts.metrics) {
            opts.metrics
                ->counter("signet_ha_forwarded_total",
                          "Signing requests forwarded to the paired appliance, by outcome",
                          {"peer", "outcome"})
                .with({peer, outcome})
                .inc();
        }
    }

    Response failure(const PeerRoute& to, const Request& req, const Error& e, bool sent) {
        const std::string where = "appliance " + to.appliance + " at " + to.url;
        if (opts.logger) {
            opts.logger->log(LogLevel::warn, "ha", "forward_failed",
                             {{"peer", to.appliance},
                              {"url", to.url},
                              {"request_id", req.request_id},
                              {"sent", sent ? "yes" : "no"},
                              {"error", e.message()}});
        }
        count(to.appliance, sent ? "outcome_unknown" : "unreachable");
        if (!sent) {
            return error_response(
                ApiError{503, "peer_unreachable",
                         "this appliance cannot serve the request and could not reach " + where +
                             " to forward it (" + e.message() + "); nothing was signed",
                         1},
                req.request_id);
        }
        return error_response(
            ApiError{502,
                     "peer_outcome_unknown",
                     "the request was forwarded to " + where + " but its answer was lost (" +
                         e.message() +
                         "); it may have been signed there, and any nonce it took is spent and "
                         "never issued again",
                     {}},
            req.request_id);
    }

    Response forward(const PeerRoute& to, const Request& req, const Caller& caller) {
        {
            const std::lock_guard lock(mu);
            if (in_flight >= opts.max_in_flight) {
                count(to.appliance, "busy");
                return error_response(
                    ApiError{503, "peer_busy",
                             std::to_string(in_flight) + " requests are already waiting on " +
                                 "appliance " + to.appliance + "; nothing was signed",
                             1},
                    req.request_id);
            }
            ++in_flight;
        }
        struct Done {
            Impl& impl;
            ~Done() {
                const std::lock_guard lock(impl.mu);
                --impl.in_flight;
            }
        } done{*this};
        return send(to, req, caller);
    }

    Response send(const PeerRoute& to, const Request& req, const Caller& caller) {
        const std::string pool_key = to.url + "#" + to.tls_sha256;
        auto client = take(to, pool_key);
        if (!client) return failure(to, req, client.error(), false);
        Headers h;
        for (const auto name : kPassedRequestHeaders) {
            if (auto v = req.header(name)) h[std::string(name)] = std::string(*v);
        }
        h["X-Request-Id"] = req.request_id;
        h[std::string(kForwardedCallerHeader)] = caller.client_id;
        h[std::string(kForwardedForHeader)] = caller.remote;
        auto res = (*client)->request(req.method, req.target, req.body, h);
        if (!res) return failure(to, req, res.error(), (*client)->request_sent());
        give_back(pool_key, std::move(client).value());
        count(to.appliance, "answered");
        Response out;
        out.status = res->status;
        out.content_type = res->content_type;
        out.body = std::move(res->body);
        for (const auto name : kPassedResponseHeaders) {
            if (auto it = res->headers.find(name); it != res->headers.end()) {
                out.headers[std::string(name)] = it->second;
            }
        }
        out.headers[std::string(kServedByHeader)] = to.appliance;
        return out;
    }

    const ForwarderOptions opts;
    std::mutex mu;
    std::map<std::string, std::vector<std::unique_ptr<HttpClient>>> pools;  // guarded by mu
    std::size_t in_flight = 0;                                              // guarded by mu
};

PeerForwarder::PeerForwarder(ForwarderOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

PeerForwarder::~PeerForwarder() = default;

Response PeerForwarder::forward(const PeerRoute& to, const Request& req, const Caller& caller) {
    return impl_->forward(to, req, caller);
}

}  // namespace signet::web
