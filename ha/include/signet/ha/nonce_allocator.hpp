// NonceAllocator: per-counter values shared by the appliances of a pair (DESIGN §3, G1-G3).
//
// Each counter is one key `<prefix>counters/<name>`. Its record stands for a high-water mark
// (counter_mark()): every value at or below it may have been handed out by some appliance and is
// never issued again. The record is either a decimal mark M, or "s<B>" (revision-derived, written
// by strict mode) whose mark is B + mod_revision * kStrictStride + kStrictStride - 1. Every change
// carries the fence's guard, and the transaction's failure branch reads the key back, so a lost
// race costs no extra round trip. The modes share one key and take over each other's records.
//
// fast:   this appliance takes blocks of `block_size` values (one CAS on the key's mod revision
//         each) and hands them out from memory; when half of a block is used a refill runs on the
//         executor, so signing does not wait on etcd. Values are unique and strictly increasing
//         per appliance.
// strict: callers wait for a batch; one transaction per batch puts "s<B>" under a compare of the
//         record's value (which only a raise or a mode change alters, so the two appliances'
//         batches do not conflict) and the batch's values are B + R * kStrictStride + i, i < the
//         batch size, R the transaction's store revision. etcd orders revisions in real time, so
//         values are strictly increasing in real time across both appliances (a request that
//         completed before another began got a smaller value). Values are sparse: the gaps between
//         batches were never reserved, so they are not burnt values. B never decreases and is at
//         least every mark the record stood for, so no value goes back.
// dense:  the same real-time order with consecutive values: one CAS on the mark per batch, values
//         taken from the mark in that transaction. The two appliances race for one key on every
//         batch, so a batch that lost retries (after taking in the callers that queued meanwhile).
// In strict and dense mode the next batch's txn may run while a committed batch is recorded
// (on_reserve).
//
// A fast or dense transaction whose outcome is unknown burns every value it may have taken: they
// are reported through the burn callback (audit) and never issued. (A strict one needs no burn:
// its values derive from its own revision, which no other transaction has.) Values are returned
// only after the transaction that reserved them is committed by a quorum (G2 for the counter
// itself).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/ha/coordinator.hpp"
#include "signet/ha/role.hpp"

namespace signet::ha {

enum class AllocationMode { fast, strict, dense };

// Strict mode: values per store revision; also the most values one strict batch takes.
inline constexpr std::uint64_t kStrictStride = 1000;
[[nodiscard]] std::string_view to_string(AllocationMode m) noexcept;
[[nodiscard]] std::optional<AllocationMode> parse_allocation_mode(std::string_view s) noexcept;

// Runs work on another thread. Tests pass one that queues work for them to run.
using Executor = std::function<void(std::function<void()>)>;

struct AllocatorOptions {
    std::string prefix;  // keyspace prefix, e.g. "/signet/pair-1/"
    AllocationMode mode = AllocationMode::fast;
    std::uint64_t block_size = 1000;  // fast: values per block
    std::size_t max_batch = 1000;     // strict (at most kStrictStride), dense: requests per txn
    Milliseconds txn_timeout{1000};
    int max_attempts = 16;  // CAS attempts per allocation before HaErrc::conflict
};

// Values that will never be issued: [first, last] of `counter`, and why.
struct BurntRange {
    std::string counter;
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    std::string reason;
};

struct AllocatorStats {
    std::uint64_t transactions = 0;  // allocation txns sent
    std::uint64_t conflicts = 0;     // CAS lost to another writer
    std::uint64_t unknown = 0;       // txns with unknown outcome
    std::uint64_t burnt = 0;         // values burnt
    std::uint64_t issued = 0;        // values handed out
};

// Thread-safe.
class NonceAllocator {
public:
    // `executor` runs fast-mode refills; null: refills run on the caller's thread when needed.
    NonceAllocator(std::shared_ptr<Coordinator> coordinator, std::shared_ptr<const Fence> fence,
                   AllocatorOptions options, Executor executor = {},
                   std::shared_ptr<Logger> logger = null_logger());
    ~NonceAllocator();

    // The next value of `counter`, greater than any value any appliance was given for it before.
    // Fails with the fence's error (not_active, fenced), HaErrc::allocation_stopped when no block
    // is held and none can be had, or the coordinator's error; a failure never consumes a value
    // that a later call could be given.
    [[nodiscard]] Result<std::uint64_t> next(const std::string& counter);

    // The committed high-water mark of `counter` (0: never allocated). A linearizable read.
    [[nodiscard]] Result<std::uint64_t> high_water(const std::string& counter);
    // Raises the mark to at least `floor` and drops this appliance's block for it (force-promote,
    // restore). Never lowers. Returns the mark after the call. Carries the fence's guard.
    [[nodiscard]] Result<std::uint64_t> raise(const std::string& counter, std::uint64_t floor);

    // Forgets every held block (role lost, mode switch, shutdown); their unused values are burnt.
    void drop_blocks(const std::string& reason);

    // Called for every burnt range (on the thread that noticed it), e.g. to write an audit record.
    void on_burn(std::function<void(const BurntRange&)> callback);
    // Called for every range [first, last] a committed transaction reserved for this appliance,
    // before any value of it is handed out (so a record of it can be made durable first). Runs on
    // the allocating thread and must not call back into the allocator. Strict and dense call it
    // after the counter's next batch may have started (no lock held), so calls for one counter can
    // overlap and finish out of order: the callback must keep every range it was given.
    void on_reserve(
        std::function<void(const std::string& counter, std::uint64_t first, std::uint64_t last)>
            callback);

    [[nodiscard]] AllocatorStats stats() const;
    // strict, dense: callers of next(counter) queued for the next batch's txn (metrics, tests).
    [[nodiscard]] std::size_t waiting(const std::string& counter) const;
    [[nodiscard]] AllocationMode mode() const noexcept { return options_.mode; }

private:
    struct State;
    std::shared_ptr<Coordinator> coordinator_;
    std::shared_ptr<const Fence> fence_;
    AllocatorOptions options_;
    Executor executor_;
    std::shared_ptr<Logger> logger_;
    std::shared_ptr<State> s_;  // shared with queued refills
};

// "<prefix>counters/<name>".
[[nodiscard]] std::string counter_key(const std::string& prefix, const std::string& name);

// The high-water mark a counter key's record stands for (see the top of this file); an empty
// value (absent key) is 0. Errc::internal for a record that is neither form.
[[nodiscard]] Result<std::uint64_t> counter_mark(const std::string& value,
                                                 std::int64_t mod_revision);

}  // namespace signet::ha
