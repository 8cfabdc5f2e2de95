// pkcs11 on SoftHSM: the key-encryption-key ceremony between two tokens, wrapping replicable keys
// on A and unwrapping them into B, and every way that must fail without leaving anything behind.
#include "signet/pkcs11/replication.hpp"

#include <catch2/catch.hpp>

#include "signet_test/independent_verify.hpp"
#include "signet_test/keys.hpp"
#include "signet_test/replication_pair.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/test_hsm.hpp"

namespace p11 = signet::pkcs11;
namespace test = signet::test;
using p11::Algorithm;
using p11::KeyClass;
using signet::Bytes;
using signet::Errc;

namespace {

// Objects of any class carrying CKA_ID `id_hex` on the key store's token (raw Cryptoki).
std::size_t objects_with_id(p11::KeyStore& keys, const std::string& id_hex) {
    auto id = signet::hex_decode(id_hex);
    REQUIRE_OK(id);
    return test::count_objects(keys, {{CKA_ID, id->data(), id->size()}});
}

}  // namespace

TEST_CASE(
    "a replicable key wrapped on A and unwrapped into B signs verifiably under the original "
    "public key",
    "[pkcs11][replication][integration]") {
    const test::ReplicationPair pair = test::make_replication_pair();
    const Algorithm a =
        GENERATE(Algorithm::ecdsa_p256, Algorithm::ecdsa_secp256k1, Algorithm::rsa_2048);
    INFO(p11::to_string(a));
    const p11::KeyInfo original = test::generate_key(*pair.a, a, KeyClass::replicable, "treasury");

    const auto wrapped = p11::wrap_key(*pair.a, original.id, pair.kek_id);
    REQUIRE_OK(wrapped);
    CHECK(wrapped->id == original.id);
    CHECK(wrapped->spki_der == original.spki_der);
    CHECK(wrapped->blob.size() > 32);

    const auto copy = p11::unwrap_key(*pair.b, *wrapped, pair.kek_id);
    REQUIRE_OK(copy);
    CHECK(copy->id == original.id);
    CHECK(copy->label == "treasury");
    CHECK(copy->algorithm == a);
    CHECK(copy->key_class == KeyClass::replicable);
    CHECK(copy->spki_der == original.spki_der);

    // The copy signs on B; the signature verifies under A's original public key.
    const Bytes message = signet::to_bytes("replicated signature");
    const p11::SignRequest req{
        message, p11::Input::message, p11::Hash::sha256,
        p11::is_ecdsa(a) ? p11::SignatureEncoding::der : p11::SignatureEncoding::raw};
    const auto sig = pair.b->sign(copy->id, req);
    REQUIRE_OK(sig);
    const auto verdict = test::verify_independently(original, message, req, *sig);
    CHECK(verdict.evp);
    CHECK(verdict.cli == true);

    // The copy is as protected as the original.
    const auto attrs = pair.b->attributes(copy->id);
    REQUIRE_OK(attrs);
    CHECK(attrs->sensitive);
    CHECK(attrs->extractable);
    CHECK(attrs->wrap_with_trusted);
    CHECK(attrs->sign);
    CHECK_FALSE(attrs->decrypt);

    // Unwrapping the same key twice is refused.
    const auto twice = p11::unwrap_key(*pair.b, *wrapped, pair.kek_id);
    REQUIRE_FALSE(twice.has_value());
    CHECK(twice.error().is(Errc::already_exists));
}

TEST_CASE("wrapping an appliance-local key fails with not_replicable",
          "[pkcs11][replication][integration]") {
    const test::ReplicationPair pair = test::make_replication_pair();
    const p11::KeyInfo local = test::generate_key(*pair.a, Algorithm::ecdsa_p256, KeyClass::local);
    const auto r = p11::wrap_key(*pair.a, local.id, pair.kek_id);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::not_replicable));
    CHECK_THAT(r.error().message(), Catch::Contains("appliance-local"));
    CHECK_THAT(r.error().message(), Catch::Contains("CKR_KEY_UNEXTRACTABLE"));
}

TEST_CASE("an Ed25519 replicable key is not replicable on this HSM and says so",
          "[pkcs11][replication][integration]") {
    const test::ReplicationPair pair = test::make_replication_pair();
    const p11::KeyInfo ed = test::generate_key(*pair.a, Algorithm::ed25519, KeyClass::replicable);
    const auto r = p11::wrap_key(*pair.a, ed.id, pair.kek_id);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::not_replicable));
    CHECK_THAT(r.error().message(), Catch::Contains("not replicable on this HSM"));
    CHECK_THAT(r.error().message(), Catch::Contains("stays appliance-local"));
    CHECK_THAT(r.error().message(), Catch::Contains("CKR_KEY_NOT_WRAPPABLE"));  // SoftHSM 2.6.1
    // It still signs where it is.
    const Bytes message = signet::to_bytes("still here");
    REQUIRE_OK(pair.a->sign(ed.id, {message, p11::Input::message}));
}

