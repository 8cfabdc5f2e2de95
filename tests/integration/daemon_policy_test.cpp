// Standalone appliance, the real signetd: what a key's policy admits. A key's "nonces" mode
// (none, envelope, reserved) is fixed when it is created and admits only its own kind of
// signature; a watermark key signs an equal watermark again only for byte-identical HSM input,
// never with a fresh nonce, and keeps the arity of its first watermark.
#include <catch2/catch.hpp>
#include <string>

#include "signet/core/bytes.hpp"
#include "signet/pkcs11/algorithm.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/independent_verify.hpp"

namespace test = signet::test;
namespace json = boost::json;
using signet::Bytes;
using test::ApiClient;
using test::ApiReply;

namespace {

std::string make_key(ApiClient& admin, const std::string& label, const json::object& policy) {
    return test::str(test::create_key(admin, "ecdsa-p256", label, policy), "id");
}

void check_policy_denied(const ApiReply& r, const std::string& why) {
    INFO(why);
    test::check_api_error(r, 403, "policy_denied");
}

std::uint64_t last_issued(ApiClient& who, const std::string& key_id) {
    const ApiReply c = who.get("/v1/keys/" + key_id + "/counter");
    INFO(c.describe());
    REQUIRE(c.status == 200);
    return test::u64(c.object(), "last_issued");
}

}  // namespace

TEST_CASE("a key's nonce mode admits only its own kind of signature",
          "[daemon][integration][policy][nonce]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const std::string none = make_key(admin, "mode-none", {});
    const std::string envelope = make_key(admin, "mode-envelope", {{"nonces", "envelope"}});
    const std::string reserved = make_key(admin, "mode-reserved", {{"nonces", "reserved"}});
    for (const auto& [id, mode] : {std::pair{none, "none"}, std::pair{envelope, "envelope"},
                                   std::pair{reserved, "reserved"}}) {
        const ApiReply got = admin.get("/v1/keys/" + id);
        REQUIRE(got.status == 200);
        CHECK(test::str(got.object().at("policy").as_object(), "nonces") == mode);
    }
    const std::string d = test::sha256_hex("mode");
    const json::object plain{{"digest", d}};
    const json::object with_nonce{{"digest", d}, {"nonce", true}};
    const json::object with_reserved{{"digest", d}, {"reserved_nonce", 1}};
    const json::object batch{{"digests", json::array{d}}};
    auto at = [](const std::string& id, const char* what) { return "/v1/keys/" + id + what; };

    const test::StateSnapshot before = test::snapshot(admin);
    check_policy_denied(signer.post(at(none, "/sign"), with_nonce), "none: envelope");
    check_policy_denied(signer.post(at(none, "/sign"), with_reserved), "none: reserved");
    check_policy_denied(signer.post(at(none, "/nonces"), json::object{}), "none: reserve");
    check_policy_denied(signer.post(at(envelope, "/sign"), plain), "envelope: plain");
    check_policy_denied(signer.post(at(envelope, "/sign"), json::object{{"message", "00"}}),
                        "envelope: plain message");
    check_policy_denied(signer.post(at(envelope, "/sign"), with_reserved), "envelope: reserved");
    check_policy_denied(signer.post(at(envelope, "/sign-batch"), batch), "envelope: batch");
    check_policy_denied(signer.post(at(envelope, "/nonces"), json::object{}), "envelope: reserve");
    check_policy_denied(signer.post(at(reserved, "/sign"), plain), "reserved: plain");
    check_policy_denied(signer.post(at(reserved, "/sign"), with_nonce), "reserved: envelope");
    check_policy_denied(signer.post(at(reserved, "/sign-batch"), batch), "reserved: batch");
    // Refusals allocate nothing.
    test::check_unchanged(before, test::snapshot(admin));
    CHECK(last_issued(admin, envelope) == 0);
    CHECK(last_issued(admin, reserved) == 0);

    // Each mode's own kind of signature works.
    CHECK(test::sign(signer, none, plain).contains("signature"));
    const ApiReply batched = signer.post(at(none, "/sign-batch"), batch);
    INFO(batched.describe());
    CHECK(batched.status == 200);
    CHECK(test::u64(test::sign(signer, envelope, with_nonce), "nonce") == 1);
    const ApiReply r = signer.post(at(reserved, "/nonces"), json::object{});
    INFO(r.describe());
    REQUIRE(r.status == 201);
    const std::uint64_t n = test::u64(r.object(), "nonce");
    const json::object s = test::sign(signer, reserved, {{"digest", d}, {"reserved_nonce", n}});
    CHECK(test::u64(s, "nonce") == n);
}

