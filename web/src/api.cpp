// REST API v1 routes over the Service interface. JSON in, JSON out; errors via errors.hpp.
#include "signet/web/api.hpp"

#include <boost/json.hpp>
#include <charconv>

#include "api_fields.hpp"
#include "signet/web/errors.hpp"
#include "signet/web/json_codec.hpp"

namespace signet::web {

namespace json = boost::json;
using detail::Fields;

namespace {

Error bad(std::string why) { return make_error(Errc::bad_request, std::move(why)); }

Response json_response(int status, const json::value& v) {
    Response r;
    r.status = status;
    r.body = json::serialize(v);
    return r;
}

// `forwarding_route`: a signing route, where the paired appliance may forward requests.
Credentials credentials_of(const Request& r, bool forwarding_route = false) {
    Credentials c;
    if (auto auth = r.header("Authorization")) {
        constexpr std::string_view kBearer = "Bearer ";
        if (auth->size() > kBearer.size() && auth->substr(0, kBearer.size()) == kBearer) {
            c.token = std::string(auth->substr(kBearer.size()));
        } else {
            c.token = std::string(*auth);  // malformed: fails authentication, audited
        }
    } else if (auto vault = r.header("X-Vault-Token")) {
        c.token = std::string(*vault);
    }
    c.cert_sha256 = r.client_cert_sha256;
    c.remote = r.remote;
    c.request_id = r.request_id;
    c.forwarding_route = forwarding_route;
    if (auto fwd = r.header(kForwardedCallerHeader)) {
        c.forwarded_caller = std::string(*fwd);
        c.forwarded_remote = std::string(r.header(kForwardedForHeader).value_or(""));
    }
    return c;
}

// Wraps a handler that needs an authenticated caller; Result errors become API errors.
template <class F>
Handler authed(std::shared_ptr<Service> svc, F f) {
    return [svc, f](Request& req) -> Response {
        auto caller = svc->authenticate(credentials_of(req));
        if (!caller) return error_response(caller.error(), req.request_id);
        Result<Response> r = f(req, *svc, *caller);
        if (!r) return error_response(r.error(), req.request_id);
        return std::move(r).value();
    };
}

// Like authed(), for a signing route on key {id}: a request this appliance cannot serve goes to
// the peer that can (Service::route_signing), when a forwarder is configured.
template <class F>
Handler routed(std::shared_ptr<Service> svc, std::shared_ptr<PeerForwarder> fwd, F f) {
    return [svc, fwd, f](Request& req) -> Response {
        auto caller = svc->authenticate(credentials_of(req, true));
        if (!caller) return error_response(caller.error(), req.request_id);
        if (fwd && caller->via.empty()) {
            const auto& id = req.params.at("id");
            if (auto to = svc->route_signing(id)) {
                Response answer = fwd->forward(*to, req, *caller);
                svc->forwarded(
                    *caller, id, *to,
                    answer.headers.count(std::string(kServedByHeader)) ? answer.status : 0);
                return answer;
            }
        }
        Result<Response> r = f(req, *svc, *caller);
        if (!r) return error_response(r.error(), req.request_id);
        return std::move(r).value();
    };
}

Result<Bytes> decode_input(const std::string& s, std::string_view format, std::string_view field) {
    auto b = format == "base64" ? base64_decode(s) : hex_decode(s);
    if (!b)
        return bad("'" + std::string(field) + "' is not valid " + std::string(format) + ": " +
                   b.error().context);
    return std::move(b).value();
}

Result<std::string> input_format(Fields& f) {
    const auto fmt = SIGNET_TRY(f.string("format")).value_or("hex");
    if (fmt != "hex" && fmt != "base64") return bad("'format' must be \"hex\" or \"base64\"");
    return fmt;
}

// digest|message, format, hash, encoding, rsa_padding, nonce, reserved_nonce, watermark.
Result<SignParams> parse_sign(Fields& f, bool allow_guards) {
    SignParams p;
    const std::string fmt = SIGNET_TRY(input_format(f));
    const auto digest = SIGNET_TRY(f.string("digest"));
    const auto message = SIGNET_TRY(f.string("message"));
    if (digest.has_value() == message.has_value())
        return bad("send exactly one of 'digest' or 'message'");
    p.is_digest = digest.has_value();
    p.data =
        SIGNET_TRY(decode_input(digest ? *digest : *message, fmt, digest ? "digest" : "message"));
    p.hash = SIGNET_TRY(f.string("hash")).value_or("sha256");
    p.encoding = SIGNET_TRY(f.string("encoding")).value_or("der");
    p.rsa_padding = SIGNET_TRY(f.string("rsa_padding")).value_or("pkcs1v15");
    if (allow_guards) {
        p.assign_nonce = SIGNET_TRY(f.boolean("nonce")).value_or(false);
        p.reserved_nonce = SIGNET_TRY(f.u64("reserved_nonce"));
        p.watermark = SIGNET_TRY(f.u64_array("watermark"));
        if (p.watermark && (p.watermark->empty() || p.watermark->size() > 16)) {
            return bad("'watermark' must hold 1 to 16 unsigned integers");
        }
    }
    return p;
}

json::value key_json(const KeyDescription& k) {
    json::object pk{{"pem", k.public_key_pem}};
    if (!k.jwk_json.empty()) pk["jwk"] = json::parse(k.jwk_json);
    if (k.ethereum_address) pk["ethereum_address"] = *k.ethereum_address;
    json::object o{{"id", k.id},
                   {"label", k.label},
                   {"algorithm", k.algorithm},
                   {"class", k.key_class},
                   {"state", k.state},
                   {"created_at", k.created_at},
                   {"public_key", std::move(pk)},
                   {"policy", policy_to_json(k.policy)}};
    if (!k.holders.empty()) {
        json::array holders;
        for (const auto& h : k.holders) holders.push_back(json::string(h));
        o["holders"] = std::move(holders);
    }
    return o;
}

json::array string_array(const std::vector<std::string>& v) {
    json::array out;
    for (const auto& s : v) out.push_back(json::string(s));
    return out;
}

json::object signature_json(const SignResult& s, const std::string& encoding) {
    json::object o{{"signature", hex_encode(s.signature)},
                   {"signature_base64", base64_encode(s.signature)},
                   {"encoding", encoding}};
    if (!s.signed_digest.empty()) o["digest"] = hex_encode(s.signed_digest);
    if (s.nonce) o["nonce"] = *s.nonce;
    if (s.envelope) o["envelope"] = hex_encode(*s.envelope);
    if (s.recovery_id) o["recovery_id"] = *s.recovery_id;
    if (encoding == "eth" && s.signature.size() == 65) {
        const ByteView sig(s.signature);
        o["r"] = "0x" + hex_encode(sig.subspan(0, 32));
        o["s"] = "0x" + hex_encode(sig.subspan(32, 32));
        o["v"] = sig[64];
    }
    return o;
}

// An audit record's details as stored. Details that are not JSON (a tampered store) are returned
// verbatim as a string: auditors must be able to read the very log that verification reports as
// broken.
json::value details_json(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) return json::string(text);
    return v;
}

json::value client_json(const ClientDescription& c) {
    json::object o{{"id", c.id},
                   {"name", c.name},
                   {"role", to_string(c.role)},
                   {"state", c.state},
                   {"created_at", c.created_at}};
    if (c.cert_sha256) o["cert_sha256"] = *c.cert_sha256;
    return o;
}

json::value new_client_json(const NewClient& n) {
    return json::object{{"client", client_json(n.client)}, {"token", n.token}};
}

// Routes that take no body still refuse one with content: a field sent to them is a mistake.
Result<void> no_fields(const Request& req) {
    const auto body = SIGNET_TRY(detail::parse_object(req));
    if (!body.empty()) return bad("this request takes no body fields");
    return ok();
}

Result<KeyPolicy> policy_field(Fields& f) {
    const json::value* v = f.raw("policy");
    return v ? policy_from_json(*v) : Result<KeyPolicy>(KeyPolicy{});
}

void add_key_routes(Router& r, const std::shared_ptr<Service>& svc) {
    r.add({"POST", "/v1/keys", "keys.create", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               auto body = SIGNET_TRY(detail::parse_object(req));
               Fields f(body);
               CreateKeyParams p;
               const auto alg = SIGNET_TRY(f.string("algorithm"));
               const auto label = SIGNET_TRY(f.string("label"));
               if (!alg || !label) return bad("'algorithm' and 'label' are required");
               p.algorithm = *alg;
               p.label = *label;
               p.replicable = SIGNET_TRY(f.boolean("replicable")).value_or(false);
               p.policy = SIGNET_TRY(policy_field(f));
               SIGNET_TRY(f.done());
               return json_response(201, key_json(SIGNET_TRY(s.create_key(c, p))));
           })});
    r.add({"GET", "/v1/keys", "keys.list", Execution::worker,
           authed(svc, [](Request&, Service& s, const Caller& c) -> Result<Response> {
               json::array keys;
               for (const auto& k : SIGNET_TRY(s.list_keys(c))) keys.push_back(key_json(k));
               return json_response(200, json::object{{"keys", std::move(keys)}});
           })});
    r.add({"GET", "/v1/keys/{id}", "keys.get", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               return json_response(200, key_json(SIGNET_TRY(s.get_key(c, req.params.at("id")))));
           })});
    r.add({"POST", "/v1/keys/{id}/disable", "keys.disable", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               SIGNET_TRY(no_fields(req));
               return json_response(200,
                                    key_json(SIGNET_TRY(s.disable_key(c, req.params.at("id")))));
           })});
    r.add({"PUT", "/v1/keys/{id}/policy", "keys.policy", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               auto body = SIGNET_TRY(detail::parse_object(req));
               const KeyPolicy p = SIGNET_TRY(policy_from_json(body));
               return json_response(200,
                                    key_json(SIGNET_TRY(s.set_policy(c, req.params.at("id"), p))));
           })});
    r.add({"DELETE", "/v1/keys/{id}", "keys.destroy", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               SIGNET_TRY(no_fields(req));
               SIGNET_TRY(s.destroy_key(c, req.params.at("id")));
               Response resp;
               resp.status = 204;
               return resp;
           })});
}

