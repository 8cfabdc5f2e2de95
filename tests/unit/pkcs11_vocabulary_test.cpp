// pkcs11 (no HSM): stable names of algorithms and options, the CK_RV error category, which CK_RVs
// Token::run recovers from, and the session pool's bounds (with a fake session opener).
#include "signet/pkcs11/algorithm.hpp"

#include <catch2/catch.hpp>
#include <vector>

#include "signet/pkcs11/error.hpp"
#include "signet/pkcs11/session.hpp"
#include "signet/pkcs11/token.hpp"
#include "signet_test/result_matchers.hpp"

namespace p11 = signet::pkcs11;
using signet::Errc;

TEST_CASE("algorithm, key class, hash, encoding and padding names round-trip", "[pkcs11][unit]") {
    const std::vector<std::string> expected{"ecdsa-p256", "ecdsa-secp256k1", "ed25519", "rsa-2048",
                                            "rsa-3072"};
    std::vector<std::string> names;
    for (const p11::Algorithm a : p11::kAllAlgorithms) {
        names.emplace_back(p11::to_string(a));
        CHECK(p11::parse_algorithm(p11::to_string(a)) == a);
    }
    CHECK(names == expected);
    CHECK(p11::is_ecdsa(p11::Algorithm::ecdsa_secp256k1));
    CHECK_FALSE(p11::is_ecdsa(p11::Algorithm::ed25519));
    CHECK(p11::is_rsa(p11::Algorithm::rsa_3072));

    for (const auto c : {p11::KeyClass::local, p11::KeyClass::replicable}) {
        CHECK(p11::parse_key_class(p11::to_string(c)) == c);
    }
    for (const auto h : {p11::Hash::sha256, p11::Hash::keccak256}) {
        CHECK(p11::parse_hash(p11::to_string(h)) == h);
    }
    for (const auto e :
         {p11::SignatureEncoding::raw, p11::SignatureEncoding::der, p11::SignatureEncoding::eth}) {
        CHECK(p11::parse_signature_encoding(p11::to_string(e)) == e);
    }
    for (const auto p : {p11::RsaPadding::pkcs1v15, p11::RsaPadding::pss}) {
        CHECK(p11::parse_rsa_padding(p11::to_string(p)) == p);
    }
    // Names are exact: no case folding, no aliases.
    for (const char* unknown : {"", "ECDSA-P256", "p256", "rsa-4096", "ed448"}) {
        CHECK_FALSE(p11::parse_algorithm(unknown).has_value());
    }
    CHECK_FALSE(p11::parse_hash("sha3-256").has_value());
    CHECK_FALSE(p11::parse_signature_encoding("DER").has_value());
    CHECK_FALSE(p11::parse_key_class("exportable").has_value());
    CHECK_FALSE(p11::parse_rsa_padding("oaep").has_value());
}

TEST_CASE("Cryptoki errors keep the raw CK_RV and print its CKR name and value", "[pkcs11][unit]") {
    const signet::Error e = p11::ck_error(CKR_PIN_INCORRECT, "C_Login(user, token label 'x')");
    CHECK(e.message() == "C_Login(user, token label 'x'): CKR_PIN_INCORRECT (0xa0)");
    CHECK(p11::ckr_of(e) == CKR_PIN_INCORRECT);
    CHECK(e.code.category().name() == std::string("pkcs11"));
    CHECK(p11::ckr_of(e.within("open token")) == CKR_PIN_INCORRECT);

    CHECK(p11::ckr_name(CKR_DEVICE_ERROR) == "CKR_DEVICE_ERROR");
    CHECK(p11::ckr_name(CKR_SESSION_HANDLE_INVALID) == "CKR_SESSION_HANDLE_INVALID");
    CHECK(p11::ckr_name(CKR_VENDOR_DEFINED + 0x42) == "CKR_VENDOR_DEFINED+0x42");
    CHECK(p11::ckr_name(0x7777) == "CKR_UNKNOWN(0x7777)");
    // Vendor codes set bit 31 and still survive the trip through an int error code.
    CHECK(p11::ckr_of(p11::ck_error(CKR_VENDOR_DEFINED + 1, "x")) == CKR_VENDOR_DEFINED + 1);

    // A Signet error carries no CK_RV.
    CHECK(p11::ckr_of(signet::make_error(Errc::not_found, "x")) == CKR_OK);
    CHECK_FALSE(p11::ck_error(CKR_GENERAL_ERROR, "x").is(Errc::internal));
}

