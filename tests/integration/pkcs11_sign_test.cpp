// pkcs11 on SoftHSM: every algorithm generates in the token, signs in every supported form, and the
// signatures verify with OpenSSL EVP and with the openssl command line, neither sharing code with
// Signet. Malformed requests produce no signature. The start-up self-test passes.
#include "signet/pkcs11/signature.hpp"

#include <catch2/catch.hpp>
#include <vector>

#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/public_key.hpp"
#include "signet/pkcs11/self_test.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/keys.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/test_hsm.hpp"

namespace p11 = signet::pkcs11;
namespace test = signet::test;
using p11::Algorithm;
using p11::Hash;
using p11::Input;
using p11::RsaPadding;
using p11::SignatureEncoding;
using signet::Bytes;
using signet::Errc;

namespace {

const Bytes kMessage = signet::to_bytes("pay 5 to bob, invoice 2024-117");

// Signs kMessage with `key` as `req` describes and checks the result with Signet's own verifier
// and both independent ones. Returns the signature for further checks.
p11::Signature sign_and_verify(p11::KeyStore& keys, const p11::KeyInfo& key,
                               const p11::SignRequest& req) {
    const auto sig = keys.sign(key.id, req);
    REQUIRE_OK(sig);
    if (key.algorithm == Algorithm::ed25519) {
        CHECK(sig->digest.empty());
    } else {
        CHECK(sig->digest == test::oracle_digest(req.hash, kMessage));
    }
    const test::IndependentVerdict verdict = test::verify_independently(key, kMessage, req, *sig);
    CHECK(verdict.evp);
    if (req.hash == Hash::sha256 || key.algorithm == Algorithm::ed25519) {
        REQUIRE(verdict.cli.has_value());
        CHECK(*verdict.cli);
    }
    const auto own = p11::verify_signature(key.algorithm, key.spki_der, req, sig->bytes);
    REQUIRE_OK(own);
    CHECK(*own);
    return *sig;
}

// The request for kMessage (or its digest) in one combination of options.
p11::SignRequest request(Input input, Hash hash, SignatureEncoding enc, Bytes& storage,
                         RsaPadding padding = RsaPadding::pkcs1v15) {
    storage = input == Input::digest ? test::oracle_digest(hash, kMessage) : kMessage;
    return p11::SignRequest{storage, input, hash, enc, padding};
}

// Every ECDSA combination: digest or message input, SHA-256 or Keccak-256, each encoding.
std::vector<p11::Signature> check_ecdsa(Algorithm a,
                                        std::initializer_list<SignatureEncoding> encs) {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo key = test::generate_key(*keys, a);
    std::vector<p11::Signature> out;
    for (const Input input : {Input::digest, Input::message}) {
        for (const Hash hash : {Hash::sha256, Hash::keccak256}) {
            for (const SignatureEncoding enc : encs) {
                INFO((input == Input::digest ? "digest " : "message ")
                     << p11::to_string(hash) << " " << p11::to_string(enc));
                Bytes data;
                const p11::Signature sig =
                    sign_and_verify(*keys, key, request(input, hash, enc, data));
                if (enc == SignatureEncoding::der) {
                    CHECK(sig.bytes[0] == 0x30);
                    CHECK(sig.bytes.size() <= 72);
                } else {
                    CHECK(sig.bytes.size() == (enc == SignatureEncoding::eth ? 65u : 64u));
                }
                out.push_back(sig);
            }
        }
    }
    return out;
}

// RSA: PKCS#1 v1.5 and PSS, digest and message input (SHA-256 only).
void check_rsa(Algorithm a) {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo key = test::generate_key(*keys, a);
    const std::size_t size = a == Algorithm::rsa_2048 ? 256 : 384;
    for (const RsaPadding padding : {RsaPadding::pkcs1v15, RsaPadding::pss}) {
        std::vector<Bytes> sigs;
        for (const Input input : {Input::digest, Input::message}) {
            INFO(p11::to_string(padding) << (input == Input::digest ? " digest" : " message"));
            Bytes data;
            const auto req = request(input, Hash::sha256, SignatureEncoding::raw, data, padding);
            const p11::Signature sig = sign_and_verify(*keys, key, req);
            CHECK(sig.bytes.size() == size);
            CHECK_FALSE(sig.recovery_id.has_value());
            sigs.push_back(sig.bytes);
        }
        // PKCS#1 v1.5 is deterministic; PSS is salted, so the same digest signs differently.
        if (padding == RsaPadding::pkcs1v15) {
            CHECK(sigs[0] == sigs[1]);
        } else {
            CHECK(sigs[0] != sigs[1]);
        }
    }
}

}  // namespace

