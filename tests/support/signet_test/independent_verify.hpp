// Signature checks that share no code with Signet: OpenSSL EVP called directly, and the `openssl`
// command line as a second, separate code path.
#pragma once

#include <string>

#include "signet/core/bytes.hpp"
#include "signet/pkcs11/algorithm.hpp"

namespace signet::test {

// ECDSA: `sig_der` over the 32-byte digest; RSA: PKCS#1 v1.5 or PSS(SHA-256, salt 32) over the
// SHA-256 digest; Ed25519: over the message (pass the message as `data`).
bool evp_verify(pkcs11::Algorithm a, const Bytes& spki_der, const Bytes& data, const Bytes& sig,
                bool pss = false);

// `openssl dgst -sha256 -verify` (ECDSA/RSA, over the message) or `openssl pkeyutl -verify
// -rawin` (Ed25519). Returns true when the CLI reports success.
bool openssl_cli_verify(pkcs11::Algorithm a, const std::string& public_pem, const Bytes& message,
                        const Bytes& sig, bool pss = false);

}  // namespace signet::test
