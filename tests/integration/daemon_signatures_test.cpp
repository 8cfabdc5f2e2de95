// Standalone appliance, the real signetd: every signature the REST API returns must verify with
// tools that share no code with Signet: the `openssl` CLI for every algorithm and encoding,
// libsecp256k1's public-key recovery for Ethereum signatures, and a nonce envelope rebuilt here
// from its documented layout.
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "signet/pkcs11/algorithm.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/independent_verify.hpp"

namespace test = signet::test;
namespace json = boost::json;
using signet::Bytes;
using signet::pkcs11::Algorithm;
using test::ApiClient;

namespace {

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }
std::string hex(const Bytes& b) { return signet::hex_encode(b); }

struct Key {
    std::string id;
    Algorithm algorithm = Algorithm::ecdsa_p256;
    std::string pem;
};

Key make_key(ApiClient& admin, const std::string& algorithm, const std::string& nonces = "none") {
    const auto k = test::create_key(admin, algorithm, "sig-" + algorithm, {{"nonces", nonces}});
    return {test::str(k, "id"), *signet::pkcs11::parse_algorithm(algorithm),
            test::str(k.at("public_key").as_object(), "pem")};
}

// Signs `body` and returns the signature bytes (hex "signature").
Bytes sign_bytes(ApiClient& signer, const Key& k, const json::object& body) {
    return test::unhex(test::str(test::sign(signer, k.id, body), "signature"));
}

// The point 0x04||X||Y at the end of an uncompressed secp256k1 SubjectPublicKeyInfo.
Bytes uncompressed_point(const Bytes& spki) {
    REQUIRE(spki.size() >= 65);
    Bytes point(spki.end() - 65, spki.end());
    REQUIRE(point[0] == 0x04);
    return point;
}

// libsecp256k1 directly: the public point that `sig65` (r||s||v, v = 27 + recovery id) over
// `digest` recovers, or empty.
Bytes recover_point(const Bytes& sig65, const Bytes& digest) {
    struct Free {
        void operator()(secp256k1_context* c) const noexcept { secp256k1_context_destroy(c); }
    };
    const std::unique_ptr<secp256k1_context, Free> ctx(
        secp256k1_context_create(SECP256K1_CONTEXT_VERIFY));
    if (sig65.size() != 65 || digest.size() != 32 || sig65[64] < 27 || sig65[64] > 28) return {};
    secp256k1_ecdsa_recoverable_signature sig;
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx.get(), &sig, sig65.data(),
                                                             sig65[64] - 27)) {
        return {};
    }
    secp256k1_pubkey pub;
    if (!secp256k1_ecdsa_recover(ctx.get(), &pub, &sig, digest.data())) return {};
    Bytes out(65);
    std::size_t len = out.size();
    secp256k1_ec_pubkey_serialize(ctx.get(), out.data(), &len, &pub, SECP256K1_EC_UNCOMPRESSED);
    return out;
}

}  // namespace

