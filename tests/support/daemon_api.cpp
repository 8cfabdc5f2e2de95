#include "signet_test/daemon_api.hpp"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "signet/web/api.hpp"
#include "signet/web/metrics.hpp"
#include "signet/web/router.hpp"
#include "signet_test/crypto_oracle.hpp"

namespace signet::test {

namespace {

const json::object* error_object(const json::value& v) {
    if (!v.is_object()) return nullptr;
    const json::value* e = v.as_object().if_contains("error");
    return e && e->is_object() ? &e->as_object() : nullptr;
}

std::string error_member(const json::value& v, std::string_view key) {
    const json::object* e = error_object(v);
    if (!e) return {};
    const json::value* m = e->if_contains(key);
    return m && m->is_string() ? std::string(m->as_string()) : std::string{};
}

}  // namespace

std::string ApiReply::error_code() const { return error_member(json, "code"); }
std::string ApiReply::error_message() const { return error_member(json, "message"); }
std::string ApiReply::error_request_id() const { return error_member(json, "request_id"); }

const json::object& ApiReply::object() const {
    if (!json.is_object()) throw std::runtime_error("reply is not a JSON object: " + describe());
    return json.as_object();
}

std::string ApiReply::describe() const {
    return "HTTP " + std::to_string(status) + " " + body.substr(0, 2000);
}

ApiClient::ApiClient(const SignetDaemon& daemon, std::string token)
    : ApiClient(daemon.client_options(), std::move(token)) {}

ApiClient::ApiClient(web::ClientOptions options, std::string token)
    : http_(std::make_unique<web::HttpClient>(std::move(options))), token_(std::move(token)) {}

Result<ApiReply> ApiClient::try_request(const std::string& method, const std::string& target,
                                        const std::string& body, const web::Headers& headers) {
    web::Headers h = headers;
    if (!token_.empty() && !h.count("Authorization")) h["Authorization"] = "Bearer " + token_;
    if (!body.empty() && !h.count("Content-Type")) h["Content-Type"] = "application/json";
    auto r = http_->request(method, target, body, h);
    if (!r) return r.error();
    ApiReply out;
    out.status = r->status;
    out.headers = std::move(r->headers);
    out.body = std::move(r->body);
    boost::system::error_code ec;
    out.json = json::parse(out.body, ec);
    if (ec) out.json = nullptr;
    return out;
}

ApiReply ApiClient::request(const std::string& method, const std::string& target,
                            const std::string& body, const web::Headers& headers) {
    auto r = try_request(method, target, body, headers);
    if (!r) throw std::runtime_error(method + " " + target + ": " + r.error().message());
    return std::move(r).value();
}

ApiReply ApiClient::post(const std::string& target, const json::value& body) {
    return request("POST", target, json::serialize(body));
}

ApiReply ApiClient::put(const std::string& target, const json::value& body) {
    return request("PUT", target, json::serialize(body));
}

ApiReply curl_request(const SignetDaemon& daemon, const std::string& method,
                      const std::string& target, const std::string& body,
                      const std::string& token) {
    const auto body_file = daemon.var_dir() / "curl-body";
    {
        std::ofstream f(body_file, std::ios::binary | std::ios::trunc);
        f << body;
    }
    std::vector<std::string> argv{"/usr/bin/curl",
                                  "-sk",
                                  "--max-time",
                                  "30",
                                  "-o",
                                  "-",
                                  "-w",
                                  "\n%{http_code}",
                                  "-X",
                                  method,
                                  "-H",
                                  "Content-Type: application/json",
                                  "--data-binary",
                                  "@" + body_file.string()};
    if (!token.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    argv.push_back(daemon.url() + target);
    const ProcessOutcome out = run_process(argv, {}, 60s);
    const auto nl = out.out.rfind('\n');
    if (!out.status.exited_with(0) || nl == std::string::npos) {
        throw std::runtime_error("curl failed (" + out.status.describe() + "): " + out.err);
    }
    ApiReply r;
    r.status = std::stoi(out.out.substr(nl + 1));
    r.body = out.out.substr(0, nl);
    boost::system::error_code ec;
    r.json = json::parse(r.body, ec);
    if (ec) r.json = nullptr;
    return r;
}

std::string str(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (!v || !v->is_string()) {
        throw std::runtime_error("no string '" + std::string(key) + "' in " + json::serialize(o));
    }
    return std::string(v->as_string());
}

std::uint64_t u64(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (v && v->is_uint64()) return v->as_uint64();
    if (v && v->is_int64() && v->as_int64() >= 0) return static_cast<std::uint64_t>(v->as_int64());
    throw std::runtime_error("no unsigned '" + std::string(key) + "' in " + json::serialize(o));
}

ClientCredentials complete_setup(const SignetDaemon& daemon, const std::string& name) {
    REQUIRE(daemon.setup_token().has_value());
    ApiClient anon(daemon);
    const ApiReply r = anon.post(
        "/v1/setup", json::object{{"setup_token", *daemon.setup_token()}, {"name", name}});
    INFO(r.describe());
    REQUIRE(r.status == 201);
    return {str(r.object().at("client").as_object(), "id"), str(r.object(), "token")};
}

ClientCredentials create_client(ApiClient& admin, const std::string& name,
                                const std::string& role) {
    const ApiReply r = admin.post("/v1/clients", json::object{{"name", name}, {"role", role}});
    INFO(r.describe());
    REQUIRE(r.status == 201);
    return {str(r.object().at("client").as_object(), "id"), str(r.object(), "token")};
}

json::object create_key(ApiClient& admin, const std::string& algorithm, const std::string& label,
                        const json::object& policy, bool replicable) {
    json::object body{{"algorithm", algorithm}, {"label", label}, {"replicable", replicable}};
    if (!policy.empty()) body["policy"] = policy;
    const ApiReply r = admin.post("/v1/keys", body);
    INFO(r.describe());
    REQUIRE(r.status == 201);
    return r.object();
}

json::object sign(ApiClient& signer, const std::string& key_id, const json::object& body) {
    const ApiReply r = signer.post("/v1/keys/" + key_id + "/sign", body);
    INFO(r.describe());
    REQUIRE(r.status == 200);
    return r.object();
}

std::vector<json::object> audit_records(ApiClient& reader) {
    std::vector<json::object> out;
    std::uint64_t after = 0;
    // Bounded: a test's log holds far fewer than 1000 pages of 1000 records.
    for (int page = 0; page < 1000; ++page) {
        const ApiReply r = reader.get("/v1/audit?after=" + std::to_string(after) + "&limit=1000");
        INFO(r.describe());
        REQUIRE(r.status == 200);
        const auto& records = r.object().at("records").as_array();
        if (records.empty()) break;
        for (const auto& rec : records) out.push_back(rec.as_object());
        after = u64(out.back(), "seq");
    }
    return out;
}

std::vector<json::object> audit_with_action(ApiClient& reader, const std::string& action) {
    std::vector<json::object> out;
    for (auto& r : audit_records(reader)) {
        if (str(r, "action") == action) out.push_back(std::move(r));
    }
    return out;
}

void check_api_error(const ApiReply& r, int status, const std::string& code) {
    INFO(r.describe());
    CHECK(r.status == status);
    CHECK(r.error_code() == code);
    CHECK_FALSE(r.error_message().empty());
    CHECK_FALSE(r.error_request_id().empty());
}

double metric_sum(const std::string& exposition, const std::string& metric) {
    double sum = 0;
    std::istringstream in(exposition);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(metric, 0) != 0) continue;
        const char next = line.size() > metric.size() ? line[metric.size()] : '\0';
        if (next != '{' && next != ' ') continue;  // another metric with this prefix
        sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
}

StateSnapshot snapshot(ApiClient& admin) {
    StateSnapshot s;
    const ApiReply keys = admin.get("/v1/keys");
    const ApiReply clients = admin.get("/v1/clients");
    INFO(keys.describe() << "\n" << clients.describe());
    REQUIRE(keys.status == 200);
    REQUIRE(clients.status == 200);
    s.keys = keys.body;
    s.clients = clients.body;
    for (const auto& k : keys.object().at("keys").as_array()) {
        const ApiReply c = admin.get("/v1/keys/" + str(k.as_object(), "id") + "/counter");
        REQUIRE(c.status == 200);
        s.counters += c.body + "\n";
    }
    for (const auto& rec : audit_records(admin)) {
        const std::string action = str(rec, "action");
        if (action == "auth.failure") {
            // A tally record stands for "count" failures; one audited at once for itself.
            const auto& details = rec.at("details");
            s.auth_failures += details.is_object() && details.as_object().contains("count")
                                   ? u64(details.as_object(), "count")
                                   : 1;
        } else if (action != "sign.plain" && action != "access.denied") {
            s.audit.push_back(json::serialize(rec));
        }
    }
    const ApiReply m = admin.get("/metrics");
    REQUIRE(m.status == 200);
    s.signatures_total = metric_sum(m.body, "signet_signatures_total");
    return s;
}

void check_audit_chain(ApiClient& api) {
    const ApiReply v = api.post("/v1/audit/verify", json::object{});
    INFO(v.describe());
    REQUIRE(v.status == 200);
    CHECK(v.object().at("ok").as_bool());
}

void check_unchanged(const StateSnapshot& before, const StateSnapshot& after) {
    CHECK(before.keys == after.keys);
    CHECK(before.clients == after.clients);
    CHECK(before.counters == after.counters);
    CHECK(before.audit.size() == after.audit.size());
    CHECK(before.audit == after.audit);
    CHECK(before.signatures_total == after.signatures_total);
}

ProvisionedDaemon::ProvisionedDaemon(DaemonOptions options,
                                     const std::function<void(SignetDaemon&)>& configure)
    : daemon(std::move(options)) {
    if (configure) configure(daemon);
    daemon.start();
    admin = complete_setup(daemon);
    ApiClient a = api(admin);
    signer = create_client(a, "signer-1", "signer");
    auditor = create_client(a, "auditor-1", "auditor");
    // The start-up work after readiness (the audit key, its audit.key_created record on a first
    // start) is done, so that it does not land between a test's before and after snapshots.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    auto settled = [&] {
        const std::string log = daemon.log();
        return log.find("event=audit_key ") != std::string::npos ||
               log.find("event=audit_checkpoints_unavailable") != std::string::npos;
    };
    while (!settled() && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    INFO(daemon.log());
    REQUIRE(settled());
}

bool RouteInfo::is_public() const {
    return name == "health.live" || name == "health.ready" || name == "metrics" ||
           name == "openapi" || name == "setup";
}

std::vector<RouteInfo> api_routes() {
    // Registration only stores the service pointer; no handler runs here.
    web::Router router;
    web::add_api_routes(router, nullptr, std::make_shared<web::Registry>());
    std::vector<RouteInfo> out;
    for (const auto& r : router.routes()) out.push_back({r.method, r.pattern, r.name});
    return out;
}

std::string fill_path(const std::string& pattern, const std::string& id) {
    std::string p = pattern;
    for (auto at = p.find("{id}"); at != std::string::npos; at = p.find("{id}"))
        p.replace(at, 4, id);
    return p;
}

Bytes spki_of_pem(const std::string& pem) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr, &EVP_PKEY_free);
    if (!key) throw std::runtime_error("not a PEM public key: " + pem);
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(key.get(), &der);
    if (n <= 0) throw std::runtime_error("i2d_PUBKEY failed");
    Bytes out(der, der + n);
    OPENSSL_free(der);
    return out;
}

