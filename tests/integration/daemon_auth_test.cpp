// Standalone appliance, the real signetd: who may do what. Every refusal must carry the documented
// HTTP status and stable error code, and must leave the appliance as it was (keys, clients,
// counters, audit log apart from the auth.failure record the refusal itself writes, metrics).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"

namespace test = signet::test;
namespace json = boost::json;
using test::ApiClient;
using test::ApiReply;

namespace {

// A body that would be accepted if the caller were allowed: authorization must be the only reason
// a request fails.
std::string plausible_body(const test::RouteInfo& r) {
    if (r.name == "keys.create") return R"({"algorithm":"ecdsa-p256","label":"x"})";
    if (r.name == "keys.sign") return R"({"digest":")" + test::sha256_hex("x") + R"("})";
    if (r.name == "keys.sign_batch") return R"({"digests":[")" + test::sha256_hex("x") + R"("]})";
    if (r.name == "keys.verify") {
        return R"({"digest":")" + test::sha256_hex("x") + R"(","signature":"3006020101020101"})";
    }
    if (r.name == "clients.create") return R"({"name":"x","role":"signer"})";
    if (r.name == "keys.policy") return "{}";
    return {};
}

// The id a route's {id} names: a client for /v1/clients/..., a key otherwise.
std::string id_for(const test::RouteInfo& r, const std::string& key_id,
                   const std::string& client_id) {
    return r.pattern.rfind("/v1/clients/", 0) == 0 ? client_id : key_id;
}

ApiReply call(ApiClient& api, const test::RouteInfo& r, const std::string& id,
              const signet::web::Headers& headers = {}) {
    return api.request(r.method, test::fill_path(r.pattern, id), plausible_body(r), headers);
}

// How many events an audit record stands for: "count" for a tally record, 1 for a record of its
// own.
std::uint64_t events_in(const json::object& record) {
    const json::value& d = record.at("details");
    return d.is_object() && d.as_object().contains("count") ? test::u64(d.as_object(), "count") : 1;
}

// Events in the records of `action` by `actor` (every actor when empty).
std::uint64_t audited_events(ApiClient& reader, const std::string& action,
                             const std::string& actor = {}) {
    std::uint64_t n = 0;
    for (const auto& rec : test::audit_with_action(reader, action)) {
        if (actor.empty() || test::str(rec, "actor") == actor) n += events_in(rec);
    }
    return n;
}

// A clean stop writes the pending tallies; the daemon then starts again on the same store.
void restart_cleanly(test::SignetDaemon& d) {
    REQUIRE(d.stop().exited_with(0));
    d.start();
}

}  // namespace

TEST_CASE("every authenticated route refuses missing, invalid and revoked credentials with 401",
          "[daemon][integration][auth]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    const auto key = test::create_key(admin, "ecdsa-p256", "auth-key");
    const std::string key_id = test::str(key, "id");
    const auto revoked = test::create_client(admin, "revoked-signer", "signer");
    ApiClient revoked_api = p.api(revoked);
    REQUIRE(revoked_api.get("/v1/keys").status == 200);  // the token worked until it was revoked
    REQUIRE(admin.post("/v1/clients/" + revoked.id + "/revoke", json::object{}).status == 200);

    const test::StateSnapshot before = test::snapshot(admin);
    ApiClient anonymous = p.anonymous();
    ApiClient forged(p.daemon, "sgt_" + std::string(43, 'A'));
    std::size_t attempts = 0;
    std::size_t routes = 0;
    for (const auto& r : test::api_routes()) {
        if (r.is_public()) continue;
        ++routes;
        const std::string id = id_for(r, key_id, p.signer.id);
        INFO(r.method << " " << r.pattern);
        {
            INFO("no credentials");
            test::check_api_error(call(anonymous, r, id), 401, "unauthenticated");
        }
        {
            INFO("unknown token");
            test::check_api_error(call(forged, r, id), 401, "unauthenticated");
        }
        {
            INFO("malformed Authorization header");
            test::check_api_error(
                call(anonymous, r, id, {{"Authorization", "Basic YWRtaW46YWRtaW4="}}), 401,
                "unauthenticated");
        }
        {
            INFO("unknown X-Vault-Token");
            test::check_api_error(call(anonymous, r, id, {{"X-Vault-Token", "hvs.nope"}}), 401,
                                  "unauthenticated");
        }
        {
            INFO("revoked client");
            test::check_api_error(call(revoked_api, r, id), 401, "unauthenticated");
        }
        attempts += 5;
    }
    CHECK(routes >= 14);  // the API has at least the routes of the first release

    // Each refusal is audited: the first from this address (each minute) durably before its 401,
    // the rest in the tally signetd writes every minute and at shutdown.
    REQUIRE(p.daemon.stop().exited_with(0));
    p.daemon.start();
    ApiClient admin_again = p.api(p.admin);
    const test::StateSnapshot after = test::snapshot(admin_again);
    test::check_unchanged(before, after);
    CHECK(after.auth_failures == before.auth_failures + attempts);
}

