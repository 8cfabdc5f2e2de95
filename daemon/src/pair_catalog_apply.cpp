// PairCatalog: the apply path. What this appliance does with a record that arrives from etcd (by
// the full synchronisation or the watch): client, key, tombstone and availability puts and deletes
// go to the local SQLite store (audited as "<action>.replicated") and the in-memory Catalog, and
// KEKs addressed to this appliance unwrap the peer's replicable keys into this HSM.
#include "pair_catalog.hpp"

#include <string>

#include "audit_log.hpp"
#include "signet/core/json.hpp"

namespace signet::daemon {
namespace {

std::string key_action(const std::optional<KeyRecord>& before, const KeyRecord& after) {
    if (!before) return "key.create.replicated";
    if (before->active && !after.active) return "key.disable.replicated";
    if (!same_key(*before, after)) return "key.policy.replicated";
    return "key.update.replicated";
}

std::string client_action(const std::optional<ClientRecord>& before, const ClientRecord& after) {
    if (!before) return "client.create.replicated";
    if (before->active && !after.active) return "client.revoke.replicated";
    return "client.update.replicated";
}

}  // namespace

void PairCatalog::apply(const Event& e) {
    const std::string rest = e.kv.key.substr(catalog_prefix_.size());
    Result<void> r = ok();
    if (rest.starts_with("available/")) {
        const auto slash = rest.find('/', 10);
        if (slash == std::string::npos) return;
        const std::string id = rest.substr(10, slash - 10), holder = rest.substr(slash + 1);
        const std::lock_guard lock(mu_);
        if (e.put) {
            available_[id].insert(holder);
        } else {
            available_[id].erase(holder);
        }
        return;
    }
    const auto lock = write_lock();
    if (rest.starts_with("clients/")) {
        if (!e.put) return;  // clients are revoked, never deleted
        auto c = decode_client(e.kv.value);
        r = c ? apply_client(*c) : Result<void>(c.error());
    } else if (rest.starts_with("keys/")) {
        if (!e.put) {
            r = apply_destroyed(rest.substr(5), "");
        } else {
            auto k = decode_key(e.kv.value);
            r = k ? apply_key(std::move(k).value()) : Result<void>(k.error());
        }
    } else {
        return;  // catalog/setup and anything newer than this appliance
    }
    if (!r) {
        d_.logger->log(LogLevel::error, "replication", "apply_failed",
                       {{"record", e.kv.key}, {"error", r.error().message()}});
    }
}

Result<void> PairCatalog::commit(const std::function<Result<void>(Db&)>& stage, AuditEntry audit) {
    const std::string ts = format_rfc3339(d_.clock->wall());
    return d_.committer->submit([&](Db& txn) -> Result<void> {
        SIGNET_TRY(stage(txn));
        SIGNET_TRY(AuditLog::append(txn, audit, ts));
        return ok();
    });
}

Result<void> PairCatalog::apply_client(const ClientEntry& e) {
    const auto before = d_.catalog->client(e.client.id);
    if (before && same_client(*before, e.client)) return ok();
    const bool had_admin = d_.catalog->has_active_admin();
    const bool admin = e.client.active && e.client.role == web::Role::admin;
    SIGNET_TRY(commit(
        [&](Db& txn) -> Result<void> {
            SIGNET_TRY(Catalog::stage_put_client(txn, e.client));
            if (!admin) return ok();
            // An admin made on the peer completes first-run setup here too.
            auto del = SIGNET_TRY(txn.cached("DELETE FROM meta WHERE name = 'setup_token_hash'"));
            return del->run();
        },
        {"pair:" + e.written_by, client_action(before, e.client), e.client.id, "ok",
         "{\"name\":" + json_quote(e.client.name) + ",\"role\":\"" +
             std::string(web::to_string(e.client.role)) + "\"}"}));
    d_.catalog->apply_put_client(e.client);
    if (admin && !(before && Catalog::is_active_admin(*before))) {
        // Whoever can write to etcd can make an admin here (docs/ha.md, "Pairing"): an operator
        // must be able to see every admin that did not come through this appliance's API.
        d_.logger->log(
            LogLevel::warn, "pair", "admin_replicated",
            {{"client", e.client.id}, {"name", e.client.name}, {"writer", e.written_by}});
    }
    if (admin && !had_admin) {
        std::vector<std::function<void()>> hooks;
        {
            const std::lock_guard lock(mu_);
            hooks = setup_hooks_;
        }
        for (const auto& h : hooks) h();
    }
    return ok();
}

Result<void> PairCatalog::apply_key(KeyEntry e) {
    if (e.destroyed) return apply_destroyed(e.key.id, e.written_by);
    {
        const std::lock_guard lock(mu_);
        entries_[e.key.id] = e;
    }
    const auto current = d_.catalog->key(e.key.id);
    std::optional<KeyRecord> before;
    if (current) before = *current;
    if (before && same_key(*before, e.key)) {
        // Only the holder may be new (it is not kept in SQLite): nothing to commit or audit.
        if (before->holder != e.key.holder) d_.catalog->apply_put_key(e.key);
    } else {
        SIGNET_TRY(commit([&](Db& txn) { return Catalog::stage_put_key(txn, e.key); },
                          {"pair:" + e.written_by, key_action(before, e.key), e.key.id, "ok",
                           "{\"holder\":" + json_quote(e.key.holder) + ",\"algorithm\":\"" +
                               std::string(pkcs11::to_string(e.key.algorithm)) + "\"}"}));
        d_.catalog->apply_put_key(e.key);
    }
    try_unwrap(e);
    return ok();
}

Result<void> PairCatalog::apply_destroyed(const std::string& id, const std::string& by) {
    {
        const std::lock_guard lock(mu_);
        entries_.erase(id);
    }
    const auto key = d_.catalog->key(id);
    if (!key) return ok();
    const bool here = holds(*key);
    SIGNET_TRY(commit(
        [&](Db& txn) { return Catalog::stage_delete_key(txn, id); },
        {"pair:" + (by.empty() ? key->holder : by), "key.destroy.replicated", id, "ok", "{}"}));
    d_.catalog->apply_delete_key(id);
    {
        const std::lock_guard lock(mu_);
        available_.erase(id);
    }
    // Destroying a key destroys it in the pair: this HSM's copy goes too.
    if (here) {
        if (auto r = d_.keys->destroy(id); !r && !r.error().is(Errc::not_found)) {
            d_.logger->log(LogLevel::error, "replication", "hsm_destroy_failed",
                           {{"key", id}, {"error", r.error().message()}});
        }
    }
    return ok();
}

void PairCatalog::try_unwrap(const KeyEntry& e) {
    if (!e.wrapped || e.key.holder.empty() || e.key.holder == name() || holds(e.key)) return;
    const auto kek = d_.pairing->incoming_kek(e.key.holder);
    if (!kek || *kek != e.wrapped->kek_id) return;  // retried when that KEK is imported
    const std::string attempt = e.key.id + "/" + e.wrapped->kek_id;
    auto r = d_.pairing->unwrap(e.key, *e.wrapped);
    if (!r) {
        bool first = false;
        {
            const std::lock_guard lock(mu_);
            first = unwrap_failed_.insert(attempt).second;
        }
        if (!first) return;  // reported once per key and KEK, not at every re-read
        d_.logger->log(LogLevel::error, "replication", "unwrap_failed",
                       {{"key", e.key.id}, {"from", e.key.holder}, {"error", r.error().message()}});
        (void)commit([](Db&) { return ok(); },
                     {"pair:" + e.key.holder, "key.replicate", e.key.id, "failed",
                      "{\"error\":" + json_quote(r.error().message()) + "}"});
        return;
    }
    {
        const std::lock_guard lock(mu_);
        available_[e.key.id].insert(name());
    }
    ha::TxnRequest t;
    t.success.push_back(
        ha::Op::put(path("available", e.key.id + "/" + name()),
                    "{\"at\":" + json_quote(format_rfc3339(d_.clock->wall())) + "}"));
    auto published = d_.pair->coordinator()->txn(t, d_.timeout);
    (void)commit([](Db&) { return ok(); }, {"pair:" + e.key.holder, "key.replicate", e.key.id, "ok",
                                            "{\"kek_id\":\"" + e.wrapped->kek_id + "\"}"});
    d_.logger->log(published ? LogLevel::info : LogLevel::warn, "replication", "key_unwrapped",
                   {{"key", e.key.id},
                    {"from", e.key.holder},
                    {"published", published ? "yes" : published.error().message()}});
}

void PairCatalog::apply_kek(const std::string& value) {
    auto kek = decode_kek(value);
    if (!kek || kek->receiver != name()) return;  // another appliance's business
    auto imported = d_.pairing->import_from(*kek);
    if (!imported) {
        bool first = false;
        {
            const std::lock_guard lock(mu_);
            first = kek_import_failed_.insert(kek->sender + "/" + kek->kek_id).second;
        }
        if (!first) return;  // reported once per sender and KEK, not at every re-read
        d_.logger->log(LogLevel::error, "replication", "kek_import_failed",
                       {{"sender", kek->sender}, {"error", imported.error().message()}});
        (void)commit([](Db&) { return ok(); },
                     {"pair:" + kek->sender, "ha.kek_import", kek->sender, "failed",
                      "{\"kek_id\":" + json_quote(kek->kek_id) +
                          ",\"error\":" + json_quote(imported.error().message()) + "}"});
        return;
    }
    // Whether new or not: keys that arrived before the KEK are unwrapped now.
    std::vector<KeyEntry> from_sender;
    {
        const std::lock_guard lock(mu_);
        for (const auto& [id, e] : entries_) {
            if (e.key.holder == kek->sender && e.wrapped) from_sender.push_back(e);
        }
    }
    const auto lock = write_lock();
    for (const auto& e : from_sender) try_unwrap(e);
}

}  // namespace signet::daemon
