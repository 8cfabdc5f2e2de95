// pkcs11 under concurrency: several threads share one Token whose pool has fewer sessions than
// threads, so leases contend; every signature must come back and verify. Run under TSan too
// (`ctest --test-dir build/tsan -R concurr`).
#include <atomic>
#include <catch2/catch.hpp>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/public_key.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/fault_control.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/keys.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/test_hsm.hpp"

namespace p11 = signet::pkcs11;
namespace test = signet::test;
using signet::Bytes;

namespace {

constexpr int kThreads = 4;
constexpr int kPerThread = 60;

struct Outcome {
    const p11::KeyInfo* key = nullptr;
    Bytes digest;
    signet::Result<p11::Signature> result = signet::make_error(signet::Errc::internal, "not run");
};

// kThreads threads each sign kPerThread distinct digests, alternating between `keys_used`, all
// released at once. `progress` counts completed signatures for an observer thread.
std::vector<Outcome> sign_concurrently(p11::KeyStore& keys,
                                       const std::vector<p11::KeyInfo>& keys_used,
                                       std::atomic<int>& progress) {
    std::vector<Outcome> outcomes(kThreads * kPerThread);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            start.arrive_and_wait();
            for (int i = 0; i < kPerThread; ++i) {
                Outcome& o = outcomes[static_cast<std::size_t>(t * kPerThread + i)];
                o.key = &keys_used[static_cast<std::size_t>(i) % keys_used.size()];
                o.digest = test::oracle_sha256(signet::to_bytes("thread " + std::to_string(t) +
                                                                " signature " + std::to_string(i)));
                const auto enc = o.key->algorithm == p11::Algorithm::ecdsa_secp256k1
                                     ? p11::SignatureEncoding::eth
                                     : p11::SignatureEncoding::der;
                o.result =
                    keys.sign(o.key->id, {o.digest, p11::Input::digest, p11::Hash::sha256, enc});
                progress.fetch_add(1);
            }
        });
    }
    for (std::thread& th : threads) th.join();
    return outcomes;
}

// Every outcome is a signature that verifies independently under its key; eth signatures also
// recover (libsecp256k1) to the key's public point.
void check_all_verify(const std::vector<Outcome>& outcomes) {
    int errors = 0, invalid = 0;
    for (const Outcome& o : outcomes) {
        if (!o.result) {
            if (errors++ == 0) UNSCOPED_INFO("first error: " << o.result.error().message());
            continue;
        }
        const Bytes& sig = o.result->bytes;
        const bool eth = sig.size() == 65;
        bool ok = test::evp_verify(o.key->algorithm, o.key->spki_der, o.digest,
                                   eth ? test::oracle_ecdsa_der(sig) : sig);
        if (eth) {
            const auto point = test::secp256k1_recover_point(sig, sig[64] - 27, o.digest);
            ok = ok && point == p11::spki_public_point(o.key->algorithm, o.key->spki_der).value();
        }
        if (!ok) ++invalid;
    }
    CHECK(errors == 0);
    CHECK(invalid == 0);
}

}  // namespace

TEST_CASE(
    "concurrent signing from 4 threads through one token with 2 pooled sessions gives "
    "only valid signatures",
    "[pkcs11][concurrency][integration]") {
    p11::TokenOptions options;
    options.max_sessions = 2;
    const auto token = test::test_hsm().open_token(test::kTokenA, options);
    REQUIRE(token->max_sessions() == 2);
    p11::KeyStore keys(token);
    const std::vector<p11::KeyInfo> used{test::generate_key(keys, p11::Algorithm::ecdsa_p256),
                                         test::generate_key(keys, p11::Algorithm::ecdsa_secp256k1)};
    std::atomic<int> progress{0};

    const auto outcomes = sign_concurrently(keys, used, progress);
    REQUIRE(outcomes.size() == static_cast<std::size_t>(kThreads * kPerThread));
    CHECK(progress.load() == kThreads * kPerThread);
    check_all_verify(outcomes);
    CHECK(token->recoveries() == 0);
    CHECK(token->logins() == 1);
}

TEST_CASE("concurrent signers recover from sessions dying under them without losing a signature",
          "[pkcs11][concurrency][integration]") {
    // Not a logout: SoftHSM 2.6.1 answers a C_SignInit that races another thread's C_Logout with
    // CKR_GENERAL_ERROR (measured), which no client can tell from a real failure. A dying session
    // is per session, so its recovery can be exercised under contention deterministically.
    p11::TokenOptions options;
    options.max_sessions = 2;
    options.max_recoveries = 8;  // the injected failures may all land on one operation
    const auto token = test::open_fault_token(test::kFaultModulePath, test::kTokenA, options);
    p11::KeyStore keys(token);
    const std::vector<p11::KeyInfo> used{test::generate_key(keys, p11::Algorithm::ecdsa_p256),
                                         test::generate_key(keys, p11::Algorithm::ecdsa_secp256k1)};
    test::FaultControl faults(test::kFaultModulePath);
    constexpr unsigned long kInjected = 6;
    faults.arm("C_Sign", CKR_SESSION_HANDLE_INVALID, 20, kInjected);

    std::atomic<int> progress{0};
    const auto outcomes = sign_concurrently(keys, used, progress);
    check_all_verify(outcomes);
    CHECK(faults.injected("C_Sign") == kInjected);
    CHECK(token->recoveries() == kInjected);
    CHECK(token->logins() == 1);
}