TEST_CASE("roles are enforced: signers cannot administer, admins and auditors cannot sign",
          "[daemon][integration][auth]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    ApiClient auditor = p.api(p.auditor);
    const std::string key_id = test::str(test::create_key(admin, "ecdsa-p256", "roles-key"), "id");
    const std::string digest = test::sha256_hex("roles");
    const json::object sign_body{{"digest", digest}};
    const json::object batch_body{{"digests", json::array{digest}}};
    const json::object new_key{{"algorithm", "ecdsa-p256"}, {"label", "nope"}};
    const json::object new_client{{"name", "nope"}, {"role", "admin"}};

    const test::StateSnapshot before = test::snapshot(admin);
    struct Denial {
        ApiClient* who;
        const char* role;
        std::string method, target;
        json::value body;
    };
    const std::string k = "/v1/keys/" + key_id;
    const std::string c = "/v1/clients/" + p.signer.id;
    const std::vector<Denial> denials = {
        {&signer, "signer", "POST", "/v1/keys", new_key},
        {&signer, "signer", "POST", k + "/disable", nullptr},
        {&signer, "signer", "PUT", k + "/policy", json::object{}},
        {&signer, "signer", "DELETE", k, nullptr},
        {&signer, "signer", "POST", "/v1/clients", new_client},
        {&signer, "signer", "GET", "/v1/clients", nullptr},
        {&signer, "signer", "POST", c + "/revoke", nullptr},
        {&signer, "signer", "GET", "/v1/audit", nullptr},
        {&signer, "signer", "POST", "/v1/audit/verify", nullptr},
        {&admin, "admin", "POST", k + "/sign", sign_body},
        {&admin, "admin", "POST", k + "/sign-batch", batch_body},
        {&admin, "admin", "POST", k + "/nonces", nullptr},
        {&auditor, "auditor", "POST", k + "/sign", sign_body},
        {&auditor, "auditor", "POST", k + "/sign-batch", batch_body},
        {&auditor, "auditor", "POST", k + "/nonces", nullptr},
        {&auditor, "auditor", "POST", "/v1/keys", new_key},
        {&auditor, "auditor", "POST", k + "/disable", nullptr},
        {&auditor, "auditor", "PUT", k + "/policy", json::object{}},
        {&auditor, "auditor", "DELETE", k, nullptr},
        {&auditor, "auditor", "POST", "/v1/clients", new_client},
        {&auditor, "auditor", "POST", c + "/revoke", nullptr},
    };
    for (const auto& d : denials) {
        INFO(d.role << " " << d.method << " " << d.target);
        const std::string body = d.body.is_null() ? std::string{} : json::serialize(d.body);
        test::check_api_error(d.who->request(d.method, d.target, body), 403, "forbidden");
    }
    test::check_unchanged(before, test::snapshot(admin));

    // What each role may do still works.
    CHECK(auditor.get("/v1/audit").status == 200);
    CHECK(auditor.get("/v1/clients").status == 200);
    CHECK(auditor.get("/v1/keys").status == 200);
    test::check_audit_chain(auditor);
    CHECK(signer.get(k).status == 200);
    CHECK(test::sign(signer, key_id, sign_body).contains("signature"));
}

