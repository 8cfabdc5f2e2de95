// SQLite access: one owner per sqlite3* and sqlite3_stmt*, an error category ("sqlite") that keeps
// the extended result code, and small helpers for binding and stepping.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"

namespace signet::daemon {

enum class SqliteRc : int {};  // value() == the extended SQLite result code
const boost::system::error_category& sqlite_category() noexcept;
boost::system::error_code make_error_code(SqliteRc rc) noexcept;

struct SqliteClose {
    void operator()(sqlite3* p) const noexcept { sqlite3_close_v2(p); }
};
using DbPtr = std::unique_ptr<sqlite3, SqliteClose>;

class Statement {
public:
    Statement(sqlite3* db, sqlite3_stmt* stmt) noexcept : db_(db), stmt_(stmt) {}
    Statement(Statement&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
    Statement& operator=(Statement&&) = delete;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    ~Statement() { sqlite3_finalize(stmt_); }

    // Binds by 1-based index. Text and blobs are copied (SQLITE_TRANSIENT).
    Statement& bind(int i, std::int64_t v);
    Statement& bind(int i, std::uint64_t v) { return bind(i, static_cast<std::int64_t>(v)); }
    Statement& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
    Statement& bind(int i, std::string_view v);
    Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, ByteView v);
    Statement& bind(int i, const Bytes& v) { return bind(i, ByteView(v)); }
    Statement& bind_null(int i);
    template <class T>
    Statement& bind(int i, const std::optional<T>& v) {
        return v ? bind(i, *v) : bind_null(i);
    }

    // true: a row is available; false: done. Errors carry the SQL's context.
    [[nodiscard]] Result<bool> step();
    // Steps to completion (statements without rows).
    [[nodiscard]] Result<void> run();
    void reset() noexcept;

    [[nodiscard]] std::int64_t int64(int col) const noexcept;
    [[nodiscard]] std::uint64_t uint64(int col) const noexcept {
        return static_cast<std::uint64_t>(int64(col));
    }
    [[nodiscard]] std::string text(int col) const;
    [[nodiscard]] Bytes blob(int col) const;
    [[nodiscard]] bool is_null(int col) const noexcept;

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_;
};

// A statement from Db::cached(): reset (bindings cleared) when the reference goes away.
class StatementRef {
public:
    explicit StatementRef(Statement& s) noexcept : s_(&s) {}
    StatementRef(StatementRef&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
    StatementRef& operator=(StatementRef&&) = delete;
    ~StatementRef() {
        if (s_) s_->reset();
    }
    Statement* operator->() const noexcept { return s_; }
    Statement& operator*() const noexcept { return *s_; }

private:
    Statement* s_;
};

// Callbacks of one piece of Committer work (see Db::on_commit / on_rollback).
struct TxnHooks {
    std::vector<std::function<void()>> on_commit;
    std::vector<std::function<void()>> on_rollback;
};

// One connection. Not thread-safe: each owner uses it from one thread at a time.
class Db {
public:
    // Opens (creating when `create`) the database in WAL mode with synchronous=FULL (every commit
    // is fsync'd before it returns), foreign keys on and a busy timeout.
    [[nodiscard]] static Result<Db> open(const std::filesystem::path& path, bool create);

    [[nodiscard]] Result<Statement> prepare(std::string_view sql);
    // A prepared statement kept for the connection's life (hot paths).
    [[nodiscard]] Result<StatementRef> cached(std::string_view sql);
    // Runs one or more statements without results.
    [[nodiscard]] Result<void> exec(std::string_view sql);
    // Rows changed by the last statement.
    [[nodiscard]] std::int64_t changes() const noexcept;
    [[nodiscard]] sqlite3* handle() const noexcept { return db_.get(); }

    // Inside a Committer work: `f` runs after the transaction holding the work commits, or after
    // the work's changes are rolled back (its savepoint, or the whole transaction). Lets in-memory
    // state follow exactly what became durable. Outside a Committer work, on_commit runs `f` at
    // once and on_rollback drops it (autocommit).
    void on_commit(std::function<void()> f);
    void on_rollback(std::function<void()> f);
    void set_hooks(TxnHooks* hooks) noexcept { hooks_ = hooks; }  // the Committer's business
    [[nodiscard]] Error error(int rc, std::string_view what) const;

private:
    explicit Db(DbPtr db) : db_(std::move(db)) {}
    DbPtr db_;
    TxnHooks* hooks_ = nullptr;
    // Declared after db_: statements are finalized before the connection closes.
    std::map<std::string, std::unique_ptr<Statement>, std::less<>> cache_;
};

// Applies every migration newer than the database's schema version (PRAGMA user_version), each in
// its own transaction, then runs PRAGMA integrity_check. Refuses a database from a newer Signet.
[[nodiscard]] Result<int> migrate(Db& db);
[[nodiscard]] Result<void> integrity_check(Db& db);
inline constexpr int kSchemaVersion = 2;

}  // namespace signet::daemon

template <>
struct boost::system::is_error_code_enum<signet::daemon::SqliteRc> : std::true_type {};
