// restore_store: installing a backup as the store without letting any counter, watermark or audit
// log go back (backup.hpp, "Invariant of restore"): the exact, margin, confirmed and pair modes,
// the plan they make, and the one transaction that applies it to a staging copy.
#include "backup.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "appliance.hpp"
#include "audit_log.hpp"
#include "backup_internal.hpp"
#include "config.hpp"
#include "db.hpp"
#include "watermark_guard.hpp"

namespace signet::daemon {

using namespace detail;

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::uint64_t kMaxCounter = std::numeric_limits<std::int64_t>::max();

class FdCloser {
public:
    explicit FdCloser(int fd) noexcept : fd_(fd) {}
    FdCloser(const FdCloser&) = delete;
    FdCloser& operator=(const FdCloser&) = delete;
    ~FdCloser() {
        if (fd_ >= 0) ::close(fd_);
    }

private:
    int fd_;
};

// "2024-05-01T12:00:00Z" -> "20240501T120000Z", for file names.
std::string compact_time(const std::string& rfc3339) {
    std::string out;
    for (const char ch : rfc3339)
        if (ch != '-' && ch != ':' && ch != '.') out += ch;
    return out;
}

// Sets the file's owner to the data directory's when run as root, so signetd can open it.
Result<void> match_owner(const fs::path& file, const fs::path& dir) {
    if (::geteuid() != 0) return ok();
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || ::chown(file.c_str(), st.st_uid, st.st_gid) != 0)
        return make_error(Errc::io_error,
                          "cannot give " + file.string() + " the owner of " + dir.string());
    return ok();
}

// The current store as restore found it.
struct Current {
    bool present = false;
    std::optional<Db> db;             // open and readable (exact mode)
    std::optional<StoreState> state;  // with db
    std::string unreadable;           // why it could not be used, when present but not readable
    bool audit_ok = false;            // its audit chain verifies
};

Current open_current(const fs::path& store) {
    Current c;
    std::error_code ec;
    c.present = fs::exists(store, ec);
    if (!c.present) return c;
    auto r = [&]() -> Result<void> {
        auto db = SIGNET_TRY(Db::open(store, false));
        const int v = SIGNET_TRY(schema_version(db));
        if (v > kSchemaVersion) {
            return make_error(Errc::unsupported, "its schema version " + std::to_string(v) +
                                                     " is newer than this Signet's (" +
                                                     std::to_string(kSchemaVersion) + ")");
        }
        SIGNET_TRY(integrity_check(db));
        c.state = SIGNET_TRY(read_state(db));
        c.audit_ok = verify_audit(db, "the current store").has_value();
        c.db.emplace(std::move(db));
        return ok();
    }();
    if (!r) {
        c.db.reset();
        c.state.reset();
        c.unreadable = r.error().message();
    }
    return c;
}

std::string describe_margin_choice(const std::string& why) {
    return why +
           ": values issued and watermarks signed after the backup was taken are not in it, and "
           "restoring it as it is could issue the same nonce twice or sign a height twice. "
           "Decide one of: --counter-margin N (raise every counter by N, more than the nonces any "
           "key can have issued since the backup; with watermarks also --watermark-margin H, more "
           "than the heights signed since), or --confirm-counters (you know nothing was issued or "
           "signed since the backup, e.g. it was taken with signetd stopped and it has not run "
           "since)";
}

Result<std::uint64_t> add_margin(const std::string& key, std::uint64_t v, std::uint64_t margin) {
    if (v > kMaxCounter || margin > kMaxCounter - v) {
        return make_error(Errc::invalid_argument,
                          "counter of key " + key + " (" + std::to_string(v) + ") plus margin " +
                              std::to_string(margin) + " exceeds " + std::to_string(kMaxCounter));
    }
    return v + margin;
}

// One transaction over the staging store (`cur` attached when the current store is readable).
struct Plan {
    std::map<std::string, std::uint64_t> counters;  // final values
    std::map<std::string, MarkRow> watermarks;      // final rows
    std::optional<std::string> cluster;             // meta ha.cluster to set
    // The current store continues the backup (its audit log extends the backup's): its security
    // state, reservations and audit log are carried forward.
    bool carry_forward = false;
    bool audit_from_current = false;
    bool drop_reservations = false;
};

