// Catalog replication and the HSM pairing ceremony between two real appliances on real etcd
// (docs/ha.md, "Replication"): clients and keys made on one appliance reach the other, replicable
// keys are wrapped under the pair's KEKs and unwrapped into the peer's HSM, the ceremony refuses a
// transport key whose fingerprint the operator did not confirm, and appliance-local keys stay with
// their holder.
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <thread>

#include "signet/pkcs11/public_key.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/pair_harness.hpp"

using namespace std::chrono_literals;
namespace test = signet::test;
namespace json = boost::json;
using test::ApiClient;
using test::ApiReply;
using test::PairOptions;
using test::TestPair;

namespace {

// Polls `done` every 50 ms until it holds; false after `bound`.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds bound = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < deadline) {
        if (done()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return done();
}

std::vector<std::string> strings(const json::object& o, std::string_view key) {
    std::vector<std::string> out;
    if (const auto* v = o.if_contains(key); v && v->is_array()) {
        for (const auto& s : v->as_array()) out.emplace_back(s.as_string());
    }
    return out;
}

std::string transport_sha256(const TestPair& pair, std::size_t i) {
    const ApiReply st = pair.ha_status(i);
    REQUIRE(st.status == 200);
    const std::string fp = test::str(st.object(), "transport_sha256");
    REQUIRE(fp.size() == 64);
    return fp;
}

PairOptions dual_active() {
    PairOptions o;
    o.mode = "dual-active";
    return o;
}

// A signer client made on appliance 0, once appliance 1 knows it too.
// Signs sha256(text) with `key_id` and returns the DER signature.
signet::Bytes sign_digest(ApiClient& signer, const std::string& key_id, const std::string& text) {
    const auto r = test::sign(signer, key_id, {{"digest", test::sha256_hex(text)}});
    auto sig = signet::hex_decode(test::str(r, "signature"));
    REQUIRE(sig.has_value());
    return *sig;
}

}  // namespace

TEST_CASE("a client created on the active authenticates on the standby, and its revocation follows",
          "[ha][integration]") {
    TestPair pair;
    // The admin of first-run setup on a is an admin on b too, and b's setup is complete.
    ApiClient admin_b = pair.api(1);
    REQUIRE(eventually([&] { return admin_b.get("/v1/clients").status == 200; }));
    ApiClient anon_b(pair.appliance(1).client_options(5s), "");
    const ApiReply setup = anon_b.post("/v1/setup", {{"setup_token", "sst_guess"}, {"name", "x"}});
    test::check_api_error(setup, 409, "conflict");
    CHECK_THAT(setup.error_message(), Catch::Contains("done on the peer"));

    const auto signer = pair.create_signer();
    const auto replicated = test::audit_with_action(admin_b, "client.create.replicated");
    REQUIRE_FALSE(replicated.empty());
    CHECK(test::str(replicated.back(), "actor") == "pair:a");

    // A standby makes no catalog changes: the error names the active, and nothing changed.
    const ApiReply refused = admin_b.post("/v1/clients", {{"name", "rogue"}, {"role", "admin"}});
    INFO(refused.describe());
    test::check_api_error(refused, 503, "not_active");
    CHECK_THAT(refused.error_message(), Catch::Contains("the active is a"));
    ApiClient admin_a = pair.api(0);
    CHECK(admin_a.get("/v1/clients").body.find("rogue") == std::string::npos);

    ApiClient signer_b = pair.api(1, signer.token);
    const ApiReply revoke = admin_a.post("/v1/clients/" + signer.id + "/revoke", json::object{});
    REQUIRE(revoke.status == 200);
    CHECK(eventually([&] { return signer_b.get("/v1/keys").status == 401; }));
}

TEST_CASE(
    "paired in both directions, a replicable key made on either appliance is unwrapped into the "
    "other's HSM and signatures from both verify under its one public key",
    "[ha][integration]") {
    TestPair pair(dual_active());
    pair.pair_hsms();
    for (std::size_t i = 0; i < 2; ++i) {
        const ApiReply st = pair.ha_status(i);
        REQUIRE(st.status == 200);
        CHECK(strings(st.object(), "kek_to") == std::vector<std::string>{pair.name(1 - i)});
        CHECK(eventually([&] {
            const ApiReply s = pair.ha_status(i);
            return s.status == 200 &&
                   strings(s.object(), "kek_from") == std::vector<std::string>{pair.name(1 - i)};
        }));
    }
    const auto signer = pair.create_signer();
    REQUIRE(pair.wait_signing(1, 30s));  // b's HSM self-test runs in the background
    ApiClient sa = pair.api(0, signer.token);
    ApiClient sb = pair.api(1, signer.token);

    // One pair for both directions (starting a pair dominates the run time): a -> b, b -> a.
    const std::pair<std::string, std::size_t> cases[] = {{"ecdsa-secp256k1", 0}, {"ecdsa-p256", 1}};
    for (const auto& [alg, maker] : cases) {
        INFO(alg << " made on " << pair.name(maker));
        const auto key = pair.create_replicated_key(maker, alg);
        const std::string id = test::str(key, "id");
        const auto spki =
            signet::pkcs11::spki_from_pem(test::str(key.at("public_key").as_object(), "pem"));
        REQUIRE(spki.has_value());
        const auto algorithm = signet::pkcs11::parse_algorithm(alg);
        REQUIRE(algorithm.has_value());

        const auto described = pair.api(1 - maker).get("/v1/keys/" + id);
        REQUIRE(described.status == 200);
        CHECK(strings(described.object(), "holders") == std::vector<std::string>{"a", "b"});
        CHECK(test::str(described.object().at("public_key").as_object(), "pem") ==
              test::str(key.at("public_key").as_object(), "pem"));

        for (ApiClient* s : {&sa, &sb}) {
            const signet::Bytes sig = sign_digest(*s, id, "replicated " + alg);
            const auto digest = signet::hex_decode(test::sha256_hex("replicated " + alg));
            REQUIRE(digest.has_value());
            CHECK(test::evp_verify(*algorithm, *spki, *digest, sig));
        }
        ApiClient admin_other = pair.api(1 - maker);
        const auto unwrapped = test::audit_with_action(admin_other, "key.replicate");
        REQUIRE_FALSE(unwrapped.empty());
        CHECK(test::str(unwrapped.back(), "outcome") == "ok");
        CHECK(test::str(unwrapped.back(), "subject") == id);
    }
}

