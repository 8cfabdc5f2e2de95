#include "db.hpp"

#include <array>

namespace signet::daemon {
namespace {

class SqliteCategory final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "sqlite"; }
    std::string message(int ev) const override {
        return std::string(sqlite3_errstr(ev)) + " (sqlite " + std::to_string(ev) + ")";
    }
};

// Schema migrations, in order. Never edit a released one: add the next.
constexpr std::array<std::string_view, kSchemaVersion> kMigrations{R"sql(
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE keys (
  id          TEXT PRIMARY KEY,          -- hex CKA_ID on the HSM
  label       TEXT NOT NULL,
  algorithm   TEXT NOT NULL,
  key_class   TEXT NOT NULL CHECK (key_class IN ('local', 'replicable')),
  state       TEXT NOT NULL CHECK (state IN ('active', 'disabled')),
  created_at  TEXT NOT NULL,
  created_by  TEXT NOT NULL,
  spki        BLOB NOT NULL,
  policy      TEXT NOT NULL              -- JSON
) STRICT;
CREATE TABLE clients (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL,
  role         TEXT NOT NULL CHECK (role IN ('admin', 'signer', 'auditor')),
  token_hash   BLOB NOT NULL UNIQUE,     -- SHA-256 of the token; the token itself is never stored
  cert_sha256  TEXT UNIQUE,
  state        TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
  created_at   TEXT NOT NULL,
  revoked_at   TEXT
) STRICT;
-- Highest nonce ever released, reserved or burnt per key: values at or below are never issued again.
CREATE TABLE counters (
  key_id       TEXT PRIMARY KEY,
  last_issued  INTEGER NOT NULL CHECK (last_issued >= 0)
) STRICT;
-- Values allocated but not yet released while a higher one was made durable: after a crash every
-- row left here is a gap, audited at start-up.
CREATE TABLE nonce_pending (
  key_id  TEXT NOT NULL,
  value   INTEGER NOT NULL,
  PRIMARY KEY (key_id, value)
) STRICT, WITHOUT ROWID;
-- Reserved nonces not yet consumed. A consumed one is deleted: at or below last_issued and absent
-- here means "never again".
CREATE TABLE reservations (
  key_id      TEXT NOT NULL,
  value       INTEGER NOT NULL,
  client_id   TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  PRIMARY KEY (key_id, value)
) STRICT, WITHOUT ROWID;
CREATE TABLE watermarks (
  key_id        TEXT PRIMARY KEY,
  watermark     TEXT NOT NULL,           -- JSON array of unsigned integers
  payload_hash  BLOB NOT NULL,           -- SHA-256 of the last signed payload at this watermark
  updated_at    TEXT NOT NULL
) STRICT;
-- Hash-chained audit log: hash = SHA-256(prev_hash || seq || fields), see audit_log.cpp.
CREATE TABLE audit (
  seq        INTEGER PRIMARY KEY,
  ts         TEXT NOT NULL,
  actor      TEXT NOT NULL,
  action     TEXT NOT NULL,
  subject    TEXT NOT NULL,
  outcome    TEXT NOT NULL,
  details    TEXT NOT NULL,
  prev_hash  BLOB NOT NULL,
  hash       BLOB NOT NULL
) STRICT;
)sql",
                                                                   R"sql(
-- Schema 2: HSM-signed audit checkpoints. Each signs (seq, hash) of a record with the appliance's
-- audit key, so deleting records after a checkpoint, or rewriting the chain, is detectable.
CREATE TABLE audit_checkpoints (
  seq        INTEGER PRIMARY KEY,       -- the audit record it covers
  hash       BLOB NOT NULL,             -- that record's hash
  key_spki   BLOB NOT NULL,             -- public key of the HSM audit key that signed it
  signature  BLOB NOT NULL,             -- ECDSA P-256 (DER) over audit_checkpoint_message()
  ts         TEXT NOT NULL
) STRICT;
)sql"};

}  // namespace

const boost::system::error_category& sqlite_category() noexcept {
    static const SqliteCategory c;
    return c;
}

boost::system::error_code make_error_code(SqliteRc rc) noexcept {
    return {static_cast<int>(rc), sqlite_category()};
}

Error Db::error(int rc, std::string_view what) const {
    std::string ctx(what);
    if (db_) {
        ctx += ": ";
        ctx += sqlite3_errmsg(db_.get());
    }
    return Error{make_error_code(static_cast<SqliteRc>(rc)), std::move(ctx)};
}