Result<std::vector<std::string>> column(Db& db, std::string_view sql) {
    std::vector<std::string> out;
    auto st = SIGNET_TRY(db.prepare(sql));
    while (SIGNET_TRY(st.step())) out.push_back(st.text(0));
    return out;
}

json::array to_json_array(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) a.emplace_back(s);
    return a;
}

Result<json::object> apply_plan(Db& db, const Plan& p, int cur_schema, const AuditEntry& base,
                                const std::string& ts) {
    json::object done;
    SIGNET_TRY(db.exec("BEGIN IMMEDIATE"));
    auto r = [&]() -> Result<void> {
        SIGNET_TRY(db.exec("DELETE FROM main.counters"));
        for (const auto& [k, v] : p.counters) {
            auto st = SIGNET_TRY(
                db.cached("INSERT INTO main.counters (key_id, last_issued) VALUES (?, ?)"));
            st->bind(1, k).bind(2, v);
            SIGNET_TRY(st->run());
        }
        SIGNET_TRY(db.exec("DELETE FROM main.watermarks"));
        for (const auto& [k, m] : p.watermarks) {
            auto st = SIGNET_TRY(
                db.cached("INSERT INTO main.watermarks (key_id, watermark, payload_hash, "
                          "updated_at) VALUES (?, ?, ?, ?)"));
            st->bind(1, k).bind(2, to_string(m.watermark)).bind(3, m.payload_hash);
            st->bind(4, m.updated_at);
            SIGNET_TRY(st->run());
        }
        if (p.cluster) {
            auto st = SIGNET_TRY(
                db.cached("INSERT INTO main.meta (name, value) VALUES ('ha.cluster', ?) ON "
                          "CONFLICT(name) DO UPDATE SET value = excluded.value"));
            st->bind(1, *p.cluster);
            SIGNET_TRY(st->run());
        }
        {
            auto st = SIGNET_TRY(db.prepare("DELETE FROM main.meta WHERE name = ?"));
            st.bind(1, kTakenAtMeta);
            SIGNET_TRY(st.run());
        }
        if (p.drop_reservations) {
            auto n = SIGNET_TRY(db.prepare("SELECT count(*) FROM main.reservations"));
            SIGNET_TRY(n.step());
            done["reservations_dropped"] = n.int64(0);
            SIGNET_TRY(db.exec("DELETE FROM main.reservations"));
        }
        if (p.carry_forward) {
            // Security state never goes back: what was revoked, disabled or destroyed after the
            // backup stays so (a leaked token revoked since must not work again).
            const auto revoked = SIGNET_TRY(column(
                db,
                "SELECT id FROM main.clients WHERE state = 'active' AND id IN (SELECT id FROM "
                "cur.clients WHERE state = 'revoked') ORDER BY id"));
            SIGNET_TRY(db.exec(
                "UPDATE main.clients SET state = 'revoked', revoked_at = (SELECT c.revoked_at "
                "FROM cur.clients c WHERE c.id = main.clients.id) WHERE state = 'active' AND id "
                "IN (SELECT id FROM cur.clients WHERE state = 'revoked')"));
            const auto disabled = SIGNET_TRY(
                column(db,
                       "SELECT id FROM main.keys WHERE state = 'active' AND id IN (SELECT id "
                       "FROM cur.keys WHERE state = 'disabled') ORDER BY id"));
            SIGNET_TRY(
                db.exec("UPDATE main.keys SET state = 'disabled' WHERE state = 'active' AND id "
                        "IN (SELECT id FROM cur.keys WHERE state = 'disabled')"));
            const auto destroyed = SIGNET_TRY(column(
                db,
                "SELECT id FROM main.keys WHERE id NOT IN (SELECT id FROM cur.keys) ORDER BY "
                "id"));
            SIGNET_TRY(
                db.exec("DELETE FROM main.keys WHERE id NOT IN (SELECT id FROM cur.keys); "
                        "DELETE FROM main.reservations WHERE key_id NOT IN (SELECT id FROM "
                        "main.keys)"));
            done["clients_revoked"] = to_json_array(revoked);
            done["keys_disabled"] = to_json_array(disabled);
            done["keys_removed"] = to_json_array(destroyed);
        }
        if (p.carry_forward) {
            // The current store knows which reservations were consumed since the backup.
            SIGNET_TRY(db.exec(
                "DELETE FROM main.reservations; INSERT INTO main.reservations SELECT * FROM "
                "cur.reservations WHERE key_id IN (SELECT id FROM main.keys); DELETE FROM "
                "main.nonce_pending; INSERT INTO main.nonce_pending SELECT * FROM "
                "cur.nonce_pending"));
        }
        if (p.audit_from_current) {
            SIGNET_TRY(
                db.exec("DELETE FROM main.audit; INSERT INTO main.audit SELECT * FROM "
                        "cur.audit; DELETE FROM main.audit_checkpoints"));
            if (cur_schema >= 2) {
                SIGNET_TRY(db.exec(
                    "INSERT INTO main.audit_checkpoints SELECT * FROM cur.audit_checkpoints"));
            }
        }
        AuditEntry e = base;
        // The caller's details plus what this transaction did.
        json::object details = json::parse(base.details_json).as_object();
        for (const auto& [k, v] : done) details[k] = v;
        e.details_json = json::serialize(details);
        done["audit_seq"] = SIGNET_TRY(AuditLog::append(db, e, ts));
        return ok();
    }();
    if (!r) {
        (void)db.exec("ROLLBACK");
        return r.error().within("write the restored store");
    }
    SIGNET_TRY(db.exec("COMMIT"));
    return done;
}

}  // namespace

