// Standalone appliance, the real signetd: what the REST API does with malformed, oversized,
// impossible or too frequent requests, and its unauthenticated surface (health, metrics, OpenAPI).
// Every refusal is checked for its status, its stable code and for leaving no trace.
#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"

namespace test = signet::test;
namespace json = boost::json;
using test::ApiClient;
using test::ApiReply;

namespace {

struct BadRequest {
    std::string what, method, target, body;
};

void check_all(ApiClient& who, const std::vector<BadRequest>& requests, int status,
               const std::string& code) {
    for (const auto& r : requests) {
        INFO(r.what << ": " << r.method << " " << r.target << " " << r.body.substr(0, 200));
        test::check_api_error(who.request(r.method, r.target, r.body), status, code);
    }
}

}  // namespace

TEST_CASE("malformed JSON, wrong types and unknown fields are 400 bad_request and change nothing",
          "[daemon][integration][input]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const std::string key_id = test::str(test::create_key(admin, "ecdsa-p256", "input-key"), "id");
    const std::string k = "/v1/keys/" + key_id;
    const std::string d = test::sha256_hex("input");
    const std::string dq = "\"" + d + "\"";

    const test::StateSnapshot before = test::snapshot(admin);
    const std::vector<BadRequest> admin_requests = {
        {"truncated JSON", "POST", "/v1/keys", R"({"algorithm":"ecdsa-p256","label":)"},
        {"not an object", "POST", "/v1/keys", R"(["ecdsa-p256"])"},
        {"algorithm is a number", "POST", "/v1/keys", R"({"algorithm":5,"label":"x"})"},
        {"missing label", "POST", "/v1/keys", R"({"algorithm":"ecdsa-p256"})"},
        {"replicable is a string", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","replicable":"no"})"},
        {"unknown member", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","colour":"red"})"},
        {"policy typo", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","policy":{"nonce_requird":true}})"},
        {"policy flag not bool", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","policy":{"watermark_required":1}})"},
        {"the former nonce_required member", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","policy":{"nonce_required":true}})"},
        {"unknown nonce mode", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","policy":{"nonces":"always"}})"},
        {"nonce mode not a string", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","policy":{"nonces":true}})"},
        {"negative rate", "PUT", k + "/policy", R"({"rate_limit":{"per_second":-1}})"},
        {"clients not an array", "PUT", k + "/policy", R"({"clients":"cl_x"})"},
        {"unknown operation", "PUT", k + "/policy", R"({"operations":["sign","export"]})"},
        {"bad JSON policy", "PUT", k + "/policy", "{"},
        {"client name is a number", "POST", "/v1/clients", R"({"name":1,"role":"signer"})"},
        {"client unknown member", "POST", "/v1/clients",
         R"({"name":"x","role":"signer","admin":true})"},
        {"client bad JSON", "POST", "/v1/clients", "name=x&role=signer"},
        // Routes without parameters refuse a body that has some: a field sent to them is a
        // mistake (and a disable or destroy must not go ahead on a misunderstanding).
        {"disable takes no fields", "POST", k + "/disable", R"({"force":true})"},
        {"destroy takes no fields", "DELETE", k, R"({"force":true})"},
        {"revoke takes no fields", "POST", "/v1/clients/" + p.signer.id + "/revoke",
         R"({"reason":"x"})"},
        {"audit verify takes no fields", "POST", "/v1/audit/verify", R"({"full":true})"},
        {"audit tail: unknown query parameter", "GET", "/v1/audit?after=0&limt=5", ""},
        {"audit tail: only unknown query parameters", "GET", "/v1/audit?from=1", ""},
    };
    check_all(admin, admin_requests, 400, "bad_request");
    const std::vector<BadRequest> signer_requests = {
        {"truncated JSON", "POST", k + "/sign", R"({"digest":)"},
        {"trailing garbage", "POST", k + "/sign", R"({"digest":)" + dq + "} x"},
        {"digest is a number", "POST", k + "/sign", R"({"digest":5})"},
        {"digest not hex", "POST", k + "/sign", R"({"digest":"zz"})"},
        {"digest not base64", "POST", k + "/sign", R"({"digest":"!!!","format":"base64"})"},
        {"unknown format", "POST", k + "/sign", R"({"digest":)" + dq + R"(,"format":"binary"})"},
        {"digest and message", "POST", k + "/sign", R"({"digest":)" + dq + R"(,"message":"00"})"},
        {"neither digest nor message", "POST", k + "/sign", R"({"encoding":"der"})"},
        {"nonce is a string", "POST", k + "/sign", R"({"digest":)" + dq + R"(,"nonce":"yes"})"},
        {"negative reserved nonce", "POST", k + "/sign",
         R"({"digest":)" + dq + R"(,"reserved_nonce":-1})"},
        {"nonce and reserved nonce", "POST", k + "/sign",
         R"({"digest":)" + dq + R"(,"nonce":true,"reserved_nonce":1})"},
        {"watermark not an array", "POST", k + "/sign",
         R"({"digest":)" + dq + R"(,"watermark":7})"},
        {"negative watermark", "POST", k + "/sign", R"({"digest":)" + dq + R"(,"watermark":[-1]})"},
        {"empty watermark", "POST", k + "/sign", R"({"digest":)" + dq + R"(,"watermark":[]})"},
        {"misspelt nonce", "POST", k + "/sign", R"({"digest":)" + dq + R"(,"nonse":true})"},
        {"batch digests not an array", "POST", k + "/sign-batch", R"({"digests":)" + dq + "}"},
        {"batch digest is a number", "POST", k + "/sign-batch", R"({"digests":[1]})"},
        {"batch without digests", "POST", k + "/sign-batch", R"({"encoding":"der"})"},
        {"batch empty", "POST", k + "/sign-batch", R"({"digests":[]})"},
        {"batch takes no nonce", "POST", k + "/sign-batch",
         R"({"digests":[)" + dq + R"(],"nonce":true})"},
        {"batch bad JSON", "POST", k + "/sign-batch", "[[["},
        {"reserve takes no fields", "POST", k + "/nonces", R"({"count":5})"},
        {"verify without signature", "POST", k + "/verify", R"({"digest":)" + dq + "}"},
        {"verify signature is a number", "POST", k + "/verify",
         R"({"digest":)" + dq + R"(,"signature":1})"},
        {"verify unknown member", "POST", k + "/verify",
         R"({"digest":)" + dq + R"(,"signature":"00","strict":true})"},
        {"verify takes no watermark", "POST", k + "/verify",
         R"({"digest":)" + dq + R"(,"signature":"00","watermark":[1]})"},
    };
    check_all(signer, signer_requests, 400, "bad_request");
    // A digest of the wrong length is well-formed JSON with an invalid value.
    test::check_api_error(signer.post(k + "/sign", json::object{{"digest", d.substr(2)}}), 400,
                          "invalid_argument");
    test::check_api_error(
        admin.post("/v1/keys", json::object{{"algorithm", "ecdsa-p256"}, {"label", ""}}), 400,
        "invalid_argument");
    test::check_api_error(admin.get("/v1/audit?after=x"), 400, "bad_request");
    test::check_unchanged(before, test::snapshot(admin));
    // The same routes with an empty object, or no body, still work.
    CHECK(admin.get("/v1/audit?after=0&limit=1").status == 200);
    CHECK(admin.post("/v1/audit/verify", json::object{}).status == 200);
    CHECK(admin.request("POST", k + "/disable").status == 200);
    CHECK(admin.request("DELETE", k, "{}").status == 204);
}