TEST_CASE("a key's policy refuses other clients, other operations and unguarded signatures",
          "[daemon][integration][auth][policy]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const auto other_cred = test::create_client(admin, "signer-2", "signer");
    ApiClient other = p.api(other_cred);
    const std::string digest = test::sha256_hex("policy");
    const json::object plain{{"digest", digest}};

    const std::string only_signer =
        test::str(test::create_key(admin, "ecdsa-p256", "only-signer-1",
                                   {{"clients", json::array{p.signer.id}}}),
                  "id");
    const std::string verify_only =
        test::str(test::create_key(admin, "ecdsa-p256", "verify-only",
                                   {{"operations", json::array{"verify"}}}),
                  "id");
    const std::string needs_nonce = test::str(
        test::create_key(admin, "ecdsa-p256", "needs-nonce", {{"nonces", "envelope"}}), "id");
    const std::string needs_mark = test::str(
        test::create_key(admin, "ecdsa-p256", "needs-watermark", {{"watermark_required", true}}),
        "id");
    const std::string needs_both =
        test::str(test::create_key(admin, "ecdsa-p256", "needs-both",
                                   {{"nonces", "envelope"}, {"watermark_required", true}}),
                  "id");

    const test::StateSnapshot before = test::snapshot(admin);
    auto denied = [](ApiClient& who, const std::string& target, const json::value& body) {
        INFO(target << " " << json::serialize(body));
        test::check_api_error(who.post(target, body), 403, "policy_denied");
    };
    const std::string k1 = "/v1/keys/" + only_signer;
    denied(other, k1 + "/sign", plain);
    denied(other, k1 + "/sign-batch", json::object{{"digests", json::array{digest}}});
    denied(other, k1 + "/nonces", json::object{});
    test::check_api_error(other.get(k1), 403, "policy_denied");
    const std::string k2 = "/v1/keys/" + verify_only;
    denied(signer, k2 + "/sign", plain);
    denied(signer, k2 + "/sign-batch", json::object{{"digests", json::array{digest}}});
    denied(signer, k2 + "/nonces", json::object{});
    const std::string k3 = "/v1/keys/" + needs_nonce;
    denied(signer, k3 + "/sign", plain);
    denied(signer, k3 + "/sign", json::object{{"digest", digest}, {"nonce", false}});
    denied(signer, k3 + "/sign-batch", json::object{{"digests", json::array{digest}}});
    const std::string k4 = "/v1/keys/" + needs_mark;
    denied(signer, k4 + "/sign", plain);
    denied(signer, k4 + "/sign-batch", json::object{{"digests", json::array{digest}}});
    // A nonce does not stand in for a watermark.
    const std::string k5 = "/v1/keys/" + needs_both;
    denied(signer, k5 + "/sign", json::object{{"digest", digest}, {"nonce", true}});
    test::check_unchanged(before, test::snapshot(admin));

    // The other client does not even see the key in its list.
    const ApiReply listed = other.get("/v1/keys");
    REQUIRE(listed.status == 200);
    for (const auto& k : listed.object().at("keys").as_array())
        CHECK(test::str(k.as_object(), "id") != only_signer);
    // What each policy allows still works.
    const ApiReply sig = signer.post(k1 + "/sign", plain);
    REQUIRE(sig.status == 200);
    const ApiReply v = signer.post(
        k2 + "/verify",
        json::object{{"digest", digest}, {"signature", test::str(sig.object(), "signature")}});
    INFO(v.describe());
    REQUIRE(v.status == 200);
    CHECK_FALSE(v.object().at("valid").as_bool());  // signed by another key
    CHECK(test::sign(signer, needs_nonce, {{"digest", digest}, {"nonce", true}}).contains("nonce"));
    CHECK(test::sign(signer, needs_mark, {{"digest", digest}, {"watermark", json::array{1}}})
              .contains("signature"));
    CHECK(test::sign(signer, needs_both,
                     {{"digest", digest}, {"nonce", true}, {"watermark", json::array{1}}})
              .contains("nonce"));
}

