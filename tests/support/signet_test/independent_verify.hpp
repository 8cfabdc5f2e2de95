// Signature checks that share no code with Signet: OpenSSL EVP called directly, and the `openssl`
// command line as a second, separate code path.
#pragma once

#include <optional>
#include <string>

#include "signet/core/bytes.hpp"
#include "signet/pkcs11/algorithm.hpp"
#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/signature.hpp"

namespace signet::test {

// ECDSA: `sig_der` over the 32-byte digest; RSA: PKCS#1 v1.5 or PSS(SHA-256, salt 32) over the
// SHA-256 digest; Ed25519: over the message (pass the message as `data`).
bool evp_verify(pkcs11::Algorithm a, const Bytes& spki_der, const Bytes& data, const Bytes& sig,
                bool pss = false);

// `openssl dgst -sha256 -verify` (ECDSA/RSA, over the message) or `openssl pkeyutl -verify
// -rawin` (Ed25519). Returns true when the CLI reports success.
bool openssl_cli_verify(pkcs11::Algorithm a, const std::string& public_pem, const Bytes& message,
                        const Bytes& sig, bool pss = false);

// PEM of a DER SubjectPublicKeyInfo, written by OpenSSL (PEM_write_bio_PUBKEY).
std::string oracle_pem(const Bytes& spki_der);

struct IndependentVerdict {
    bool evp = false;
    std::optional<bool> cli;  // absent when the CLI cannot express the request (keccak256)
};

// Checks a signature Signet made with `key` for `req` with both verifiers above. `message` is what
// the caller meant to sign: for digest input, the message whose req.hash digest is req.data.
// ECDSA raw and eth signatures are re-encoded to DER by the oracle (crypto_oracle.hpp) first.
IndependentVerdict verify_independently(const pkcs11::KeyInfo& key, const Bytes& message,
                                        const pkcs11::SignRequest& req,
                                        const pkcs11::Signature& sig);

}  // namespace signet::test
