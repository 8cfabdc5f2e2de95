// EtcdCoordinator: unary calls with failover and outcome classification, a keep-alive connection
// pool per member, member status. The wire format lives in etcd_json, the transport in etcd_http,
// watches in etcd_watch.
#include "signet/ha/etcd_coordinator.hpp"

#include <mutex>
#include <optional>
#include <thread>

#include "etcd_http.hpp"
#include "etcd_json.hpp"
#include "etcd_watch.hpp"

namespace signet::ha {
namespace {

namespace json = boost::json;
using detail::HttpConnection;
using detail::SteadyClock;

// A pooled connection idle for longer than this is not trusted with a non-idempotent request:
// had the member closed it meanwhile, a failed write could not tell whether the request got in.
constexpr auto kMaxIdleForMutation = std::chrono::seconds(2);
constexpr std::size_t kMaxPooledPerEndpoint = 8;

enum class CallKind {
    read_only,   // no effect on the store: resent freely, ambiguity reads as unavailable
    idempotent,  // has an effect, but a repeat is harmless: resent on another member
    mutating,    // never resent once it may have reached a member
};

struct Call {
    const char* name;
    const char* path;
    CallKind kind;
};

constexpr Call kRange{"range", "/v3/kv/range", CallKind::read_only};
constexpr Call kTxn{"txn", "/v3/kv/txn", CallKind::mutating};
constexpr Call kGrant{"lease_grant", "/v3/lease/grant", CallKind::mutating};
constexpr Call kKeepalive{"lease_keepalive", "/v3/lease/keepalive", CallKind::idempotent};
constexpr Call kRevoke{"lease_revoke", "/v3/lease/revoke", CallKind::idempotent};
constexpr Call kStatus{"status", "/v3/maintenance/status", CallKind::read_only};

// What one attempt on one member says about the request.
enum class Fate {
    ok,
    not_sent,  // never reached the member: any call may go to the next one
    unknown,   // reached it (maybe), no trustworthy answer: may have been applied
    refused,   // the member answered that it did not apply it and cannot now (no leader, ...)
    rejected,  // a definitive answer (bad request, lease not found, compacted): final
};

struct Attempt {
    Fate fate = Fate::unknown;
    json::value doc;
    std::optional<Error> error;
};

bool contains(const std::string& s, std::string_view part) {
    return s.find(part) != std::string::npos;
}

// Maps a gateway error to what it proves. Only errors etcd raises before proposing (or at apply
// time without changing the store) count as "not applied"; every other one, notably "request
// timed out" (the proposal may still commit), leaves the outcome unknown.
Attempt classify(const detail::GatewayError& gw, const std::string& where) {
    Attempt a;
    const std::string ctx = where + ": " + gw.message;
    const auto reject = [&](auto code) {
        a.fate = Fate::rejected;
        a.error = make_error(code, ctx);
    };
    if (contains(gw.message, "requested lease not found")) {
        reject(HaErrc::lease_not_found);
    } else if (contains(gw.message, "required revision has been compacted")) {
        reject(HaErrc::compacted);
    } else if (gw.grpc_code == 3 || gw.grpc_code == 11) {  // InvalidArgument, OutOfRange
        reject(Errc::invalid_argument);
    } else if (gw.grpc_code == 7) {  // PermissionDenied
        reject(Errc::permission_denied);
    } else if (gw.grpc_code == 16) {  // Unauthenticated
        reject(Errc::unauthenticated);
    } else if (contains(gw.message, "etcdserver: no leader") ||
               contains(gw.message, "raft proposal dropped") ||
               contains(gw.message, "too many requests")) {
        a.fate = Fate::refused;
        a.error = make_error(Errc::unavailable, ctx);
    } else {
        a.fate = Fate::unknown;
        a.error = make_error(HaErrc::outcome_unknown, ctx);
    }
    return a;
}

// The error a call returns after its last attempt.
Error final_error(const Call& call, const Attempt& a) {
    Error e = a.error.value_or(make_error(Errc::unavailable, std::string("etcd ") + call.name));
    if (a.fate == Fate::not_sent || a.fate == Fate::refused) {
        e.code = make_error_code(Errc::unavailable);
    } else if (a.fate == Fate::unknown) {
        // A read that went unanswered changed nothing: "could not reach a member".
        e.code = call.kind == CallKind::read_only ? make_error_code(Errc::unavailable)
                                                  : make_error_code(HaErrc::outcome_unknown);
    }
    return e;
}

// Idle keep-alive connections to one member. A connection is used by one thread at a time: it
// is taken out of the pool for a call and put back after a complete answer.
class EndpointPool {
public:
    std::unique_ptr<HttpConnection> take(std::optional<SteadyClock::duration> max_idle) {
        std::lock_guard lock(mu_);
        while (!idle_.empty()) {
            auto entry = std::move(idle_.back());
            idle_.pop_back();
            if (max_idle && SteadyClock::now() - entry.idle_since > *max_idle) continue;
            return std::move(entry.conn);
        }
        return nullptr;
    }
    void give(std::unique_ptr<HttpConnection> conn) {
        if (!conn || !conn->is_open()) return;
        std::lock_guard lock(mu_);
        if (idle_.size() >= kMaxPooledPerEndpoint) return;
        idle_.push_back({std::move(conn), SteadyClock::now()});
    }

private:
    struct Entry {
        std::unique_ptr<HttpConnection> conn;
        SteadyClock::time_point idle_since;
    };
    std::mutex mu_;
    std::vector<Entry> idle_;  // guarded by mu_; most recently used last
};

class EtcdCoordinator final : public Coordinator {
public:
    EtcdCoordinator(EtcdOptions options, std::shared_ptr<Logger> logger,
                    std::shared_ptr<boost::asio::ssl::context> tls)
        : options_(std::move(options)),
          logger_(logger ? std::move(logger) : null_logger()),
          tls_(std::move(tls)),
          pools_(options_.endpoints.size()) {}

