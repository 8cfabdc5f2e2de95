// pkcs11 on SoftHSM: key generation with explicit security attributes, non-extractability as
// promised, lookup, listing, destruction and public-key export.
#include "signet/pkcs11/key_store.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <vector>

#include "signet/pkcs11/public_key.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/keys.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/test_hsm.hpp"

namespace p11 = signet::pkcs11;
namespace test = signet::test;
using p11::Algorithm;
using p11::KeyClass;
using signet::Bytes;
using signet::Errc;

namespace {

struct AttributeRead {
    CK_RV rv = CKR_OK;
    CK_ULONG length = 0;
};

// Reads an attribute of the key's private (or public) object with raw Cryptoki, bypassing
// KeyStore, so the test sees exactly what the HSM answers.
AttributeRead read_raw(p11::KeyStore& keys, const std::string& id, CK_ATTRIBUTE_TYPE type,
                       bool private_half = true, Bytes* value = nullptr) {
    AttributeRead out;
    const auto r = keys.token().run("raw read", [&](p11::Session& s) -> signet::Result<void> {
        const p11::KeyHandles kh = SIGNET_TRY(keys.handles(s, id));
        Bytes buf(4096);
        CK_ATTRIBUTE a{type, buf.data(), buf.size()};
        out.rv = s.fn().C_GetAttributeValue(s.handle(),
                                            private_half ? kh.private_key : kh.public_key, &a, 1);
        out.length = a.ulValueLen;
        if (value && out.rv == CKR_OK)
            *value = Bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(a.ulValueLen));
        return signet::ok();
    });
    REQUIRE_OK(r);
    return out;
}

// The attribute that holds a private key's secret: CKA_VALUE (EC, EdDSA) or the RSA exponent.
CK_ATTRIBUTE_TYPE secret_attribute(Algorithm a) {
    return p11::is_rsa(a) ? CKA_PRIVATE_EXPONENT : CKA_VALUE;
}

// C_WrapKey of `id` under a fresh, untrusted session AES key (one a user can make).
CK_RV wrap_under_untrusted_key(p11::KeyStore& keys, const std::string& id) {
    CK_RV wrap_rv = CKR_OK;
    const auto r =
        keys.token().run("wrap under untrusted key", [&](p11::Session& s) -> signet::Result<void> {
            const p11::KeyHandles kh = SIGNET_TRY(keys.handles(s, id));
            CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
            CK_KEY_TYPE type = CKK_AES;
            CK_ULONG len = 32;
            CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
            CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                                   {CKA_KEY_TYPE, &type, sizeof type},
                                   {CKA_VALUE_LEN, &len, sizeof len},
                                   {CKA_TOKEN, &no, sizeof no},
                                   {CKA_WRAP, &yes, sizeof yes}};
            CK_MECHANISM gen{CKM_AES_KEY_GEN, nullptr, 0};
            CK_OBJECT_HANDLE aes = CK_INVALID_HANDLE;
            const CK_RV rv = s.fn().C_GenerateKey(s.handle(), &gen, tmpl, 5, &aes);
            if (rv != CKR_OK) return p11::ck_error(rv, "C_GenerateKey(AES)");
            CK_MECHANISM wrap{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
            Bytes out(8192);
            CK_ULONG out_len = out.size();
            wrap_rv =
                s.fn().C_WrapKey(s.handle(), &wrap, aes, kh.private_key, out.data(), &out_len);
            (void)s.fn().C_DestroyObject(s.handle(), aes);
            return signet::ok();
        });
    REQUIRE_OK(r);
    return wrap_rv;
}

}  // namespace

TEST_CASE("a local key never reveals its private value and is marked never extractable",
          "[pkcs11][integration]") {
    const Algorithm a =
        GENERATE(from_range(std::begin(p11::kAllAlgorithms), std::end(p11::kAllAlgorithms)));
    INFO(p11::to_string(a));
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo key = test::generate_key(*keys, a);
    CHECK(key.key_class == KeyClass::local);

    const AttributeRead secret = read_raw(*keys, key.id, secret_attribute(a));
    CHECK(p11::ckr_name(secret.rv) == "CKR_ATTRIBUTE_SENSITIVE");
    CHECK(secret.length == CK_UNAVAILABLE_INFORMATION);

    const auto attrs = keys->attributes(key.id);
    REQUIRE_OK(attrs);
    CHECK(attrs->token);
    CHECK(attrs->is_private);
    CHECK(attrs->sensitive);
    CHECK(attrs->always_sensitive);
    CHECK_FALSE(attrs->extractable);
    CHECK(attrs->never_extractable);
    CHECK(attrs->sign);
    CHECK_FALSE(attrs->decrypt);
    CHECK_FALSE(attrs->unwrap);
    CHECK_FALSE(attrs->derive);
    CHECK_FALSE(attrs->modifiable);

    // Not even an AES key the user controls can take it out.
    CHECK(p11::ckr_name(wrap_under_untrusted_key(*keys, key.id)) == "CKR_KEY_UNEXTRACTABLE");
}

