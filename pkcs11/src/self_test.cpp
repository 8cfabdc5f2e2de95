#include "signet/pkcs11/self_test.hpp"

#include <chrono>

namespace signet::pkcs11 {

bool SelfTestReport::passed() const noexcept {
    if (checks.empty()) return false;
    for (const AlgorithmCheck& c : checks) {
        if (!c.passed) return false;
    }
    return true;
}

std::string SelfTestReport::summary() const {
    std::string out;
    for (const AlgorithmCheck& c : checks) {
        if (!out.empty()) out += ", ";
        out += to_string(c.algorithm);
        out += c.passed ? " ok" : " FAILED (" + c.detail + ")";
    }
    return out.empty() ? "no checks ran" : out;
}

namespace {

Result<void> check_algorithm(KeyStore& keys, Algorithm a) {
    const std::string label = "signet.selftest." + std::string(to_string(a));
    const KeyInfo key = SIGNET_TRY(keys.find_or_generate_internal(label, a));
    const Bytes message = to_bytes("signet self-test " + label);
    const SignRequest req{message, Input::message, Hash::sha256,
                          is_ecdsa(a) ? SignatureEncoding::der : SignatureEncoding::raw,
                          RsaPadding::pkcs1v15};
    const Signature sig = SIGNET_TRY(keys.sign(key.id, req));
    if (!SIGNET_TRY(verify_signature(a, key.spki_der, req, sig.bytes))) {
        return make_error(Errc::self_test_failed, "signature does not verify with the public key");
    }
    Bytes tampered = sig.bytes;
    tampered.back() ^= 0x01;
    auto rejected = verify_signature(a, key.spki_der, req, tampered);
    if (rejected && *rejected) {
        return make_error(Errc::self_test_failed, "a tampered signature verified");
    }
    return ok();
}

}  // namespace

SelfTestReport run_self_test(KeyStore& keys) {
    SelfTestReport report;
    for (const Algorithm a : kAllAlgorithms) {
        const auto start = std::chrono::steady_clock::now();
        AlgorithmCheck c;
        c.algorithm = a;
        auto r = check_algorithm(keys, a);
        c.passed = r.has_value();
        if (!r) c.detail = r.error().message();
        c.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - start);
        keys.token().logger().log(c.passed ? LogLevel::info : LogLevel::error, "pkcs11",
                                  "self_test",
                                  {{"algorithm", to_string(a)},
                                   {"result", c.passed ? "ok" : "failed"},
                                   {"detail", c.detail},
                                   {"elapsed_us", c.elapsed.count()}});
        report.checks.push_back(std::move(c));
    }
    return report;
}

}  // namespace signet::pkcs11