TEST_CASE("a disabled key refuses to sign with 409 and unknown keys and clients are 404",
          "[daemon][integration][auth]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const std::string digest = test::sha256_hex("disabled");
    const std::string key_id = test::str(test::create_key(admin, "ecdsa-p256", "to-disable"), "id");
    const ApiReply sig =
        signer.post("/v1/keys/" + key_id + "/sign", json::object{{"digest", digest}});
    REQUIRE(sig.status == 200);
    const ApiReply disabled = admin.post("/v1/keys/" + key_id + "/disable", json::object{});
    REQUIRE(disabled.status == 200);
    CHECK(test::str(disabled.object(), "state") == "disabled");

    const test::StateSnapshot before = test::snapshot(admin);
    const std::string k = "/v1/keys/" + key_id;
    test::check_api_error(signer.post(k + "/sign", json::object{{"digest", digest}}), 409,
                          "key_disabled");
    test::check_api_error(
        signer.post(k + "/sign", json::object{{"digest", digest}, {"nonce", true}}), 409,
        "key_disabled");
    test::check_api_error(
        signer.post(k + "/sign-batch", json::object{{"digests", json::array{digest}}}), 409,
        "key_disabled");
    test::check_api_error(signer.post(k + "/nonces", json::object{}), 409, "key_disabled");

    const std::string nobody = "/v1/keys/00112233445566778899aabbccddeeff";
    const json::object verify_body{{"digest", digest},
                                   {"signature", test::str(sig.object(), "signature")}};
    test::check_api_error(signer.get(nobody), 404, "not_found");
    test::check_api_error(signer.post(nobody + "/sign", json::object{{"digest", digest}}), 404,
                          "not_found");
    test::check_api_error(
        signer.post(nobody + "/sign-batch", json::object{{"digests", json::array{digest}}}), 404,
        "not_found");
    test::check_api_error(signer.post(nobody + "/verify", verify_body), 404, "not_found");
    test::check_api_error(signer.post(nobody + "/nonces", json::object{}), 404, "not_found");
    test::check_api_error(signer.get(nobody + "/counter"), 404, "not_found");
    test::check_api_error(admin.post(nobody + "/disable", json::object{}), 404, "not_found");
    test::check_api_error(admin.put(nobody + "/policy", json::object{}), 404, "not_found");
    test::check_api_error(admin.del(nobody), 404, "not_found");
    test::check_api_error(admin.post("/v1/clients/cl_0000000000000000/revoke", json::object{}), 404,
                          "not_found");
    test::check_unchanged(before, test::snapshot(admin));

    // Disabled keys still verify what they signed before.
    const ApiReply v = signer.post(k + "/verify", verify_body);
    INFO(v.describe());
    REQUIRE(v.status == 200);
    CHECK(v.object().at("valid").as_bool());

    // Destroyed keys are gone for everyone, and the destruction is audited.
    const ApiReply destroyed = admin.del(k);
    INFO(destroyed.describe());
    REQUIRE(destroyed.status == 204);
    test::check_api_error(signer.get(k), 404, "not_found");
    test::check_api_error(signer.post(k + "/sign", json::object{{"digest", digest}}), 404,
                          "not_found");
    test::check_api_error(admin.del(k), 404, "not_found");
    CHECK(admin.get("/v1/keys").object().at("keys").as_array().empty());
    const auto records = test::audit_with_action(admin, "key.destroy");
    REQUIRE(records.size() == 1);
    CHECK(test::str(records[0], "subject") == key_id);
}