TEST_CASE("oversized bodies and batches are 413, impossible requests 422",
          "[daemon][integration][input]") {
    test::ProvisionedDaemon p(
        {}, [](test::SignetDaemon& d) { d.set_option("limits", "batch_max", "4"); });
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const std::string key_id = test::str(test::create_key(admin, "ecdsa-p256", "limits-key"), "id");
    const std::string k = "/v1/keys/" + key_id;
    const std::string d = test::sha256_hex("limits");

    const test::StateSnapshot before = test::snapshot(admin);
    // Default max_body_bytes is 1 MiB.
    const std::string huge = R"({"message":")" + std::string(3 * 1024 * 1024 / 2, 'a') + "\"}";
    test::check_api_error(test::curl_request(p.daemon, "POST", k + "/sign", huge, p.signer.token),
                          413, "payload_too_large");
    json::array five;
    for (int i = 0; i < 5; ++i) five.emplace_back(test::sha256_hex("batch" + std::to_string(i)));
    test::check_api_error(signer.post(k + "/sign-batch", json::object{{"digests", five}}), 413,
                          "payload_too_large");

    const std::vector<BadRequest> impossible = {
        {"unknown algorithm", "POST", "/v1/keys", R"({"algorithm":"ecdsa-p384","label":"x"})"},
        {"unknown role", "POST", "/v1/clients", R"({"name":"x","role":"root"})"},
        {"policy names an unknown client", "POST", "/v1/keys",
         R"({"algorithm":"ecdsa-p256","label":"x","policy":{"clients":["cl_nobody"]}})"},
        {"policy update names an unknown client", "PUT", k + "/policy",
         R"({"clients":["cl_nobody"]})"},
    };
    check_all(admin, impossible, 422, "unprocessable");
    test::check_api_error(
        admin.post("/v1/keys",
                   json::object{{"algorithm", "ed25519"}, {"label", "x"}, {"replicable", true}}),
        422, "not_replicable");
    const std::vector<BadRequest> unsignable = {
        {"unknown hash", "POST", k + "/sign", R"({"message":"00","hash":"md5"})"},
        {"unknown encoding", "POST", k + "/sign", R"({"digest":")" + d + R"(","encoding":"pem"})"},
        {"unknown padding", "POST", k + "/sign",
         R"({"digest":")" + d + R"(","rsa_padding":"none"})"},
        {"batch unknown encoding", "POST", k + "/sign-batch",
         R"({"digests":[")" + d + R"("],"encoding":"pem"})"},
    };
    check_all(signer, unsignable, 422, "unprocessable");
    // eth encoding needs a secp256k1 key: a valid request this key cannot serve.
    test::check_api_error(
        signer.post(k + "/sign", json::object{{"digest", d}, {"encoding", "eth"}}), 422,
        "unprocessable");
    test::check_unchanged(before, test::snapshot(admin));

    // The limits are limits, not refusals of everything.
    json::array four(five.begin(), five.begin() + 4);
    const ApiReply batch = signer.post(k + "/sign-batch", json::object{{"digests", four}});
    INFO(batch.describe());
    REQUIRE(batch.status == 200);
    CHECK(batch.object().at("signatures").as_array().size() == 4);
    CHECK(test::sign(signer, key_id, {{"message", std::string(2 * 1024, 'a')}})
              .contains("signature"));
}