TEST_CASE("on an envelope key no client can present its own bytes as an envelope",
          "[daemon][integration][policy][nonce]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const auto key = test::create_key(admin, "ecdsa-p256", "envelopes", {{"nonces", "envelope"}});
    const std::string key_id = test::str(key, "id");
    const Bytes spki = test::spki_of_pem(test::str(key.at("public_key").as_object(), "pem"));
    const Bytes payload = test::oracle_sha256(Bytes{'p', 'a', 'y'});

    // What a genuine envelope signature is: ECDSA over sha256(envelope(key, nonce, payload)).
    const json::object genuine =
        test::sign(signer, key_id, {{"digest", signet::hex_encode(payload)}, {"nonce", true}});
    REQUIRE(test::u64(genuine, "nonce") == 1);
    CHECK(test::evp_verify(signet::pkcs11::Algorithm::ecdsa_p256, spki,
                           test::oracle_sha256(test::rebuild_nonce_envelope(key_id, 1, payload)),
                           test::unhex(test::str(genuine, "signature"))));

    // So a plain signature over sha256(envelope(key, 5, payload)) would be a valid "nonce 5"
    // signature the appliance never issued (and nonce 5 is still to come). Refused, in every form.
    const Bytes forged_envelope = test::rebuild_nonce_envelope(key_id, 5, payload);
    const std::string forged_digest = signet::hex_encode(test::oracle_sha256(forged_envelope));
    const test::StateSnapshot before = test::snapshot(admin);
    check_policy_denied(
        signer.post("/v1/keys/" + key_id + "/sign", json::object{{"digest", forged_digest}}),
        "the envelope's digest");
    check_policy_denied(signer.post("/v1/keys/" + key_id + "/sign",
                                    json::object{{"message", signet::hex_encode(forged_envelope)}}),
                        "the envelope as a message");
    check_policy_denied(signer.post("/v1/keys/" + key_id + "/sign-batch",
                                    json::object{{"digests", json::array{forged_digest}}}),
                        "the envelope's digest in a batch");
    test::check_unchanged(before, test::snapshot(admin));
    CHECK(last_issued(admin, key_id) == 1);
}

TEST_CASE(
    "a key's nonce mode is fixed at creation, and policy changes are audited before and after",
    "[daemon][integration][policy][audit]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    const json::object policy{{"nonces", "envelope"},
                              {"rate_limit", json::object{{"per_second", 10}, {"burst", 20}}}};
    const std::string key_id = make_key(admin, "fixed-mode", policy);
    const std::string target = "/v1/keys/" + key_id + "/policy";

    const auto created = test::audit_with_action(admin, "key.create");
    REQUIRE(created.size() == 1);
    CHECK(test::str(created[0], "subject") == key_id);
    CHECK(test::str(created[0], "actor") == p.admin.id);
    CHECK(test::str(created[0].at("details").as_object(), "label") == "fixed-mode");

    const test::StateSnapshot before = test::snapshot(admin);
    for (const json::object& change :
         {json::object{{"nonces", "none"}}, json::object{{"nonces", "reserved"}},
          json::object{}}) {  // a policy without "nonces" means "none": also a change
        INFO(json::serialize(change));
        const ApiReply r = admin.put(target, change);
        test::check_api_error(r, 409, "conflict");
        CHECK(r.error_message().find("envelope") != std::string::npos);
    }
    test::check_unchanged(before, test::snapshot(admin));
    CHECK(test::audit_with_action(admin, "key.policy").empty());

    // Everything else may change; the record holds the policy before and after.
    const json::object changed{{"nonces", "envelope"}, {"watermark_required", true}};
    const ApiReply ok = admin.put(target, changed);
    INFO(ok.describe());
    REQUIRE(ok.status == 200);
    const auto records = test::audit_with_action(admin, "key.policy");
    REQUIRE(records.size() == 1);
    CHECK(test::str(records[0], "subject") == key_id);
    CHECK(test::str(records[0], "actor") == p.admin.id);
    const auto& details = records[0].at("details").as_object();
    const auto& was = details.at("before").as_object();
    const auto& now = details.at("after").as_object();
    CHECK(test::str(was, "nonces") == "envelope");
    CHECK_FALSE(was.at("watermark_required").as_bool());
    CHECK(was.at("rate_limit").at("burst").to_number<double>() == 20);
    CHECK(test::str(now, "nonces") == "envelope");
    CHECK(now.at("watermark_required").as_bool());
    CHECK(now.at("rate_limit").at("burst").to_number<double>() == 0);  // replaced as a whole
    CHECK(json::value(now) == ok.object().at("policy"));
}