    Result<RangeResponse> range(const std::string& key, const std::string& range_end,
                                Milliseconds timeout) override {
        auto doc = SIGNET_TRY(call(kRange, detail::range_request_json(key, range_end), timeout));
        return detail::parse_range_response(doc);
    }

    Result<TxnResponse> txn(const TxnRequest& request, Milliseconds timeout) override {
        auto doc = SIGNET_TRY(call(kTxn, detail::txn_request_json(request), timeout));
        auto parsed = detail::parse_txn_response(doc, request);
        // The member answered 200: the txn ran, but an answer we cannot read says nothing
        // about which branch, so the caller must treat it as maybe applied.
        if (!parsed) return make_error(HaErrc::outcome_unknown, parsed.error().context);
        return parsed;
    }

    Result<Lease> lease_grant(Milliseconds ttl, Milliseconds timeout) override {
        // etcd grants whole seconds: round up so the lease lives at least as long as asked.
        const auto seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
        auto doc = SIGNET_TRY(call(kGrant, detail::lease_grant_json(seconds), timeout));
        auto lease = detail::parse_lease_grant_response(doc);
        if (!lease) return make_error(HaErrc::outcome_unknown, lease.error().context);
        return lease;
    }

    Result<Milliseconds> lease_keepalive(std::int64_t lease_id, Milliseconds timeout) override {
        auto doc = SIGNET_TRY(call(kKeepalive, detail::lease_id_json(lease_id), timeout));
        const auto ttl = SIGNET_TRY(detail::parse_keepalive_ttl_seconds(doc));
        // The gateway answers a keepalive for a lease that is gone with TTL omitted (0).
        if (ttl <= 0) {
            return make_error(HaErrc::lease_not_found,
                              "etcd lease_keepalive: lease " + std::to_string(lease_id));
        }
        return Milliseconds(ttl * 1000);
    }

    Result<void> lease_revoke(std::int64_t lease_id, Milliseconds timeout) override {
        (void)SIGNET_TRY(call(kRevoke, detail::lease_id_json(lease_id), timeout));
        return ok();
    }

    Result<std::unique_ptr<Watch>> watch(const std::string& key, const std::string& range_end,
                                         std::int64_t start_revision,
                                         WatchHandlers handlers) override {
        detail::WatchTarget target{options_.endpoints, tls_, logger_, options_.connect_timeout};
        return detail::start_watch(target, key, range_end, start_revision, std::move(handlers));
    }

    std::vector<MemberStatus> members(Milliseconds timeout) override {
        std::vector<MemberStatus> out(options_.endpoints.size());
        std::vector<std::thread> threads;
        threads.reserve(out.size());
        // In parallel, so one stopped member costs one timeout, not one per member.
        for (std::size_t i = 0; i < out.size(); ++i) {
            threads.emplace_back([this, i, timeout, &out] { out[i] = status_of(i, timeout); });
        }
        for (auto& t : threads) t.join();
        return out;
    }

private:
    std::string where(const Call& call, std::size_t i) const {
        const auto& ep = options_.endpoints[i];
        return std::string("etcd ") + call.name + " at " + ep.name + " " + ep.host + ":" +
               std::to_string(ep.port);
    }

    Result<json::value> call(const Call& c, const std::string& body, Milliseconds timeout) {
        const auto deadline = SteadyClock::now() + timeout;
        Attempt last;
        last.fate = Fate::not_sent;
        last.error = make_error(Errc::unavailable, std::string("etcd ") + c.name + ": no time");
        for (std::size_t i = 0; i < options_.endpoints.size(); ++i) {
            if (i > 0 && SteadyClock::now() >= deadline) break;
            Attempt a = attempt(c, i, body, deadline);
            if (a.fate == Fate::ok) return std::move(a.doc);
            const bool may_retry =
                a.fate == Fate::not_sent || (c.kind != CallKind::mutating &&
                                             (a.fate == Fate::unknown || a.fate == Fate::refused));
            if (!may_retry) return failed(c, a);
            if (i + 1 < options_.endpoints.size()) {
                logger_->log(LogLevel::warn, "etcd", "endpoint_failover",
                             {{"call", c.name},
                              {"from", options_.endpoints[i].name},
                              {"to", options_.endpoints[i + 1].name},
                              {"error", a.error ? a.error->message() : std::string()}});
            }
            last = std::move(a);
        }
        return failed(c, last);
    }