TEST_CASE("a key over its rate limit answers 429 rate_limited with Retry-After",
          "[daemon][integration][input][rate]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    // One token per 1000 s: the bucket does not refill during the test. One key per nonce mode
    // (each signs only its own kind of request), each bucket emptied by two accepted requests.
    const json::object limit{{"per_second", 0.001}, {"burst", 2}};
    auto limited = [&](const std::string& label, const std::string& nonces) {
        return test::str(test::create_key(admin, "ecdsa-p256", label,
                                          {{"rate_limit", limit}, {"nonces", nonces}}),
                         "id");
    };
    const std::string key_id = limited("rate-key", "none");
    const std::string envelope_id = limited("rate-envelope", "envelope");
    const std::string reserved_id = limited("rate-reserved", "reserved");
    const std::string k = "/v1/keys/" + key_id;
    const std::string ke = "/v1/keys/" + envelope_id;
    const std::string kr = "/v1/keys/" + reserved_id;
    const json::object body{{"digest", test::sha256_hex("rate")}};
    const json::object envelope_body{{"digest", test::sha256_hex("rate")}, {"nonce", true}};
    test::sign(signer, key_id, body);
    test::sign(signer, key_id, body);
    test::sign(signer, envelope_id, envelope_body);
    test::sign(signer, envelope_id, envelope_body);
    const ApiReply reservation = signer.post(kr + "/nonces", json::object{});
    REQUIRE(reservation.status == 201);
    REQUIRE(signer.post(kr + "/nonces", json::object{}).status == 201);
    const std::uint64_t reserved = test::u64(reservation.object(), "nonce");

    const test::StateSnapshot before = test::snapshot(admin);
    // A batch larger than the burst could never pass the bucket: 413, not 429 for ever.
    const ApiReply too_big = signer.post(
        k + "/sign-batch",
        json::object{{"digests", json::array{test::sha256_hex("1"), test::sha256_hex("2"),
                                             test::sha256_hex("3")}}});
    test::check_api_error(too_big, 413, "payload_too_large");
    CHECK(too_big.error_message().find("burst") != std::string::npos);
    for (const auto& [target, b] : std::vector<std::pair<std::string, json::value>>{
             {k + "/sign", body},
             {ke + "/sign", envelope_body},
             {k + "/sign-batch", json::object{{"digests", json::array{test::sha256_hex("rate")}}}},
             {kr + "/nonces", json::object{}},
             {kr + "/sign",
              json::object{{"digest", test::sha256_hex("rate")}, {"reserved_nonce", reserved}}}}) {
        INFO(target);
        const ApiReply r = signer.post(target, b);
        test::check_api_error(r, 429, "rate_limited");
        REQUIRE(r.headers.count("Retry-After") == 1);
        CHECK(std::stoi(r.headers.at("Retry-After")) >= 1);
    }
    test::check_unchanged(before, test::snapshot(admin));

    // Lifting the limit (a policy change resets the bucket) lets the key sign again.
    const ApiReply lifted = admin.put(k + "/policy", json::object{});
    REQUIRE(lifted.status == 200);
    test::sign(signer, key_id, body);
}

