// pkcs11 (software only): digests, public-key formats and Ethereum addresses, against published
// vectors and independent oracles.
#include "signet/pkcs11/public_key.hpp"

#include <catch2/catch.hpp>

#include "signet/pkcs11/digest.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/result_matchers.hpp"

using signet::Bytes;
using signet::Errc;
using signet::pkcs11::Algorithm;
using signet::test::unhex;

namespace {

// Generator points: the public keys of private key 1.
const Bytes kP256G = unhex(
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
const Bytes kSecp256k1G = unhex(
    "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8");
// RFC 8032 §7.1 test 1 public key; RFC 8037 §A.2 is its JWK.
const Bytes kEd25519Rfc8032 =
    unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");

Bytes spki_of(Algorithm a, const Bytes& point) {
    const auto spki = signet::pkcs11::spki_from_ec_point(a, point);
    REQUIRE_OK(spki);
    return *spki;
}

// A 2048-bit odd modulus (OpenSSL does not check primality when importing a public key).
Bytes fake_rsa_modulus(std::size_t bytes) {
    Bytes n(bytes, 0x5b);
    n.front() = 0xc3;
    n.back() = 0x01;
    return n;
}

}  // namespace

TEST_CASE("keccak256 and sha256 match their published known answers", "[pkcs11][unit]") {
    using signet::pkcs11::keccak256;
    CHECK(signet::hex_encode(keccak256({})) ==
          "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    // web3.js eth.accounts.hashMessage("Some data").
    CHECK(signet::hex_encode(keccak256(signet::as_bytes("\x19"
                                                        "Ethereum Signed Message:\n9Some data"))) ==
          "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655");
    // Keccak-256 is not SHA3-256 (different padding): SHA3-256("") starts a7ffc6f8.
    CHECK_FALSE(signet::hex_encode(keccak256({})).starts_with("a7ffc6f8"));
    CHECK(signet::hex_encode(signet::pkcs11::sha256(signet::as_bytes("abc"))) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    const Bytes msg = signet::to_bytes("signet");
    CHECK(signet::pkcs11::digest(signet::pkcs11::Hash::sha256, msg) ==
          signet::test::oracle_sha256(msg));
    CHECK(signet::pkcs11::digest(signet::pkcs11::Hash::keccak256, msg) ==
          signet::test::oracle_keccak256(msg));
}

TEST_CASE("eip55 reproduces the checksummed addresses published in EIP-55", "[pkcs11][unit]") {
    for (const char* expected : {"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                                 "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                                 "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
                                 "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"}) {
        INFO(expected);
        const auto raw = signet::hex_decode(expected);
        REQUIRE_OK(raw);
        CHECK(signet::pkcs11::eip55(*raw) == expected);
    }
}

TEST_CASE("ethereum_address derives the known addresses of private keys 1 and 4c0883a6",
          "[pkcs11][unit]") {
    const auto one =
        signet::pkcs11::ethereum_address(spki_of(Algorithm::ecdsa_secp256k1, kSecp256k1G));
    REQUIRE_OK(one);
    CHECK(*one == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");

    const Bytes point = signet::test::secp256k1_point_of(
        unhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"));
    const auto known = signet::pkcs11::ethereum_address(spki_of(Algorithm::ecdsa_secp256k1, point));
    REQUIRE_OK(known);
    CHECK(*known == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
    CHECK(*known == signet::test::oracle_eth_address(point));

    // Only secp256k1 keys have an Ethereum address.
    const auto p256 = signet::pkcs11::ethereum_address(spki_of(Algorithm::ecdsa_p256, kP256G));
    REQUIRE_FALSE(p256.has_value());
    CHECK(p256.error().is(Errc::invalid_argument));
    CHECK_THAT(p256.error().message(), Catch::Contains("not ecdsa-secp256k1"));
}

TEST_CASE("EC points are accepted bare or as a DER OCTET STRING and must be uncompressed",
          "[pkcs11][unit]") {
    Bytes octet_string{0x04, 0x41};
    octet_string.insert(octet_string.end(), kP256G.begin(), kP256G.end());
    CHECK(spki_of(Algorithm::ecdsa_p256, octet_string) == spki_of(Algorithm::ecdsa_p256, kP256G));

    const auto point = signet::pkcs11::spki_public_point(Algorithm::ecdsa_p256,
                                                         spki_of(Algorithm::ecdsa_p256, kP256G));
    REQUIRE_OK(point);
    CHECK(*point == kP256G);

    Bytes compressed(kP256G.begin(), kP256G.begin() + 33);
    compressed[0] = 0x03;  // y of G is odd
    for (const Bytes& bad : {compressed, Bytes(64, 0x04), Bytes{}}) {
        const auto r = signet::pkcs11::spki_from_ec_point(Algorithm::ecdsa_p256, bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::invalid_argument));
    }
    // A point that is not on the curve is refused by OpenSSL.
    Bytes off_curve = kP256G;
    off_curve.back() ^= 0x01;
    CHECK_FALSE(signet::pkcs11::spki_from_ec_point(Algorithm::ecdsa_p256, off_curve).has_value());

    const auto short_ed = signet::pkcs11::spki_from_ec_point(Algorithm::ed25519, Bytes(31, 1));
    REQUIRE_FALSE(short_ed.has_value());
    CHECK_THAT(short_ed.error().message(), Catch::Contains("must be 32 bytes"));
}

TEST_CASE("check_spki accepts only a well-formed key of the named algorithm and size",
          "[pkcs11][unit]") {
    const Bytes p256 = spki_of(Algorithm::ecdsa_p256, kP256G);
    const Bytes k1 = spki_of(Algorithm::ecdsa_secp256k1, kSecp256k1G);
    const Bytes ed = spki_of(Algorithm::ed25519, kEd25519Rfc8032);
    const auto rsa = signet::pkcs11::spki_from_rsa(fake_rsa_modulus(256), Bytes{1, 0, 1});
    REQUIRE_OK(rsa);

    CHECK_OK(signet::pkcs11::check_spki(Algorithm::ecdsa_p256, p256));
    CHECK_OK(signet::pkcs11::check_spki(Algorithm::ecdsa_secp256k1, k1));
    CHECK_OK(signet::pkcs11::check_spki(Algorithm::ed25519, ed));
    CHECK_OK(signet::pkcs11::check_spki(Algorithm::rsa_2048, *rsa));

    const std::pair<Algorithm, const Bytes*> mismatches[] = {
        {Algorithm::ecdsa_secp256k1, &p256}, {Algorithm::ecdsa_p256, &k1},
        {Algorithm::ed25519, &p256},         {Algorithm::rsa_3072, &*rsa},
        {Algorithm::ecdsa_p256, &*rsa},      {Algorithm::rsa_2048, &ed},
    };
    for (const auto& [a, spki] : mismatches) {
        INFO(signet::pkcs11::to_string(a));
        const auto r = signet::pkcs11::check_spki(a, *spki);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::invalid_argument));
        CHECK_THAT(r.error().message(), Catch::Contains("public key is not " +
                                                        std::string(signet::pkcs11::to_string(a))));
    }
    Bytes trailing = p256;
    trailing.push_back(0);
    for (const Bytes& junk : {trailing, Bytes(p256.begin(), p256.end() - 1), Bytes{0x30, 0x00}}) {
        const auto r = signet::pkcs11::check_spki(Algorithm::ecdsa_p256, junk);
        REQUIRE_FALSE(r.has_value());
        CHECK_THAT(r.error().message(), Catch::Contains("not a valid SubjectPublicKeyInfo"));
    }
}

TEST_CASE("PEM output is what OpenSSL writes and parses back to the same key", "[pkcs11][unit]") {
    const auto rsa = signet::pkcs11::spki_from_rsa(fake_rsa_modulus(384), Bytes{1, 0, 1});
    REQUIRE_OK(rsa);
    for (const Bytes& spki : {spki_of(Algorithm::ecdsa_p256, kP256G), *rsa,
                              spki_of(Algorithm::ed25519, kEd25519Rfc8032)}) {
        const std::string pem = signet::pkcs11::spki_to_pem(spki);
        CHECK(pem == signet::test::oracle_pem(spki));
        const auto back = signet::pkcs11::spki_from_pem(pem);
        REQUIRE_OK(back);
        CHECK(*back == spki);
    }
    for (const char* bad : {"", "-----BEGIN PUBLIC KEY-----\nAAAA\n",
                            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
                            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n"}) {
        INFO(bad);
        const auto r = signet::pkcs11::spki_from_pem(bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::invalid_argument));
    }
}

TEST_CASE("JWKs follow RFC 8037 for Ed25519 and carry base64url coordinates for EC and RSA",
          "[pkcs11][unit]") {
    const auto ed = signet::pkcs11::spki_to_jwk(Algorithm::ed25519,
                                                spki_of(Algorithm::ed25519, kEd25519Rfc8032));
    REQUIRE_OK(ed);
    CHECK(ed->to_json() ==
          R"({"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})");

    const auto k1 = signet::pkcs11::spki_to_jwk(Algorithm::ecdsa_secp256k1,
                                                spki_of(Algorithm::ecdsa_secp256k1, kSecp256k1G));
    REQUIRE_OK(k1);
    const std::string x = signet::base64url_encode(signet::ByteView(kSecp256k1G).subspan(1, 32));
    const std::string y = signet::base64url_encode(signet::ByteView(kSecp256k1G).subspan(33, 32));
    CHECK(k1->to_json() == R"({"crv":"secp256k1","kty":"EC","x":")" + x + R"(","y":")" + y + "\"}");

    const Bytes modulus = fake_rsa_modulus(256);
    const auto rsa_spki = signet::pkcs11::spki_from_rsa(modulus, Bytes{1, 0, 1});
    REQUIRE_OK(rsa_spki);
    const auto rsa = signet::pkcs11::spki_to_jwk(Algorithm::rsa_2048, *rsa_spki);
    REQUIRE_OK(rsa);
    CHECK(rsa->to_json() ==
          R"({"e":"AQAB","kty":"RSA","n":")" + signet::base64url_encode(modulus) + "\"}");
    const auto parts = signet::pkcs11::spki_rsa_components(*rsa_spki);
    REQUIRE_OK(parts);
    CHECK(parts->modulus == modulus);
    CHECK(parts->public_exponent == Bytes{1, 0, 1});
}
