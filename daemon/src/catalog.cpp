#include "catalog.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

#include "signet/web/json_codec.hpp"

namespace signet::daemon {

Result<void> Catalog::load(Db& db) {
    std::unordered_map<std::string, std::shared_ptr<const KeyRecord>> keys;
    auto ks =
        SIGNET_TRY(db.prepare("SELECT id, label, algorithm, key_class, state, created_at, "
                              "created_by, spki, policy FROM keys"));
    while (SIGNET_TRY(ks.step())) {
        auto k = std::make_shared<KeyRecord>();
        k->id = ks.text(0);
        k->label = ks.text(1);
        const auto alg = pkcs11::parse_algorithm(ks.text(2));
        const auto cls = pkcs11::parse_key_class(ks.text(3));
        if (!alg || !cls) {
            return make_error(Errc::internal, "key " + k->id + " in the store has algorithm '" +
                                                  ks.text(2) + "' class '" + ks.text(3) + "'");
        }
        k->algorithm = *alg;
        k->key_class = *cls;
        k->active = ks.text(4) == "active";
        k->created_at = ks.text(5);
        k->created_by = ks.text(6);
        k->spki = ks.blob(7);
        boost::system::error_code ec;
        const auto pj = boost::json::parse(ks.text(8), ec);
        if (ec) return make_error(Errc::internal, "key " + k->id + ": stored policy is not JSON");
        k->policy = SIGNET_TRY(web::policy_from_json(pj));
        keys.emplace(k->id, std::move(k));
    }
    std::vector<ClientRecord> clients;
    auto cs =
        SIGNET_TRY(db.prepare("SELECT id, name, role, token_hash, cert_sha256, state, created_at, "
                              "revoked_at FROM clients"));
    while (SIGNET_TRY(cs.step())) {
        ClientRecord c;
        c.id = cs.text(0);
        c.name = cs.text(1);
        const auto role = web::parse_role(cs.text(2));
        if (!role) return make_error(Errc::internal, "client " + c.id + " has role " + cs.text(2));
        c.role = *role;
        c.token_hash = cs.blob(3);
        if (!cs.is_null(4)) c.cert_sha256 = cs.text(4);
        c.active = cs.text(5) == "active";
        c.created_at = cs.text(6);
        if (!cs.is_null(7)) c.revoked_at = cs.text(7);
        clients.push_back(std::move(c));
    }
    const std::unique_lock lock(mu_);
    keys_ = std::move(keys);
    clients_.clear();
    by_token_.clear();
    by_cert_.clear();
    for (auto& c : clients) {
        by_token_[hex_encode(c.token_hash)] = c.id;
        if (c.cert_sha256) by_cert_[*c.cert_sha256] = c.id;
        clients_.emplace(c.id, std::move(c));
    }
    return ok();
}

std::shared_ptr<const KeyRecord> Catalog::key(const std::string& id) const {
    const std::shared_lock lock(mu_);
    const auto it = keys_.find(id);
    return it == keys_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const KeyRecord>> Catalog::keys() const {
    std::vector<std::shared_ptr<const KeyRecord>> out;
    {
        const std::shared_lock lock(mu_);
        out.reserve(keys_.size());
        for (const auto& [id, k] : keys_) out.push_back(k);
    }
    std::ranges::sort(out, {}, [](const auto& k) { return k->id; });
    return out;
}

std::size_t Catalog::key_count() const {
    const std::shared_lock lock(mu_);
    return keys_.size();
}

std::optional<ClientRecord> Catalog::client(const std::string& id) const {
    const std::shared_lock lock(mu_);
    const auto it = clients_.find(id);
    if (it == clients_.end()) return std::nullopt;
    return it->second;
}

std::optional<ClientRecord> Catalog::client_by_token_hash(ByteView hash) const {
    const std::shared_lock lock(mu_);
    const auto it = by_token_.find(hex_encode(hash));
    if (it == by_token_.end()) return std::nullopt;
    return clients_.at(it->second);
}

std::optional<ClientRecord> Catalog::client_by_cert(const std::string& sha256) const {
    const std::shared_lock lock(mu_);
    const auto it = by_cert_.find(sha256);
    if (it == by_cert_.end()) return std::nullopt;
    return clients_.at(it->second);
}

std::vector<ClientRecord> Catalog::clients() const {
    std::vector<ClientRecord> out;
    {
        const std::shared_lock lock(mu_);
        for (const auto& [id, c] : clients_) out.push_back(c);
    }
    std::ranges::sort(out, [](const ClientRecord& a, const ClientRecord& b) {
        return std::tie(a.created_at, a.id) < std::tie(b.created_at, b.id);
    });
    return out;
}

bool Catalog::is_active_admin(const ClientRecord& c) noexcept {
    return c.active && c.role == web::Role::admin;
}

bool Catalog::has_active_admin() const {
    const std::shared_lock lock(mu_);
    return std::ranges::any_of(clients_, [](const auto& kv) { return is_active_admin(kv.second); });
}

std::size_t Catalog::other_active_admins(const std::string& id) const {
    const std::shared_lock lock(mu_);
    return static_cast<std::size_t>(std::ranges::count_if(
        clients_, [&](const auto& kv) { return kv.first != id && is_active_admin(kv.second); }));
}

Result<void> Catalog::stage_put_key(Db& txn, const KeyRecord& k) {
    auto st = SIGNET_TRY(txn.cached(
        "INSERT INTO keys (id, label, algorithm, key_class, state, created_at, created_by, spki, "
        "policy) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET label=excluded.label, "
        "state=excluded.state, policy=excluded.policy"));
    st->bind(1, k.id).bind(2, k.label).bind(3, pkcs11::to_string(k.algorithm));
    st->bind(4, pkcs11::to_string(k.key_class)).bind(5, k.active ? "active" : "disabled");
    st->bind(6, k.created_at).bind(7, k.created_by).bind(8, k.spki);
    st->bind(9, boost::json::serialize(web::policy_to_json(k.policy)));
    return st->run();
}

Result<void> Catalog::stage_delete_key(Db& txn, const std::string& id) {
    for (const char* sql :
         {"DELETE FROM keys WHERE id = ?", "DELETE FROM reservations WHERE key_id = ?",
          "DELETE FROM watermarks WHERE key_id = ?"}) {
        auto st = SIGNET_TRY(txn.cached(sql));
        st->bind(1, id);
        SIGNET_TRY(st->run());
    }
    // The counter row stays: a key id is never reused, but if it were, its nonces must not be.
    return ok();
}

Result<void> Catalog::stage_put_client(Db& txn, const ClientRecord& c) {
    auto st = SIGNET_TRY(
        txn.cached("INSERT INTO clients (id, name, role, token_hash, cert_sha256, state, "
                   "created_at, revoked_at) "
                   "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                   "revoked_at=excluded.revoked_at"));
    st->bind(1, c.id).bind(2, c.name).bind(3, web::to_string(c.role)).bind(4, c.token_hash);
    st->bind(5, c.cert_sha256).bind(6, c.active ? "active" : "revoked").bind(7, c.created_at);
    st->bind(8, c.revoked_at);
    return st->run();
}

Result<void> Catalog::stage_check_active_admin(Db& txn) {
    auto st = SIGNET_TRY(
        txn.cached("SELECT COUNT(*) FROM clients WHERE role = 'admin' AND state = 'active'"));
    SIGNET_TRY(st->step());
    if (st->int64(0) == 0) {
        return make_error(Errc::conflict, "cannot revoke the last active admin");
    }
    return ok();
}

void Catalog::apply_put_key(KeyRecord k) {
    auto p = std::make_shared<const KeyRecord>(std::move(k));
    const std::unique_lock lock(mu_);
    keys_[p->id] = std::move(p);
}

void Catalog::apply_delete_key(const std::string& id) {
    const std::unique_lock lock(mu_);
    keys_.erase(id);
}

void Catalog::apply_put_client(ClientRecord c) {
    const std::unique_lock lock(mu_);
    by_token_[hex_encode(c.token_hash)] = c.id;
    if (c.cert_sha256) by_cert_[*c.cert_sha256] = c.id;
    clients_[c.id] = std::move(c);
}

}  // namespace signet::daemon
