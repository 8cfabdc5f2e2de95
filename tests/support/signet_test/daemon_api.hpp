// The REST API of a running signetd as tests use it: a client per caller (token), replies parsed
// into JSON, helpers for the common steps (setup, clients, keys, signing, audit) that REQUIRE
// success, a check for the documented error shape, and a snapshot of the appliance's state for
// "a refused request changed nothing" assertions.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"
#include "signet/web/client.hpp"
#include "signet_test/daemon_harness.hpp"

namespace signet::test {

namespace json = boost::json;

struct ApiReply {
    int status = 0;
    web::Headers headers;
    std::string body;
    json::value json;  // null when the body is not JSON

    // {"error":{"code":..}} members, or "" when absent.
    [[nodiscard]] std::string error_code() const;
    [[nodiscard]] std::string error_message() const;
    [[nodiscard]] std::string error_request_id() const;
    // The body as an object; throws std::runtime_error (with the body) when it is not one.
    [[nodiscard]] const json::object& object() const;
    // "HTTP 403 {...}" for failure messages.
    [[nodiscard]] std::string describe() const;
};

// One HTTP client with an optional API token. Not thread-safe: one per thread.
class ApiClient {
public:
    explicit ApiClient(const SignetDaemon& daemon, std::string token = {});
    ApiClient(web::ClientOptions options, std::string token);

    // Transport failures (refused, reset, timeout) as errors: for tests that crash the daemon.
    [[nodiscard]] Result<ApiReply> try_request(const std::string& method, const std::string& target,
                                               const std::string& body = {},
                                               const web::Headers& headers = {});
    // Same, but a transport failure throws std::runtime_error.
    ApiReply request(const std::string& method, const std::string& target,
                     const std::string& body = {}, const web::Headers& headers = {});
    ApiReply get(const std::string& target) { return request("GET", target); }
    ApiReply post(const std::string& target, const json::value& body);
    ApiReply put(const std::string& target, const json::value& body);
    ApiReply del(const std::string& target) { return request("DELETE", target); }

    [[nodiscard]] const std::string& token() const noexcept { return token_; }

private:
    std::unique_ptr<web::HttpClient> http_;
    std::string token_;
};

// The same request sent by the curl CLI (TLS verification off: loopback, test only). HttpClient
// writes the whole body before it reads; curl reads while it sends, so it sees a response the
// server sends early (413 on a body over the limit) before the connection closes.
ApiReply curl_request(const SignetDaemon& daemon, const std::string& method,
                      const std::string& target, const std::string& body,
                      const std::string& token = {});

struct ClientCredentials {
    std::string id;
    std::string token;
};

// Completes first-run setup with the token signetd printed; returns the admin's credentials.
ClientCredentials complete_setup(const SignetDaemon& daemon, const std::string& name = "admin");
// POST /v1/clients (REQUIREs 201).
ClientCredentials create_client(ApiClient& admin, const std::string& name, const std::string& role);
// POST /v1/keys (REQUIREs 201); returns the key description.
json::object create_key(ApiClient& admin, const std::string& algorithm, const std::string& label,
                        const json::object& policy = {}, bool replicable = false);
// POST /v1/keys/{id}/sign (REQUIREs 200); returns the reply body.
json::object sign(ApiClient& signer, const std::string& key_id, const json::object& body);
// Every audit record, oldest first (pages through GET /v1/audit).
std::vector<json::object> audit_records(ApiClient& reader);
// Records whose "action" is `action`.
std::vector<json::object> audit_with_action(ApiClient& reader, const std::string& action);

// CHECKs the documented error: HTTP `status` and {"error":{"code","message","request_id"}} with
// `code`, a non-empty message and request id.
void check_api_error(const ApiReply& r, int status, const std::string& code);

// What an admin can see of the appliance's state. Records that refused requests are documented
// to add (auth.failure, and the access.denied tally) and the periodic plain-signature tally
// (sign.plain) are left out of `audit`; authentication failures are counted separately.
struct StateSnapshot {
    std::string keys;      // GET /v1/keys body
    std::string clients;   // GET /v1/clients body
    std::string counters;  // GET /v1/keys/{id}/counter of every key
    std::vector<std::string>
        audit;  // serialized records but auth.failure, access.denied, sign.plain
    std::size_t auth_failures = 0;  // failures audited: 1 per record, "count" per tally record
    double signatures_total = 0;    // sum of signet_signatures_total in /metrics

    [[nodiscard]] bool same_state(const StateSnapshot& o) const {
        return keys == o.keys && clients == o.clients && counters == o.counters &&
               audit == o.audit && signatures_total == o.signatures_total;
    }
};
StateSnapshot snapshot(ApiClient& admin);
// CHECKs that nothing but auth.failure records changed between the two snapshots.
void check_unchanged(const StateSnapshot& before, const StateSnapshot& after);

// CHECKs that the running appliance verifies its audit chain (POST /v1/audit/verify: ok).
void check_audit_chain(ApiClient& api);

// Sum of every sample of `metric` in a Prometheus text exposition.
double metric_sum(const std::string& exposition, const std::string& metric);

// A running signetd after first-run setup, with one signer and one auditor client made through
// the API. `configure` edits the configuration before the first start.
struct ProvisionedDaemon {
    explicit ProvisionedDaemon(DaemonOptions options = {},
                               const std::function<void(SignetDaemon&)>& configure = {});
    SignetDaemon daemon;
    ClientCredentials admin, signer, auditor;
    // A fresh client (the port changes on every start, so make clients after a restart).
    [[nodiscard]] ApiClient api(const ClientCredentials& who) const {
        return ApiClient(daemon, who.token);
    }
    [[nodiscard]] ApiClient anonymous() const { return ApiClient(daemon); }
};

// Every route add_api_routes() registers (method, pattern, name): the list tests iterate so a new
// route is covered without editing them.
struct RouteInfo {
    std::string method, pattern, name;
    [[nodiscard]] bool is_public() const;  // health, metrics, OpenAPI, first-run setup
};
[[nodiscard]] std::vector<RouteInfo> api_routes();
// `pattern` with {id} replaced by `id`.
[[nodiscard]] std::string fill_path(const std::string& pattern, const std::string& id);

// Command-line outcomes (signetctl and other tools): REQUIREs exit 0 and returns stdout parsed as
// a JSON object; CHECKs exit `code`, nothing on stdout, and each of `needles` on stderr.
json::object ok_json(const ProcessOutcome& out);
void check_exit(const ProcessOutcome& out, int code, const std::vector<std::string>& needles);
[[nodiscard]] bool contains(const std::string& haystack, const std::string& needle);

// JSON helpers.
[[nodiscard]] std::string str(const json::object& o, std::string_view key);
[[nodiscard]] std::uint64_t u64(const json::object& o, std::string_view key);

// DER SubjectPublicKeyInfo of a PEM public key (OpenSSL); throws on bad input.
[[nodiscard]] Bytes spki_of_pem(const std::string& pem);
// Hex of the SHA-256 of `text` (the oracle), handy as a digest to sign.
[[nodiscard]] std::string sha256_hex(std::string_view text);

// The nonce envelope as the API defines it ("envelope" in a sign reply), rebuilt without
// Signet's code:
//   "signet.nonce.v1" || 0x00 || key id bytes (hex-decoded id) || u64be(nonce) || payload digest
[[nodiscard]] Bytes rebuild_nonce_envelope(const std::string& key_id_hex, std::uint64_t nonce,
                                           const Bytes& payload_digest);

}  // namespace signet::test
