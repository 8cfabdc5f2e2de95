// pkcs11 (software only): request validation, ECDSA encodings, secp256k1 low-S and recovery ids
// (web3 known answers), and software verification against signatures made by OpenSSL.
#include "signet/pkcs11/signature.hpp"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <catch2/catch.hpp>
#include <memory>

#include "signet/pkcs11/digest.hpp"
#include "signet/pkcs11/public_key.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/result_matchers.hpp"

using signet::Bytes;
using signet::Errc;
using signet::pkcs11::Algorithm;
using signet::pkcs11::Hash;
using signet::pkcs11::Input;
using signet::pkcs11::SignatureEncoding;
using signet::pkcs11::SignRequest;
using signet::test::unhex;

namespace {

// web3.js: web3.eth.accounts.sign("Some data", "0x4c0883a6...").
const Bytes kWeb3Key = unhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
const Bytes kWeb3Digest = unhex("1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655");
const Bytes kWeb3Raw = unhex(
    "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
    "6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029");
constexpr std::uint8_t kWeb3V = 0x1c;

Bytes web3_spki() {
    const auto spki = signet::pkcs11::spki_from_ec_point(
        Algorithm::ecdsa_secp256k1, signet::test::secp256k1_point_of(kWeb3Key));
    REQUIRE_OK(spki);
    return *spki;
}

Bytes with_v(Bytes raw, std::uint8_t v) {
    raw.push_back(v);
    return raw;
}

// A software key made by OpenSSL, to check verify_signature without any HSM.
struct SoftwareKey {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{nullptr, &EVP_PKEY_free};

    Bytes spki() const {
        const int len = i2d_PUBKEY(key.get(), nullptr);
        Bytes out(static_cast<std::size_t>(len));
        unsigned char* p = out.data();
        i2d_PUBKEY(key.get(), &p);
        return out;
    }
    // ECDSA over a digest (DER out), Ed25519 over a message.
    Bytes sign(const Bytes& data, bool ed25519) const {
        std::size_t len = 0;
        Bytes sig;
        if (ed25519) {
            std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                                       &EVP_MD_CTX_free);
            REQUIRE(EVP_DigestSignInit(md.get(), nullptr, nullptr, nullptr, key.get()) == 1);
            REQUIRE(EVP_DigestSign(md.get(), nullptr, &len, data.data(), data.size()) == 1);
            sig.resize(len);
            REQUIRE(EVP_DigestSign(md.get(), sig.data(), &len, data.data(), data.size()) == 1);
        } else {
            std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
                EVP_PKEY_CTX_new(key.get(), nullptr), &EVP_PKEY_CTX_free);
            REQUIRE(EVP_PKEY_sign_init(ctx.get()) == 1);
            REQUIRE(EVP_PKEY_sign(ctx.get(), nullptr, &len, data.data(), data.size()) == 1);
            sig.resize(len);
            REQUIRE(EVP_PKEY_sign(ctx.get(), sig.data(), &len, data.data(), data.size()) == 1);
        }
        sig.resize(len);
        return sig;
    }
};

}  // namespace

TEST_CASE("the web3 signature of 'Some data' has recovery id 1 and verifies in every encoding",
          "[pkcs11][unit]") {
    const Bytes point = signet::test::secp256k1_point_of(kWeb3Key);
    const auto recid = signet::pkcs11::secp256k1_recovery_id(kWeb3Raw, kWeb3Digest, point);
    REQUIRE_OK(recid);
    CHECK(*recid == 1);
    CHECK(27 + *recid == kWeb3V);
    CHECK(signet::test::secp256k1_recover_point(kWeb3Raw, 1, kWeb3Digest) == point);

    const Bytes spki = web3_spki();
    const auto verify = [&](SignatureEncoding enc, const Bytes& sig) {
        const SignRequest req{kWeb3Digest, Input::digest, Hash::keccak256, enc};
        const auto r = signet::pkcs11::verify_signature(Algorithm::ecdsa_secp256k1, spki, req, sig);
        REQUIRE_OK(r);
        return *r;
    };
    CHECK(verify(SignatureEncoding::eth, with_v(kWeb3Raw, kWeb3V)));
    CHECK(verify(SignatureEncoding::raw, kWeb3Raw));
    CHECK(verify(SignatureEncoding::der, signet::test::oracle_ecdsa_der(kWeb3Raw)));
    // The wrong v names the other candidate key: it must not verify.
    CHECK_FALSE(verify(SignatureEncoding::eth, with_v(kWeb3Raw, 0x1b)));
    CHECK_FALSE(verify(SignatureEncoding::eth, with_v(kWeb3Raw, 0x00)));
    CHECK_FALSE(verify(SignatureEncoding::eth, kWeb3Raw));  // no v at all
    Bytes tampered = kWeb3Raw;
    tampered[5] ^= 0x40;
    CHECK_FALSE(verify(SignatureEncoding::raw, tampered));
}

