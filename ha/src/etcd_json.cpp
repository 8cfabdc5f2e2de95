#include "etcd_json.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>

#include "signet/core/bytes.hpp"

namespace signet::ha::detail {
namespace json = boost::json;

namespace {

std::string b64(const std::string& s) { return base64_encode(as_bytes(s)); }

Error bad_field(std::string_view field) {
    return make_error(Errc::bad_request,
                      "etcd response: unexpected form of '" + std::string(field) + "'");
}

const json::object* object_at(const json::object& o, std::string_view name) {
    const auto* v = o.if_contains(name);
    return v ? v->if_object() : nullptr;
}

// int64 fields arrive as strings ("123"); numbers are accepted too. Absent means 0.
Result<std::int64_t> int_field(const json::object& o, std::string_view name) {
    const auto* v = o.if_contains(name);
    if (!v || v->is_null()) return std::int64_t{0};
    if (const auto* i = v->if_int64()) return *i;
    if (const auto* u = v->if_uint64()) {
        if (*u > static_cast<std::uint64_t>(INT64_MAX)) return bad_field(name);
        return static_cast<std::int64_t>(*u);
    }
    if (const auto* s = v->if_string()) {
        std::int64_t out = 0;
        const auto* end = s->data() + s->size();
        const auto [ptr, ec] = std::from_chars(s->data(), end, out);
        if (ec != std::errc{} || ptr != end) return bad_field(name);
        return out;
    }
    return bad_field(name);
}

// Member ids are uint64 and only compared, so they stay text.
std::string id_field(const json::object& o, std::string_view name) {
    const auto* v = o.if_contains(name);
    if (!v) return {};
    if (const auto* s = v->if_string()) return std::string(*s);
    if (v->is_number()) return json::serialize(*v);
    return {};
}

Result<std::string> bytes_field(const json::object& o, std::string_view name) {
    const auto* v = o.if_contains(name);
    if (!v || v->is_null()) return std::string{};
    const auto* s = v->if_string();
    if (!s) return bad_field(name);
    auto decoded = base64_decode(std::string_view(s->data(), s->size()));
    if (!decoded) return bad_field(name);
    return std::string(decoded->begin(), decoded->end());
}

Result<KeyValue> parse_kv(const json::object& o) {
    KeyValue kv;
    kv.key = SIGNET_TRY(bytes_field(o, "key"));
    kv.value = SIGNET_TRY(bytes_field(o, "value"));
    kv.create_revision = SIGNET_TRY(int_field(o, "create_revision"));
    kv.mod_revision = SIGNET_TRY(int_field(o, "mod_revision"));
    kv.version = SIGNET_TRY(int_field(o, "version"));
    kv.lease = SIGNET_TRY(int_field(o, "lease"));
    return kv;
}

Result<std::vector<KeyValue>> parse_kvs(const json::object& o) {
    std::vector<KeyValue> out;
    const auto* v = o.if_contains("kvs");
    if (!v) return out;
    const auto* arr = v->if_array();
    if (!arr) return bad_field("kvs");
    out.reserve(arr->size());
    for (const auto& item : *arr) {
        const auto* kv = item.if_object();
        if (!kv) return bad_field("kvs");
        out.push_back(SIGNET_TRY(parse_kv(*kv)));
    }
    return out;
}

Result<std::int64_t> header_revision(const json::object& o) {
    const auto* header = object_at(o, "header");
    if (!header) return std::int64_t{0};
    return int_field(*header, "revision");
}

Result<const json::object*> as_object(const json::value& doc) {
    const auto* o = doc.if_object();
    if (!o) return bad_field("(document)");
    return o;
}

const char* compare_target(Compare::Target t) {
    switch (t) {
        case Compare::Target::value: return "VALUE";
        case Compare::Target::version: return "VERSION";
        case Compare::Target::create_revision: return "CREATE";
        case Compare::Target::mod_revision: return "MOD";
        case Compare::Target::lease: return "LEASE";
    }
    return "MOD";
}

const char* compare_field(Compare::Target t) {
    switch (t) {
        case Compare::Target::value: return "value";
        case Compare::Target::version: return "version";
        case Compare::Target::create_revision: return "create_revision";
        case Compare::Target::mod_revision: return "mod_revision";
        case Compare::Target::lease: return "lease";
    }
    return "mod_revision";
}

const char* compare_result(Compare::Op op) {
    switch (op) {
        case Compare::Op::equal: return "EQUAL";
        case Compare::Op::not_equal: return "NOT_EQUAL";
        case Compare::Op::greater: return "GREATER";
        case Compare::Op::less: return "LESS";
    }
    return "EQUAL";
}

json::object request_op(const Op& op) {
    json::object body;
    body["key"] = b64(op.key);
    json::object wrapper;
    switch (op.kind) {
        case Op::Kind::get:
            if (!op.range_end.empty()) body["range_end"] = b64(op.range_end);
            wrapper["request_range"] = std::move(body);
            break;
        case Op::Kind::put:
            body["value"] = b64(op.value);
            if (op.lease != 0) body["lease"] = std::to_string(op.lease);
            wrapper["request_put"] = std::move(body);
            break;
        case Op::Kind::del:
            if (!op.range_end.empty()) body["range_end"] = b64(op.range_end);
            wrapper["request_delete_range"] = std::move(body);
            break;
    }
    return wrapper;
}

json::array request_ops(const std::vector<Op>& ops) {
    json::array out;
    out.reserve(ops.size());
    for (const auto& op : ops) out.emplace_back(request_op(op));
    return out;
}

}  // namespace

std::string range_request_json(const std::string& key, const std::string& range_end) {
    json::object o;
    o["key"] = b64(key);
    if (!range_end.empty()) o["range_end"] = b64(range_end);
    return json::serialize(o);
}

std::string txn_request_json(const TxnRequest& request) {
    json::array compare;
    compare.reserve(request.compare.size());
    for (const auto& c : request.compare) {
        json::object o;
        o["key"] = b64(c.key);
        o["target"] = compare_target(c.target);
        o["result"] = compare_result(c.op);
        if (c.target == Compare::Target::value) {
            o["value"] = b64(c.value);
        } else {
            o[compare_field(c.target)] = std::to_string(c.number);
        }
        compare.emplace_back(std::move(o));
    }
    json::object o;
    o["compare"] = std::move(compare);
    o["success"] = request_ops(request.success);
    o["failure"] = request_ops(request.failure);
    return json::serialize(o);
}

std::string lease_grant_json(std::int64_t ttl_seconds) {
    json::object o;
    o["TTL"] = std::to_string(ttl_seconds);
    return json::serialize(o);
}

std::string lease_id_json(std::int64_t id) {
    json::object o;
    o["ID"] = std::to_string(id);
    return json::serialize(o);
}

std::string watch_create_json(const std::string& key, const std::string& range_end,
                              std::int64_t start_revision) {
    json::object create;
    create["key"] = b64(key);
    if (!range_end.empty()) create["range_end"] = b64(range_end);
    if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
    json::object o;
    o["create_request"] = std::move(create);
    return json::serialize(o);
}

std::optional<GatewayError> find_gateway_error(const json::value& doc) {
    const auto* o = doc.if_object();
    if (!o) return std::nullopt;
    const auto* err = o->if_contains("error");
    if (!err) return std::nullopt;
    GatewayError out;
    if (const auto* s = err->if_string()) {
        // Unary form: {"error": msg, "message": msg, "code": n}.
        out.message = std::string(*s);
        const auto code = int_field(*o, "code");
        out.grpc_code = code ? static_cast<int>(*code) : 2;
        return out;
    }
    if (const auto* e = err->if_object()) {
        // Stream form: {"error": {"grpc_code": n, "http_code": n, "message": msg}}.
        const auto code = int_field(*e, "grpc_code");
        out.grpc_code = code ? static_cast<int>(*code) : 2;
        if (const auto* m = e->if_contains("message"); m && m->is_string()) {
            out.message = std::string(m->get_string());
        }
        return out;
    }
    return std::nullopt;
}

Result<json::value> parse_json(std::string_view text) {
    boost::system::error_code ec;
    auto v = json::parse(json::string_view(text.data(), text.size()), ec);
    if (ec) return make_error(Errc::bad_request, "etcd response: not JSON (" + ec.message() + ")");
    return v;
}

Result<RangeResponse> parse_range_response(const json::value& doc) {
    const auto* o = SIGNET_TRY(as_object(doc));
    RangeResponse out;
    out.revision = SIGNET_TRY(header_revision(*o));
    out.kvs = SIGNET_TRY(parse_kvs(*o));
    return out;
}

Result<TxnResponse> parse_txn_response(const json::value& doc, const TxnRequest& request) {
    const auto* o = SIGNET_TRY(as_object(doc));
    TxnResponse out;
    out.revision = SIGNET_TRY(header_revision(*o));
    if (const auto* s = o->if_contains("succeeded")) {
        const auto* b = s->if_bool();
        if (!b) return bad_field("succeeded");
        out.succeeded = *b;
    }
    const auto& branch = out.succeeded ? request.success : request.failure;
    std::vector<const json::object*> responses;
    if (const auto* r = o->if_contains("responses")) {
        const auto* arr = r->if_array();
        if (!arr) return bad_field("responses");
        for (const auto& item : *arr) {
            const auto* op = item.if_object();
            if (!op) return bad_field("responses");
            responses.push_back(op);
        }
    }
    if (responses.size() != branch.size()) return bad_field("responses");
    out.results.resize(branch.size());
    for (std::size_t i = 0; i < branch.size(); ++i) {
        if (branch[i].kind != Op::Kind::get) continue;
        const auto* range = object_at(*responses[i], "response_range");
        // An empty range result is {"response_range": {"header": ...}}: still an object.
        if (!range) return bad_field("response_range");
        out.results[i] = SIGNET_TRY(parse_kvs(*range));
    }
    return out;
}

Result<Lease> parse_lease_grant_response(const json::value& doc) {
    const auto* o = SIGNET_TRY(as_object(doc));
    Lease out;
    out.id = SIGNET_TRY(int_field(*o, "ID"));
    const auto ttl = SIGNET_TRY(int_field(*o, "TTL"));
    if (out.id == 0 || ttl <= 0) return bad_field("ID/TTL");
    out.ttl = std::chrono::seconds(ttl);
    return out;
}

Result<std::int64_t> parse_keepalive_ttl_seconds(const json::value& doc) {
    const auto* o = SIGNET_TRY(as_object(doc));
    const auto* result = object_at(*o, "result");
    if (!result) return bad_field("result");
    return int_field(*result, "TTL");
}

Result<StatusInfo> parse_status_response(const json::value& doc) {
    const auto* o = SIGNET_TRY(as_object(doc));
    StatusInfo out;
    if (const auto* header = object_at(*o, "header")) {
        out.member_id = id_field(*header, "member_id");
        out.raft_term = SIGNET_TRY(int_field(*header, "raft_term"));
    }
    out.leader = id_field(*o, "leader");
    return out;
}

Result<WatchMessage> parse_watch_message(const json::value& doc) {
    const auto* o = SIGNET_TRY(as_object(doc));
    const auto* result = object_at(*o, "result");
    if (!result) return bad_field("result");
    WatchMessage out;
    out.revision = SIGNET_TRY(header_revision(*result));
    if (const auto* c = result->if_contains("created"); c && c->is_bool()) {
        out.created = c->get_bool();
    }
    if (const auto* c = result->if_contains("canceled"); c && c->is_bool()) {
        out.canceled = c->get_bool();
    }
    out.compact_revision = SIGNET_TRY(int_field(*result, "compact_revision"));
    if (const auto* r = result->if_contains("cancel_reason"); r && r->is_string()) {
        out.cancel_reason = std::string(r->get_string());
    }
    if (const auto* ev = result->if_contains("events")) {
        const auto* arr = ev->if_array();
        if (!arr) return bad_field("events");
        for (const auto& item : *arr) {
            const auto* e = item.if_object();
            if (!e) return bad_field("events");
            WatchEvent event;
            if (const auto* t = e->if_contains("type")) {
                const auto* s = t->if_string();
                if (!s) return bad_field("type");
                if (*s == "DELETE") {
                    event.type = WatchEvent::Type::del;
                } else if (*s != "PUT") {
                    return bad_field("type");
                }
            }
            if (const auto* kv = object_at(*e, "kv")) event.kv = SIGNET_TRY(parse_kv(*kv));
            out.events.push_back(std::move(event));
        }
    }
    return out;
}

}  // namespace signet::ha::detail
