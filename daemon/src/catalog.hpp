// Catalog: the appliance's keys and API clients, held in memory for the request path and persisted
// in SQLite. Reads never touch the database. Writes are staged into a Committer transaction by the
// caller and applied here only after that transaction is durable.
#pragma once

#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "db.hpp"
#include "signet/pkcs11/algorithm.hpp"
#include "signet/web/service.hpp"

namespace signet::daemon {

struct KeyRecord {
    std::string id;
    std::string label;
    pkcs11::Algorithm algorithm = pkcs11::Algorithm::ecdsa_p256;
    pkcs11::KeyClass key_class = pkcs11::KeyClass::local;
    bool active = true;
    std::string created_at;
    std::string created_by;
    Bytes spki;
    web::KeyPolicy policy;
    // In a pair: the appliance whose HSM generated the key (from etcd, the pair's source of truth;
    // not kept in SQLite). Empty on a standalone appliance.
    std::string holder;
};

struct ClientRecord {
    std::string id;
    std::string name;
    web::Role role = web::Role::signer;
    Bytes token_hash;  // SHA-256 of the API token
    std::optional<std::string> cert_sha256;
    bool active = true;
    std::string created_at;
    std::optional<std::string> revoked_at;
};

class Catalog {
public:
    // Loads every key and client.
    [[nodiscard]] Result<void> load(Db& db);

    [[nodiscard]] std::shared_ptr<const KeyRecord> key(const std::string& id) const;
    [[nodiscard]] std::vector<std::shared_ptr<const KeyRecord>> keys() const;  // sorted by id
    [[nodiscard]] std::size_t key_count() const;

    [[nodiscard]] std::optional<ClientRecord> client(const std::string& id) const;
    [[nodiscard]] std::optional<ClientRecord> client_by_token_hash(ByteView hash) const;
    [[nodiscard]] std::optional<ClientRecord> client_by_cert(const std::string& sha256) const;
    [[nodiscard]] std::vector<ClientRecord> clients() const;  // sorted by creation
    [[nodiscard]] bool has_active_admin() const;
    // The one definition of who counts towards the last-admin rule: an admin client not revoked.
    [[nodiscard]] static bool is_active_admin(const ClientRecord& c) noexcept;
    // How many active admins there are other than client `id` (revoking `id` needs at least one).
    [[nodiscard]] std::size_t other_active_admins(const std::string& id) const;

    // Stage into the writer's transaction (no in-memory change).
    [[nodiscard]] static Result<void> stage_put_key(Db& txn, const KeyRecord& k);
    [[nodiscard]] static Result<void> stage_delete_key(Db& txn, const std::string& id);
    [[nodiscard]] static Result<void> stage_put_client(Db& txn, const ClientRecord& c);
    // Errc::conflict "cannot revoke the last active admin" unless the writer's transaction still
    // has an active admin: run after staging a revocation, so two at once cannot both pass.
    [[nodiscard]] static Result<void> stage_check_active_admin(Db& txn);

    // Apply after the transaction committed.
    void apply_put_key(KeyRecord k);
    void apply_delete_key(const std::string& id);
    void apply_put_client(ClientRecord c);

private:
    mutable std::shared_mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<const KeyRecord>> keys_;  // guarded by mu_
    std::unordered_map<std::string, ClientRecord> clients_;                   // guarded by mu_
    std::unordered_map<std::string, std::string>
        by_token_;                                          // hex(token hash) -> id; guarded by mu_
    std::unordered_map<std::string, std::string> by_cert_;  // fingerprint -> id; guarded by mu_
};

}  // namespace signet::daemon
