// backup_store: an online, consistent copy of the store. Also defines what restore.cpp shares with
// it (backup_internal.hpp): reading a store's counters, watermarks and audit head, the offline
// audit check, and handling a store file with its sidecars. restore_store is in restore.cpp.
#include "backup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <string>
#include <system_error>

#include "audit_log.hpp"
#include "backup_internal.hpp"
#include "db.hpp"
#include "watermark_guard.hpp"

namespace signet::daemon {

using namespace detail;

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

struct BackupClose {
    void operator()(sqlite3_backup* b) const noexcept { sqlite3_backup_finish(b); }
};

Result<StoreState> read_state_in_txn(Db& db) {
    StoreState s;
    s.schema = SIGNET_TRY(schema_version(db));
    auto cs = SIGNET_TRY(db.prepare("SELECT key_id, last_issued FROM main.counters"));
    while (SIGNET_TRY(cs.step())) s.counters[cs.text(0)] = cs.uint64(1);
    auto ws = SIGNET_TRY(
        db.prepare("SELECT key_id, watermark, payload_hash, updated_at FROM main.watermarks"));
    while (SIGNET_TRY(ws.step())) {
        auto w = parse_watermark(ws.text(1));
        if (!w) return w.error().within("stored watermark of key " + ws.text(0));
        s.watermarks[ws.text(0)] = MarkRow{std::move(w).value(), ws.blob(2), ws.text(3)};
    }
    auto ms = SIGNET_TRY(db.prepare("SELECT name, value FROM main.meta WHERE name IN (?, ?)"));
    ms.bind(1, "ha.cluster").bind(2, kTakenAtMeta);
    while (SIGNET_TRY(ms.step()))
        (ms.text(0) == "ha.cluster" ? s.cluster : s.taken_at) = ms.text(1);
    s.head = SIGNET_TRY(AuditLog::head(db));
    return s;
}

json::object counters_json(const StoreState& s) {
    json::object out;
    for (const auto& [k, v] : s.counters) out[k] = v;
    return out;
}

json::object watermarks_json(const StoreState& s) {
    json::object out;
    for (const auto& [k, m] : s.watermarks) out[k] = json::parse(to_string(m.watermark));
    return out;
}

}  // namespace

namespace detail {

Result<void> fsync_path(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return make_error(Errc::io_error, "cannot open " + p.string() + " to sync it");
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) return make_error(Errc::io_error, "fsync " + p.string());
    return ok();
}

fs::path sidecar(const fs::path& db, std::string_view suffix) {
    return fs::path(db.string() + std::string(suffix));
}

void remove_with_sidecars(const fs::path& db) {
    std::error_code ec;
    for (const char* s : {"", "-wal", "-shm", "-journal"}) fs::remove(sidecar(db, s), ec);
}

Result<int> schema_version(Db& db) {
    auto st = SIGNET_TRY(db.prepare("PRAGMA user_version"));
    SIGNET_TRY(st.step());
    return static_cast<int>(st.int64(0));
}

Result<StoreState> read_state(Db& db) {
    SIGNET_TRY(db.exec("BEGIN"));
    auto s = read_state_in_txn(db);
    (void)db.exec("COMMIT");
    return s;
}

Result<web::AuditVerification> verify_audit(Db& db, const std::string& what) {
    auto v = AuditLog::verify(db);
    if (!v) return v.error().within("verify the audit log of " + what);
    if (!v->ok) {
        return make_error(Errc::verification_failed,
                          "the audit log of " + what + " does not verify at record " +
                              std::to_string(v->first_bad_seq.value_or(0)) + ": " + v->reason);
    }
    return v;
}

}  // namespace detail

Result<json::object> backup_store(const fs::path& db_path, const fs::path& out,
                                  const Clock& clock) {
    std::error_code ec;
    if (!fs::is_regular_file(db_path, ec))
        return make_error(Errc::not_found, "no store at " + db_path.string());
    auto src = SIGNET_TRY(Db::open(db_path, false));
    // O_EXCL: never overwrite (an older backup may be the only good one); 0600 from creation.
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return make_error(
            errno == EEXIST ? Errc::already_exists : Errc::io_error,
            "cannot create " + out.string() + ": " + std::generic_category().message(errno));
    }
    ::close(fd);
    auto written = [&]() -> Result<json::object> {
        auto dst = SIGNET_TRY(Db::open(out, false));
        SIGNET_TRY(dst.exec("PRAGMA journal_mode=DELETE"));
        {
            // -1: every page in one step, i.e. one read transaction on the source: a consistent
            // snapshot, while signetd's writer goes on committing to the WAL.
            std::unique_ptr<sqlite3_backup, BackupClose> b(
                sqlite3_backup_init(dst.handle(), "main", src.handle(), "main"));
            if (!b) return dst.error(sqlite3_errcode(dst.handle()), "start the backup");
            const int rc = sqlite3_backup_step(b.get(), -1);
            if (rc != SQLITE_DONE) return dst.error(rc, "copy the store");
            const int fin = sqlite3_backup_finish(b.release());
            if (fin != SQLITE_OK) return dst.error(fin, "finish the backup");
        }
        // The copy carries the source's WAL flag: make it one self-contained file.
        SIGNET_TRY(dst.exec("PRAGMA journal_mode=DELETE"));
        SIGNET_TRY(integrity_check(dst));
        const auto audit = SIGNET_TRY(verify_audit(dst, "the store"));
        const std::string ts = format_rfc3339(clock.wall());
        {
            auto st = SIGNET_TRY(dst.prepare(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                "value = excluded.value"));
            st.bind(1, kTakenAtMeta).bind(2, ts);
            SIGNET_TRY(st.run());
        }
        const StoreState s = SIGNET_TRY(read_state(dst));
        json::object o{{"file", fs::absolute(out).string()}, {"taken_at", ts},
                       {"schema_version", s.schema},         {"audit_records", audit.records},
                       {"counters", counters_json(s)},       {"watermarks", watermarks_json(s)}};
        if (s.cluster) o["cluster"] = *s.cluster;
        return o;
    }();
    if (!written) {
        remove_with_sidecars(out);
        return written.error().within("back up " + db_path.string());
    }
    if (::chmod(out.c_str(), 0600) != 0)
        return make_error(Errc::io_error, "cannot restrict " + out.string() + " to mode 0600");
    SIGNET_TRY(fsync_path(out));
    SIGNET_TRY(fsync_path(fs::absolute(out).parent_path()));
    return written;
}

}  // namespace signet::daemon