TEST_CASE("a client registered with a certificate fingerprint authenticates by mutual TLS",
          "[daemon][integration][auth][mtls]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    // Self-signed client certificates made by the openssl CLI; fingerprints as it prints them.
    auto make_cert = [&](const std::string& name) {
        const auto cert = (p.daemon.var_dir() / (name + ".pem")).string();
        const auto key = (p.daemon.var_dir() / (name + ".key")).string();
        const auto made =
            test::run_process({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                               "-subj", "/CN=" + name, "-days", "1"});
        REQUIRE(made.status.exited_with(0));
        const auto fp = test::run_process(
            {"/usr/bin/openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"});
        REQUIRE(fp.status.exited_with(0));
        std::string fingerprint = fp.out.substr(fp.out.find('=') + 1);  // "AB:CD:..."
        fingerprint.erase(fingerprint.find_last_not_of(" \n") + 1);
        auto options = p.daemon.client_options();
        options.client_cert_file = cert;
        options.client_key_file = key;
        return std::make_pair(fingerprint, options);
    };
    const auto [fingerprint, options] = make_cert("mtls-signer");
    const auto [stranger_fp, stranger_options] = make_cert("stranger");

    test::check_api_error(
        admin.post("/v1/clients",
                   json::object{{"name", "m"}, {"role", "signer"}, {"cert_sha256", "abc"}}),
        400, "invalid_argument");
    const ApiReply created = admin.post(
        "/v1/clients",
        json::object{{"name", "mtls-signer"}, {"role", "signer"}, {"cert_sha256", fingerprint}});
    INFO(created.describe());
    REQUIRE(created.status == 201);
    std::string normalised;
    for (const char ch : fingerprint) {
        if (ch != ':')
            normalised += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    CHECK(test::str(created.object().at("client").as_object(), "cert_sha256") == normalised);
    test::check_api_error(admin.post("/v1/clients", json::object{{"name", "again"},
                                                                 {"role", "signer"},
                                                                 {"cert_sha256", normalised}}),
                          409, "already_exists");

    const std::string key_id = test::str(
        test::create_key(admin, "ecdsa-p256", "mtls-key", {{"nonces", "envelope"}}), "id");
    const std::string k = "/v1/keys/" + key_id + "/sign";
    ApiClient by_cert(options, "");
    test::sign(by_cert, key_id, {{"digest", test::sha256_hex("mtls")}, {"nonce", true}});
    // The certificate together with the client's own token is fine too.
    ApiClient cert_and_token(options, test::str(created.object(), "token"));
    test::sign(cert_and_token, key_id, {{"digest", test::sha256_hex("both")}, {"nonce", true}});
    const auto records = test::audit_with_action(admin, "sign.nonce");
    REQUIRE(records.size() == 2);
    for (const auto& rec : records) {
        CHECK(test::str(rec, "actor") ==
              test::str(created.object().at("client").as_object(), "id"));
    }
    // A client registered with a certificate must present it: its token alone is not enough
    // (a leaked token without the private key is useless).
    ApiClient token_only(p.daemon, test::str(created.object(), "token"));
    const ApiReply token_alone =
        token_only.post(k, json::object{{"digest", test::sha256_hex("t")}, {"nonce", true}});
    test::check_api_error(token_alone, 401, "unauthenticated");
    CHECK(token_alone.error_message().find("certificate") != std::string::npos);
    test::check_api_error(token_only.get("/v1/keys"), 401, "unauthenticated");
    // An unregistered certificate alone, or with the token of a client bound to another one, is
    // refused.
    ApiClient stranger(stranger_options, "");
    test::check_api_error(stranger.post(k, json::object{{"digest", test::sha256_hex("x")}}), 401,
                          "unauthenticated");
    ApiClient mixed(stranger_options, test::str(created.object(), "token"));
    test::check_api_error(mixed.post(k, json::object{{"digest", test::sha256_hex("x")}}), 401,
                          "unauthenticated");
    CHECK(stranger_fp != fingerprint);
    // Revoking the client revokes the certificate.
    REQUIRE(admin
                .post("/v1/clients/" + test::str(created.object().at("client").as_object(), "id") +
                          "/revoke",
                      json::object{})
                .status == 200);
    test::check_api_error(by_cert.post(k, json::object{{"digest", test::sha256_hex("y")}}), 401,
                          "unauthenticated");
}

TEST_CASE("first-run setup: a wrong token is 401, the right one works once, then 409",
          "[daemon][integration][auth][setup]") {
    test::SignetDaemon d;
    d.start();
    REQUIRE(d.setup_token().has_value());
    CHECK(d.setup_token()->rfind("sst_", 0) == 0);
    {
        std::ifstream f(d.data_dir() / "setup-token");
        std::string from_file;
        f >> from_file;
        CHECK(from_file == *d.setup_token());
    }
    ApiClient anon(d);
    test::check_api_error(anon.get("/v1/keys"), 401, "unauthenticated");
    test::check_api_error(
        anon.post("/v1/setup",
                  json::object{{"setup_token", "sst_" + std::string(43, 'x')}, {"name", "admin"}}),
        401, "unauthenticated");
    test::check_api_error(anon.post("/v1/setup", json::object{{"setup_token", *d.setup_token()}}),
                          400, "bad_request");
    test::check_api_error(anon.post("/v1/setup", json::object{{"setup_token", *d.setup_token()},
                                                              {"name", "admin"},
                                                              {"role", "admin"}}),
                          400, "bad_request");

    const ApiReply done =
        anon.post("/v1/setup", json::object{{"setup_token", *d.setup_token()}, {"name", "root"}});
    INFO(done.describe());
    REQUIRE(done.status == 201);
    const std::string admin_token = test::str(done.object(), "token");
    CHECK(admin_token.rfind("sgt_", 0) == 0);
    CHECK(test::str(done.object().at("client").as_object(), "role") == "admin");

    test::check_api_error(
        anon.post("/v1/setup", json::object{{"setup_token", *d.setup_token()}, {"name", "again"}}),
        409, "conflict");
    test::check_api_error(
        anon.post("/v1/setup",
                  json::object{{"setup_token", "sst_" + std::string(43, 'y')}, {"name", "again"}}),
        409, "conflict");
    ApiClient admin(d, admin_token);
    const ApiReply clients = admin.get("/v1/clients");
    REQUIRE(clients.status == 200);
    CHECK(clients.object().at("clients").as_array().size() == 1);
    CHECK(test::audit_with_action(admin, "setup.complete").size() == 1);
    const auto failures = test::audit_with_action(admin, "auth.failure");
    CHECK(std::ranges::any_of(
        failures, [](const json::object& r) { return test::str(r, "subject") == "setup"; }));

    // Once an admin exists, a restart issues no setup token and removes the old file.
    d.restart();
    CHECK_FALSE(d.setup_token().has_value());
    CHECK(d.stdout_text().find("setup token") == std::string::npos);
    CHECK_FALSE(std::filesystem::exists(d.data_dir() / "setup-token"));
    ApiClient admin_again(d, admin_token);
    CHECK(admin_again.get("/v1/keys").status == 200);
}

TEST_CASE("the last admin cannot be revoked, and revoked admins lose access at once",
          "[daemon][integration][auth]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    const test::StateSnapshot before = test::snapshot(admin);
    test::check_api_error(admin.post("/v1/clients/" + p.admin.id + "/revoke", json::object{}), 409,
                          "conflict");
    test::check_unchanged(before, test::snapshot(admin));

    const auto second = test::create_client(admin, "admin-2", "admin");
    ApiClient admin2 = p.api(second);
    REQUIRE(admin2.post("/v1/clients/" + p.admin.id + "/revoke", json::object{}).status == 200);
    test::check_api_error(admin.get("/v1/keys"), 401, "unauthenticated");
    // Revoking again is a no-op, and the remaining admin is now the last one.
    CHECK(admin2.post("/v1/clients/" + p.admin.id + "/revoke", json::object{}).status == 200);
    test::check_api_error(admin2.post("/v1/clients/" + second.id + "/revoke", json::object{}), 409,
                          "conflict");
    const ApiReply clients = admin2.get("/v1/clients");
    REQUIRE(clients.status == 200);
    for (const auto& c : clients.object().at("clients").as_array()) {
        const auto& o = c.as_object();
        CHECK(test::str(o, "state") == (test::str(o, "id") == p.admin.id ? "revoked" : "active"));
    }
    CHECK(test::audit_with_action(admin2, "client.revoke").size() == 1);
}

TEST_CASE("refusals carry the caller's request id, and no secret reaches a log",
          "[daemon][integration][auth]") {
    test::ProvisionedDaemon p;
    ApiClient anon = p.anonymous();
    const ApiReply r = anon.request("GET", "/v1/keys", "", {{"X-Request-Id", "trace-4711"}});
    test::check_api_error(r, 401, "unauthenticated");
    CHECK(r.error_request_id() == "trace-4711");
    ApiClient admin = p.api(p.admin);
    const auto failures = test::audit_with_action(admin, "auth.failure");
    REQUIRE(failures.size() == 1);
    CHECK(test::str(failures[0].at("details").as_object(), "request_id") == "trace-4711");
    // Named by address (not port): one tally per source however many connections it opens.
    CHECK(test::str(failures[0], "actor") == "anonymous@127.0.0.1");
    // Secrets never appear in the daemon's log: API tokens, the setup token, the HSM PIN.
    std::string pin;
    std::ifstream(p.daemon.pin_file()) >> pin;
    REQUIRE(pin.size() >= 16);
    for (const std::string& secret :
         {p.signer.token, p.admin.token, *p.daemon.setup_token(), pin}) {
        CHECK(p.daemon.log().find(secret) == std::string::npos);
    }
    for (const auto& rec : test::audit_records(admin)) {
        for (const auto* token : {&p.admin.token, &p.signer.token, &p.auditor.token}) {
            CHECK(json::serialize(rec).find(*token) == std::string::npos);
        }
    }
}

TEST_CASE("authentication failures are audited: the first of a minute at once, the rest tallied",
          "[daemon][integration][auth][audit]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    REQUIRE(test::audit_with_action(admin, "auth.failure").empty());
    ApiClient forged(p.daemon, "sgt_" + std::string(43, 'B'));

    // The first failure from this address is in the log by the time its 401 arrives.
    test::check_api_error(forged.get("/v1/keys"), 401, "unauthenticated");
    const auto first = test::audit_with_action(admin, "auth.failure");
    REQUIRE(first.size() == 1);
    CHECK(test::str(first[0], "actor") == "anonymous@127.0.0.1");
    CHECK(test::str(first[0], "outcome") == "denied");
    CHECK(events_in(first[0]) == 1);
    CHECK(test::str(first[0].at("details").as_object(), "reason") == "unknown API token");

    // The rest of the minute's failures are counted, not written (and fsynced) one by one.
    constexpr std::uint64_t kMore = 6;
    for (std::uint64_t i = 0; i < kMore; ++i)
        test::check_api_error(forged.get("/v1/keys"), 401, "unauthenticated");
    // At most a minute boundary's new first record and one periodic tally may have been written.
    CHECK(test::audit_with_action(admin, "auth.failure").size() <= 3);

    restart_cleanly(p.daemon);
    ApiClient admin_again = p.api(p.admin);
    CHECK(audited_events(admin_again, "auth.failure", "anonymous@127.0.0.1") == 1 + kMore);
    const auto records = test::audit_with_action(admin_again, "auth.failure");
    const auto tally =
        std::ranges::find_if(records, [](const json::object& r) { return events_in(r) > 1; });
    REQUIRE(tally != records.end());
    const auto& details = tally->at("details").as_object();
    CHECK(test::str(details, "reason") == "unknown API token");
    CHECK_FALSE(test::str(details, "minute").empty());
    test::check_audit_chain(admin_again);
}

TEST_CASE("refusals of authenticated callers are tallied as access.denied records with a count",
          "[daemon][integration][auth][audit]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const auto other = test::create_client(admin, "signer-2", "signer");
    const std::string key_id = test::str(
        test::create_key(admin, "ecdsa-p256", "not-yours", {{"clients", json::array{other.id}}}),
        "id");
    const std::string k = "/v1/keys/" + key_id;
    const json::object body{{"digest", test::sha256_hex("denied")}};

    constexpr std::uint64_t kPolicy = 3;
    for (std::uint64_t i = 0; i < kPolicy; ++i)
        test::check_api_error(signer.post(k + "/sign", body), 403, "policy_denied");
    test::check_api_error(admin.post(k + "/sign", body), 403, "forbidden");

    restart_cleanly(p.daemon);
    ApiClient admin_again = p.api(p.admin);
    CHECK(audited_events(admin_again, "access.denied", p.signer.id) == kPolicy);
    CHECK(audited_events(admin_again, "access.denied", p.admin.id) == 1);
    for (const auto& rec : test::audit_with_action(admin_again, "access.denied")) {
        INFO(json::serialize(rec));
        CHECK(test::str(rec, "subject") == key_id);
        CHECK(test::str(rec, "outcome") == "denied");
        const std::string reason = test::str(rec.at("details").as_object(), "reason");
        CHECK(reason.rfind(test::str(rec, "actor") == p.admin.id ? "forbidden: " : "policy: ", 0) ==
              0);
    }
    // Nothing else was refused (the other signer did nothing).
    CHECK(audited_events(admin_again, "access.denied") == kPolicy + 1);
}
