// Start-up self-test: sign once with each algorithm on the token and verify in software; a tampered
// signature must fail to verify. The daemon refuses to sign until it passes.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "signet/pkcs11/algorithm.hpp"
#include "signet/pkcs11/key_store.hpp"

namespace signet::pkcs11 {

struct AlgorithmCheck {
    Algorithm algorithm = Algorithm::ecdsa_p256;
    bool passed = false;
    std::string detail;  // the reason when it failed
    std::chrono::microseconds elapsed{0};
};

struct SelfTestReport {
    std::vector<AlgorithmCheck> checks;
    [[nodiscard]] bool passed() const noexcept;
    // "ecdsa-p256 ok, ..., rsa-3072 FAILED (reason)".
    [[nodiscard]] std::string summary() const;
};

// Uses persistent internal keys ("signet.selftest.<algorithm>") created on first run, so later runs
// cost one signature per algorithm.
[[nodiscard]] SelfTestReport run_self_test(KeyStore& keys);

}  // namespace signet::pkcs11
