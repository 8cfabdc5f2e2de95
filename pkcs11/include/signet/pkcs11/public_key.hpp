// Public keys as SubjectPublicKeyInfo (DER) and the forms clients ask for: PEM, JWK (RFC 7517,
// RFC 8037 for Ed25519) and the Ethereum address (EIP-55 checksum). Pure software: no HSM involved.
#pragma once

#include <string>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"
#include "signet/pkcs11/algorithm.hpp"

namespace signet::pkcs11 {

// Builds the SPKI from the Cryptoki public-key attributes. EC/Ed25519: CKA_EC_POINT, either a DER
// OCTET STRING (as PKCS#11 specifies) or the bare point. RSA: modulus and public exponent.
[[nodiscard]] Result<Bytes> spki_from_ec_point(Algorithm a, ByteView ec_point);
[[nodiscard]] Result<Bytes> spki_from_rsa(ByteView modulus, ByteView public_exponent);

// Checks that `spki` parses and is a key of algorithm `a` (curve / key size included).
[[nodiscard]] Result<void> check_spki(Algorithm a, ByteView spki);

// "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n".
[[nodiscard]] std::string spki_to_pem(ByteView spki);
[[nodiscard]] Result<Bytes> spki_from_pem(std::string_view pem);

struct Jwk {
    std::string kty;                            // "EC", "OKP", "RSA"
    std::string crv;                            // "P-256", "secp256k1", "Ed25519"; empty for RSA
    std::string x, y;                           // base64url, EC/OKP
    std::string n, e;                           // base64url, RSA
    [[nodiscard]] std::string to_json() const;  // members in RFC 7638 thumbprint order
};
[[nodiscard]] Result<Jwk> spki_to_jwk(Algorithm a, ByteView spki);

// Uncompressed EC point 0x04||X||Y (65 bytes) of an EC SPKI; raw 32-byte key for Ed25519.
[[nodiscard]] Result<Bytes> spki_public_point(Algorithm a, ByteView spki);

// RSA modulus and public exponent (big-endian, minimal) of an RSA SPKI.
struct RsaComponents {
    Bytes modulus;
    Bytes public_exponent;
};
[[nodiscard]] Result<RsaComponents> spki_rsa_components(ByteView spki);

// "0x" + 40 hex digits with the EIP-55 mixed-case checksum; secp256k1 keys only.
[[nodiscard]] Result<std::string> ethereum_address(ByteView spki);
// EIP-55 checksum casing of a 20-byte address.
[[nodiscard]] std::string eip55(ByteView address20);

}  // namespace signet::pkcs11