TEST_CASE("an equal watermark is signed again only for byte-identical HSM input",
          "[daemon][integration][policy][watermark]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const std::string key_id = make_key(admin, "validator", {{"watermark_required", true}});
    const std::string k = "/v1/keys/" + key_id + "/sign";
    const std::string d = test::sha256_hex("block 5");
    auto at = [](json::object body, json::array w) {
        body["watermark"] = std::move(w);
        return body;
    };

    const json::object first = test::sign(signer, key_id, at({{"digest", d}}, {5}));
    // The identical request again (a retry) is the same signature input: allowed.
    const json::object retry = test::sign(signer, key_id, at({{"digest", d}}, {5}));
    CHECK(test::str(retry, "digest") == test::str(first, "digest"));
    // The same client bytes as a message are another input (sha256 of them): a double-sign.
    const test::StateSnapshot before = test::snapshot(admin);
    test::check_api_error(signer.post(k, at({{"message", d}}, {5})), 409, "watermark_regression");
    test::check_unchanged(before, test::snapshot(admin));

    // The other way round: a message, then its digest, is one HSM input in two encodings.
    const std::string msg = signet::hex_encode(Bytes{'b', 'l', 'o', 'c', 'k', ' ', '6'});
    const json::object by_message = test::sign(signer, key_id, at({{"message", msg}}, {6}));
    const json::object by_digest =
        test::sign(signer, key_id, at({{"digest", test::sha256_hex("block 6")}}, {6}));
    CHECK(test::str(by_digest, "digest") == test::str(by_message, "digest"));

    // The key's watermarks keep the arity of the first: [6] < [6,0,0] would sign height 6 twice.
    for (const json::array& w : {json::array{6, 0, 0}, json::array{7, 0}}) {
        INFO(json::serialize(w));
        test::check_api_error(signer.post(k, at({{"digest", test::sha256_hex("fork")}}, w)), 422,
                              "unprocessable");
    }
    CHECK(test::sign(signer, key_id, at({{"digest", test::sha256_hex("block 7")}}, {7}))
              .contains("signature"));
    CHECK(test::audit_with_action(admin, "sign.watermark").size() == 5);
}

TEST_CASE("with a fresh nonce an equal watermark is never signed again",
          "[daemon][integration][policy][watermark][nonce]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const std::string key_id =
        make_key(admin, "attester", {{"nonces", "envelope"}, {"watermark_required", true}});
    const json::object body{
        {"digest", test::sha256_hex("epoch 3")}, {"nonce", true}, {"watermark", json::array{3}}};
    CHECK(test::u64(test::sign(signer, key_id, body), "nonce") == 1);
    // The retry would embed nonce 2: a different message at watermark 3.
    const test::StateSnapshot before = test::snapshot(admin);
    const ApiReply again = signer.post("/v1/keys/" + key_id + "/sign", body);
    test::check_api_error(again, 409, "watermark_regression");
    test::check_unchanged(before, test::snapshot(admin));
    CHECK(last_issued(admin, key_id) == 1);
    json::object next = body;
    next["watermark"] = json::array{4};
    CHECK(test::u64(test::sign(signer, key_id, next), "nonce") == 2);
}
