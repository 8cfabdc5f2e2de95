// Backup and restore of the appliance's store (docs/ha.md, "Backup and restore").
//
// A backup is a consistent copy of the SQLite store: the catalog (public keys, HSM object ids,
// policies), clients (token hashes only), counters, watermarks, reservations and the audit log with
// its checkpoints. Private keys never leave the HSM: a backup is useful only beside the same HSM.
//
// Invariant of restore: no counter and no watermark ends below a value that may have been issued
// or signed since the backup (G1, and the watermark guard). The backup's counters are the
// high-water marks at the instant it was taken; whatever was issued later is missing from it. So a
// restore takes max(backup, current store) per counter and watermark when the current store can be
// read (exact), raises every counter by an operator-chosen margin when it cannot, and otherwise
// refuses. The audit log never goes back either: when the current store's log extends the
// backup's, it is kept (with the HSM's checkpoint anchor still valid).
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>

#include "signet/core/clock.hpp"
#include "signet/core/result.hpp"

namespace signet::daemon {

// Copies the store `db` into `out` with SQLite's online backup API in one read snapshot, so it is
// safe while signetd runs (WAL: the daemon keeps committing). `out` is created with mode 0600 and
// refused when it exists; the copy is a self-contained file (no -wal), integrity-checked, its
// audit chain verified, fsync'd. Returns the file, the time, and every counter's and watermark's
// value in the snapshot.
[[nodiscard]] Result<boost::json::object> backup_store(const std::filesystem::path& db,
                                                       const std::filesystem::path& out,
                                                       const Clock& clock);

struct RestoreOptions {
    std::filesystem::path backup;
    std::filesystem::path data_dir;
    // Added to every counter (after the max with the current store, when it is readable).
    std::optional<std::uint64_t> counter_margin;
    // Added to the first component of every watermark (height), when the current store is not
    // readable; the payload hash is cleared so the raised watermark itself is refused too.
    std::optional<std::uint64_t> watermark_margin;
    // The operator confirms that nothing was issued or signed since the backup was taken (e.g. it
    // was taken with signetd stopped and it has not run since): no margin is needed.
    bool confirm_counters = false;
};

// Offline (takes <data_dir>/signetd.lock: refused while signetd runs). Checks the backup
// (integrity, schema not newer than this Signet, audit chain), builds the new store beside the
// current one, raises counters and watermarks as described above, carries forward revocations,
// disables, destructions and the audit log from a readable current store, appends a
// "store.restored" audit record, then moves the current store aside (signet.db.pre-restore-<time>)
// and installs the new one. Refuses, changing nothing, when neither the current store nor a margin
// (or confirmation) bounds what may have been issued since the backup. Returns what was done, for
// printing.
[[nodiscard]] Result<boost::json::object> restore_store(const RestoreOptions& o,
                                                        const Clock& clock);

}  // namespace signet::daemon
