#include "signet/web/json_codec.hpp"

#include <boost/json.hpp>
#include <cmath>

namespace signet::web {

namespace json = boost::json;

std::string_view to_string(Role r) noexcept {
    switch (r) {
        case Role::admin: return "admin";
        case Role::signer: return "signer";
        case Role::auditor: return "auditor";
    }
    return "unknown";
}

std::string_view to_string(NonceMode m) noexcept {
    switch (m) {
        case NonceMode::none: return "none";
        case NonceMode::envelope: return "envelope";
        case NonceMode::reserved: return "reserved";
    }
    return "unknown";
}

std::optional<NonceMode> parse_nonce_mode(std::string_view s) noexcept {
    if (s == "none") return NonceMode::none;
    if (s == "envelope") return NonceMode::envelope;
    if (s == "reserved") return NonceMode::reserved;
    return std::nullopt;
}

std::optional<Role> parse_role(std::string_view s) noexcept {
    if (s == "admin") return Role::admin;
    if (s == "signer") return Role::signer;
    if (s == "auditor") return Role::auditor;
    return std::nullopt;
}

json::value policy_to_json(const KeyPolicy& p) {
    json::array clients, ops;
    for (const auto& c : p.clients) clients.emplace_back(c);
    for (const auto& o : p.operations) ops.emplace_back(o);
    return json::object{
        {"clients", std::move(clients)},
        {"operations", std::move(ops)},
        {"rate_limit",
         json::object{{"per_second", p.rate_limit.per_second}, {"burst", p.rate_limit.burst}}},
        {"nonces", to_string(p.nonces)},
        {"watermark_required", p.watermark_required},
    };
}

namespace {

Error bad(std::string why) { return make_error(Errc::bad_request, "policy: " + std::move(why)); }

Result<std::vector<std::string>> string_array(const json::value& v, std::string_view name) {
    if (!v.is_array()) return bad(std::string(name) + " must be an array of strings");
    std::vector<std::string> out;
    for (const auto& e : v.as_array()) {
        if (!e.is_string()) return bad(std::string(name) + " must be an array of strings");
        out.emplace_back(e.as_string());
    }
    return out;
}

Result<double> non_negative(const json::value& v, std::string_view name) {
    double d = 0;
    if (v.is_double()) {
        d = v.as_double();
    } else if (v.is_int64()) {
        d = static_cast<double>(v.as_int64());
    } else if (v.is_uint64()) {
        d = static_cast<double>(v.as_uint64());
    } else {
        return bad(std::string(name) + " must be a number");
    }
    if (!std::isfinite(d) || d < 0) return bad(std::string(name) + " must be a finite number >= 0");
    return d;
}

}  // namespace

Result<KeyPolicy> policy_from_json(const json::value& v) {
    if (!v.is_object()) return bad("must be an object");
    KeyPolicy p;
    for (const auto& [k, val] : v.as_object()) {
        if (k == "clients") {
            p.clients = SIGNET_TRY(string_array(val, "clients"));
        } else if (k == "operations") {
            p.operations = SIGNET_TRY(string_array(val, "operations"));
            for (const auto& op : p.operations) {
                if (op != "sign" && op != "verify" && op != "reserve") {
                    return bad("unknown operation '" + op + "' (sign, verify, reserve)");
                }
            }
        } else if (k == "rate_limit") {
            if (!val.is_object()) return bad("rate_limit must be an object");
            for (const auto& [rk, rv] : val.as_object()) {
                if (rk == "per_second") {
                    p.rate_limit.per_second = SIGNET_TRY(non_negative(rv, "rate_limit.per_second"));
                } else if (rk == "burst") {
                    p.rate_limit.burst = SIGNET_TRY(non_negative(rv, "rate_limit.burst"));
                } else {
                    return bad("unknown member rate_limit." + std::string(rk));
                }
            }
        } else if (k == "nonces") {
            const auto mode = val.is_string() ? parse_nonce_mode(val.as_string()) : std::nullopt;
            if (!mode) return bad("nonces must be \"none\", \"envelope\" or \"reserved\"");
            p.nonces = *mode;
        } else if (k == "watermark_required") {
            if (!val.is_bool()) return bad("watermark_required must be true or false");
            p.watermark_required = val.as_bool();
        } else {
            return bad("unknown member '" + std::string(k) + "'");
        }
    }
    return p;
}

}  // namespace signet::web