TEST_CASE("the pairing ceremony refuses a transport key fingerprint the operator did not confirm",
          "[ha][integration]") {
    TestPair pair;
    ApiClient admin_a = pair.api(0);
    const std::string real = transport_sha256(pair, 1);
    std::string wrong = real;
    wrong[10] = wrong[10] == '0' ? '1' : '0';

    const ApiReply r = admin_a.post("/v1/ha/pair", {{"peer", "b"}, {"transport_sha256", wrong}});
    INFO(r.describe());
    test::check_api_error(r, 409, "conflict");
    CHECK_THAT(r.error_message(), Catch::Contains(real));
    CHECK_THAT(r.error_message(), Catch::Contains(wrong));
    const auto denied = test::audit_with_action(admin_a, "ha.pair");
    REQUIRE(denied.size() == 1);
    CHECK(test::str(denied.front(), "outcome") == "denied");
    CHECK(strings(pair.ha_status(0).object(), "kek_to").empty());

    // Malformed input, unknown peers and callers without the admin role change nothing either.
    test::check_api_error(admin_a.post("/v1/ha/pair", {{"peer", "b"}, {"transport_sha256", "abc"}}),
                          400, "invalid_argument");
    test::check_api_error(
        admin_a.post("/v1/ha/pair", {{"peer", "nobody"}, {"transport_sha256", real}}), 404,
        "not_found");
    test::check_api_error(admin_a.post("/v1/ha/pair", {{"peer", "a"}, {"transport_sha256", real}}),
                          400, "invalid_argument");
    test::check_api_error(admin_a.post("/v1/ha/pair", {{"peer", "b"}}), 400, "bad_request");
    const auto signer = test::create_client(admin_a, "app", "signer");
    ApiClient s = pair.api(0, signer.token);
    test::check_api_error(s.post("/v1/ha/pair", {{"peer", "b"}, {"transport_sha256", real}}), 403,
                          "forbidden");
    CHECK(strings(pair.ha_status(0).object(), "kek_to").empty());
    // Nothing reached b: it never imported a KEK.
    CHECK(strings(pair.ha_status(1).object(), "kek_from").empty());
    // The confirmed fingerprint then works (colons and upper case as an operator may paste it).
    std::string pasted;
    for (std::size_t i = 0; i < real.size(); i += 2) {
        pasted += (i ? ":" : "") + real.substr(i, 2);
    }
    for (auto& ch : pasted) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    const ApiReply ok = admin_a.post("/v1/ha/pair", {{"peer", "b"}, {"transport_sha256", pasted}});
    INFO(ok.describe());
    CHECK(ok.status == 200);
    CHECK(eventually([&] {
        return strings(pair.ha_status(1).object(), "kek_from") == std::vector<std::string>{"a"};
    }));
}

TEST_CASE("an ed25519 key stays with the appliance that made it, and the peer says so",
          "[ha][integration]") {
    TestPair pair(dual_active());
    pair.pair_hsms();
    const auto signer = pair.create_signer();
    REQUIRE(pair.wait_signing(1, 30s));  // b's HSM self-test runs in the background
    ApiClient admin_a = pair.api(0);
    for (const std::string alg : {"ed25519", "ecdsa-p256"}) {
        INFO(alg << " (appliance-local)");
        const auto key = test::create_key(admin_a, alg, "local-only");
        const std::string id = test::str(key, "id");
        ApiClient admin_b = pair.api(1);
        REQUIRE(eventually([&] { return admin_b.get("/v1/keys/" + id).status == 200; }));
        CHECK(strings(admin_b.get("/v1/keys/" + id).object(), "holders") ==
              std::vector<std::string>{"a"});

        ApiClient sa = pair.api(0, signer.token);
        ApiClient sb = pair.api(1, signer.token);
        const json::object body{{"message", signet::hex_encode(signet::as_bytes("hello"))}};
        CHECK(sa.post("/v1/keys/" + id + "/sign", body).status == 200);
        const ApiReply r = sb.post("/v1/keys/" + id + "/sign", body);
        INFO(r.describe());
        test::check_api_error(r, 503, "unavailable");
        CHECK(r.error_message() ==
              "key " + id + " is held only by appliance a (appliance-local key)");
    }

    // Replicable ed25519 keys are refused at creation: the HSM cannot wrap them.
    const ApiReply rep =
        admin_a.post("/v1/keys", {{"algorithm", "ed25519"}, {"label", "x"}, {"replicable", true}});
    test::check_api_error(rep, 422, "not_replicable");
}
