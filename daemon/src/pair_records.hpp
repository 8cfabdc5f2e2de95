// The JSON forms of catalog records as they travel through etcd in a pair (docs/ha.md,
// "Replication"). etcd is the pair's source of truth for keys and clients; these are its values:
//   <prefix>catalog/clients/<id>          ClientRecord (the token's SHA-256, never a token)
//   <prefix>catalog/keys/<id>             KeyRecord + holder (+ wrapped once a KEK exists), or a
//                                         tombstone {"id", "destroyed": true} after destroy
//   <prefix>catalog/available/<id>/<name> the appliance <name> holds an unwrapped copy
//   <prefix>catalog/setup                 first-run setup is complete (created once)
//   <prefix>pairing/transport/<name>      the appliance's RSA transport public key (SPKI)
//   <prefix>pairing/kek/<sender>/<receiver>  a KEK wrapped for the receiver's transport key
#pragma once

#include <optional>
#include <string>

#include "catalog.hpp"
#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"

namespace signet::daemon {

// A replicable key's private half wrapped under the sender's KEK (pkcs11::WrappedKey's blob).
struct WrappedBlob {
    std::string kek_id;  // hex CKA_ID of the KEK, the same on both tokens
    Bytes blob;
    bool operator==(const WrappedBlob&) const = default;
};

// One catalog/keys/<id> value.
struct KeyEntry {
    KeyRecord key;  // key.holder: the appliance whose HSM generated it
    std::optional<WrappedBlob> wrapped;
    bool destroyed = false;  // tombstone: the key was destroyed; never resurrect it
    std::string written_by;  // the appliance that wrote this value
};

struct ClientEntry {
    ClientRecord client;
    std::string written_by;
};

// A KEK as published by the sender for one receiver.
struct KekEntry {
    std::string sender;
    std::string receiver;
    std::string kek_id;
    Bytes blob;                    // RSA-OAEP(receiver's transport key, KEK)
    std::string transport_sha256;  // the receiver transport key it was wrapped for
};

[[nodiscard]] std::string encode_client(const ClientRecord& c, const std::string& written_by);
[[nodiscard]] Result<ClientEntry> decode_client(const std::string& json);

[[nodiscard]] std::string encode_key(const KeyEntry& e);
[[nodiscard]] Result<KeyEntry> decode_key(const std::string& json);

[[nodiscard]] std::string encode_kek(const KekEntry& k);
[[nodiscard]] Result<KekEntry> decode_kek(const std::string& json);

// {"spki": base64, "sha256": hex}: the transport public key and its fingerprint.
[[nodiscard]] std::string encode_transport(ByteView spki);
[[nodiscard]] Result<Bytes> decode_transport(const std::string& json);

// Equality of everything an admin can change or see (the in-memory holder is compared apart).
[[nodiscard]] bool same_key(const KeyRecord& a, const KeyRecord& b);
[[nodiscard]] bool same_client(const ClientRecord& a, const ClientRecord& b);

}  // namespace signet::daemon