TEST_CASE("signatures of every algorithm verify with the openssl command line",
          "[daemon][integration][signatures]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    for (const std::string alg :
         {"ecdsa-p256", "ecdsa-secp256k1", "ed25519", "rsa-2048", "rsa-3072"}) {
        INFO(alg);
        const Key k = make_key(admin, alg);
        const Bytes msg = bytes_of("signet daemon test message for " + alg);
        const Bytes other = bytes_of("another message");
        const bool rsa = signet::pkcs11::is_rsa(k.algorithm);

        const Bytes sig = sign_bytes(signer, k, {{"message", hex(msg)}});
        CHECK(test::openssl_cli_verify(k.algorithm, k.pem, msg, sig));
        CHECK_FALSE(
            test::openssl_cli_verify(k.algorithm, k.pem, other, sig));  // the check can fail
        const test::ApiReply v =
            signer.post("/v1/keys/" + k.id + "/verify",
                        json::object{{"message", hex(msg)}, {"signature", hex(sig)}});
        REQUIRE(v.status == 200);
        CHECK(v.object().at("valid").as_bool());

        if (k.algorithm == Algorithm::ed25519) {
            // PureEdDSA signs the message itself; a digest is refused.
            test::check_api_error(
                signer.post("/v1/keys/" + k.id + "/sign",
                            json::object{{"digest", hex(test::oracle_sha256(msg))}}),
                422, "unprocessable");
            continue;
        }
        // A digest computed by the client signs the same message.
        const Bytes digest = test::oracle_sha256(msg);
        const json::object by_digest = test::sign(signer, k.id, {{"digest", hex(digest)}});
        CHECK(test::str(by_digest, "digest") == hex(digest));
        CHECK(test::openssl_cli_verify(k.algorithm, k.pem, msg,
                                       test::unhex(test::str(by_digest, "signature"))));
        // Base64 input and output.
        const json::object b64 = test::sign(
            signer, k.id, {{"digest", signet::base64_encode(digest)}, {"format", "base64"}});
        CHECK(test::str(b64, "signature_base64") ==
              signet::base64_encode(test::unhex(test::str(b64, "signature"))));
        CHECK(test::openssl_cli_verify(k.algorithm, k.pem, msg,
                                       test::unhex(test::str(b64, "signature"))));

        if (rsa) {
            for (const json::object& body :
                 {json::object{{"message", hex(msg)}, {"rsa_padding", "pss"}},
                  json::object{{"digest", hex(digest)}, {"rsa_padding", "pss"}}}) {
                const Bytes pss = sign_bytes(signer, k, body);
                CHECK(test::openssl_cli_verify(k.algorithm, k.pem, msg, pss, true));
                CHECK_FALSE(test::openssl_cli_verify(k.algorithm, k.pem, msg, pss, false));
            }
        } else {
            const Bytes raw = sign_bytes(signer, k, {{"digest", hex(digest)}, {"encoding", "raw"}});
            REQUIRE(raw.size() == 64);
            CHECK(test::openssl_cli_verify(k.algorithm, k.pem, msg, test::oracle_ecdsa_der(raw)));
            // keccak256 (no CLI digest for it): OpenSSL EVP over the oracle's Keccak-256.
            const json::object kec =
                test::sign(signer, k.id, {{"message", hex(msg)}, {"hash", "keccak256"}});
            CHECK(test::str(kec, "digest") == hex(test::oracle_keccak256(msg)));
            CHECK(test::evp_verify(k.algorithm, test::spki_of_pem(k.pem),
                                   test::oracle_keccak256(msg),
                                   test::unhex(test::str(kec, "signature"))));
        }
    }
}

TEST_CASE("Ethereum signatures recover the key's Ethereum address",
          "[daemon][integration][signatures][eth]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const Key k = make_key(admin, "ecdsa-secp256k1");
    const test::ApiReply got = signer.get("/v1/keys/" + k.id);
    REQUIRE(got.status == 200);
    const std::string address =
        test::str(got.object().at("public_key").as_object(), "ethereum_address");
    // The published address is the EIP-55 form of the key's own point (oracle: Crypto++ Keccak).
    CHECK(address == test::oracle_eth_address(uncompressed_point(test::spki_of_pem(k.pem))));

    for (int i = 0; i < 8; ++i) {
        INFO("message " << i);
        const Bytes msg = bytes_of("transfer " + std::to_string(i) + " wei");
        const Bytes digest = test::oracle_keccak256(msg);
        const json::object by_message = test::sign(
            signer, k.id, {{"message", hex(msg)}, {"hash", "keccak256"}, {"encoding", "eth"}});
        const json::object by_digest =
            test::sign(signer, k.id, {{"digest", hex(digest)}, {"encoding", "eth"}});
        for (const json::object* s : {&by_message, &by_digest}) {
            const Bytes sig = test::unhex(test::str(*s, "signature"));
            REQUIRE(sig.size() == 65);
            CHECK(test::str(*s, "digest") == hex(digest));
            CHECK(test::str(*s, "r") == "0x" + hex(Bytes(sig.begin(), sig.begin() + 32)));
            CHECK(test::str(*s, "s") == "0x" + hex(Bytes(sig.begin() + 32, sig.begin() + 64)));
            CHECK(test::u64(*s, "v") == sig[64]);
            CHECK(test::u64(*s, "recovery_id") + 27 == sig[64]);
            CHECK(test::secp256k1_is_low_s(Bytes(sig.begin(), sig.begin() + 64)));
            const Bytes point = recover_point(sig, digest);
            REQUIRE(point.size() == 65);
            CHECK(test::oracle_eth_address(point) == address);
            // Recovery over another digest gives another address: the check can fail.
            const Bytes elsewhere = recover_point(sig, test::oracle_keccak256(bytes_of("other")));
            CHECK((elsewhere.empty() || test::oracle_eth_address(elsewhere) != address));
        }
    }

    // After a restart the key's handles come from the start-up warm-up (the catalog's public
    // key), not from a lookup: its signatures still recover the same address.
    // (The log holds every run: the first start warmed no key.)
    p.daemon.restart();
    const std::string warm_line = "event=key_handles_cached keys=1 found=1";
    const auto warmed = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (p.daemon.log().find(warm_line) == std::string::npos &&
           std::chrono::steady_clock::now() < warmed) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(p.daemon.log().find(warm_line) != std::string::npos);
    const Bytes digest = test::oracle_keccak256(bytes_of("after restart"));
    ApiClient again = p.api(p.signer);  // the restarted daemon listens on a new port
    const json::object s = test::sign(again, k.id, {{"digest", hex(digest)}, {"encoding", "eth"}});
    CHECK(test::oracle_eth_address(recover_point(test::unhex(test::str(s, "signature")), digest)) ==
          address);
}