TEST_CASE("a replicable key is sensitive and extractable only under a trusted wrapping key",
          "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const p11::KeyInfo key = test::generate_key(*keys, Algorithm::ecdsa_p256, KeyClass::replicable);
    CHECK(key.key_class == KeyClass::replicable);

    const auto attrs = keys->attributes(key.id);
    REQUIRE_OK(attrs);
    CHECK(attrs->extractable);
    CHECK(attrs->wrap_with_trusted);
    CHECK(attrs->sensitive);
    CHECK(attrs->always_sensitive);
    CHECK_FALSE(attrs->never_extractable);
    CHECK_FALSE(attrs->modifiable);

    const AttributeRead secret = read_raw(*keys, key.id, CKA_VALUE);
    CHECK(p11::ckr_name(secret.rv) == "CKR_ATTRIBUTE_SENSITIVE");
    // WRAP_WITH_TRUSTED: an untrusted key the user made is refused.
    CHECK(p11::ckr_name(wrap_under_untrusted_key(*keys, key.id)) == "CKR_KEY_NOT_WRAPPABLE");
}

TEST_CASE("generated keys are listed and found by id with the public key the HSM holds",
          "[pkcs11][integration]") {
    const auto keys = test::fresh_key_store();
    const auto empty = keys->list();
    REQUIRE_OK(empty);
    CHECK(empty->empty());

    const p11::KeyInfo p256 =
        test::generate_key(*keys, Algorithm::ecdsa_p256, KeyClass::local, "payments");
    const p11::KeyInfo ed =
        test::generate_key(*keys, Algorithm::ed25519, KeyClass::replicable, "docs");
    // Signet's own keys exist on the token but are not listed.
    REQUIRE_OK(
        keys->find_or_generate_internal("signet.selftest.ecdsa-p256", Algorithm::ecdsa_p256));
    CHECK(p256.id.size() == 32);  // 16 random bytes
    CHECK(p256.id != ed.id);

    const auto listed = keys->list();
    REQUIRE_OK(listed);
    REQUIRE(listed->size() == 2);
    CHECK(std::is_sorted(listed->begin(), listed->end(),
                         [](const auto& x, const auto& y) { return x.id < y.id; }));
    for (const p11::KeyInfo& k : *listed) {
        const p11::KeyInfo& want = k.id == p256.id ? p256 : ed;
        CHECK(k.label == want.label);
        CHECK(k.algorithm == want.algorithm);
        CHECK(k.key_class == want.key_class);
        CHECK(k.spki_der == want.spki_der);
    }

    const auto got = keys->get(p256.id);
    REQUIRE_OK(got);
    CHECK(got->label == "payments");
    CHECK(got->algorithm == Algorithm::ecdsa_p256);
    CHECK(got->spki_der == p256.spki_der);
    CHECK_OK(p11::check_spki(Algorithm::ecdsa_p256, got->spki_der));
    // Ids are hex: upper case and a 0x prefix name the same key.
    std::string upper = p256.id;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) {
        return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    });
    upper = "0x" + upper;
    const auto by_upper = keys->get(upper);
    REQUIRE_OK(by_upper);
    CHECK(by_upper->id == p256.id);
}

