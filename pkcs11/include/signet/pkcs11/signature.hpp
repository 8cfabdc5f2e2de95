// Sign requests and results, and software verification (public keys only, OpenSSL).
#pragma once

#include <cstdint>
#include <optional>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"
#include "signet/pkcs11/algorithm.hpp"

namespace signet::pkcs11 {

struct SignRequest {
    ByteView data;  // the digest (Input::digest) or the message (Input::message)
    Input input = Input::digest;
    Hash hash = Hash::sha256;  // message hash for ECDSA; RSA supports sha256 only
    SignatureEncoding encoding = SignatureEncoding::der;
    RsaPadding rsa_padding = RsaPadding::pkcs1v15;
};

struct Signature {
    Bytes bytes;                              // in the requested encoding
    Bytes digest;                             // what was signed (empty for Ed25519)
    std::optional<std::uint8_t> recovery_id;  // secp256k1: 0 or 1 (Ethereum v = 27 + id)
};

// Validates a request against the key algorithm (digest size, hash, encoding, input kind) and
// returns the bytes the HSM must sign: the digest for ECDSA/RSA, the message for Ed25519.
// invalid_argument / unsupported name the offending field.
[[nodiscard]] Result<Bytes> prepare_sign_input(Algorithm a, const SignRequest& req);

// Verifies `signature` (in `req.encoding`) over `req.data` with the public key. Ok(true) valid,
// Ok(false) invalid signature, error for malformed keys/requests.
[[nodiscard]] Result<bool> verify_signature(Algorithm a, ByteView spki, const SignRequest& req,
                                            ByteView signature);

// ECDSA helpers over raw r||s (2 x 32 bytes for the curves Signet supports).
[[nodiscard]] Result<Bytes> ecdsa_raw_to_der(ByteView raw);
[[nodiscard]] Result<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t half_size);
// secp256k1: rewrites s to n - s when s > n/2 (BIP-62/EIP-2). Returns whether it changed.
[[nodiscard]] Result<bool> secp256k1_normalize_low_s(Bytes& raw);
// secp256k1: the recovery id (0..3) for which recovery over `digest32` yields `public_point65`.
[[nodiscard]] Result<std::uint8_t> secp256k1_recovery_id(ByteView raw, ByteView digest32,
                                                         ByteView public_point65);

}  // namespace signet::pkcs11
