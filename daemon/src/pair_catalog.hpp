// PairCatalog: keys and clients replicated through etcd in a pair (docs/ha.md, "Replication").
// etcd is the pair's source of truth; each appliance's SQLite store and in-memory Catalog are its
// local view. Record layout: pair_records.hpp.
//
// Write path (SigningService admin operations): take write_lock(), check may_write(), publish to
// etcd first in a transaction carrying the fence's guard (a deposed hot-standby active cannot
// write), then commit locally with the audit record, then apply in memory. A failed publish
// changes nothing anywhere. A publish that succeeded but whose local commit failed reaches the
// local view through the watch like a peer's record.
//
// Apply path (one worker thread): at start, and after any watch failure, range the whole catalog
// and upsert every record into SQLite (through the Committer, audited as "<action>.replicated" by
// "pair:<writer>") and the Catalog; then watch from the range's revision + 1. Applying a record
// that equals the local view does nothing, so own writes arriving again and repeated ranges are
// harmless. The same worker watches <prefix>pairing/kek/ for KEKs addressed to this appliance and
// unwraps the peer's replicable keys into this HSM once it can.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "catalog.hpp"
#include "committer.hpp"
#include "pair.hpp"
#include "pair_records.hpp"
#include "pairing.hpp"
#include "signet/pkcs11/key_store.hpp"

namespace signet::daemon {

struct PairCatalogDeps {
    std::shared_ptr<Pair> pair;
    std::shared_ptr<Catalog> catalog;
    std::shared_ptr<Committer> committer;
    std::shared_ptr<pkcs11::KeyStore> keys;
    std::shared_ptr<Pairing> pairing;
    std::shared_ptr<const Clock> clock;
    std::shared_ptr<Logger> logger;
    ha::Milliseconds timeout{1000};  // each etcd call
};

class PairCatalog {
public:
    // Tries one full synchronisation now (so start-up sees the peer's clients, e.g. an admin that
    // makes this appliance's setup token moot), then keeps the local view in step on a worker
    // thread, which also retries the first synchronisation when etcd was not reachable.
    [[nodiscard]] static std::shared_ptr<PairCatalog> start(PairCatalogDeps deps);
    ~PairCatalog();  // stop()
    PairCatalog(const PairCatalog&) = delete;
    PairCatalog& operator=(const PairCatalog&) = delete;
    // Stops the watches and the worker. Idempotent.
    void stop();

    [[nodiscard]] const std::string& name() const noexcept;
    [[nodiscard]] Pairing& pairing() const noexcept { return *d_.pairing; }

    // --- Write path. Hold write_lock() from publish to the in-memory apply.
    [[nodiscard]] std::unique_lock<std::mutex> write_lock() { return std::unique_lock(write_mu_); }
    // ok where catalog writes are allowed now; in hot-standby a standby gets Pair::may_sign()'s
    // error, which names the active.
    [[nodiscard]] Result<void> may_write() const;
    // Publishes `to`, made from `from`: the record as this appliance's view held it when the
    // operation started (nullopt: a new client, which etcd must not hold yet). Errc::conflict
    // ("client C changed on the peer; read it again and retry") unless etcd still holds `from`,
    // so a change made on the peer meanwhile is never overwritten. Revoking an active admin also
    // compares every other active admin's record, as read in the same range: Errc::conflict
    // "cannot revoke the last active admin" when etcd holds no other, and two admins revoking
    // each other at once on the two appliances cannot both succeed.
    [[nodiscard]] Result<void> publish_client(const std::optional<ClientRecord>& from,
                                              const ClientRecord& to);
    // First-run setup's admin: at most once per pair (conflict "setup is already complete (done
    // on the peer)" when <prefix>catalog/setup exists).
    [[nodiscard]] Result<void> publish_setup(const ClientRecord& admin);
    // Publishes `to`, made from `from` (nullopt: a new key), with the same conflict rule as
    // publish_client ("key K changed on the peer; read it again and retry"): a policy change on
    // one appliance never re-enables a key the peer disabled meanwhile. Errc::not_found when the
    // peer destroyed it. `wrapped` replaces the wrapped blob, nullopt keeps the one etcd holds
    // (a policy change must not drop the peer's copy).
    [[nodiscard]] Result<void> publish_key(const std::optional<KeyRecord>& from,
                                           const KeyRecord& to,
                                           std::optional<WrappedBlob> wrapped = std::nullopt);
    // Replaces the record with a tombstone (so a re-synchronising appliance never resurrects it)
    // and removes its holders.
    [[nodiscard]] Result<void> publish_destroyed(const KeyRecord& k);

