// Moving replicable keys between HSMs without plaintext: wrap under the pair's key-encryption key
// (KEK, AES-256, CKM_AES_KEY_WRAP_PAD), and the ceremony that puts the same KEK into both HSMs.
//
// Ceremony (receiver B, sender A), measured on SoftHSM 2.6.1:
//  1. B: generate_transport_key() makes an RSA-3072 pair whose private half can only UNWRAP and
//     never leaves B; B hands its public SPKI to A (public data).
//  2. A's security officer: export_kek() imports that public key as a *trusted* wrapping key,
//     generates the KEK (trusted, WRAP_WITH_TRUSTED, extractable only under trusted keys) and
//     wraps it with RSA-OAEP(SHA-1, the only OAEP hash SoftHSM accepts) for B.
//  3. B: import_kek() unwraps it with the transport key into an UNWRAP-only, non-extractable key.
// B's copy is not trusted, so it can unwrap A's keys but not wrap B's own: run the ceremony in both
// directions for two-way replication.
#pragma once

#include <string>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"
#include "signet/core/secret_buffer.hpp"
#include "signet/pkcs11/algorithm.hpp"
#include "signet/pkcs11/key_store.hpp"

namespace signet::pkcs11 {

// A replicable private key wrapped under a KEK, with what the receiver needs to rebuild the pair.
struct WrappedKey {
    std::string id;  // hex CKA_ID, kept on the receiver
    std::string label;
    Algorithm algorithm = Algorithm::ecdsa_p256;
    Bytes spki_der;
    Bytes blob;  // CKM_AES_KEY_WRAP_PAD(KEK, PKCS#8 private key)
};

// Wraps key `id_hex` under the KEK `kek_id_hex`. not_replicable when the key is appliance-local or
// the module cannot wrap its algorithm (Ed25519 on SoftHSM 2.6.1); the CKR name stays in the error.
[[nodiscard]] Result<WrappedKey> wrap_key(KeyStore& keys, std::string_view id_hex,
                                          std::string_view kek_id_hex);

// Unwraps into this token as a replicable key with the same id, creates its public half from the
// SPKI, then proves possession: a test signature must verify under the SPKI, else the new objects
// are destroyed and verification_failed is returned. already_exists when the id is taken.
[[nodiscard]] Result<KeyInfo> unwrap_key(KeyStore& keys, const WrappedKey& wrapped,
                                         std::string_view kek_id_hex);

// Ceremony step 1 (receiver). Label should say what it is for ("signet.transport.<peer>").
[[nodiscard]] Result<KeyInfo> generate_transport_key(KeyStore& keys, std::string label);

struct KekExport {
    std::string kek_id;  // hex CKA_ID of the KEK on both tokens
    Bytes blob;          // RSA-OAEP(peer transport key, KEK)
};

// Ceremony step 2 (sender, security officer PIN). Imports the peer's transport public key as
// trusted, generates the KEK and wraps it for the peer.
[[nodiscard]] Result<KekExport> export_kek(KeyStore& keys, const SecretBuffer& so_pin,
                                           ByteView peer_transport_spki, std::string kek_label);

// Ceremony step 3 (receiver): unwraps the KEK with the transport key `transport_id_hex`.
[[nodiscard]] Result<void> import_kek(KeyStore& keys, std::string_view transport_id_hex,
                                      const KekExport& kek, std::string kek_label);

}  // namespace signet::pkcs11