// A sign request that waits for nothing durable (no nonce, reservation or watermark: no fsync)
// finishes in one HSM signature and may run on the I/O thread. Conservative: any mention of those
// members, or any \u escape that could spell one, sends the request to the workers.
bool plain_signature(const Request& req) {
    const std::string_view b = req.body;
    return b.find("nonce\"") == std::string_view::npos &&
           b.find("watermark\"") == std::string_view::npos &&
           b.find("\\u") == std::string_view::npos;
}

void add_signing_routes(Router& r, const std::shared_ptr<Service>& svc, std::size_t batch_max,
                        const std::shared_ptr<PeerForwarder>& fwd) {
    r.add({"POST", "/v1/keys/{id}/sign", "keys.sign", Execution::worker,
           routed(svc, fwd,
                  [](Request& req, Service& s, const Caller& c) -> Result<Response> {
                      auto body = SIGNET_TRY(detail::parse_object(req));
                      Fields f(body);
                      const SignParams p = SIGNET_TRY(parse_sign(f, true));
                      SIGNET_TRY(f.done());
                      const auto& id = req.params.at("id");
                      auto out = signature_json(SIGNET_TRY(s.sign(c, id, p)), p.encoding);
                      out["key_id"] = id;
                      return json_response(200, out);
                  }),
           [fwd](const Request& req) {
        // A request to or from the peer may wait on the network: never on the I/O thread. With
        // a forwarder the route may change between this check and the handler, so none is inline.
        return !fwd && plain_signature(req) && !req.header(kForwardedCallerHeader);
           }});
    r.add({"POST", "/v1/keys/{id}/sign-batch", "keys.sign_batch", Execution::worker,
           routed(svc, fwd,
                  [batch_max](Request& req, Service& s, const Caller& c) -> Result<Response> {
                      auto body = SIGNET_TRY(detail::parse_object(req));
                      Fields f(body);
                      const std::string fmt = SIGNET_TRY(input_format(f));
                      const auto list = SIGNET_TRY(f.string_array("digests"));
                      if (!list) return bad("'digests' is required");
                      if (list->size() > batch_max) {
                          return make_error(Errc::payload_too_large,
                                            std::to_string(list->size()) + " digests; at most " +
                                                std::to_string(batch_max) + " per batch");
                      }
                      SignParams opts;
                      opts.hash = SIGNET_TRY(f.string("hash")).value_or("sha256");
                      opts.encoding = SIGNET_TRY(f.string("encoding")).value_or("der");
                      opts.rsa_padding = SIGNET_TRY(f.string("rsa_padding")).value_or("pkcs1v15");
                      SIGNET_TRY(f.done());
                      std::vector<Bytes> digests;
                      digests.reserve(list->size());
                      for (std::size_t i = 0; i < list->size(); ++i) {
                          digests.push_back(SIGNET_TRY(
                              decode_input((*list)[i], fmt, "digests[" + std::to_string(i) + "]")));
                      }
                      json::array sigs;
                      for (const auto& sr :
                           SIGNET_TRY(s.sign_batch(c, req.params.at("id"), digests, opts))) {
                          sigs.push_back(signature_json(sr, opts.encoding));
                      }
                      return json_response(200, json::object{{"key_id", req.params.at("id")},
                                                             {"signatures", std::move(sigs)}});
                  })});
    r.add({"POST", "/v1/keys/{id}/verify", "keys.verify", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               auto body = SIGNET_TRY(detail::parse_object(req));
               Fields f(body);
               const SignParams p = SIGNET_TRY(parse_sign(f, false));
               const auto sig_text = SIGNET_TRY(f.string("signature"));
               if (!sig_text) return bad("'signature' is required");
               const std::string fmt = SIGNET_TRY(f.string("signature_format")).value_or("hex");
               const Bytes sig = SIGNET_TRY(decode_input(*sig_text, fmt, "signature"));
               SIGNET_TRY(f.done());
               const bool valid = SIGNET_TRY(s.verify(c, req.params.at("id"), p, sig));
               return json_response(200, json::object{{"valid", valid}});
           })});
    r.add({"POST", "/v1/keys/{id}/nonces", "keys.reserve_nonce", Execution::worker,
           routed(svc, fwd, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               SIGNET_TRY(no_fields(req));
               const auto& id = req.params.at("id");
               const auto n = SIGNET_TRY(s.reserve_nonce(c, id));
               return json_response(201, json::object{{"key_id", id}, {"nonce", n}});
           })});
    r.add({"GET", "/v1/keys/{id}/counter", "keys.counter", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               const auto st = SIGNET_TRY(s.counter(c, req.params.at("id")));
               return json_response(
                   200, json::object{{"key_id", st.key_id},
                                     {"last_issued", st.last_issued},
                                     {"next", st.last_issued + 1},
                                     {"reserved_outstanding", st.reserved_outstanding}});
           })});
}

