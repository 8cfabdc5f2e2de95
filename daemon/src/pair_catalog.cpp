// PairCatalog: start-up, the worker (full synchronisation and the watches), key material and the
// write path. What the worker does with each record that arrives (the apply path) is in
// pair_catalog_apply.cpp.
#include "pair_catalog.hpp"

#include <algorithm>

#include "signet/core/json.hpp"

namespace signet::daemon {
namespace {

constexpr int kCasAttempts = 5;
constexpr ha::Milliseconds kFirstBackoff{200};
constexpr ha::Milliseconds kMaxBackoff{5000};

}  // namespace

PairCatalog::PairCatalog(PairCatalogDeps deps)
    : d_(std::move(deps)),
      catalog_prefix_(d_.pair->prefix() + "catalog/"),
      kek_prefix_(d_.pair->prefix() + "pairing/kek/") {}

std::shared_ptr<PairCatalog> PairCatalog::start(PairCatalogDeps deps) {
    std::shared_ptr<PairCatalog> p(new PairCatalog(std::move(deps)));
    // A standby's own records that etcd lacked are published once it may write: the full
    // synchronisation the worker then runs publishes them with the new role's guard. Registered
    // before the first synchronisation, so a role change during it is not missed.
    p->d_.pair->on_role_change([weak = std::weak_ptr<PairCatalog>(p)](const ha::RoleStatus& st) {
        if (st.role != ha::Role::active && st.role != ha::Role::dual) return;
        const auto self = weak.lock();
        if (!self) return;
        {
            const std::lock_guard lock(self->mu_);
            if (self->published_local_ || self->stopping_) return;
            self->watch_failed_ = true;
        }
        self->cv_.notify_all();
    });
    // Before the worker exists, so the watches are still this thread's.
    const auto first = p->sync();
    if (!first) {
        p->d_.logger->log(LogLevel::warn, "replication", "catalog_sync_failed",
                          {{"error", first.error().message()}, {"retry", "in the background"}});
    }
    const bool may_write_now = static_cast<bool>(p->may_write());
    {
        const std::lock_guard lock(p->mu_);
        // The worker starts with a full synchronisation when this one failed, or when the role
        // became writable after it skipped publishing this appliance's own records.
        p->watch_failed_ = p->watch_failed_ || !first || (!p->published_local_ && may_write_now);
    }
    p->worker_ = std::thread([raw = p.get()] { raw->run(); });
    return p;
}

PairCatalog::~PairCatalog() { stop(); }

void PairCatalog::stop() {
    {
        const std::lock_guard lock(mu_);
        if (stopping_ && !worker_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    // Without mu_: a watch's destructor waits for a running callback, which takes mu_.
    catalog_watch_.reset();
    kek_watch_.reset();
}

const std::string& PairCatalog::name() const noexcept { return d_.pair->name(); }

std::string PairCatalog::path(std::string_view kind, const std::string& id) const {
    return catalog_prefix_ + std::string(kind) + "/" + id;
}

void PairCatalog::on_setup_complete(std::function<void()> f) {
    const std::lock_guard lock(mu_);
    setup_hooks_.push_back(std::move(f));
}

// --- Worker -------------------------------------------------------------------------------------

void PairCatalog::run() {
    ha::Milliseconds backoff = kFirstBackoff;
    std::unique_lock lock(mu_);
    while (!stopping_) {
        if (watch_failed_) {
            // Events of the failed watch are older than the range below: applying them after it
            // would roll records back.
            watch_failed_ = false;
            queue_.clear();
            kek_queue_.clear();
            lock.unlock();
            catalog_watch_.reset();
            kek_watch_.reset();
            const auto r = sync();
            lock.lock();
            if (!r) {
                watch_failed_ = true;
                d_.logger->log(LogLevel::warn, "replication", "catalog_sync_failed",
                               {{"error", r.error().message()}, {"retry_ms", backoff.count()}});
                cv_.wait_for(lock, backoff, [this] { return stopping_; });
                backoff = std::min(backoff * 2, kMaxBackoff);
                continue;
            }
            backoff = kFirstBackoff;
            d_.logger->log(LogLevel::info, "replication", "catalog_synchronised");
            continue;
        }
        cv_.wait(lock, [this] {
            return stopping_ || watch_failed_ || !queue_.empty() || !kek_queue_.empty();
        });
        if (stopping_ || watch_failed_) continue;
        auto events = std::move(queue_);
        auto keks = std::move(kek_queue_);
        queue_.clear();
        kek_queue_.clear();
        lock.unlock();
        for (const auto& e : events) apply(e);
        for (const auto& e : keks) {
            if (e.put) apply_kek(e.kv.value);
        }
        lock.lock();
    }
}

Result<void> PairCatalog::sync() {
    auto& coord = *d_.pair->coordinator();
    SIGNET_TRY(d_.pairing->publish_transport());
    const auto catalog =
        SIGNET_TRY(coord.range(catalog_prefix_, ha::prefix_end(catalog_prefix_), d_.timeout));
    const auto keks = SIGNET_TRY(coord.range(kek_prefix_, ha::prefix_end(kek_prefix_), d_.timeout));
    std::set<std::string> clients, keys;
    bool setup_marked = false;
    {
        // The holder sets are rebuilt from this snapshot: a deletion missed while not watching
        // must not leave a stale holder behind.
        std::map<std::string, std::set<std::string>> available;
        for (const auto& kv : catalog.kvs) {
            const std::string rest = kv.key.substr(catalog_prefix_.size());
            if (!rest.starts_with("available/")) continue;
            const auto slash = rest.find('/', 10);
            if (slash != std::string::npos)
                available[rest.substr(10, slash - 10)].insert(rest.substr(slash + 1));
        }
        const std::lock_guard lock(mu_);
        available_ = std::move(available);
    }
    // Clients before keys: a key's policy may name a client.
    for (const std::string_view kind : {"clients/", "keys/", "setup"}) {
        for (const auto& kv : catalog.kvs) {
            const std::string rest = kv.key.substr(catalog_prefix_.size());
            if (!rest.starts_with(kind)) continue;
            if (kind == "setup") setup_marked = true;
            if (kind == "clients/") clients.insert(rest.substr(8));
            if (kind == "keys/") keys.insert(rest.substr(5));
            if (kind != "setup") apply({true, kv});
        }
    }
    bool publish = false;
    {
        const std::lock_guard lock(mu_);
        publish = !published_local_;
    }
    if (publish) {
        const bool done = SIGNET_TRY(publish_missing(clients, keys, setup_marked));
        const std::lock_guard lock(mu_);
        published_local_ = done;
    }
    for (const auto& kv : keks.kvs) apply_kek(kv.value);

    ha::WatchHandlers ch;
    ch.on_events = [this](const std::vector<ha::WatchEvent>& evs, std::int64_t) {
        const std::lock_guard lock(mu_);
        for (const auto& ev : evs) queue_.push_back({ev.type == ha::WatchEvent::Type::put, ev.kv});
        cv_.notify_all();
    };
    auto failed = [this](const Error& e) {
        d_.logger->log(LogLevel::warn, "replication", "watch_failed",
                       {{"error", e.message()}, {"action", "re-reading the catalog"}});
        const std::lock_guard lock(mu_);
        watch_failed_ = true;
        cv_.notify_all();
    };
    ch.on_error = failed;
    catalog_watch_ = SIGNET_TRY(coord.watch(catalog_prefix_, ha::prefix_end(catalog_prefix_),
                                            catalog.revision + 1, std::move(ch)));
    ha::WatchHandlers kh;
    kh.on_events = [this](const std::vector<ha::WatchEvent>& evs, std::int64_t) {
        const std::lock_guard lock(mu_);
        for (const auto& ev : evs)
            kek_queue_.push_back({ev.type == ha::WatchEvent::Type::put, ev.kv});
        cv_.notify_all();
    };
    kh.on_error = failed;
    kek_watch_ = SIGNET_TRY(
        coord.watch(kek_prefix_, ha::prefix_end(kek_prefix_), keks.revision + 1, std::move(kh)));
    return ok();
}

// An appliance joining a pair with clients and keys of its own publishes them (never over a
// record etcd already holds). Like every catalog write it carries the fence's guard: a hot
// standby, or a deposed active, never writes the catalog.
Result<bool> PairCatalog::publish_missing(const std::set<std::string>& clients,
                                          const std::set<std::string>& keys, bool setup_marked) {
    std::vector<const ClientRecord*> missing_clients;
    const auto local_clients = d_.catalog->clients();
    for (const auto& c : local_clients) {
        if (!clients.contains(c.id)) missing_clients.push_back(&c);
    }
    const bool mark_setup = !setup_marked && d_.catalog->has_active_admin();
    std::vector<std::shared_ptr<const KeyRecord>> missing_keys;
    for (auto& k : d_.catalog->keys()) {
        if (!keys.contains(k->id)) missing_keys.push_back(std::move(k));
    }
    const std::size_t missing =
        missing_clients.size() + missing_keys.size() + (mark_setup ? 1U : 0U);
    if (missing == 0) return true;
    if (auto may = may_write(); !may) {
        d_.logger->log(
            LogLevel::info, "replication", "local_records_not_published",
            {{"records", missing}, {"reason", "not the active appliance: published once it is"}});
        return false;
    }
    std::size_t published = 0;
    auto put_absent = [&](const std::string& k, const std::string& v) -> Result<void> {
        ha::TxnRequest t;
        t.compare.push_back(ha::Compare::absent(k));
        t.success.push_back(ha::Op::put(k, v));
        t.failure.push_back(ha::Op::get(k));
        const auto r = SIGNET_TRY(guarded_txn(std::move(t), true));
        if (r.succeeded) {
            ++published;
            return ok();
        }
        // Written meanwhile: etcd's record wins (it reaches this view through the watch).
        if (!r.results.empty() && !r.results.front().empty()) return ok();
        return fenced_error();
    };
    for (const ClientRecord* c : missing_clients) {
        SIGNET_TRY(put_absent(path("clients", c->id), encode_client(*c, name())));
    }
    if (mark_setup) {
        SIGNET_TRY(put_absent(catalog_prefix_ + "setup", "{\"by\":" + json_quote(name()) + "}"));
    }
    for (const auto& k : missing_keys) {
        KeyEntry e{*k, std::nullopt, false, name()};
        if (e.key.holder.empty()) e.key.holder = name();
        if (e.key.holder == name()) e.wrapped = SIGNET_TRY(d_.pairing->wrap(e.key));
        SIGNET_TRY(put_absent(path("keys", k->id), encode_key(e)));
        d_.catalog->apply_put_key(e.key);
    }
    if (published > 0) {
        d_.logger->log(LogLevel::info, "replication", "local_records_published",
                       {{"records", published}});
    }
    return true;
}

// --- Key material -------------------------------------------------------------------------------

bool PairCatalog::holds(const KeyRecord& k) const {
    if (k.holder.empty() || k.holder == name()) return true;
    const std::lock_guard lock(mu_);
    const auto it = available_.find(k.id);
    return it != available_.end() && it->second.contains(name());
}

Result<void> PairCatalog::check_held(const KeyRecord& k) const {
    if (holds(k)) return ok();
    const std::string who = "key " + k.id + " is held only by appliance " + k.holder;
    if (k.key_class == pkcs11::KeyClass::local || k.algorithm == pkcs11::Algorithm::ed25519) {
        return make_error(Errc::unavailable, who + " (appliance-local key)");
    }
    return make_error(Errc::unavailable,
                      who +
                          " (replicable, but not in this appliance's HSM yet: run the pairing "
                          "ceremony on " +
                          k.holder + " for " + name() + ")");
}

std::vector<std::string> PairCatalog::holders(const KeyRecord& k) const {
    std::set<std::string> out{k.holder.empty() ? name() : k.holder};
    {
        const std::lock_guard lock(mu_);
        if (const auto it = available_.find(k.id); it != available_.end()) {
            out.insert(it->second.begin(), it->second.end());
        }
    }
    return {out.begin(), out.end()};
}

Result<web::PairResult> PairCatalog::pair_with(const std::string& actor, const std::string& peer,
                                               const std::string& transport_sha256) {
    const PairingResult p = SIGNET_TRY(d_.pairing->export_to(peer, transport_sha256, actor));
    web::PairResult out{p.peer, p.kek_id, p.peer_transport_sha256, 0, {}};
    for (const auto& k : d_.catalog->keys()) {
        if (k->key_class != pkcs11::KeyClass::replicable ||
            !(k->holder.empty() || k->holder == name()))
            continue;
        // Adding the wrapped copy changes nothing a key may do, so it needs no role: a hot
        // standby pairs too. The compare-and-swap keeps a concurrent policy change.
        auto r =
            update_key(k->id, false, [&](const std::optional<KeyEntry>& cur) -> Result<KeyEntry> {
                KeyEntry e = cur ? *cur : KeyEntry{*k, std::nullopt, false, name()};
                if (e.destroyed) {
                    return make_error(Errc::not_found, "destroyed meanwhile");
                }
                e.key.holder = name();
                e.written_by = name();
                e.wrapped = SIGNET_TRY(d_.pairing->wrap(e.key));
                return e;
            });
        if (r) {
            ++out.keys_wrapped;
        } else {
            out.failures.push_back(k->id + ": " + r.error().message());
            d_.logger->log(LogLevel::error, "replication", "wrap_failed",
                           {{"key", k->id}, {"peer", peer}, {"error", r.error().message()}});
        }
    }
    return out;
}

// --- Write path ---------------------------------------------------------------------------------

Result<void> PairCatalog::may_write() const {
    auto r = d_.pair->may_sign();
    if (!r) return r.error().within("catalog changes are made on the active appliance");
    return r;
}

Error PairCatalog::fenced_error() const {
    if (auto r = may_write(); !r) return r.error();
    return make_error(
        ha::HaErrc::not_active,
        "this appliance (" + name() + ") lost the active role while writing; nothing was changed");
}

Result<ha::TxnResponse> PairCatalog::guarded_txn(ha::TxnRequest t, bool guarded) {
    if (guarded) {
        for (auto& c : d_.pair->fence()->guard()) t.compare.push_back(std::move(c));
    }
    auto r = d_.pair->coordinator()->txn(t, d_.timeout);
    if (!r) return r.error().within("publish to the pair's catalog in etcd");
    return r;
}

Result<void> PairCatalog::publish_client(const std::optional<ClientRecord>& from,
                                         const ClientRecord& to) {
    const std::string k = path("clients", to.id);
    // Revoking an admin reads every client in one range, so the other admins' records are
    // compared as they were at the revision the count was made at.
    const bool removes_admin =
        from && Catalog::is_active_admin(*from) && !Catalog::is_active_admin(to);
    const std::string all = catalog_prefix_ + "clients/";
    const std::string begin = removes_admin ? all : k;
    const std::string end = removes_admin ? ha::prefix_end(all) : std::string{};
    for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
        const auto read = SIGNET_TRY(d_.pair->coordinator()->range(begin, end, d_.timeout));
        ha::TxnRequest t;
        std::optional<ClientRecord> current;
        std::int64_t rev = 0;
        std::size_t other_admins = 0;
        for (const auto& kv : read.kvs) {
            if (kv.key == k) {
                rev = kv.mod_revision;
                current = SIGNET_TRY(decode_client(kv.value)).client;
                continue;
            }
            // A record that does not decode is not counted: it cannot authenticate anyone here.
            const auto other = decode_client(kv.value);
            if (!other || !Catalog::is_active_admin(other->client)) continue;
            ++other_admins;
            t.compare.push_back(ha::Compare::mod_revision_equals(kv.key, kv.mod_revision));
        }
        if (from ? !(current && same_client(*current, *from)) : current.has_value()) {
            return make_error(Errc::conflict,
                              "client " + to.id + " changed on the peer; read it again and retry");
        }
        if (removes_admin && other_admins == 0) {
            return make_error(Errc::conflict, "cannot revoke the last active admin");
        }
        t.compare.push_back(ha::Compare::mod_revision_equals(k, rev));
        t.success.push_back(ha::Op::put(k, encode_client(to, name())));
        t.failure.push_back(ha::Op::get(begin, end));
        const auto r = SIGNET_TRY(guarded_txn(std::move(t), true));
        if (r.succeeded) return ok();
        // Nothing that was compared moved: the fence's guard failed. Otherwise read again.
        const auto revisions = [](const std::vector<ha::KeyValue>& kvs) {
            std::map<std::string, std::int64_t> out;
            for (const auto& kv : kvs) out[kv.key] = kv.mod_revision;
            return out;
        };
        if (!r.results.empty() && revisions(r.results.front()) == revisions(read.kvs)) {
            return fenced_error();
        }
    }
    return make_error(ha::HaErrc::conflict,
                      "client " + to.id + " kept changing in etcd while it was being published");
}

Result<void> PairCatalog::publish_setup(const ClientRecord& admin) {
    const std::string marker = catalog_prefix_ + "setup";
    ha::TxnRequest t;
    t.compare.push_back(ha::Compare::absent(marker));
    t.success.push_back(ha::Op::put(path("clients", admin.id), encode_client(admin, name())));
    t.success.push_back(ha::Op::put(marker, "{\"by\":" + json_quote(name()) + "}"));
    t.failure.push_back(ha::Op::get(marker));
    const auto r = SIGNET_TRY(guarded_txn(std::move(t), true));
    if (r.succeeded) return ok();
    if (!r.results.empty() && !r.results.front().empty()) {
        return make_error(Errc::conflict, "setup is already complete (done on the peer)");
    }
    return fenced_error();
}

Result<void> PairCatalog::publish_key(const std::optional<KeyRecord>& from, const KeyRecord& k,
                                      std::optional<WrappedBlob> wrapped) {
    return update_key(k.id, true, [&](const std::optional<KeyEntry>& cur) -> Result<KeyEntry> {
        if (cur && cur->destroyed) {
            return make_error(Errc::not_found, "key " + k.id + " was destroyed on the peer");
        }
        // Checked at every attempt: a write that got in between is never overwritten with a
        // record made from the view before it (e.g. a policy change re-enabling a disabled key).
        if (from ? !(cur && same_key(cur->key, *from)) : cur.has_value()) {
            return make_error(Errc::conflict,
                              "key " + k.id + " changed on the peer; read it again and retry");
        }
        KeyEntry e{k, wrapped, false, name()};
        if (e.key.holder.empty()) e.key.holder = name();
        if (!wrapped && cur) e.wrapped = cur->wrapped;
        return e;
    });
}

Result<void> PairCatalog::publish_destroyed(const KeyRecord& k) {
    ha::TxnRequest t;
    KeyEntry tomb{k, std::nullopt, true, name()};
    t.success.push_back(ha::Op::put(path("keys", k.id), encode_key(tomb)));
    const std::string holders = path("available", k.id + "/");
    t.success.push_back(ha::Op::del(holders, ha::prefix_end(holders)));
    if (!SIGNET_TRY(guarded_txn(std::move(t), true)).succeeded) return fenced_error();
    return ok();
}

Result<void> PairCatalog::update_key(
    const std::string& id, bool guarded,
    const std::function<Result<KeyEntry>(const std::optional<KeyEntry>&)>& change) {
    const std::string k = path("keys", id);
    for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
        const auto cur = SIGNET_TRY(d_.pair->coordinator()->range(k, {}, d_.timeout));
        std::optional<KeyEntry> current;
        std::int64_t rev = 0;
        if (!cur.kvs.empty()) {
            rev = cur.kvs.front().mod_revision;
            current = SIGNET_TRY(decode_key(cur.kvs.front().value));
        }
        const KeyEntry next = SIGNET_TRY(change(current));
        ha::TxnRequest t;
        t.compare.push_back(ha::Compare::mod_revision_equals(k, rev));
        t.success.push_back(ha::Op::put(k, encode_key(next)));
        t.failure.push_back(ha::Op::get(k));
        const auto r = SIGNET_TRY(guarded_txn(std::move(t), guarded));
        if (r.succeeded) return ok();
        const std::int64_t now = r.results.empty() || r.results.front().empty()
                                     ? 0
                                     : r.results.front().front().mod_revision;
        if (now == rev) return fenced_error();  // the record did not move: the guard failed
    }
    return make_error(ha::HaErrc::conflict,
                      "key " + id + " kept changing in etcd while it was being published");
}

}  // namespace signet::daemon