TEST_CASE("generate refuses reserved or malformed labels and ids already on the token",
          "[pkcs11][integration]") {
    const auto keys = test::fresh_key_store();
    const Bytes id{0xca, 0xfe};
    REQUIRE_OK(keys->generate({Algorithm::ecdsa_p256, KeyClass::local, "first", id}));

    struct Case {
        p11::KeySpec spec;
        Errc errc;
        const char* why;
    };
    const Case cases[] = {
        {{Algorithm::ecdsa_p256, KeyClass::local, "second", id},
         Errc::already_exists,
         "key id cafe is already on the token"},
        {{Algorithm::ed25519, KeyClass::local, "signet.selftest.x", std::nullopt},
         Errc::invalid_argument,
         "reserved for the appliance"},
        {{Algorithm::ed25519, KeyClass::local, "", std::nullopt},
         Errc::invalid_argument,
         "label must be 1 to 128 bytes"},
        {{Algorithm::ed25519, KeyClass::local, std::string(129, 'x'), std::nullopt},
         Errc::invalid_argument,
         "label must be 1 to 128 bytes"},
        {{Algorithm::ed25519, KeyClass::local, "two\nlines", std::nullopt},
         Errc::invalid_argument,
         "control characters"},
        {{Algorithm::ed25519, KeyClass::local, "ok", Bytes{}},
         Errc::invalid_argument,
         "key id must be 1 to 64 bytes"},
        {{Algorithm::ed25519, KeyClass::local, "ok", Bytes(65, 1)},
         Errc::invalid_argument,
         "key id must be 1 to 64 bytes"},
    };
    for (const Case& c : cases) {
        INFO(c.why);
        const auto r = keys->generate(c.spec);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(c.errc));
        CHECK_THAT(r.error().message(), Catch::Contains(c.why));
    }
    const auto listed = keys->list();
    REQUIRE_OK(listed);
    CHECK(listed->size() == 1);  // nothing half-made was left behind
}

TEST_CASE("destroy removes both halves and a second destroy reports not_found",
          "[pkcs11][integration]") {
    const auto keys = test::fresh_key_store();
    const p11::KeyInfo key = test::generate_key(*keys, Algorithm::ecdsa_secp256k1);
    const Bytes digest(32, 7);
    REQUIRE_OK(keys->sign(key.id, {digest}));  // caches its handles

    REQUIRE_OK(keys->destroy(key.id));
    const std::vector<signet::Error> gone{keys->get(key.id).error(),
                                          keys->sign(key.id, {digest}).error(),
                                          keys->destroy(key.id).error()};
    for (const signet::Error& r : gone) {
        CHECK(r.is(Errc::not_found));
        CHECK_THAT(r.message(), Catch::Contains("no key " + key.id + " on the token"));
    }
    const auto listed = keys->list();
    REQUIRE_OK(listed);
    CHECK(listed->empty());
    // The id is free again.
    const auto hex = signet::hex_decode(key.id);
    REQUIRE_OK(hex);
    REQUIRE_OK(keys->generate({Algorithm::ecdsa_p256, KeyClass::local, "reused", *hex}));
}

TEST_CASE("malformed key ids are invalid_argument and unknown ones not_found",
          "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    for (const std::string& bad :
         {std::string(), std::string("xyz"), std::string("abc"), std::string(130, 'a')}) {
        INFO("id '" << bad << "'");
        const auto r = keys->get(bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::invalid_argument));
        CHECK_THAT(r.error().message(), Catch::Contains("key id must be 1 to 64 bytes of hex"));
    }
    const auto unknown = keys->get("00ff00ff");
    REQUIRE_FALSE(unknown.has_value());
    CHECK(unknown.error().is(Errc::not_found));
    CHECK_THAT(unknown.error().message(), Catch::Contains("no key 00ff00ff on the token"));
    CHECK(keys->attributes("00ff00ff").error().is(Errc::not_found));
}

TEST_CASE("public keys are exported exactly as the HSM stores them", "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const Algorithm a =
        GENERATE(Algorithm::ecdsa_p256, Algorithm::ecdsa_secp256k1, Algorithm::ed25519);
    INFO(p11::to_string(a));
    const p11::KeyInfo key = test::generate_key(*keys, a);
    Bytes ec_point;
    REQUIRE(read_raw(*keys, key.id, CKA_EC_POINT, false, &ec_point).rv == CKR_OK);
    // PKCS#11: CKA_EC_POINT is a DER OCTET STRING around the point.
    const std::size_t point_size = a == Algorithm::ed25519 ? 32 : 65;
    REQUIRE(ec_point.size() == point_size + 2);
    CHECK(ec_point[0] == 0x04);
    CHECK(ec_point[1] == point_size);
    const Bytes point(ec_point.begin() + 2, ec_point.end());

    const auto exported = p11::spki_public_point(a, key.spki_der);
    REQUIRE_OK(exported);
    CHECK(*exported == point);
    const auto jwk = p11::spki_to_jwk(a, key.spki_der);
    REQUIRE_OK(jwk);
    const auto x = signet::base64url_decode(jwk->x);
    REQUIRE_OK(x);
    if (a == Algorithm::ed25519) {
        CHECK(jwk->kty == "OKP");
        CHECK(*x == point);
    } else {
        CHECK(jwk->kty == "EC");
        CHECK(*x == Bytes(point.begin() + 1, point.begin() + 33));
    }
    if (a == Algorithm::ecdsa_secp256k1) {
        const auto address = p11::ethereum_address(key.spki_der);
        REQUIRE_OK(address);
        CHECK(*address == test::oracle_eth_address(point));
    }
}

