// Internal to backup.cpp and restore.cpp: what both read from a store (its counters, watermarks,
// pair and audit head, in one snapshot), the offline audit check, and the file handling of a store
// with its SQLite sidecars. Defined in backup.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "db.hpp"
#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"
#include "signet/web/service.hpp"
#include "watermark_guard.hpp"

namespace signet::daemon::detail {

// The meta row saying when a backup was taken; a restored store drops it.
inline constexpr std::string_view kTakenAtMeta = "backup.taken_at";

struct MarkRow {
    Watermark watermark;
    Bytes payload_hash;
    std::string updated_at;
};

// What restore compares between the backup and the current store, from one read snapshot.
struct StoreState {
    int schema = 0;
    std::map<std::string, std::uint64_t> counters;
    std::map<std::string, MarkRow> watermarks;
    std::optional<std::string> cluster;   // meta 'ha.cluster'
    std::optional<std::string> taken_at;  // meta 'backup.taken_at' (backups only)
    std::optional<std::pair<std::uint64_t, Bytes>> head;
};

// PRAGMA user_version.
[[nodiscard]] Result<int> schema_version(Db& db);
// The store's state in one read transaction of its own.
[[nodiscard]] Result<StoreState> read_state(Db& db);
// Offline check of a store's audit log (chain and checkpoint signatures), naming the first bad
// record; `what` names the store in the error.
[[nodiscard]] Result<web::AuditVerification> verify_audit(Db& db, const std::string& what);

// fsync of a file or directory.
[[nodiscard]] Result<void> fsync_path(const std::filesystem::path& p);
// `db` with `suffix` appended ("-wal", "-shm", "-journal").
[[nodiscard]] std::filesystem::path sidecar(const std::filesystem::path& db,
                                            std::string_view suffix);
// Removes `db` and its sidecars, ignoring what is absent.
void remove_with_sidecars(const std::filesystem::path& db);

}  // namespace signet::daemon::detail