Result<json::object> restore_store(const RestoreOptions& o, const Clock& clock) {
    std::error_code ec;
    if (!fs::is_directory(o.data_dir, ec))
        return make_error(Errc::not_found, "no data directory " + o.data_dir.string());
    if (!fs::is_regular_file(o.backup, ec))
        return make_error(Errc::not_found, "no backup file " + o.backup.string());
    const auto wal = sidecar(o.backup, "-wal");
    if (fs::exists(wal, ec) && fs::file_size(wal, ec) > 0) {
        return make_error(Errc::unprocessable,
                          o.backup.string() +
                              " has a write-ahead log beside it: it is a copy of a live store, "
                              "not a backup; take backups with signetctl backup");
    }
    Config c;
    c.data_dir = o.data_dir;
    // Held to the end: signetd cannot start on a half-installed store.
    const int lock_fd = SIGNET_TRY(lock_data_dir(c));
    const FdCloser lock_closer(lock_fd);

    const fs::path store = c.database_path();
    const fs::path staging = o.data_dir / "signet.db.restoring";
    const std::string ts = format_rfc3339(clock.wall());
    const std::string what = "backup " + o.backup.string();
    remove_with_sidecars(staging);  // left by an interrupted restore
    fs::copy_file(o.backup, staging, ec);
    if (ec) {
        return make_error(Errc::io_error, "cannot copy " + o.backup.string() + " to " +
                                              staging.string() + ": " + ec.message());
    }
    fs::permissions(staging, fs::perms::owner_read | fs::perms::owner_write, ec);

    auto report = [&]() -> Result<json::object> {
        auto db = SIGNET_TRY(Db::open(staging, false));
        // Verify the backup before anything: not newer than this Signet, intact, chain valid.
        const int backup_schema = SIGNET_TRY(schema_version(db));
        SIGNET_TRY(migrate(db));
        SIGNET_TRY(integrity_check(db));
        SIGNET_TRY(verify_audit(db, what));
        const StoreState b = SIGNET_TRY(read_state(db));

        Current cur = open_current(store);
        const bool exact = cur.state.has_value();
        const bool pair = b.cluster || (exact && cur.state->cluster);
        if (exact && b.cluster && cur.state->cluster && *b.cluster != *cur.state->cluster) {
            return make_error(Errc::conflict, "the backup belongs to pair '" + *b.cluster +
                                                  "' but the current store to '" +
                                                  *cur.state->cluster + "'");
        }
        if (o.counter_margin && o.confirm_counters) {
            return make_error(Errc::invalid_argument,
                              "--counter-margin and --confirm-counters exclude each other");
        }
        std::string mode;
        if (exact) {
            mode = "exact";
        } else if (o.confirm_counters) {
            mode = "confirmed";
        } else if (o.counter_margin) {
            mode = "margin";
            if (!b.watermarks.empty() && !o.watermark_margin) {
                return make_error(
                    Errc::conflict,
                    describe_margin_choice(
                        "the backup holds watermarks for " + std::to_string(b.watermarks.size()) +
                        " key(s) and no current store bounds what was signed since; pass "
                        "--watermark-margin H too"));
            }
        } else if (pair) {
            // etcd holds the pair's counters and watermarks; the daemon raises the pair's past
            // the local copies at first use and checks watermarks against the higher of both.
            mode = "pair";
        } else {
            const std::string why = cur.present ? "the current store " + store.string() +
                                                      " cannot be read (" + cur.unreadable + ")"
                                                : "there is no current store at " + store.string();
            return make_error(Errc::conflict, describe_margin_choice(why));
        }

        Plan p;
        json::array counters, marks;
        std::set<std::string> keys;
        for (const auto& [k, v] : b.counters) keys.insert(k);
        if (exact)
            for (const auto& [k, v] : cur.state->counters) keys.insert(k);
        for (const auto& k : keys) {
            const auto bi = b.counters.find(k);
            const std::optional<std::uint64_t> bv =
                bi == b.counters.end() ? std::nullopt : std::optional(bi->second);
            std::optional<std::uint64_t> cv;
            if (exact) {
                const auto ci = cur.state->counters.find(k);
                if (ci != cur.state->counters.end()) cv = ci->second;
            }
            const std::uint64_t v = SIGNET_TRY(add_margin(
                k, std::max(bv.value_or(0), cv.value_or(0)), o.counter_margin.value_or(0)));
            p.counters[k] = v;
            json::object row{{"key", k}, {"restored", v}};
            row["backup"] = bv ? json::value(*bv) : json::value(nullptr);
            if (exact) row["current"] = cv ? json::value(*cv) : json::value(nullptr);
            counters.push_back(std::move(row));
        }
        std::set<std::string> mark_keys;
        for (const auto& [k, m] : b.watermarks) mark_keys.insert(k);
        if (exact)
            for (const auto& [k, m] : cur.state->watermarks) mark_keys.insert(k);
        for (const auto& k : mark_keys) {
            const auto bi = b.watermarks.find(k);
            const MarkRow* bm = bi == b.watermarks.end() ? nullptr : &bi->second;
            const MarkRow* cm = nullptr;
            if (exact) {
                const auto ci = cur.state->watermarks.find(k);
                if (ci != cur.state->watermarks.end()) cm = &ci->second;
            }
            // The higher one wins; the current one on a tie or a different arity (it is newer).
            MarkRow m = cm && (!bm || cm->watermark.size() != bm->watermark.size() ||
                               !(cm->watermark < bm->watermark))
                            ? *cm
                            : *bm;
            if (!exact && o.watermark_margin && mode == "margin" && !m.watermark.empty()) {
                m.watermark[0] = SIGNET_TRY(add_margin(k, m.watermark[0], *o.watermark_margin));
                m.payload_hash = Bytes(32, 0);  // no payload hashes to this: equal is refused
                m.updated_at = ts;
            }
            json::object row{{"key", k}, {"restored", json::parse(to_string(m.watermark))}};
            row["backup"] = bm ? json::parse(to_string(bm->watermark)) : json::value(nullptr);
            if (exact)
                row["current"] = cm ? json::parse(to_string(cm->watermark)) : json::value(nullptr);
            marks.push_back(std::move(row));
            p.watermarks[k] = std::move(m);
        }
        if (exact && cur.state->cluster && !b.cluster) p.cluster = cur.state->cluster;

        // The audit log never goes back either: keep the current one when it extends the
        // backup's (the same record at the backup's head), so the HSM anchor still matches.
        std::string audit_source = "backup";
        std::string audit_note;
        if (exact) {
            const auto& bh = b.head;
            const auto& ch = cur.state->head;
            if (!cur.audit_ok) {
                audit_note = "the current store's audit log does not verify; kept aside";
            } else if (ch && (!bh || (ch->first >= bh->first))) {
                bool extends = !bh;
                if (bh) {
                    auto st =
                        SIGNET_TRY(cur.db->prepare("SELECT hash FROM main.audit WHERE seq = ?"));
                    st.bind(1, bh->first);
                    extends = SIGNET_TRY(st.step()) && st.blob(0) == bh->second;
                }
                if (extends) {
                    audit_source = "current";
                } else {
                    audit_note =
                        "the current store's audit log is not a continuation of the backup's";
                }
            }
            p.carry_forward = p.audit_from_current = audit_source == "current";
        }
        // Without a current store that continues the backup, which reservations were consumed
        // since is unknown: none is kept (unless the operator confirmed nothing happened since).
        if (!p.carry_forward && mode != "confirmed") p.drop_reservations = true;

        json::object details{
            {"backup", fs::absolute(o.backup).string()},
            {"backup_taken_at", b.taken_at ? json::value(*b.taken_at) : json::value(nullptr)},
            {"mode", mode},
            {"current_store", exact         ? "read"
                              : cur.present ? "unreadable"
                                            : "absent"},
            {"backup_schema_version", backup_schema},
            {"audit_source", audit_source}};
        if (o.counter_margin) details["counter_margin"] = *o.counter_margin;
        if (o.watermark_margin && mode == "margin")
            details["watermark_margin"] = *o.watermark_margin;
        json::array raised;
        for (const auto& row : counters) {
            const auto& r = row.as_object();
            const std::uint64_t restored = r.at("restored").to_number<std::uint64_t>();
            const std::uint64_t from =
                r.at("backup").is_null() ? 0 : r.at("backup").to_number<std::uint64_t>();
            if (restored > from)
                raised.push_back(
                    json::object{{"key", r.at("key")}, {"from", from}, {"to", restored}});
        }
        details["counters_raised"] = raised;

        int cur_schema = 0;
        if (exact) {
            cur_schema = cur.state->schema;
            auto st = SIGNET_TRY(db.prepare("ATTACH DATABASE ? AS cur"));
            st.bind(1, store.string());
            SIGNET_TRY(st.run());
        }
        const AuditEntry base{"signetctl", "store.restored", "store", "ok",
                              json::serialize(details)};
        auto done = apply_plan(db, p, cur_schema, base, ts);
        if (exact) (void)db.exec("DETACH DATABASE cur");
        if (!done) return done.error();
        SIGNET_TRY(integrity_check(db));
        SIGNET_TRY(verify_audit(db, "the restored store"));
        // Everything into the main file: the staging store moves as one file.
        SIGNET_TRY(db.exec("PRAGMA wal_checkpoint(TRUNCATE)"));

        json::object out = details;
        for (const auto& [k, v] : *done) out[k] = v;
        out["counters"] = counters;
        out["watermarks"] = marks;
        if (!audit_note.empty()) out["audit_note"] = audit_note;
        if (cur.present && !exact) out["current_store_error"] = cur.unreadable;
        return out;
    }();  // every connection to the staging and current stores is closed here
    if (!report) {
        remove_with_sidecars(staging);
        return report.error().within("restore " + o.backup.string());
    }
    SIGNET_TRY(match_owner(staging, o.data_dir));
    SIGNET_TRY(fsync_path(staging));

    // Install: the current store (with any WAL it has) moves aside, never deleted.
    if (fs::exists(store, ec)) {
        const fs::path aside = o.data_dir / ("signet.db.pre-restore-" + compact_time(ts));
        for (const char* s : {"", "-wal"}) {
            if (!fs::exists(sidecar(store, s), ec)) continue;
            fs::rename(sidecar(store, s), sidecar(aside, s), ec);
            if (ec) {
                return make_error(Errc::io_error, "cannot move " + sidecar(store, s).string() +
                                                      " aside: " + ec.message());
            }
        }
        fs::remove(sidecar(store, "-shm"), ec);
        (*report)["kept_aside"] = aside.string();
    }
    fs::rename(staging, store, ec);
    if (ec) {
        return make_error(Errc::io_error, "cannot install " + staging.string() + " as " +
                                              store.string() + ": " + ec.message());
    }
    remove_with_sidecars(staging);
    SIGNET_TRY(fsync_path(o.data_dir));
    (*report)["restored"] = store.string();
    return report;
}

}  // namespace signet::daemon