TEST_CASE("only lost sessions, logins, handles and devices count as recoverable",
          "[pkcs11][unit]") {
    for (const CK_RV rv :
         {CKR_USER_NOT_LOGGED_IN, CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID,
          CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
          CKR_CRYPTOKI_NOT_INITIALIZED}) {
        INFO(p11::ckr_name(rv));
        CHECK(p11::is_recoverable(rv));
    }
    // Retrying these would repeat a refusal, hide a device fault or burn PIN attempts.
    for (const CK_RV rv :
         {CKR_OK, CKR_DEVICE_ERROR, CKR_GENERAL_ERROR, CKR_PIN_INCORRECT, CKR_PIN_LOCKED,
          CKR_ATTRIBUTE_SENSITIVE, CKR_FUNCTION_FAILED, CKR_DEVICE_MEMORY, CKR_MECHANISM_INVALID}) {
        INFO(p11::ckr_name(rv));
        CHECK_FALSE(p11::is_recoverable(rv));
    }
}

namespace {

// Hands out fake session handles (no function list: closing them is a no-op) and counts opens.
struct FakeOpener {
    CK_SESSION_HANDLE next = 100;
    int opened = 0;
    bool fail = false;

    p11::SessionPool::Opener opener() {
        return [this]() -> signet::Result<p11::Session> {
            if (fail) return p11::ck_error(CKR_SESSION_COUNT, "C_OpenSession(fake)");
            ++opened;
            return p11::Session(nullptr, next++);
        };
    }
};

}  // namespace

TEST_CASE("the session pool opens at most max_sessions and reports unavailable when all are busy",
          "[pkcs11][unit]") {
    FakeOpener fake;
    p11::SessionPool pool(2, std::chrono::milliseconds(0), fake.opener());
    CHECK(pool.max_sessions() == 2);
    {
        auto first = pool.acquire();
        auto second = pool.acquire();
        REQUIRE_OK(first);
        REQUIRE_OK(second);
        CHECK((*first)->handle() != (*second)->handle());
        CHECK(pool.open_count() == 2);

        const auto third = pool.acquire();
        REQUIRE_FALSE(third.has_value());
        CHECK(third.error().is(Errc::unavailable));
        CHECK_THAT(third.error().message(), Catch::Contains("all 2 HSM sessions stayed busy"));
    }
    // Returned sessions are reused, not reopened.
    CHECK(pool.open_count() == 2);
    {
        auto again = pool.acquire();
        REQUIRE_OK(again);
        CHECK(fake.opened == 2);
        again->discard();  // a failed operation: the session must not come back
    }
    CHECK(pool.open_count() == 1);
    pool.close_idle();
    CHECK(pool.open_count() == 0);
}

TEST_CASE("a session that cannot be opened is not counted against the pool", "[pkcs11][unit]") {
    FakeOpener fake;
    fake.fail = true;
    p11::SessionPool pool(1, std::chrono::milliseconds(0), fake.opener());
    const auto failed = pool.acquire();
    REQUIRE_FALSE(failed.has_value());
    CHECK(p11::ckr_of(failed.error()) == CKR_SESSION_COUNT);
    CHECK(pool.open_count() == 0);

    fake.fail = false;
    const auto ok = pool.acquire();
    REQUIRE_OK(ok);
    CHECK(pool.open_count() == 1);
}

TEST_CASE("a pool of zero sessions still allows one and abandon_all forgets idle sessions",
          "[pkcs11][unit]") {
    FakeOpener fake;
    p11::SessionPool pool(0, std::chrono::milliseconds(0), fake.opener());
    CHECK(pool.max_sessions() == 1);
    { REQUIRE_OK(pool.acquire()); }
    CHECK(pool.open_count() == 1);
    pool.abandon_all();  // fork child: the parent's handles are not ours to close
    CHECK(pool.open_count() == 0);
    { REQUIRE_OK(pool.acquire()); }
    CHECK(fake.opened == 2);
}