TEST_CASE("RSA public keys carry the generated modulus size and exponent 65537",
          "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const Algorithm a = GENERATE(Algorithm::rsa_2048, Algorithm::rsa_3072);
    const p11::KeyInfo key = test::generate_key(*keys, a);
    Bytes modulus;
    REQUIRE(read_raw(*keys, key.id, CKA_MODULUS, false, &modulus).rv == CKR_OK);
    const auto parts = p11::spki_rsa_components(key.spki_der);
    REQUIRE_OK(parts);
    CHECK(parts->modulus == modulus);
    CHECK(parts->modulus.size() == (a == Algorithm::rsa_2048 ? 256u : 384u));
    CHECK(parts->public_exponent == Bytes{1, 0, 1});
    CHECK_OK(p11::check_spki(a, key.spki_der));
}

namespace {

// How many data objects on the token carry CKA_APPLICATION = `name`, counted with raw Cryptoki.
std::size_t data_objects_named(p11::KeyStore& keys, std::string name) {
    CK_OBJECT_CLASS cls = CKO_DATA;
    return test::count_objects(
        keys, {{CKA_CLASS, &cls, sizeof cls}, {CKA_APPLICATION, name.data(), name.size()}});
}

}  // namespace

TEST_CASE("internal data objects are absent until written, overwritten in place and persist",
          "[pkcs11][integration]") {
    const std::string name = "signet.test.anchor";
    const Bytes first{0, 0, 0, 0, 0, 0, 0, 7, 0xaa, 0xbb};
    const Bytes second(40, 0x5c);
    {
        const auto keys = test::test_hsm().key_store(test::kTokenA);
        const auto absent = keys->read_internal_data(name);
        REQUIRE_OK(absent);
        CHECK_FALSE(absent->has_value());

        REQUIRE_OK(keys->write_internal_data(name, first));
        auto got = keys->read_internal_data(name);
        REQUIRE_OK(got);
        REQUIRE(got->has_value());
        CHECK(**got == first);

        // Overwritten, not added to: one object, holding the new value.
        REQUIRE_OK(keys->write_internal_data(name, second));
        got = keys->read_internal_data(name);
        REQUIRE_OK(got);
        REQUIRE(got->has_value());
        CHECK(**got == second);
        CHECK(data_objects_named(*keys, name) == 1);
        // Other names are separate.
        const auto other = keys->read_internal_data("signet.test.other");
        REQUIRE_OK(other);
        CHECK_FALSE(other->has_value());
    }
    // Another KeyStore on the same token (a restarted appliance) reads it back, and the data
    // object does not disturb the internal keys or the key list.
    const auto again = test::test_hsm().key_store(test::kTokenA);
    const auto internal_key =
        again->find_or_generate_internal("signet.test.key", Algorithm::ecdsa_p256);
    REQUIRE_OK(internal_key);
    const auto got = again->read_internal_data(name);
    REQUIRE_OK(got);
    REQUIRE(got->has_value());
    CHECK(**got == second);
    REQUIRE_OK(again->write_internal_data(name, first));
    const auto third = test::test_hsm().key_store(test::kTokenA);
    const auto back = third->read_internal_data(name);
    REQUIRE_OK(back);
    REQUIRE(back->has_value());
    CHECK(**back == first);
    CHECK(data_objects_named(*third, name) == 1);
    const auto listed = third->list();
    REQUIRE_OK(listed);
    for (const auto& k : *listed) CHECK(k.label.rfind("signet.", 0) != 0);
}