std::string sha256_hex(std::string_view text) {
    return hex_encode(oracle_sha256(Bytes(text.begin(), text.end())));
}

Bytes rebuild_nonce_envelope(const std::string& key_id_hex, std::uint64_t nonce,
                             const Bytes& payload_digest) {
    const std::string tag = "signet.nonce.v1";
    Bytes env(tag.begin(), tag.end());
    env.push_back(0x00);
    const Bytes id = unhex(key_id_hex);
    env.insert(env.end(), id.begin(), id.end());
    for (int shift = 56; shift >= 0; shift -= 8)
        env.push_back(static_cast<std::uint8_t>(nonce >> shift));
    env.insert(env.end(), payload_digest.begin(), payload_digest.end());
    return env;
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

json::object ok_json(const ProcessOutcome& out) {
    INFO(out.status.describe() << "\nstdout: " << out.out << "\nstderr: " << out.err);
    REQUIRE(out.status.exited_with(0));
    const json::value v = json::parse(out.out);
    REQUIRE(v.is_object());
    return v.as_object();
}

void check_exit(const ProcessOutcome& out, int code, const std::vector<std::string>& needles) {
    INFO(out.status.describe() << "\nstdout: " << out.out << "\nstderr: " << out.err);
    CHECK(out.status.exited_with(code));
    CHECK(out.out.empty());
    for (const auto& n : needles) CHECK(contains(out.err, n));
}

}  // namespace signet::test
