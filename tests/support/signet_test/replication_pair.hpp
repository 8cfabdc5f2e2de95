// Two key stores joined by the key-encryption-key ceremony, the way a pair of appliances is set
// up: token B makes the transport key, A's security officer exports a fresh KEK to it, B imports
// it. A can then wrap its replicable keys for B.
#pragma once

#include <memory>
#include <string>

#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/replication.hpp"

namespace signet::test {

struct ReplicationPair {
    std::shared_ptr<pkcs11::KeyStore> a;  // sender: holds the trusted KEK
    std::shared_ptr<pkcs11::KeyStore> b;  // receiver: holds an unwrap-only copy
    std::string transport_id;             // B's transport key
    std::string kek_id;
};

// Runs the ceremony A -> B between two fresh tokens of test_hsm(); throws on failure.
[[nodiscard]] ReplicationPair make_replication_pair();

// Runs one more export/import of a new KEK over the pair's transport key; returns its id.
[[nodiscard]] std::string add_kek(const ReplicationPair& pair, const std::string& label);

}  // namespace signet::test
