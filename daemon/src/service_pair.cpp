// SigningService in a pair: forwarding signing requests to the peer (route_signing, the tally of
// forwards) and believing the requests the peer forwards (docs/ha.md, "Forwarding").
#include "signet/web/forwarder.hpp"
#include "signing_service.hpp"

namespace signet::daemon {

using web::Caller;

Result<Caller> SigningService::authenticate_forwarded(const web::Credentials& cred) {
    if (!cred.forwarding_route) {
        return authentication_failed(cred, std::string(web::kForwardedCallerHeader) +
                                               " is accepted only on the signing routes (sign, "
                                               "sign-batch, nonces)");
    }
    std::optional<PairMember> peer;
    if (d_.members && cred.cert_sha256) peer = d_.members->by_certificate(*cred.cert_sha256);
    if (!peer) {
        return authentication_failed(cred, std::string(web::kForwardedCallerHeader) +
                                               " is accepted only from the paired appliance's "
                                               "TLS certificate");
    }
    const auto client = d_.catalog->client(*cred.forwarded_caller);
    if (!client || !client->active) {
        return authentication_failed(cred, "client " + *cred.forwarded_caller +
                                               ", forwarded by appliance " + peer->name + ", is " +
                                               (client ? "revoked" : "unknown") + " here");
    }
    return Caller{client->id,      client->name, client->role, cred.forwarded_remote,
                  cred.request_id, peer->name};
}

void SigningService::forwarded(const Caller& c, const std::string& key_id, const web::PeerRoute& to,
                               int status) {
    tally_event(c.client_id, "sign.forwarded", key_id,
                "to " + to.appliance + ": " + (status ? std::to_string(status) : "no answer"));
}

std::optional<web::PeerRoute> SigningService::route_signing(const std::string& key_id) {
    if (!d_.members) return std::nullopt;
    const ha::RoleStatus st = d_.pair->role_status();
    std::string target;
    if (st.mode == ha::PairMode::hot_standby) {
        // Only the active signs: the standby (or an appliance between roles) sends the request to
        // the active it knows. An active that lost its lease knows no other: it refuses.
        if (st.role != ha::Role::active) target = st.leader_name;
    } else {
        const auto key = d_.catalog->key(key_id);
        if (!key) return std::nullopt;  // 404 here
        const bool here =
            (!d_.replica || d_.replica->holds(*key)) && d_.pair->may_sign().has_value();
        if (here) return std::nullopt;
        const auto holders = d_.replica ? d_.replica->holders(*key) : std::vector<std::string>{};
        for (const auto& h : holders) {
            if (h != st.name) {
                target = h;
                break;
            }
        }
    }
    if (target.empty() || target == st.name) return std::nullopt;
    const auto m = d_.members->find(target);
    if (!m) return std::nullopt;  // its address is not known yet: refused here, saying why
    return web::PeerRoute{m->name, m->url, m->tls_sha256};
}

}  // namespace signet::daemon
