// pkcs11 error paths: a logout under the session pool (real SoftHSM), and device errors, dying
// sessions and lost logins injected by the fault module (tests/support/fault_module.cpp) between
// Signet and SoftHSM. Recoverable faults are retried transparently and a bounded number of times;
// the others surface with the Cryptoki call and CKR name.
#include <catch2/catch.hpp>

#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/self_test.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/fault_control.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/keys.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/test_hsm.hpp"

namespace p11 = signet::pkcs11;
namespace test = signet::test;
using signet::Bytes;
using signet::Errc;

namespace {

const Bytes kDigest = test::oracle_sha256(signet::to_bytes("fault injection"));

// A P-256 key on token A reached through the fault module, and the module's controls.
struct FaultyToken {
    explicit FaultyToken(p11::TokenOptions options = {})
        : token(test::open_fault_token(test::kFaultModulePath, test::kTokenA, options)),
          keys(std::make_shared<p11::KeyStore>(token)),
          faults(test::kFaultModulePath),
          key(test::generate_key(*keys, p11::Algorithm::ecdsa_p256)) {}

    // Signs kDigest and checks the signature independently.
    signet::Result<p11::Signature> sign() const {
        auto sig = keys->sign(key.id, {kDigest});
        if (sig) CHECK(test::evp_verify(key.algorithm, key.spki_der, kDigest, sig->bytes));
        return sig;
    }

    std::shared_ptr<p11::Token> token;
    std::shared_ptr<p11::KeyStore> keys;
    test::FaultControl faults;
    p11::KeyInfo key;
};

// The epoch stored with the key's cached handles (re-resolving them if stale).
std::uint64_t cached_handle_epoch(p11::KeyStore& keys, const std::string& id) {
    const auto kh =
        keys.token().run("handles", [&](p11::Session& s) { return keys.handles(s, id); });
    REQUIRE_OK(kh);
    return kh->epoch;
}

}  // namespace

namespace {

// C_Logout on a raw session of the token's slot. PKCS#11 logins belong to the application, so every
// pooled session (and the token's anchor) loses it, and SoftHSM drops private-object handles.
void logout_behind_the_pool(p11::Token& token) {
    const auto fns = token.module().functions();
    REQUIRE_OK(fns);
    const auto slot = token.module().find_slot(token.selector());
    REQUIRE_OK(slot);
    CK_SESSION_HANDLE raw = CK_INVALID_HANDLE;
    REQUIRE((*fns)->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                  &raw) == CKR_OK);
    REQUIRE((*fns)->C_Logout(raw) == CKR_OK);
    REQUIRE((*fns)->C_CloseSession(raw) == CKR_OK);
}

}  // namespace

TEST_CASE(
    "a logout under the pool is recovered transparently: the next sign logs in again and "
    "re-finds handles",
    "[pkcs11][faults][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    p11::Token& token = keys->token();
    const p11::KeyInfo key = test::generate_key(*keys, p11::Algorithm::ecdsa_p256);
    REQUIRE_OK(keys->sign(key.id, {kDigest}));  // handles cached, sessions pooled
    const std::uint64_t logins = token.logins();
    const std::uint64_t epoch = token.handle_epoch();
    REQUIRE(cached_handle_epoch(*keys, key.id) == epoch);

    logout_behind_the_pool(token);

    const auto sig = keys->sign(key.id, {kDigest});
    REQUIRE_OK(sig);
    CHECK(test::evp_verify(key.algorithm, key.spki_der, kDigest, sig->bytes));
    CHECK(token.logins() == logins + 1);
    CHECK(token.recoveries() == 1);
    CHECK(token.handle_epoch() > epoch);
    CHECK(cached_handle_epoch(*keys, key.id) == token.handle_epoch());
}

TEST_CASE("after a logout under the pool a key that was never cached is still found and listed",
          "[pkcs11][faults][integration]") {
    const auto keys = test::fresh_key_store();
    const p11::KeyInfo first =
        test::generate_key(*keys, p11::Algorithm::ecdsa_p256, p11::KeyClass::local, "first");
    const p11::KeyInfo second =
        test::generate_key(*keys, p11::Algorithm::ed25519, p11::KeyClass::local, "second");
    const std::uint64_t logins = keys->token().logins();

    logout_behind_the_pool(keys->token());

    // A search without a login would silently skip private keys: it must not report "no keys".
    const auto listed = keys->list();
    REQUIRE_OK(listed);
    CHECK(listed->size() == 2);
    CHECK(keys->token().logins() == logins + 1);

    logout_behind_the_pool(keys->token());
    const auto got = keys->get(second.id);
    REQUIRE_OK(got);
    CHECK(got->label == "second");
    const Bytes message = signet::to_bytes("after logout");
    REQUIRE_OK(keys->sign(second.id, {message, p11::Input::message}));
    CHECK(keys->token().logins() == logins + 2);
}