    Error failed(const Call& c, const Attempt& a) {
        Error e = final_error(c, a);
        // Definitive answers (lease gone, bad request) are the caller's business; the rest says
        // the cluster is unhealthy and belongs in the operator's log.
        if (a.fate != Fate::rejected) {
            logger_->log(LogLevel::warn, "etcd", "call_failed",
                         {{"call", c.name}, {"error", e.message()}});
        }
        return e;
    }

    Attempt attempt(const Call& c, std::size_t i, const std::string& body,
                    SteadyClock::time_point deadline) {
        const auto& ep = options_.endpoints[i];
        auto& pool = pools_[i];
        const bool mutating = c.kind == CallKind::mutating;
        auto conn = pool.take(mutating ? std::optional<SteadyClock::duration>(kMaxIdleForMutation)
                                       : std::nullopt);
        bool pooled = conn != nullptr;
        Attempt a;
        for (;;) {
            if (!conn) {
                conn = std::make_unique<HttpConnection>(ep, tls_);
                const auto connect_deadline =
                    std::min(deadline, SteadyClock::now() + options_.connect_timeout);
                auto connected = conn->connect(connect_deadline);
                if (!connected.ok) {
                    a.fate = Fate::not_sent;
                    a.error = make_error(Errc::unavailable, where(c, i) + ": " + connected.stage +
                                                                ": " + connected.error.message());
                    return a;
                }
                pooled = false;
            }
            auto out = conn->post(c.path, body, deadline);
            if (!out.ok) {
                // A kept-alive connection the member has since closed fails at once; a request
                // that is safe to repeat gets one fresh connection.
                if (pooled && !mutating && SteadyClock::now() < deadline) {
                    conn.reset();
                    continue;
                }
                a.fate = Fate::unknown;
                a.error = make_error(HaErrc::outcome_unknown,
                                     where(c, i) + ": " + out.stage + ": " + out.error.message());
                return a;
            }
            pool.give(std::move(conn));
            return interpret(out.reply, where(c, i));
        }
    }

    static Attempt interpret(const detail::HttpReply& reply, const std::string& where) {
        Attempt a;
        auto doc = detail::parse_json(reply.body);
        if (doc) {
            if (auto gw = detail::find_gateway_error(*doc)) return classify(*gw, where);
        }
        if (!doc || reply.status != 200) {
            a.fate = Fate::unknown;
            a.error = make_error(HaErrc::outcome_unknown, where + ": unreadable answer (HTTP " +
                                                              std::to_string(reply.status) + ")");
            return a;
        }
        a.fate = Fate::ok;
        a.doc = std::move(*doc);
        return a;
    }

    MemberStatus status_of(std::size_t i, Milliseconds timeout) {
        const auto& ep = options_.endpoints[i];
        MemberStatus st;
        st.name = ep.name;
        st.client_url = std::string(tls_ ? "https://" : "http://") +
                        (ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host) +
                        ":" + std::to_string(ep.port);
        const auto start = SteadyClock::now();
        const auto deadline = start + timeout;
        // A fresh connection, so the status reflects whether the member accepts one now.
        HttpConnection conn(ep, tls_);
        auto connected = conn.connect(std::min(deadline, start + options_.connect_timeout));
        if (!connected.ok) {
            st.error = connected.stage + ": " + connected.error.message();
            return st;
        }
        auto out = conn.post(kStatus.path, "{}", deadline);
        st.latency = std::chrono::duration_cast<Milliseconds>(SteadyClock::now() - start);
        if (!out.ok) {
            st.error = out.stage + ": " + out.error.message();
            return st;
        }
        auto a = interpret(out.reply, where(kStatus, i));
        if (a.fate != Fate::ok) {
            st.error = a.error ? a.error->message() : "no answer";
            return st;
        }
        auto info = detail::parse_status_response(a.doc);
        if (!info) {
            st.error = info.error().message();
            return st;
        }
        st.reachable = true;
        st.raft_term = info->raft_term;
        st.is_leader = !info->leader.empty() && info->leader == info->member_id;
        return st;
    }

    const EtcdOptions options_;
    const std::shared_ptr<Logger> logger_;
    const std::shared_ptr<boost::asio::ssl::context> tls_;  // null: plain HTTP
    std::vector<EndpointPool> pools_;                       // one per endpoint, same order
};

}  // namespace

std::shared_ptr<Coordinator> make_etcd_coordinator(EtcdOptions options,
                                                   std::shared_ptr<Logger> logger) {
    // Start-up configuration errors: there is nothing to run without endpoints or TLS files.
    if (options.endpoints.empty()) {
        throw ErrorException(make_error(Errc::invalid_argument, "etcd coordinator: no endpoints"));
    }
    std::shared_ptr<boost::asio::ssl::context> tls;
    if (options.tls) {
        auto ctx = detail::make_tls_context(options);
        if (!ctx) throw ErrorException(ctx.error());
        tls = std::move(*ctx);
    }
    return std::make_shared<EtcdCoordinator>(std::move(options), std::move(logger), std::move(tls));
}

}  // namespace signet::ha
