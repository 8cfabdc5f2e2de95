// pkcs11 on SoftHSM, secp256k1 with known keys: test-only private keys are imported into the token
// (the appliance itself never imports plaintext keys), so addresses and signatures can be checked
// against published Ethereum answers and recovered independently with libsecp256k1.
#include <catch2/catch.hpp>
#include <set>

#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/public_key.hpp"
#include "signet/pkcs11/signature.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/test_hsm.hpp"

namespace p11 = signet::pkcs11;
namespace test = signet::test;
using signet::Bytes;
using test::unhex;

namespace {

const Bytes kWeb3Key = unhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
constexpr const char* kWeb3Address = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
const Bytes kOidSecp256k1{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};

// Creates the private key (CKA_VALUE) and its public half (CKA_EC_POINT as a DER OCTET STRING)
// with the same CKA_ID through raw Cryptoki, as a test fixture. Returns the id in hex.
std::string import_secp256k1_key(p11::KeyStore& keys, const Bytes& private_key, const Bytes& id,
                                 const std::string& label) {
    const Bytes point = test::secp256k1_point_of(private_key);
    Bytes ec_point{0x04, static_cast<std::uint8_t>(point.size())};
    ec_point.insert(ec_point.end(), point.begin(), point.end());
    const auto r =
        keys.token().run("import test key", [&](p11::Session& s) -> signet::Result<void> {
            CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
            CK_KEY_TYPE type = CKK_EC;
            CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
            auto bytes = [](const auto& v) { return const_cast<std::uint8_t*>(v.data()); };
            CK_ATTRIBUTE priv[] = {
                {CKA_CLASS, &priv_class, sizeof priv_class},
                {CKA_KEY_TYPE, &type, sizeof type},
                {CKA_TOKEN, &yes, sizeof yes},
                {CKA_PRIVATE, &yes, sizeof yes},
                {CKA_SENSITIVE, &yes, sizeof yes},
                {CKA_EXTRACTABLE, &no, sizeof no},
                {CKA_SIGN, &yes, sizeof yes},
                {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                {CKA_ID, bytes(id), id.size()},
                {CKA_EC_PARAMS, bytes(kOidSecp256k1), kOidSecp256k1.size()},
                {CKA_VALUE, bytes(private_key), private_key.size()},
            };
            CK_ATTRIBUTE pub[] = {
                {CKA_CLASS, &pub_class, sizeof pub_class},
                {CKA_KEY_TYPE, &type, sizeof type},
                {CKA_TOKEN, &yes, sizeof yes},
                {CKA_PRIVATE, &no, sizeof no},
                {CKA_VERIFY, &yes, sizeof yes},
                {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                {CKA_ID, bytes(id), id.size()},
                {CKA_EC_PARAMS, bytes(kOidSecp256k1), kOidSecp256k1.size()},
                {CKA_EC_POINT, ec_point.data(), ec_point.size()},
            };
            CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
            CK_RV rv = s.fn().C_CreateObject(s.handle(), priv, std::size(priv), &h);
            if (rv != CKR_OK) return p11::ck_error(rv, "C_CreateObject(private key)");
            rv = s.fn().C_CreateObject(s.handle(), pub, std::size(pub), &h);
            if (rv != CKR_OK) return p11::ck_error(rv, "C_CreateObject(public key)");
            return signet::ok();
        });
    REQUIRE_OK(r);
    return signet::hex_encode(id);
}

// The address recovered with libsecp256k1 from an eth signature (r||s||v) over `digest`.
std::string recovered_address(const Bytes& eth_sig, const Bytes& digest) {
    REQUIRE(eth_sig.size() == 65);
    const int v = eth_sig[64];
    REQUIRE((v == 27 || v == 28));
    const auto point = test::secp256k1_recover_point(eth_sig, v - 27, digest);
    REQUIRE(point.has_value());
    return test::oracle_eth_address(*point);
}

}  // namespace

TEST_CASE("imported secp256k1 keys are found by id and have their known Ethereum addresses",
          "[pkcs11][secp256k1][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    Bytes one(32, 0);
    one[31] = 1;
    const std::pair<Bytes, const char*> known[] = {
        {kWeb3Key, kWeb3Address},
        {one, "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"},
    };
    for (const auto& [private_key, address] : known) {
        INFO(address);
        const Bytes id(private_key.begin(), private_key.begin() + 8);
        const std::string id_hex = import_secp256k1_key(*keys, private_key, id, "imported");
        const auto info = keys->get(id_hex);
        REQUIRE_OK(info);
        CHECK(info->id == id_hex);
        CHECK(info->label == "imported");
        CHECK(info->algorithm == p11::Algorithm::ecdsa_secp256k1);
        CHECK(info->key_class == p11::KeyClass::local);
        const auto derived = p11::ethereum_address(info->spki_der);
        REQUIRE_OK(derived);
        CHECK(*derived == address);
    }
}

TEST_CASE("the imported web3 key signs the 'Some data' message so that web3 recovers its address",
          "[pkcs11][secp256k1][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const std::string id = import_secp256k1_key(*keys, kWeb3Key, Bytes{0x0b}, "web3");
    const Bytes message = signet::to_bytes(
        "\x19"
        "Ethereum Signed Message:\n9Some data");
    const auto sig = keys->sign(
        id, {message, p11::Input::message, p11::Hash::keccak256, p11::SignatureEncoding::eth});
    REQUIRE_OK(sig);
    CHECK(signet::hex_encode(sig->digest) ==
          "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655");
    CHECK(recovered_address(sig->bytes, sig->digest) == kWeb3Address);
}

TEST_CASE(
    "200 signatures by the imported key are all low-S and every eth signature recovers its "
    "address",
    "[pkcs11][secp256k1][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const std::string id = import_secp256k1_key(*keys, kWeb3Key, Bytes{0x4c, 0x08}, "web3");
    const auto info = keys->get(id);
    REQUIRE_OK(info);

    constexpr int kSignatures = 200;
    std::set<int> recovery_ids;
    int failures = 0;
    for (int i = 0; i < kSignatures; ++i) {
        const Bytes digest = test::oracle_keccak256(signet::to_bytes("tx " + std::to_string(i)));
        const auto sig = keys->sign(
            id, {digest, p11::Input::digest, p11::Hash::keccak256, p11::SignatureEncoding::eth});
        REQUIRE_OK(sig);
        const Bytes raw(sig->bytes.begin(), sig->bytes.begin() + 64);
        const bool ok = test::secp256k1_is_low_s(raw) && sig->recovery_id == sig->bytes[64] - 27 &&
                        recovered_address(sig->bytes, digest) == kWeb3Address &&
                        test::evp_verify(p11::Algorithm::ecdsa_secp256k1, info->spki_der, digest,
                                         test::oracle_ecdsa_der(raw));
        if (!ok) {
            ++failures;
            UNSCOPED_INFO("signature " << i << ": " << signet::hex_encode(sig->bytes));
        }
        recovery_ids.insert(sig->bytes[64]);
    }
    CHECK(failures == 0);
    // Both parities of R occur: recovery ids are computed, not assumed.
    CHECK(recovery_ids == std::set<int>{27, 28});
}