TEST_CASE(
    "CKR_DEVICE_ERROR from C_Sign surfaces with the call and CKR name, is not retried, and "
    "the next sign works",
    "[pkcs11][faults][integration]") {
    FaultyToken t;
    REQUIRE_OK(t.sign());
    t.faults.arm("C_Sign", CKR_DEVICE_ERROR);

    const auto failed = t.sign();
    REQUIRE_FALSE(failed.has_value());
    CHECK(p11::ckr_of(failed.error()) == CKR_DEVICE_ERROR);
    CHECK_THAT(failed.error().message(), Catch::Contains("C_Sign"));
    CHECK_THAT(failed.error().message(), Catch::Contains("CKR_DEVICE_ERROR"));
    CHECK(t.faults.injected("C_Sign") == 1);
    CHECK(t.token->recoveries() == 0);

    // The session that failed mid-operation was discarded; a fresh one signs.
    REQUIRE_OK(t.sign());
    CHECK(t.faults.injected("C_Sign") == 1);
}

TEST_CASE("a session that dies mid-sign with CKR_SESSION_HANDLE_INVALID is replaced transparently",
          "[pkcs11][faults][integration]") {
    FaultyToken t;
    REQUIRE_OK(t.sign());
    const std::uint64_t logins = t.token->logins();
    t.faults.arm("C_Sign", CKR_SESSION_HANDLE_INVALID);

    REQUIRE_OK(t.sign());
    CHECK(t.faults.injected("C_Sign") == 1);
    CHECK(t.token->recoveries() == 1);
    CHECK(t.token->logins() == logins);  // the login was never lost

    // The same at C_SignInit, on a later call.
    t.faults.arm("C_SignInit", CKR_SESSION_CLOSED, 1, 1);
    REQUIRE_OK(t.sign());
    REQUIRE_OK(t.sign());
    CHECK(t.faults.injected("C_SignInit") == 1);
    CHECK(t.token->recoveries() == 2);
}

TEST_CASE("recovery is bounded: a session that keeps dying fails after max_recoveries retries",
          "[pkcs11][faults][integration]") {
    p11::TokenOptions options;
    options.max_recoveries = 2;
    FaultyToken t(options);
    t.faults.arm("C_Sign", CKR_SESSION_HANDLE_INVALID, 0, 1000);

    const auto failed = t.sign();
    REQUIRE_FALSE(failed.has_value());
    CHECK(p11::ckr_of(failed.error()) == CKR_SESSION_HANDLE_INVALID);
    CHECK_THAT(failed.error().message(), Catch::Contains("C_Sign"));
    CHECK(t.faults.injected("C_Sign") == 3);  // the first attempt and two retries
    CHECK(t.token->recoveries() == 2);

    t.faults.clear();
    REQUIRE_OK(t.sign());
}

TEST_CASE("a login lost mid-sign (CKR_USER_NOT_LOGGED_IN) is restored and the sign succeeds",
          "[pkcs11][faults][integration]") {
    FaultyToken t;
    REQUIRE_OK(t.sign());
    const std::uint64_t logins = t.token->logins();
    const std::uint64_t epoch = t.token->handle_epoch();
    t.faults.arm("C_Sign", CKR_USER_NOT_LOGGED_IN);  // also logs the real session out

    REQUIRE_OK(t.sign());
    CHECK(t.faults.injected("C_Sign") == 1);
    CHECK(t.token->logins() == logins + 1);
    CHECK(t.token->handle_epoch() > epoch);
    CHECK(cached_handle_epoch(*t.keys, t.key.id) == t.token->handle_epoch());
}

TEST_CASE("a failure to open a session names the token and the call, and the pool recovers",
          "[pkcs11][faults][integration]") {
    FaultyToken t;
    // A second token object on the same module: its pool holds no idle session yet, so the next
    // operation must open one.
    auto token = test::open_fault_token(test::kFaultModulePath, test::kTokenA);
    p11::KeyStore keys(token);
    t.faults.arm("C_OpenSession", CKR_DEVICE_ERROR, 0, 1);
    const auto failed = keys.get(t.key.id);
    REQUIRE_FALSE(failed.has_value());
    CHECK(p11::ckr_of(failed.error()) == CKR_DEVICE_ERROR);
    CHECK_THAT(failed.error().message(),
               Catch::Contains("get key " + t.key.id + ": C_OpenSession(token label 'signet-a')"));
    CHECK(t.faults.injected("C_OpenSession") == 1);
    CHECK_OK(keys.get(t.key.id));
}

TEST_CASE("the self-test fails with the reason when the HSM cannot sign",
          "[pkcs11][faults][integration]") {
    FaultyToken t;
    t.faults.arm("C_Sign", CKR_DEVICE_ERROR, 0, 1000);
    const p11::SelfTestReport report = p11::run_self_test(*t.keys);
    CHECK_FALSE(report.passed());
    REQUIRE(report.checks.size() == std::size(p11::kAllAlgorithms));
    for (const p11::AlgorithmCheck& c : report.checks) {
        INFO(p11::to_string(c.algorithm));
        CHECK_FALSE(c.passed);
        CHECK_THAT(c.detail, Catch::Contains("C_Sign: CKR_DEVICE_ERROR"));
    }
    CHECK_THAT(report.summary(), Catch::StartsWith("ecdsa-p256 FAILED (C_Sign: CKR_DEVICE_ERROR"));

    t.faults.clear();
    const p11::SelfTestReport healthy = p11::run_self_test(*t.keys);
    INFO(healthy.summary());
    CHECK(healthy.passed());
}
