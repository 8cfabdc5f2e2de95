#include "pair_records.hpp"

#include <boost/json.hpp>

#include "signet/pkcs11/digest.hpp"
#include "signet/web/json_codec.hpp"

namespace signet::daemon {
namespace json = boost::json;

namespace {

Error malformed(std::string what) {
    return make_error(Errc::invalid_argument, "replicated record: " + std::move(what));
}

Result<json::object> parse_object(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) return malformed("not a JSON object");
    return std::move(v.as_object());
}

Result<std::string> str(const json::object& o, std::string_view k) {
    const auto* v = o.if_contains(k);
    if (!v || !v->is_string()) return malformed("'" + std::string(k) + "' is missing");
    return std::string(v->as_string());
}

std::optional<std::string> opt_str(const json::object& o, std::string_view k) {
    const auto* v = o.if_contains(k);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
}

Result<Bytes> b64(const json::object& o, std::string_view k) {
    auto b = base64_decode(SIGNET_TRY(str(o, k)));
    if (!b) return malformed("'" + std::string(k) + "' is not base64");
    return std::move(b).value();
}

}  // namespace

std::string encode_client(const ClientRecord& c, const std::string& written_by) {
    json::object o{{"id", c.id},
                   {"name", c.name},
                   {"role", web::to_string(c.role)},
                   {"token_sha256", hex_encode(c.token_hash)},
                   {"state", c.active ? "active" : "revoked"},
                   {"created_at", c.created_at},
                   {"written_by", written_by}};
    if (c.cert_sha256) o["cert_sha256"] = *c.cert_sha256;
    if (c.revoked_at) o["revoked_at"] = *c.revoked_at;
    return json::serialize(o);
}

Result<ClientEntry> decode_client(const std::string& text) {
    const json::object o = SIGNET_TRY(parse_object(text));
    ClientEntry e;
    ClientRecord& c = e.client;
    c.id = SIGNET_TRY(str(o, "id"));
    c.name = SIGNET_TRY(str(o, "name"));
    const auto role = web::parse_role(SIGNET_TRY(str(o, "role")));
    if (!role) return malformed("client " + c.id + " has an unknown role");
    c.role = *role;
    auto hash = hex_decode(SIGNET_TRY(str(o, "token_sha256")));
    if (!hash || hash->size() != 32) return malformed("client " + c.id + " has no token hash");
    c.token_hash = std::move(hash).value();
    c.cert_sha256 = opt_str(o, "cert_sha256");
    c.active = SIGNET_TRY(str(o, "state")) == "active";
    c.created_at = SIGNET_TRY(str(o, "created_at"));
    c.revoked_at = opt_str(o, "revoked_at");
    e.written_by = opt_str(o, "written_by").value_or("");
    return e;
}

std::string encode_key(const KeyEntry& e) {
    const KeyRecord& k = e.key;
    if (e.destroyed) {
        return json::serialize(json::object{
            {"id", k.id}, {"destroyed", true}, {"holder", k.holder}, {"written_by", e.written_by}});
    }
    json::object o{{"id", k.id},
                   {"label", k.label},
                   {"algorithm", pkcs11::to_string(k.algorithm)},
                   {"class", pkcs11::to_string(k.key_class)},
                   {"state", k.active ? "active" : "disabled"},
                   {"created_at", k.created_at},
                   {"created_by", k.created_by},
                   {"spki", base64_encode(k.spki)},
                   {"policy", web::policy_to_json(k.policy)},
                   {"holder", k.holder},
                   {"written_by", e.written_by}};
    if (e.wrapped) {
        o["wrapped"] =
            json::object{{"kek_id", e.wrapped->kek_id}, {"blob", base64_encode(e.wrapped->blob)}};
    }
    return json::serialize(o);
}

Result<KeyEntry> decode_key(const std::string& text) {
    const json::object o = SIGNET_TRY(parse_object(text));
    KeyEntry e;
    KeyRecord& k = e.key;
    k.id = SIGNET_TRY(str(o, "id"));
    k.holder = opt_str(o, "holder").value_or("");
    e.written_by = opt_str(o, "written_by").value_or("");
    if (const auto* d = o.if_contains("destroyed"); d && d->is_bool() && d->as_bool()) {
        e.destroyed = true;
        return e;
    }
    k.label = SIGNET_TRY(str(o, "label"));
    const auto alg = pkcs11::parse_algorithm(SIGNET_TRY(str(o, "algorithm")));
    const auto cls = pkcs11::parse_key_class(SIGNET_TRY(str(o, "class")));
    if (!alg || !cls) return malformed("key " + k.id + " has an unknown algorithm or class");
    k.algorithm = *alg;
    k.key_class = *cls;
    k.active = SIGNET_TRY(str(o, "state")) == "active";
    k.created_at = SIGNET_TRY(str(o, "created_at"));
    k.created_by = SIGNET_TRY(str(o, "created_by"));
    k.spki = SIGNET_TRY(b64(o, "spki"));
    const auto* policy = o.if_contains("policy");
    if (!policy) return malformed("key " + k.id + " has no policy");
    k.policy = SIGNET_TRY(web::policy_from_json(*policy));
    if (const auto* w = o.if_contains("wrapped"); w && w->is_object()) {
        WrappedBlob b;
        b.kek_id = SIGNET_TRY(str(w->as_object(), "kek_id"));
        b.blob = SIGNET_TRY(b64(w->as_object(), "blob"));
        e.wrapped = std::move(b);
    }
    return e;
}

std::string encode_kek(const KekEntry& k) {
    return json::serialize(json::object{{"sender", k.sender},
                                        {"receiver", k.receiver},
                                        {"kek_id", k.kek_id},
                                        {"blob", base64_encode(k.blob)},
                                        {"transport_sha256", k.transport_sha256}});
}

Result<KekEntry> decode_kek(const std::string& text) {
    const json::object o = SIGNET_TRY(parse_object(text));
    KekEntry k;
    k.sender = SIGNET_TRY(str(o, "sender"));
    k.receiver = SIGNET_TRY(str(o, "receiver"));
    k.kek_id = SIGNET_TRY(str(o, "kek_id"));
    k.blob = SIGNET_TRY(b64(o, "blob"));
    k.transport_sha256 = opt_str(o, "transport_sha256").value_or("");
    return k;
}

std::string encode_transport(ByteView spki) {
    return json::serialize(
        json::object{{"spki", base64_encode(spki)}, {"sha256", hex_encode(pkcs11::sha256(spki))}});
}

Result<Bytes> decode_transport(const std::string& text) {
    // The fingerprint stored beside the SPKI is only for people reading etcd: it is recomputed
    // from the SPKI, never trusted.
    return b64(SIGNET_TRY(parse_object(text)), "spki");
}

bool same_key(const KeyRecord& a, const KeyRecord& b) {
    return a.id == b.id && a.label == b.label && a.algorithm == b.algorithm &&
           a.key_class == b.key_class && a.active == b.active && a.created_at == b.created_at &&
           a.created_by == b.created_by && a.spki == b.spki &&
           json::serialize(web::policy_to_json(a.policy)) ==
               json::serialize(web::policy_to_json(b.policy));
}

bool same_client(const ClientRecord& a, const ClientRecord& b) {
    return a.id == b.id && a.name == b.name && a.role == b.role && a.token_hash == b.token_hash &&
           a.cert_sha256 == b.cert_sha256 && a.active == b.active && a.created_at == b.created_at &&
           a.revoked_at == b.revoked_at;
}

}  // namespace signet::daemon