TEST_CASE("nonce-bound signatures cover the documented envelope",
          "[daemon][integration][signatures][nonce]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);

    SECTION("ecdsa-p256 over a client digest, nonces 1, 2, 3") {
        const Key k = make_key(admin, "ecdsa-p256", "envelope");
        for (std::uint64_t n = 1; n <= 3; ++n) {
            const Bytes payload = test::oracle_sha256(bytes_of("payload " + std::to_string(n)));
            const json::object s =
                test::sign(signer, k.id, {{"digest", hex(payload)}, {"nonce", true}});
            REQUIRE(test::u64(s, "nonce") == n);
            const Bytes envelope = test::rebuild_nonce_envelope(k.id, n, payload);
            CHECK(test::str(s, "envelope") == hex(envelope));
            CHECK(test::str(s, "digest") == hex(test::oracle_sha256(envelope)));
            const Bytes sig = test::unhex(test::str(s, "signature"));
            CHECK(test::openssl_cli_verify(k.algorithm, k.pem, envelope, sig));
            // The bare payload is not what was signed.
            CHECK_FALSE(test::evp_verify(k.algorithm, test::spki_of_pem(k.pem), payload, sig));
        }
        const test::ApiReply c = signer.get("/v1/keys/" + k.id + "/counter");
        REQUIRE(c.status == 200);
        CHECK(test::u64(c.object(), "last_issued") == 3);
        CHECK(test::u64(c.object(), "next") == 4);
        CHECK(test::audit_with_action(admin, "sign.nonce").size() == 3);
    }
    SECTION("ed25519 over a message binds the message's SHA-256") {
        const Key k = make_key(admin, "ed25519", "envelope");
        const Bytes msg = bytes_of("validator attestation");
        const json::object s = test::sign(signer, k.id, {{"message", hex(msg)}, {"nonce", true}});
        const Bytes envelope =
            test::rebuild_nonce_envelope(k.id, test::u64(s, "nonce"), test::oracle_sha256(msg));
        CHECK(test::str(s, "envelope") == hex(envelope));
        CHECK(test::openssl_cli_verify(k.algorithm, k.pem, envelope,
                                       test::unhex(test::str(s, "signature"))));
    }
    SECTION("rsa-2048 PSS") {
        const Key k = make_key(admin, "rsa-2048", "envelope");
        const Bytes payload = test::oracle_sha256(bytes_of("release-1.0.tar.gz"));
        const json::object s = test::sign(
            signer, k.id, {{"digest", hex(payload)}, {"nonce", true}, {"rsa_padding", "pss"}});
        const Bytes envelope = test::rebuild_nonce_envelope(k.id, test::u64(s, "nonce"), payload);
        CHECK(test::str(s, "envelope") == hex(envelope));
        CHECK(test::openssl_cli_verify(k.algorithm, k.pem, envelope,
                                       test::unhex(test::str(s, "signature")), true));
    }
    SECTION("secp256k1 eth over keccak256 recovers the key's address from the envelope digest") {
        const Key k = make_key(admin, "ecdsa-secp256k1", "envelope");
        const Bytes msg = bytes_of("eth payload");
        const json::object s = test::sign(
            signer, k.id,
            {{"message", hex(msg)}, {"hash", "keccak256"}, {"encoding", "eth"}, {"nonce", true}});
        const Bytes envelope =
            test::rebuild_nonce_envelope(k.id, test::u64(s, "nonce"), test::oracle_keccak256(msg));
        CHECK(test::str(s, "envelope") == hex(envelope));
        const Bytes point =
            recover_point(test::unhex(test::str(s, "signature")), test::oracle_keccak256(envelope));
        REQUIRE(point.size() == 65);
        CHECK(point == uncompressed_point(test::spki_of_pem(k.pem)));
    }
}
