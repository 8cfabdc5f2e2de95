// Catalog replication and the HSM pairing ceremony between two real appliances on real etcd
// (docs/ha.md, "Replication"): clients and keys made on one appliance reach the other, replicable
// keys are wrapped under the pair's KEKs and unwrapped into the peer's HSM, the ceremony refuses a
// transport key whose fingerprint the operator did not confirm, and appliance-local keys stay with
// their holder.
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <latch>
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

// Runs `on_a` on this thread and `on_b` on another, released at the same instant: two admin
// requests racing on the two appliances. No Catch macros inside (they are not thread-safe).
void at_once(const std::function<void()>& on_a, const std::function<void()>& on_b) {
    std::latch go(2);
    std::thread t([&] {
        go.arrive_and_wait();
        on_b();
    });
    go.arrive_and_wait();
    on_a();
    t.join();
}

// Puts key = value straight into etcd through member 0's gateway: what any etcd writer can do.
void etcd_put(TestPair& pair, const std::string& key, const std::string& value) {
    const json::object body{{"key", signet::base64_encode(signet::as_bytes(key))},
                            {"value", signet::base64_encode(signet::as_bytes(value))}};
    const std::string answer = pair.etcd().post_json(0, "/v3/kv/put", json::serialize(body));
    REQUIRE(answer.find("\"header\"") != std::string::npos);
}

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

    // An admin that arrived through etcd is audited and logged at warn, naming its writer.
    CHECK(eventually([&] {
        const std::string log = pair.appliance(1).log();
        return log.find("level=warn component=pair event=admin_replicated") != std::string::npos &&
               log.find("writer=a") != std::string::npos;
    }));
    const auto signer = pair.create_signer();
    const auto replicated = test::audit_with_action(admin_b, "client.create.replicated");
    REQUIRE_FALSE(replicated.empty());
    CHECK(test::str(replicated.back(), "actor") == "pair:a");

    // The unauthenticated readiness probe says why not in general terms only: not the active's
    // address, not etcd's error text.
    const ApiReply ready = anon_b.get("/v1/health/ready");
    INFO(ready.describe());
    test::check_api_error(ready, 503, "not_ready");
    CHECK_THAT(ready.error_message(), Catch::Contains("not the active appliance"));
    CHECK_THAT(ready.error_message(), !Catch::Contains("127.0.0.1"));
    CHECK_THAT(ready.error_message(), !Catch::Contains("the active is"));

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
    for (const std::string& bad :
         std::vector<std::string>{"b/../b", "b c", "", std::string(65, 'b')}) {
        INFO("peer '" << bad << "'");
        test::check_api_error(
            admin_a.post("/v1/ha/pair", {{"peer", bad}, {"transport_sha256", real}}), 400,
            "invalid_argument");
    }
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