Result<Db> Db::open(const std::filesystem::path& path, bool create) {
    sqlite3* raw = nullptr;
    const int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) |
                      SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE;
    const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    DbPtr db(raw);
    if (rc != SQLITE_OK) {
        return Error{make_error_code(static_cast<SqliteRc>(rc)),
                     "open database '" + path.string() + "'"};
    }
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(raw, 5000);
    Db out(std::move(db));
    // WAL + synchronous=FULL: a commit returns only after the WAL is fsync'd.
    SIGNET_TRY(
        out.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
    return out;
}

Result<Statement> Db::prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    const int rc =
        sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) return error(rc, "prepare");
    return Statement(db_.get(), stmt);
}

Result<StatementRef> Db::cached(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
        auto st = SIGNET_TRY(prepare(sql));
        it = cache_.emplace(std::string(sql), std::make_unique<Statement>(std::move(st))).first;
    }
    return StatementRef(*it->second);
}

Result<void> Db::exec(std::string_view sql) {
    char* msg = nullptr;
    const std::string s(sql);
    const int rc = sqlite3_exec(db_.get(), s.c_str(), nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
        std::string m = msg ? msg : "";
        sqlite3_free(msg);
        return Error{make_error_code(static_cast<SqliteRc>(rc)), "exec: " + m};
    }
    return ok();
}

void Db::on_commit(std::function<void()> f) {
    if (hooks_) {
        hooks_->on_commit.push_back(std::move(f));
    } else {
        f();
    }
}

void Db::on_rollback(std::function<void()> f) {
    if (hooks_) hooks_->on_rollback.push_back(std::move(f));
}

std::int64_t Db::changes() const noexcept { return sqlite3_changes64(db_.get()); }

Statement& Statement::bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
}

Statement& Statement::bind(int i, std::string_view v) {
    sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    return *this;
}

Statement& Statement::bind(int i, ByteView v) {
    // A zero-length blob must still be a blob, not NULL.
    static const std::uint8_t kEmpty = 0;
    sqlite3_bind_blob64(stmt_, i, v.empty() ? &kEmpty : v.data(), v.size(), SQLITE_TRANSIENT);
    return *this;
}

Statement& Statement::bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
}

Result<bool> Statement::step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    const char* sql = sqlite3_sql(stmt_);
    std::string what = "step";
    if (sql) {
        what += " '";
        what += std::string_view(sql).substr(0, 60);
        what += "'";
    }
    return Error{make_error_code(static_cast<SqliteRc>(rc)), what + ": " + sqlite3_errmsg(db_)};
}

Result<void> Statement::run() {
    while (SIGNET_TRY(step())) {
    }
    return ok();
}

void Statement::reset() noexcept {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

std::int64_t Statement::int64(int col) const noexcept { return sqlite3_column_int64(stmt_, col); }

std::string Statement::text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n))
             : std::string();
}

Bytes Statement::blob(int col) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, col));
    const int n = sqlite3_column_bytes(stmt_, col);
    return p ? Bytes(p, p + n) : Bytes();
}

bool Statement::is_null(int col) const noexcept {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

Result<int> migrate(Db& db) {
    auto st = SIGNET_TRY(db.prepare("PRAGMA user_version"));
    SIGNET_TRY(st.step());
    const int version = static_cast<int>(st.int64(0));
    if (version > kSchemaVersion) {
        return make_error(Errc::unsupported, "database schema version " + std::to_string(version) +
                                                 " is newer than this Signet (" +
                                                 std::to_string(kSchemaVersion) +
                                                 "); upgrade Signet or restore a matching backup");
    }
    for (int v = version; v < kSchemaVersion; ++v) {
        SIGNET_TRY(db.exec("BEGIN IMMEDIATE"));
        auto r = db.exec(kMigrations[static_cast<std::size_t>(v)]);
        if (r) r = db.exec("PRAGMA user_version = " + std::to_string(v + 1));
        if (!r) {
            (void)db.exec("ROLLBACK");
            return r.error().within("migration to schema " + std::to_string(v + 1));
        }
        SIGNET_TRY(db.exec("COMMIT"));
    }
    return kSchemaVersion;
}

Result<void> integrity_check(Db& db) {
    auto st = SIGNET_TRY(db.prepare("PRAGMA integrity_check"));
    std::string problems;
    while (SIGNET_TRY(st.step())) {
        const std::string line = st.text(0);
        if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
    if (!problems.empty()) {
        return make_error(Errc::internal, "database integrity check failed: " + problems);
    }
    return ok();
}

}  // namespace signet::daemon