TEST_CASE("a high-S secp256k1 signature is normalised back to its low-S twin", "[pkcs11][unit]") {
    REQUIRE(signet::test::secp256k1_is_low_s(kWeb3Raw));
    Bytes high = signet::test::secp256k1_negate_s(kWeb3Raw);
    REQUIRE_FALSE(signet::test::secp256k1_is_low_s(high));
    REQUIRE(Bytes(high.begin(), high.begin() + 32) ==
            Bytes(kWeb3Raw.begin(), kWeb3Raw.begin() + 32));

    const auto changed = signet::pkcs11::secp256k1_normalize_low_s(high);
    REQUIRE_OK(changed);
    CHECK(*changed);
    CHECK(high == kWeb3Raw);

    Bytes low = kWeb3Raw;
    const auto unchanged = signet::pkcs11::secp256k1_normalize_low_s(low);
    REQUIRE_OK(unchanged);
    CHECK_FALSE(*unchanged);
    CHECK(low == kWeb3Raw);

    // s = n is out of range; so is a 63-byte signature.
    Bytes zero_s = kWeb3Raw;
    std::fill(zero_s.begin() + 32, zero_s.end(), 0);
    Bytes s_is_n = signet::test::secp256k1_negate_s(zero_s);
    const auto overflow = signet::pkcs11::secp256k1_normalize_low_s(s_is_n);
    REQUIRE_FALSE(overflow.has_value());
    CHECK(overflow.error().is(Errc::invalid_argument));
    CHECK_THAT(overflow.error().message(), Catch::Contains("out of range"));
    Bytes short_sig(63, 1);
    CHECK_FALSE(signet::pkcs11::secp256k1_normalize_low_s(short_sig).has_value());
}

TEST_CASE("no recovery id is found for a digest or key the signature does not belong to",
          "[pkcs11][unit]") {
    const Bytes point = signet::test::secp256k1_point_of(kWeb3Key);
    Bytes other_digest = kWeb3Digest;
    other_digest[0] ^= 1;
    const auto wrong_digest = signet::pkcs11::secp256k1_recovery_id(kWeb3Raw, other_digest, point);
    REQUIRE_FALSE(wrong_digest.has_value());
    CHECK(wrong_digest.error().is(Errc::verification_failed));

    Bytes private_key_one(32, 0);
    private_key_one[31] = 1;
    const Bytes other_point = signet::test::secp256k1_point_of(private_key_one);
    const auto wrong_key =
        signet::pkcs11::secp256k1_recovery_id(kWeb3Raw, kWeb3Digest, other_point);
    REQUIRE_FALSE(wrong_key.has_value());
    CHECK(wrong_key.error().is(Errc::verification_failed));

    const auto bad_sizes = signet::pkcs11::secp256k1_recovery_id(kWeb3Raw, Bytes(31, 0), point);
    REQUIRE_FALSE(bad_sizes.has_value());
    CHECK(bad_sizes.error().is(Errc::invalid_argument));
}

TEST_CASE("ECDSA raw and DER encodings convert both ways and reject malformed input",
          "[pkcs11][unit]") {
    const Bytes expected_der = unhex(
        "3045"
        "022100b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd"
        "02206007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029");
    const auto der = signet::pkcs11::ecdsa_raw_to_der(kWeb3Raw);
    REQUIRE_OK(der);
    CHECK(*der == expected_der);
    const auto raw = signet::pkcs11::ecdsa_der_to_raw(*der, 32);
    REQUIRE_OK(raw);
    CHECK(*raw == kWeb3Raw);

    // Small integers are minimal in DER and left-padded in raw form.
    Bytes small(64, 0);
    small[31] = 1;
    small[63] = 0x7f;
    const auto small_der = signet::pkcs11::ecdsa_raw_to_der(small);
    REQUIRE_OK(small_der);
    CHECK(*small_der == unhex("300602010102017f"));
    const auto small_raw = signet::pkcs11::ecdsa_der_to_raw(*small_der, 32);
    REQUIRE_OK(small_raw);
    CHECK(*small_raw == small);

    Bytes trailing = expected_der;
    trailing.push_back(0);
    for (const Bytes& bad :
         {trailing, Bytes(expected_der.begin(), expected_der.end() - 1), Bytes{}}) {
        const auto r = signet::pkcs11::ecdsa_der_to_raw(bad, 32);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::invalid_argument));
    }
    const auto too_large = signet::pkcs11::ecdsa_der_to_raw(expected_der, 16);
    REQUIRE_FALSE(too_large.has_value());
    CHECK_THAT(too_large.error().message(), Catch::Contains("too large"));
    CHECK_FALSE(signet::pkcs11::ecdsa_raw_to_der(Bytes(63, 1)).has_value());
}