TEST_CASE("a tampered blob or a wrong KEK fails to unwrap and leaves nothing behind on B",
          "[pkcs11][replication][integration]") {
    const test::ReplicationPair pair = test::make_replication_pair();
    const std::string other_kek = test::add_kek(pair, "signet.kek.other");
    REQUIRE(other_kek != pair.kek_id);
    const p11::KeyInfo original =
        test::generate_key(*pair.a, Algorithm::ecdsa_p256, KeyClass::replicable);
    const auto wrapped = p11::wrap_key(*pair.a, original.id, pair.kek_id);
    REQUIRE_OK(wrapped);

    SECTION("tampered blob") {
        p11::WrappedKey tampered = *wrapped;
        tampered.blob[tampered.blob.size() / 2] ^= 0x01;
        const auto r = p11::unwrap_key(*pair.b, tampered, pair.kek_id);
        REQUIRE_FALSE(r.has_value());
        // SoftHSM reports a failed AES key-wrap integrity check as CKR_GENERAL_ERROR.
        CHECK(p11::ckr_of(r.error()) == CKR_GENERAL_ERROR);
        CHECK_THAT(r.error().message(),
                   Catch::Contains("C_UnwrapKey (wrong KEK or damaged blob?)"));
    }
    SECTION("wrong KEK") {
        const auto r = p11::unwrap_key(*pair.b, *wrapped, other_kek);
        REQUIRE_FALSE(r.has_value());
        CHECK(p11::ckr_of(r.error()) == CKR_GENERAL_ERROR);
        CHECK_THAT(r.error().message(),
                   Catch::Contains("C_UnwrapKey (wrong KEK or damaged blob?)"));
    }
    SECTION("public key of another key") {
        // The blob is intact but the SPKI travelling with it is not its own: the possession
        // proof fails and the unwrapped objects are destroyed again.
        const p11::KeyInfo stranger =
            test::generate_key(*pair.a, Algorithm::ecdsa_p256, KeyClass::local, "stranger");
        p11::WrappedKey swapped = *wrapped;
        swapped.spki_der = stranger.spki_der;
        const auto r = p11::unwrap_key(*pair.b, swapped, pair.kek_id);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::verification_failed));
        CHECK_THAT(r.error().message(), Catch::Contains("does not match its public key; removed"));
    }
    SECTION("unknown KEK") {
        const auto r = p11::unwrap_key(*pair.b, *wrapped, "00112233");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::not_found));
        CHECK_THAT(r.error().message(), Catch::Contains("KEK 00112233 is not on the token"));
    }
    CHECK(objects_with_id(*pair.b, original.id) == 0);
    CHECK(pair.b->get(original.id).error().is(Errc::not_found));
    const auto listed = pair.b->list();
    REQUIRE_OK(listed);
    CHECK(listed->empty());
    // Nothing blocks the id: the intact blob still unwraps under the right KEK.
    REQUIRE_OK(p11::unwrap_key(*pair.b, *wrapped, pair.kek_id));
    CHECK(objects_with_id(*pair.b, original.id) == 2);
}

TEST_CASE(
    "a wrong SO PIN fails the KEK export with CKR_PIN_INCORRECT and the user session still "
    "works",
    "[pkcs11][replication][integration]") {
    const auto a = test::test_hsm().key_store(test::kTokenA);
    const auto b = test::test_hsm().key_store(test::kTokenB);
    const p11::KeyInfo key = test::generate_key(*a, Algorithm::ecdsa_p256, KeyClass::replicable);
    const auto transport = p11::generate_transport_key(*b, "signet.transport.a");
    REQUIRE_OK(transport);
    const std::uint64_t epoch = a->token().handle_epoch();

    const auto r = p11::export_kek(*a, signet::SecretBuffer::copy_of("wrong-so-pin"),
                                   transport->spki_der, "signet.kek.a-to-b");
    REQUIRE_FALSE(r.has_value());
    CHECK(p11::ckr_of(r.error()) == CKR_PIN_INCORRECT);
    CHECK_THAT(r.error().message(),
               Catch::Contains("export KEK: C_Login(security officer, token label 'signet-a')"));

    // The user is logged in again: signing and generating work, with re-found handles.
    CHECK(a->token().handle_epoch() > epoch);
    const Bytes digest(32, 0x42);
    const auto sig = a->sign(key.id, {digest});
    REQUIRE_OK(sig);
    CHECK(test::evp_verify(Algorithm::ecdsa_p256, key.spki_der, digest, sig->bytes));
    (void)test::generate_key(*a, Algorithm::ecdsa_p256, KeyClass::local, "after");

    // And the right SO PIN then completes the ceremony.
    const auto kek =
        p11::export_kek(*a, test::test_hsm().so_pin(), transport->spki_der, "signet.kek.a-to-b");
    REQUIRE_OK(kek);
    REQUIRE_OK(p11::import_kek(*b, transport->id, *kek, "signet.kek.a-to-b"));
    REQUIRE_OK(a->sign(key.id, {digest}));
}

TEST_CASE(
    "the ceremony refuses labels outside Signet's namespace and a transport key of the wrong "
    "kind",
    "[pkcs11][replication][integration]") {
    const auto a = test::test_hsm().key_store(test::kTokenA);
    const auto b = test::test_hsm().key_store(test::kTokenB);
    const auto bad_label = p11::generate_transport_key(*b, "transport");
    REQUIRE_FALSE(bad_label.has_value());
    CHECK(bad_label.error().is(Errc::invalid_argument));

    const p11::KeyInfo not_rsa = test::generate_key(*b, Algorithm::ecdsa_p256);
    const auto wrong_kind =
        p11::export_kek(*a, test::test_hsm().so_pin(), not_rsa.spki_der, "signet.kek");
    REQUIRE_FALSE(wrong_kind.has_value());
    CHECK(wrong_kind.error().is(Errc::invalid_argument));
    CHECK_THAT(wrong_kind.error().message(), Catch::Contains("public key is not rsa-3072"));
}