    // --- Key material.
    // Whether this appliance's HSM holds the private key.
    [[nodiscard]] bool holds(const KeyRecord& k) const;
    // ok when this appliance can sign with `k`; Errc::unavailable naming the holder otherwise
    // ("key K is held only by appliance A (appliance-local key)").
    [[nodiscard]] Result<void> check_held(const KeyRecord& k) const;
    [[nodiscard]] std::vector<std::string> holders(const KeyRecord& k) const;

    // The ceremony's export to `peer` (Pairing::export_to), then every replicable key this
    // appliance generated is wrapped under the new KEK and re-published. The caller checks the
    // role (admin); the export is audited by Pairing.
    [[nodiscard]] Result<web::PairResult> pair_with(const std::string& actor,
                                                    const std::string& peer,
                                                    const std::string& transport_sha256);
    // Called (on the worker thread) when an active admin client arrives from the peer: setup is
    // complete on this appliance too.
    void on_setup_complete(std::function<void()> f);

private:
    explicit PairCatalog(PairCatalogDeps deps);
    struct Event {
        bool put = true;
        ha::KeyValue kv;
    };
    void run();
    Result<void> sync();
    void apply(const Event& e);
    Result<void> apply_client(const ClientEntry& e);
    Result<void> apply_key(KeyEntry e);
    Result<void> apply_destroyed(const std::string& id, const std::string& by);
    void apply_kek(const std::string& value);
    // Unwraps `e` into this HSM when it is the peer's, wrapped, not held here, and the KEK exists.
    void try_unwrap(const KeyEntry& e);
    // Publishes this appliance's records that etcd lacks, with the fence's guard. false when
    // some were missing but this appliance may not write now (a hot standby): they are published
    // once it is the active.
    Result<bool> publish_missing(const std::set<std::string>& clients,
                                 const std::set<std::string>& keys, bool setup_marked);
    // Compare-and-swap on the key's record: `change` maps etcd's current entry (if any) to the new
    // one; retried when another writer got in between.
    Result<void> update_key(
        const std::string& id, bool guarded,
        const std::function<Result<KeyEntry>(const std::optional<KeyEntry>&)>& change);
    Result<ha::TxnResponse> guarded_txn(ha::TxnRequest t, bool guarded);
    Error fenced_error() const;
    Result<void> commit(const std::function<Result<void>(Db&)>& stage, AuditEntry audit);
    std::string path(std::string_view kind, const std::string& id) const;

    PairCatalogDeps d_;
    std::string catalog_prefix_;
    std::string kek_prefix_;
    std::mutex write_mu_;  // one catalog change at a time: admin operations and the apply path

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Event> queue_;                                // guarded by mu_
    std::vector<Event> kek_queue_;                            // guarded by mu_
    bool watch_failed_ = false;                               // guarded by mu_
    bool stopping_ = false;                                   // guarded by mu_
    std::map<std::string, KeyEntry> entries_;                 // etcd's key records; mu_
    std::map<std::string, std::set<std::string>> available_;  // key id -> holders; mu_
    std::set<std::string> unwrap_failed_;                     // "id/kek" reported; mu_
    std::set<std::string> kek_import_failed_;                 // "sender/kek" reported; mu_
    std::vector<std::function<void()>> setup_hooks_;          // guarded by mu_

    // Whether this appliance's own records that etcd lacked were published (by an appliance that
    // may write: a hot standby leaves it to the active, and publishes once it is the active).
    bool published_local_ = false;  // guarded by mu_
    // Used by the worker thread only (and by stop() after it joined).
    std::unique_ptr<ha::Watch> catalog_watch_;
    std::unique_ptr<ha::Watch> kek_watch_;
    std::thread worker_;
};

}  // namespace signet::daemon
