// Reference computations that share no code with Signet: SHA-256 through OpenSSL EVP, Keccak-256
// through Crypto++ directly, ECDSA signature re-encoding through OpenSSL's ECDSA_SIG, secp256k1
// arithmetic and public-key recovery through libsecp256k1, and an independent EIP-55 encoder.
// Tests use them as the oracle that Signet's own results are compared with.
#pragma once

#include <optional>
#include <string>

#include "signet/core/bytes.hpp"
#include "signet/pkcs11/algorithm.hpp"

namespace signet::test {

[[nodiscard]] Bytes oracle_sha256(const Bytes& data);
[[nodiscard]] Bytes oracle_keccak256(const Bytes& data);
[[nodiscard]] Bytes oracle_digest(pkcs11::Hash h, const Bytes& data);

// DER Ecdsa-Sig-Value of a raw r||s signature (64 bytes; a 65th Ethereum v byte is ignored).
[[nodiscard]] Bytes oracle_ecdsa_der(const Bytes& raw);

// Hex literal to bytes; throws std::invalid_argument on bad input (test data only).
[[nodiscard]] Bytes unhex(std::string_view hex);

// secp256k1 (libsecp256k1).
// Uncompressed public point 0x04||X||Y of a 32-byte private key.
[[nodiscard]] Bytes secp256k1_point_of(const Bytes& private_key);
// The point recovered from raw r||s with recovery id `recid` over `digest32`, if any.
[[nodiscard]] std::optional<Bytes> secp256k1_recover_point(const Bytes& raw64, int recid,
                                                           const Bytes& digest32);
// s <= n/2 for a raw r||s signature.
[[nodiscard]] bool secp256k1_is_low_s(const Bytes& raw64);
// The same signature with s replaced by n - s (the other valid, "high-S" form).
[[nodiscard]] Bytes secp256k1_negate_s(const Bytes& raw64);
// "0x" + EIP-55 checksummed address of an uncompressed point.
[[nodiscard]] std::string oracle_eth_address(const Bytes& point65);

}  // namespace signet::test