void add_admin_routes(Router& r, const std::shared_ptr<Service>& svc) {
    r.add({"POST", "/v1/setup", "setup", Execution::worker, [svc](Request& req) -> Response {
               auto run = [&]() -> Result<Response> {
                   auto body = SIGNET_TRY(detail::parse_object(req));
                   Fields f(body);
                   const auto token = SIGNET_TRY(f.string("setup_token"));
                   const auto name = SIGNET_TRY(f.string("name"));
                   if (!token || !name) return bad("'setup_token' and 'name' are required");
                   SIGNET_TRY(f.done());
                   return json_response(201, new_client_json(SIGNET_TRY(svc->complete_setup(
                                                 *token, *name, credentials_of(req)))));
               };
               auto out = run();
               return out ? std::move(out).value() : error_response(out.error(), req.request_id);
           }});
    r.add({"POST", "/v1/clients", "clients.create", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               auto body = SIGNET_TRY(detail::parse_object(req));
               Fields f(body);
               const auto name = SIGNET_TRY(f.string("name"));
               const auto role_s = SIGNET_TRY(f.string("role"));
               const auto cert = SIGNET_TRY(f.string("cert_sha256"));
               SIGNET_TRY(f.done());
               if (!name || !role_s) return bad("'name' and 'role' are required");
               const auto role = parse_role(*role_s);
               if (!role)
                   return make_error(Errc::unprocessable,
                                     "unknown role '" + *role_s + "' (admin, signer, auditor)");
               return json_response(
                   201, new_client_json(SIGNET_TRY(s.create_client(c, *name, *role, cert))));
           })});
    r.add({"GET", "/v1/clients", "clients.list", Execution::worker,
           authed(svc, [](Request&, Service& s, const Caller& c) -> Result<Response> {
               json::array out;
               for (const auto& cl : SIGNET_TRY(s.list_clients(c))) out.push_back(client_json(cl));
               return json_response(200, json::object{{"clients", std::move(out)}});
           })});
    r.add({"POST", "/v1/clients/{id}/revoke", "clients.revoke", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               SIGNET_TRY(no_fields(req));
               SIGNET_TRY(s.revoke_client(c, req.params.at("id")));
               return json_response(
                   200, json::object{{"id", req.params.at("id")}, {"state", "revoked"}});
           })});
    r.add({"GET", "/v1/audit", "audit.tail", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               for (const auto& [name, value] : req.query) {
                   if (name != "after" && name != "limit") {
                       return bad("unknown query parameter '" + name + "' (after, limit)");
                   }
               }
               auto num = [&](const char* k, std::uint64_t dflt) -> Result<std::uint64_t> {
                   const auto it = req.query.find(k);
                   if (it == req.query.end()) return dflt;
                   std::uint64_t v = 0;
                   const auto [p, ec] =
                       std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
                   if (ec != std::errc{} || p != it->second.data() + it->second.size()) {
                       return bad(std::string("query parameter '") + k +
                                  "' must be an unsigned integer");
                   }
                   return v;
               };
               const auto after = SIGNET_TRY(num("after", 0));
               const auto limit = SIGNET_TRY(num("limit", 100));
               json::array out;
               for (const auto& a :
                    SIGNET_TRY(s.audit_tail(c, after, static_cast<std::size_t>(limit)))) {
                   out.push_back(json::object{{"seq", a.seq},
                                              {"ts", a.ts},
                                              {"actor", a.actor},
                                              {"action", a.action},
                                              {"subject", a.subject},
                                              {"outcome", a.outcome},
                                              {"details", details_json(a.details_json)},
                                              {"hash", a.hash_hex}});
               }
               return json_response(200, json::object{{"records", std::move(out)}});
           })});
    r.add({"POST", "/v1/audit/verify", "audit.verify", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               SIGNET_TRY(no_fields(req));
               const auto v = SIGNET_TRY(s.audit_verify(c));
               json::object o{{"ok", v.ok}, {"records", v.records}, {"reason", v.reason}};
               if (v.first_bad_seq) o["first_bad_seq"] = *v.first_bad_seq;
               o["checkpoints"] = v.checkpoints;
               if (v.last_checkpoint_seq) o["last_checkpoint_seq"] = *v.last_checkpoint_seq;
               return json_response(200, o);
           })});
    r.add({"GET", "/v1/ha/status", "ha.status", Execution::worker,
           authed(svc, [](Request&, Service& s, const Caller& c) -> Result<Response> {
               const HaStatus h = SIGNET_TRY(s.ha_status(c));
               json::array members;
               for (const auto& m : h.etcd) {
                   members.push_back(json::object{{"name", m.name},
                                                  {"url", m.url},
                                                  {"reachable", m.reachable},
                                                  {"leader", m.leader},
                                                  {"latency_ms", m.latency_ms},
                                                  {"error", m.error}});
               }
               json::object o{
                   {"mode", h.mode},
                   {"role", h.role},
                   {"name", h.name},
                   {"allocation", h.allocation},
                   {"leader",
                    json::object{{"name", h.leader_name}, {"url", h.leader_url}, {"term", h.term}}},
                   {"lease_remaining_ms", h.lease_remaining_ms},
                   {"reason", h.reason},
                   {"role_changes", h.role_changes},
                   {"etcd", std::move(members)},
                   {"allocation_stats", json::object{{"transactions", h.txns},
                                                     {"conflicts", h.conflicts},
                                                     {"unknown_outcomes", h.unknown},
                                                     {"burnt", h.burnt},
                                                     {"issued", h.issued}}}};
               if (!h.transport_sha256.empty()) {
                   o["transport_sha256"] = h.transport_sha256;
                   o["kek_to"] = string_array(h.kek_to);
                   o["kek_from"] = string_array(h.kek_from);
               }
               return json_response(200, o);
           })});
    r.add({"POST", "/v1/ha/pair", "ha.pair", Execution::worker,
           authed(svc, [](Request& req, Service& s, const Caller& c) -> Result<Response> {
               auto body = SIGNET_TRY(detail::parse_object(req));
               Fields f(body);
               const auto peer = SIGNET_TRY(f.string("peer"));
               const auto fp = SIGNET_TRY(f.string("transport_sha256"));
               SIGNET_TRY(f.done());
               if (!peer || !fp) return bad("'peer' and 'transport_sha256' are required");
               const PairResult p = SIGNET_TRY(s.pair(c, *peer, *fp));
               return json_response(200,
                                    json::object{{"peer", p.peer},
                                                 {"kek_id", p.kek_id},
                                                 {"peer_transport_sha256", p.peer_transport_sha256},
                                                 {"keys_wrapped", p.keys_wrapped},
                                                 {"failures", string_array(p.failures)}});
           })});
}