TEST_CASE(
    "ECDSA P-256 signs digests and sha256 or keccak256 messages in raw and DER, verified by "
    "OpenSSL",
    "[pkcs11][integration]") {
    const auto sigs =
        check_ecdsa(Algorithm::ecdsa_p256, {SignatureEncoding::raw, SignatureEncoding::der});
    for (const auto& sig : sigs) CHECK_FALSE(sig.recovery_id.has_value());
}

TEST_CASE(
    "ECDSA secp256k1 signs in raw, DER and eth encodings with low S and a recovery id, "
    "verified by OpenSSL",
    "[pkcs11][integration]") {
    const std::vector<SignatureEncoding> encs{SignatureEncoding::raw, SignatureEncoding::der,
                                              SignatureEncoding::eth};
    const auto sigs =
        check_ecdsa(Algorithm::ecdsa_secp256k1,
                    {SignatureEncoding::raw, SignatureEncoding::der, SignatureEncoding::eth});
    for (std::size_t i = 0; i < sigs.size(); ++i) {
        // check_ecdsa returns one signature per encoding, in the order asked, for every input and
        // hash: the encoding comes from the position, never from the bytes (a raw signature may
        // start with 0x30 too).
        const auto& sig = sigs[i];
        REQUIRE(sig.recovery_id.has_value());
        CHECK(*sig.recovery_id <= 1);
        const auto raw =
            encs[i % encs.size()] == SignatureEncoding::der
                ? p11::ecdsa_der_to_raw(sig.bytes, 32)
                : signet::Result<Bytes>(Bytes(sig.bytes.begin(), sig.bytes.begin() + 64));
        REQUIRE_OK(raw);
        CHECK(test::secp256k1_is_low_s(*raw));
        if (sig.bytes.size() == 65) CHECK(sig.bytes[64] == 27 + *sig.recovery_id);
    }
}

TEST_CASE("Ed25519 signs the message itself and the signature verifies with OpenSSL",
          "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo key = test::generate_key(*keys, Algorithm::ed25519);
    Bytes data;
    const auto raw = sign_and_verify(
        *keys, key, request(Input::message, Hash::sha256, SignatureEncoding::raw, data));
    CHECK(raw.bytes.size() == 64);
    // Ed25519 is deterministic, and "der" means the same bytes for it.
    const auto der = sign_and_verify(
        *keys, key, request(Input::message, Hash::sha256, SignatureEncoding::der, data));
    CHECK(der.bytes == raw.bytes);
}

TEST_CASE("Ed25519 signs an empty message", "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo key = test::generate_key(*keys, Algorithm::ed25519);
    const Bytes empty;
    const auto sig = keys->sign(key.id, {empty, Input::message});
    REQUIRE_OK(sig);
    CHECK(sig->bytes.size() == 64);
    // EVP only: `openssl pkeyutl -rawin` 3.0 cannot read an empty input ("Could not allocate 0
    // bytes for oneshot sign/verify buffer").
    CHECK(test::evp_verify(Algorithm::ed25519, key.spki_der, empty, sig->bytes));
    CHECK_FALSE(test::evp_verify(Algorithm::ed25519, key.spki_der, Bytes{0}, sig->bytes));
}

TEST_CASE("RSA-2048 signs with PKCS#1 v1.5 and PSS over digests and messages, verified by OpenSSL",
          "[pkcs11][integration]") {
    check_rsa(Algorithm::rsa_2048);
}

TEST_CASE("RSA-3072 signs with PKCS#1 v1.5 and PSS over digests and messages, verified by OpenSSL",
          "[pkcs11][integration]") {
    check_rsa(Algorithm::rsa_3072);
}

TEST_CASE("the independent verifiers reject another message, another key and a flipped bit",
          "[pkcs11][integration]") {
    const Algorithm a = GENERATE(Algorithm::ecdsa_p256, Algorithm::ed25519, Algorithm::rsa_2048);
    INFO(p11::to_string(a));
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo key = test::generate_key(*keys, a, p11::KeyClass::local, "signer");
    const p11::KeyInfo other = test::generate_key(*keys, a, p11::KeyClass::local, "other");
    const p11::SignRequest req{kMessage, Input::message, Hash::sha256,
                               p11::is_ecdsa(a) ? SignatureEncoding::der : SignatureEncoding::raw};
    const auto sig = keys->sign(key.id, req);
    REQUIRE_OK(sig);
    REQUIRE(test::verify_independently(key, kMessage, req, *sig).evp);

    const auto by_other = test::verify_independently(other, kMessage, req, *sig);
    CHECK_FALSE(by_other.evp);
    CHECK(by_other.cli == false);
    const Bytes changed = signet::to_bytes("pay 500 to bob, invoice 2024-117");
    const auto other_message =
        test::verify_independently(key, changed, {changed, Input::message}, *sig);
    CHECK_FALSE(other_message.evp);
    CHECK(other_message.cli == false);
    p11::Signature flipped = *sig;
    flipped.bytes[flipped.bytes.size() / 2] ^= 0x01;
    CHECK_FALSE(test::verify_independently(key, kMessage, req, flipped).evp);
    const auto own = p11::verify_signature(a, key.spki_der, req, flipped.bytes);
    CHECK_FALSE((own.has_value() && *own));
}