TEST_CASE("a batch larger than the key's rate-limit burst is 413 and costs the key nothing",
          "[daemon][integration][input][rate]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    // Burst 3, one token per 1000 s: the bucket does not refill during the test.
    const std::string key_id = test::str(
        test::create_key(admin, "ecdsa-p256", "burst-key",
                         {{"rate_limit", json::object{{"per_second", 0.001}, {"burst", 3}}}}),
        "id");
    const std::string batch_path = "/v1/keys/" + key_id + "/sign-batch";
    auto batch = [&](int n) {
        json::array digests;
        for (int i = 0; i < n; ++i) digests.emplace_back(test::sha256_hex(std::to_string(i)));
        return signer.post(batch_path, json::object{{"digests", std::move(digests)}});
    };

    const test::StateSnapshot before = test::snapshot(admin);
    const ApiReply too_big = batch(4);
    test::check_api_error(too_big, 413, "payload_too_large");
    CHECK(too_big.error_message().find("burst of 3") != std::string::npos);
    test::check_unchanged(before, test::snapshot(admin));

    // The whole burst is still there: a batch of exactly the burst passes, then the key is empty.
    const ApiReply full = batch(3);
    INFO(full.describe());
    REQUIRE(full.status == 200);
    CHECK(full.object().at("signatures").as_array().size() == 3);
    test::check_api_error(batch(1), 429, "rate_limited");
}

