// Message digests computed by Signet before an ECDSA/RSA signature (the HSM signs the digest).
#pragma once

#include "signet/core/bytes.hpp"
#include "signet/pkcs11/algorithm.hpp"

namespace signet::pkcs11 {

[[nodiscard]] Bytes sha256(ByteView data);
// Keccak-256 as used by Ethereum (original Keccak padding, not SHA3-256).
[[nodiscard]] Bytes keccak256(ByteView data);
[[nodiscard]] Bytes digest(Hash h, ByteView data);

}  // namespace signet::pkcs11