TEST_CASE(
    "an ed25519 key stays with the appliance that made it, and a peer that does not forward "
    "says so",
    "[ha][integration]") {
    PairOptions o = dual_active();
    o.forward = false;
    TestPair pair(o);
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

TEST_CASE(
    "in dual-active, a request for a key only the peer holds is signed there, and is "
    "refused with nothing signed once the peer is gone",
    "[ha][integration]") {
    TestPair pair(dual_active());
    const auto signer = pair.create_signer();
    REQUIRE(pair.wait_signing(1, 30s));
    ApiClient admin_a = pair.api(0);
    const auto key = test::create_key(admin_a, "ed25519", "held-by-a");
    const std::string id = test::str(key, "id");
    ApiClient admin_b = pair.api(1);
    REQUIRE(eventually([&] { return admin_b.get("/v1/keys/" + id).status == 200; }));

    // b forwards to a, whose HSM signs; b verifies the signature with the replicated public key.
    ApiClient sb = pair.api(1, signer.token);
    const std::string message = signet::hex_encode(signet::as_bytes("forwarded"));
    const ApiReply r = sb.post("/v1/keys/" + id + "/sign", {{"message", message}});
    INFO(r.describe());
    REQUIRE(r.status == 200);
    CHECK(r.headers.at("X-Signet-Served-By") == "a");
    const ApiReply v =
        sb.post("/v1/keys/" + id + "/verify",
                {{"message", message}, {"signature", test::str(r.object(), "signature")}});
    INFO(v.describe());
    CHECK(v.status == 200);
    CHECK(v.body.find("\"valid\":true") != std::string::npos);
    const auto ecdsa = test::create_key(admin_a, "ecdsa-p256", "also-held-by-a");
    const std::string ecdsa_id = test::str(ecdsa, "id");
    REQUIRE(eventually([&] { return admin_b.get("/v1/keys/" + ecdsa_id).status == 200; }));
    const ApiReply batch = sb.post("/v1/keys/" + ecdsa_id + "/sign-batch",
                                   {{"digests", json::array{test::sha256_hex("d")}}});
    INFO(batch.describe());
    CHECK(batch.status == 200);
    CHECK(batch.headers.at("X-Signet-Served-By") == "a");

    // a is gone: b cannot reach it, says so, and signed nothing.
    pair.appliance(0).kill9();
    const ApiReply down = sb.post("/v1/keys/" + id + "/sign", {{"message", message}});
    INFO(down.describe());
    test::check_api_error(down, 503, "peer_unreachable");
    CHECK_THAT(down.error_message(), Catch::Contains("nothing was signed"));
    CHECK_THAT(down.error_message(), Catch::Contains("appliance a at https://127.0.0.1:"));
    CHECK(down.headers.count("Retry-After") == 1);
    const std::string metrics = admin_b.get("/metrics").body;
    CHECK(metrics.find(R"(signet_ha_forwarded_total{peer="a",outcome="unreachable"} 1)") !=
          std::string::npos);
    CHECK(metrics.find(R"(signet_ha_forwarded_total{peer="a",outcome="answered"} 2)") !=
          std::string::npos);
}

TEST_CASE("a KEK addressed to an appliance that it cannot import is audited as a failed import",
          "[ha][integration]") {
    TestPair pair;
    ApiClient admin_b = pair.api(1);
    REQUIRE(eventually([&] { return admin_b.get("/v1/clients").status == 200; }));
    // Any etcd writer can address a KEK to b; this one was wrapped for another transport key.
    const json::object kek{{"sender", "x"},
                           {"receiver", "b"},
                           {"kek_id", "00ff"},
                           {"blob", signet::base64_encode(signet::as_bytes("not a wrapped key"))},
                           {"transport_sha256", std::string(64, '0')}};
    etcd_put(pair, "/signet/test/pairing/kek/x/b", json::serialize(kek));
    std::vector<json::object> imports;
    CHECK(eventually([&] {
        imports = test::audit_with_action(admin_b, "ha.kek_import");
        return !imports.empty();
    }));
    REQUIRE(imports.size() == 1);
    CHECK(test::str(imports.front(), "outcome") == "failed");
    CHECK(test::str(imports.front(), "actor") == "pair:x");
    CHECK(strings(pair.ha_status(1).object(), "kek_from").empty());
}

TEST_CASE(
    "a key changed on both appliances at once keeps every acknowledged change: a policy change "
    "on one never re-enables a key the other disabled",
    "[ha][integration]") {
    TestPair pair(dual_active());
    ApiClient admin_a = pair.api(0);
    ApiClient admin_b = pair.api(1);
    REQUIRE(eventually([&] { return admin_b.get("/v1/clients").status == 200; }));
    for (int round = 0; round < 6; ++round) {
        const auto key = test::create_key(admin_a, "ecdsa-p256", "race-" + std::to_string(round));
        const std::string id = test::str(key, "id");
        const double before =
            key.at("policy").at("rate_limit").at("per_second").to_number<double>();
        const double wanted = before + 7 + round;
        REQUIRE(eventually([&] { return admin_b.get("/v1/keys/" + id).status == 200; }));
        ApiReply policed, disabled;
        at_once(
            [&] {
            policed =
                admin_a.put("/v1/keys/" + id + "/policy",
                            json::object{{"rate_limit", {{"per_second", wanted}, {"burst", 10}}}});
            },
            [&] { disabled = admin_b.post("/v1/keys/" + id + "/disable", json::object{}); });
        INFO("round " << round << ": policy on a " << policed.describe() << "; disable on b "
                      << disabled.describe());
        for (const ApiReply* r : {&policed, &disabled}) {
            REQUIRE((r->status == 200 || r->status == 409));
            if (r->status == 409) {
                test::check_api_error(*r, 409, "conflict");
                CHECK_THAT(r->error_message(), Catch::Contains("changed on the peer"));
            }
        }
        // A change is refused only because the other one got in first.
        CHECK((policed.status == 200 || disabled.status == 200));
        const std::string state = disabled.status == 200 ? "disabled" : "active";
        const double rate = policed.status == 200 ? wanted : before;
        CHECK(eventually(
            [&] {
            for (ApiClient* admin : {&admin_a, &admin_b}) {
                const ApiReply k = admin->get("/v1/keys/" + id);
                if (k.status != 200 || test::str(k.object(), "state") != state ||
                    k.object().at("policy").at("rate_limit").at("per_second").to_number<double>() !=
                        rate) {
                    return false;
                }
            }
            return true;
            },
            5s));
    }
}

TEST_CASE("two admins revoking each other at once on the two appliances leave the pair an admin",
          "[ha][integration]") {
    TestPair pair(dual_active());
    test::ClientCredentials kept = pair.admin();
    for (int round = 0; round < 4; ++round) {
        ApiClient kept_a = pair.api(0, kept.token);
        const auto other = test::create_client(kept_a, "admin-" + std::to_string(round), "admin");
        ApiClient other_b = pair.api(1, other.token);
        REQUIRE(eventually([&] { return other_b.get("/v1/clients").status == 200; }));
        // Each appliance sees two active admins; each request revokes the other's caller.
        ApiReply on_a, on_b;
        at_once([&] { on_a = kept_a.post("/v1/clients/" + other.id + "/revoke", json::object{}); },
                [&] { on_b = other_b.post("/v1/clients/" + kept.id + "/revoke", json::object{}); });
        INFO("round " << round << ": on a " << on_a.describe() << "; on b " << on_b.describe());
        REQUIRE((on_a.status == 200) != (on_b.status == 200));
        const ApiReply& refused = on_a.status == 200 ? on_b : on_a;
        // Refused in etcd (409), or b had already applied a's revocation of its caller (401).
        if (refused.status == 409) {
            CHECK_THAT(refused.error_message(), Catch::Contains("last active admin"));
        } else {
            CHECK(refused.status == 401);
        }
        const test::ClientCredentials revoked = on_a.status == 200 ? other : kept;
        if (on_b.status == 200) kept = other;
        CHECK(eventually(
            [&] {
            for (std::size_t i = 0; i < 2; ++i) {
                if (pair.api(i, kept.token).get("/v1/clients").status != 200) return false;
                if (pair.api(i, revoked.token).get("/v1/clients").status != 401) return false;
            }
            return true;
            },
            5s));
    }
}
