// Key algorithms, key classes and signing options, with their stable text names (used in the API,
// the store and logs).
#pragma once

#include <optional>
#include <string_view>

namespace signet::pkcs11 {

enum class Algorithm { ecdsa_p256, ecdsa_secp256k1, ed25519, rsa_2048, rsa_3072 };
inline constexpr Algorithm kAllAlgorithms[] = {Algorithm::ecdsa_p256, Algorithm::ecdsa_secp256k1,
                                               Algorithm::ed25519, Algorithm::rsa_2048,
                                               Algorithm::rsa_3072};

// "ecdsa-p256", "ecdsa-secp256k1", "ed25519", "rsa-2048", "rsa-3072".
[[nodiscard]] std::string_view to_string(Algorithm a) noexcept;
[[nodiscard]] std::optional<Algorithm> parse_algorithm(std::string_view s) noexcept;

[[nodiscard]] constexpr bool is_ecdsa(Algorithm a) noexcept {
    return a == Algorithm::ecdsa_p256 || a == Algorithm::ecdsa_secp256k1;
}
[[nodiscard]] constexpr bool is_rsa(Algorithm a) noexcept {
    return a == Algorithm::rsa_2048 || a == Algorithm::rsa_3072;
}

// local: generated with EXTRACTABLE=false, never leaves this HSM.
// replicable: EXTRACTABLE=true and WRAP_WITH_TRUSTED=true: can leave only wrapped under a key the
// security officer marked trusted (the pair's key-encryption key).
enum class KeyClass { local, replicable };
[[nodiscard]] std::string_view to_string(KeyClass c) noexcept;
[[nodiscard]] std::optional<KeyClass> parse_key_class(std::string_view s) noexcept;

// What the caller hands to sign(): a digest it computed, or the message for Signet to hash.
enum class Input { digest, message };

// Hash applied to a message (ECDSA, RSA). Ed25519 signs the message itself (PureEdDSA).
enum class Hash { sha256, keccak256 };
[[nodiscard]] std::string_view to_string(Hash h) noexcept;
[[nodiscard]] std::optional<Hash> parse_hash(std::string_view s) noexcept;

// ECDSA output: raw r||s, DER (RFC 3279 Ecdsa-Sig-Value), or Ethereum r||s||v with v = 27 + recid
// (secp256k1 only). RSA and Ed25519 signatures have one form and accept only `raw` (or `der`, which
// for them means the same bytes).
enum class SignatureEncoding { raw, der, eth };
[[nodiscard]] std::string_view to_string(SignatureEncoding e) noexcept;
[[nodiscard]] std::optional<SignatureEncoding> parse_signature_encoding(
    std::string_view s) noexcept;

enum class RsaPadding { pkcs1v15, pss };
[[nodiscard]] std::string_view to_string(RsaPadding p) noexcept;
[[nodiscard]] std::optional<RsaPadding> parse_rsa_padding(std::string_view s) noexcept;

}  // namespace signet::pkcs11