TEST_CASE("unknown paths are 404 not_found and wrong methods 405 with Allow",
          "[daemon][integration][input]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient anon = p.anonymous();
    const std::string key_id = test::str(test::create_key(admin, "ecdsa-p256", "paths-key"), "id");
    const test::StateSnapshot before = test::snapshot(admin);
    for (ApiClient* who : {&admin, &anon}) {
        test::check_api_error(who->get("/v1/nope"), 404, "not_found");
        test::check_api_error(who->get("/v2/keys"), 404, "not_found");
        test::check_api_error(who->get("/v1/keys/" + key_id + "/export"), 404, "not_found");
        test::check_api_error(who->post("/v1/transit/keys/x", json::object{}), 404, "not_found");

        struct WrongMethod {
            std::string method, target;
            std::vector<std::string> allowed;
        };
        for (const auto& w :
             std::vector<WrongMethod>{{"DELETE", "/v1/keys", {"GET", "POST"}},
                                      {"GET", "/v1/keys/" + key_id + "/sign", {"POST"}},
                                      {"PUT", "/v1/keys/" + key_id, {"GET", "DELETE"}},
                                      {"POST", "/v1/health/live", {"GET"}},
                                      {"GET", "/v1/setup", {"POST"}}}) {
            INFO(w.method << " " << w.target);
            const ApiReply r = who->request(w.method, w.target, w.method == "GET" ? "" : "{}");
            test::check_api_error(r, 405, "method_not_allowed");
            REQUIRE(r.headers.count("Allow") == 1);
            for (const auto& m : w.allowed)
                CHECK(r.headers.at("Allow").find(m) != std::string::npos);
        }
    }
    test::check_unchanged(before, test::snapshot(admin));
}

TEST_CASE("health, metrics and the OpenAPI document are served without credentials",
          "[daemon][integration][input][openapi]") {
    test::ProvisionedDaemon p;
    ApiClient anon = p.anonymous();
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const ApiReply live = anon.get("/v1/health/live");
    REQUIRE(live.status == 200);
    CHECK(test::str(live.object(), "status") == "live");
    const ApiReply ready = anon.get("/v1/health/ready");
    REQUIRE(ready.status == 200);
    CHECK(test::str(ready.object(), "status") == "ready");

    const std::string key_id =
        test::str(test::create_key(admin, "ecdsa-p256", "metrics-key"), "id");
    test::sign(signer, key_id, {{"digest", test::sha256_hex("m")}});
    const ApiReply metrics = anon.get("/metrics");
    REQUIRE(metrics.status == 200);
    CHECK(metrics.headers.count("Content-Type") == 1);
    CHECK(metrics.headers.at("Content-Type").find("text/plain") == 0);
    CHECK(test::metric_sum(metrics.body, "signet_signatures_total") >= 1);
    CHECK(metrics.body.find(R"(signet_signatures_total{algorithm="ecdsa-p256"})") !=
          std::string::npos);
    CHECK(test::metric_sum(metrics.body, "signet_http_requests_total") >= 3);
    CHECK(metrics.body.find("route=\"keys.sign\"") != std::string::npos);
    // A token must never show up in the exposition.
    CHECK(metrics.body.find("sgt_") == std::string::npos);

    const ApiReply doc = anon.get("/v1/openapi.json");
    REQUIRE(doc.status == 200);
    REQUIRE(doc.json.is_object());
    CHECK(test::str(doc.object(), "openapi").rfind("3.", 0) == 0);
    const auto& paths = doc.object().at("paths").as_object();
    std::size_t routes = 0;
    for (const auto& r : test::api_routes()) {
        ++routes;
        INFO(r.method << " " << r.pattern << " (" << r.name << ")");
        const json::value* path = paths.if_contains(r.pattern);
        REQUIRE(path != nullptr);
        std::string method = r.method;
        std::ranges::transform(method, method.begin(),
                               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        CHECK(path->as_object().contains(method));
    }
    CHECK(routes >= 18);
    // Every code the suite expects is in the documented enum of stable codes.
    std::set<std::string> documented;
    for (const auto& c : doc.object()
                             .at("components")
                             .at("schemas")
                             .at("Error")
                             .at("properties")
                             .at("error")
                             .at("properties")
                             .at("code")
                             .at("enum")
                             .as_array()) {
        documented.emplace(c.as_string());
    }
    for (const char* code :
         {"bad_request", "invalid_argument", "unauthenticated", "forbidden", "policy_denied",
          "not_found", "conflict", "key_disabled", "watermark_regression", "reservation_invalid",
          "payload_too_large", "unprocessable", "not_replicable", "rate_limited",
          "method_not_allowed"}) {
        INFO(code);
        CHECK(documented.count(code) == 1);
    }
}