void add_system_routes(Router& r, const std::shared_ptr<Service>& svc,
                       const std::shared_ptr<Registry>& metrics) {
    r.add({"GET", "/v1/health/live", "health.live", Execution::inline_, [](Request&) {
               return json_response(200, json::object{{"status", "live"}});
           }});
    r.add({"GET", "/v1/health/ready", "health.ready", Execution::inline_, [svc](Request& req) {
               const Health h = svc->health();
               if (h.ready) return json_response(200, json::object{{"status", "ready"}});
               return error_response(make_error(Errc::not_ready, h.reason), req.request_id);
           }});
    r.add({"GET", "/metrics", "metrics", Execution::inline_, [metrics](Request&) {
               Response resp;
               resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
               resp.body = metrics->render();
               return resp;
           }});
    r.add({"GET", "/v1/openapi.json", "openapi", Execution::inline_, [](Request&) {
               Response resp;
               resp.body = openapi_document();
               return resp;
           }});
}

}  // namespace

void add_api_routes(Router& router, std::shared_ptr<Service> service,
                    std::shared_ptr<Registry> metrics, ApiOptions options) {
    add_system_routes(router, service, metrics);
    add_key_routes(router, service);
    add_signing_routes(router, service, options.batch_max, options.forwarder);
    add_admin_routes(router, service);
}

}  // namespace signet::web