TEST_CASE(
    "malformed sign requests are refused with invalid_argument or unsupported and give no "
    "signature",
    "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo p256 = test::generate_key(*keys, Algorithm::ecdsa_p256);
    const p11::KeyInfo ed = test::generate_key(*keys, Algorithm::ed25519);
    const p11::KeyInfo rsa = test::generate_key(*keys, Algorithm::rsa_2048);
    const Bytes digest = test::oracle_sha256(kMessage);
    const Bytes short_digest(digest.begin(), digest.end() - 1);
    const Bytes long_digest(48, 0x11);
    struct Case {
        const p11::KeyInfo* key;
        p11::SignRequest req;
        Errc errc;
        const char* why;
    };
    const Case cases[] = {
        {&p256, {short_digest, Input::digest}, Errc::invalid_argument, "digest must be 32 bytes"},
        {&rsa, {long_digest, Input::digest}, Errc::invalid_argument, "digest must be 32 bytes"},
        {&ed, {digest, Input::digest}, Errc::unsupported, "ed25519 signs the message itself"},
        {&p256,
         {digest, Input::digest, Hash::sha256, SignatureEncoding::eth},
         Errc::unsupported,
         "encoding 'eth' needs an ecdsa-secp256k1 key"},
        {&rsa,
         {kMessage, Input::message, Hash::sha256, SignatureEncoding::eth},
         Errc::unsupported,
         "encoding 'eth' needs an ecdsa-secp256k1 key"},
        {&rsa,
         {kMessage, Input::message, Hash::keccak256},
         Errc::unsupported,
         "rsa-2048 signs SHA-256 digests only"},
    };
    for (const Case& c : cases) {
        INFO(p11::to_string(c.key->algorithm) << ": " << c.why);
        const auto r = keys->sign(c.key->id, c.req);
        REQUIRE_FALSE(r.has_value());  // no signature of any kind comes back
        CHECK(r.error().is(c.errc));
        CHECK_THAT(r.error().message(), Catch::Contains(c.why));
    }
    // The keys still sign well-formed requests afterwards.
    REQUIRE_OK(keys->sign(p256.id, {digest}));
}

TEST_CASE("the self-test passes on a fresh token and reports every algorithm",
          "[pkcs11][integration]") {
    const auto keys = test::fresh_key_store();
    const p11::SelfTestReport first = p11::run_self_test(*keys);
    INFO(first.summary());
    CHECK(first.passed());
    REQUIRE(first.checks.size() == std::size(p11::kAllAlgorithms));
    for (std::size_t i = 0; i < first.checks.size(); ++i) {
        CHECK(first.checks[i].algorithm == p11::kAllAlgorithms[i]);
        CHECK(first.checks[i].passed);
        CHECK(first.checks[i].detail.empty());
    }
    CHECK(first.summary() ==
          "ecdsa-p256 ok, ecdsa-secp256k1 ok, ed25519 ok, rsa-2048 ok, rsa-3072 ok");

    // Later runs reuse the internal keys, which stay out of the key list.
    const auto internal =
        keys->find_or_generate_internal("signet.selftest.ed25519", Algorithm::ed25519);
    REQUIRE_OK(internal);
    CHECK(p11::run_self_test(*keys).passed());
    const auto again =
        keys->find_or_generate_internal("signet.selftest.ed25519", Algorithm::ed25519);
    REQUIRE_OK(again);
    CHECK(again->id == internal->id);
    const auto listed = keys->list();
    REQUIRE_OK(listed);
    CHECK(listed->empty());

    // An internal label bound to another algorithm is a broken invariant, not a new key.
    const auto wrong =
        keys->find_or_generate_internal("signet.selftest.ed25519", Algorithm::rsa_2048);
    REQUIRE_FALSE(wrong.has_value());
    CHECK(wrong.error().is(Errc::internal));
    CHECK(p11::SelfTestReport{}.summary() == "no checks ran");
    CHECK_FALSE(p11::SelfTestReport{}.passed());
}