TEST_CASE("sign requests that do not fit the key algorithm are refused naming the field",
          "[pkcs11][unit]") {
    const Bytes digest(32, 0xab);
    const Bytes short_digest(31, 0xab);
    const Bytes message = signet::to_bytes("hello");
    struct Case {
        Algorithm algorithm;
        SignRequest req;
        Errc errc;
        const char* why;
    };
    const Case cases[] = {
        {Algorithm::ecdsa_p256,
         {short_digest, Input::digest},
         Errc::invalid_argument,
         "digest must be 32 bytes (sha256), got 31"},
        {Algorithm::rsa_2048,
         {Bytes(48, 1), Input::digest},
         Errc::invalid_argument,
         "digest must be 32 bytes (sha256), got 48"},
        {Algorithm::ed25519,
         {digest, Input::digest},
         Errc::unsupported,
         "ed25519 signs the message itself"},
        {Algorithm::ecdsa_p256,
         {digest, Input::digest, Hash::sha256, SignatureEncoding::eth},
         Errc::unsupported,
         "encoding 'eth' needs an ecdsa-secp256k1 key, not ecdsa-p256"},
        {Algorithm::ed25519,
         {message, Input::message, Hash::sha256, SignatureEncoding::eth},
         Errc::unsupported,
         "needs an ecdsa-secp256k1 key, not ed25519"},
        {Algorithm::rsa_3072,
         {message, Input::message, Hash::keccak256},
         Errc::unsupported,
         "rsa-3072 signs SHA-256 digests only"},
        {Algorithm::rsa_2048,
         {digest, Input::digest, Hash::keccak256},
         Errc::unsupported,
         "rsa-2048 signs SHA-256 digests only"},
    };
    for (const Case& c : cases) {
        INFO(signet::pkcs11::to_string(c.algorithm) << ": " << c.why);
        const auto r = signet::pkcs11::prepare_sign_input(c.algorithm, c.req);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(c.errc));
        CHECK_THAT(r.error().message(), Catch::Contains(c.why));
    }

    // What the HSM is asked to sign for valid requests.
    const auto hashed = signet::pkcs11::prepare_sign_input(
        Algorithm::ecdsa_secp256k1, {message, Input::message, Hash::keccak256});
    REQUIRE_OK(hashed);
    CHECK(*hashed == signet::test::oracle_keccak256(message));
    const auto rsa = signet::pkcs11::prepare_sign_input(Algorithm::rsa_2048, {digest});
    REQUIRE_OK(rsa);
    CHECK(*rsa == digest);
    const auto ed =
        signet::pkcs11::prepare_sign_input(Algorithm::ed25519, {message, Input::message});
    REQUIRE_OK(ed);
    CHECK(*ed == message);
}

TEST_CASE("verify_signature accepts OpenSSL signatures and rejects other messages and keys",
          "[pkcs11][unit]") {
    SoftwareKey p256, other, ed;
    p256.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    other.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    ed.key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    REQUIRE((p256.key && other.key && ed.key));

    const Bytes message = signet::to_bytes("transfer 10 to alice");
    const Bytes digest = signet::test::oracle_sha256(message);
    const Bytes der = p256.sign(digest, false);
    const auto verify =
        [](Algorithm a, const Bytes& spki, const SignRequest& req, const Bytes& sig) {
        const auto r = signet::pkcs11::verify_signature(a, spki, req, sig);
        REQUIRE_OK(r);
        return *r;
    };
    const SignRequest by_digest{digest, Input::digest};
    const SignRequest by_message{message, Input::message};
    CHECK(verify(Algorithm::ecdsa_p256, p256.spki(), by_digest, der));
    CHECK(verify(Algorithm::ecdsa_p256, p256.spki(), by_message, der));
    const auto raw = signet::pkcs11::ecdsa_der_to_raw(der, 32);
    REQUIRE_OK(raw);
    CHECK(verify(Algorithm::ecdsa_p256, p256.spki(),
                 {digest, Input::digest, Hash::sha256, SignatureEncoding::raw}, *raw));
    CHECK_FALSE(verify(Algorithm::ecdsa_p256, other.spki(), by_digest, der));
    CHECK_FALSE(verify(Algorithm::ecdsa_p256, p256.spki(),
                       {signet::to_bytes("transfer 99 to alice"), Input::message}, der));

    const Bytes ed_sig = ed.sign(message, true);
    CHECK(verify(Algorithm::ed25519, ed.spki(), by_message, ed_sig));
    Bytes ed_tampered = ed_sig;
    ed_tampered[10] ^= 1;
    CHECK_FALSE(verify(Algorithm::ed25519, ed.spki(), by_message, ed_tampered));

    // A key of another algorithm is an error, not a "false".
    const auto mismatch =
        signet::pkcs11::verify_signature(Algorithm::ecdsa_secp256k1, p256.spki(), by_digest, der);
    REQUIRE_FALSE(mismatch.has_value());
    CHECK(mismatch.error().is(Errc::invalid_argument));
}
