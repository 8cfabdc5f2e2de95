// NonceAllocator: per-counter values shared by the appliances of a pair (DESIGN §3, G1-G3).
//
// Each counter is one key `<prefix>counters/<name>` whose value is the decimal high-water mark:
// every value at or below it may have been handed out by some appliance and is never issued again.
// Every change is a compare-and-swap on the key's mod revision plus the fence's guard, and the
// transaction's failure branch reads the key back, so a lost race costs no extra round trip.
//
// fast:   this appliance takes blocks of `block_size` values (one CAS each) and hands them out
//         from memory; when half of a block is used a refill runs on the executor, so signing does
//         not wait on etcd. Values are unique and strictly increasing per appliance.
// strict: callers wait for a batch: one CAS per batch of concurrent requests, values taken from the
//         high-water mark in that transaction, so values are strictly increasing in real time
//         across both appliances (a request that completed before another began got a smaller
//         value). A batch whose CAS lost takes in the callers that queued meanwhile before it
//         retries; the next batch's txn may run while a committed batch is recorded (on_reserve).
//
// A transaction whose outcome is unknown burns every value it may have taken: they are reported
// through the burn callback (audit) and never issued. Values are returned only after the
// transaction that reserved them is committed by a quorum (G2 for the counter itself).
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

enum class AllocationMode { fast, strict };
[[nodiscard]] std::string_view to_string(AllocationMode m) noexcept;
[[nodiscard]] std::optional<AllocationMode> parse_allocation_mode(std::string_view s) noexcept;

// Runs work on another thread. Tests pass one that queues work for them to run.
using Executor = std::function<void(std::function<void()>)>;

struct AllocatorOptions {
    std::string prefix;  // keyspace prefix, e.g. "/signet/pair-1/"
    AllocationMode mode = AllocationMode::fast;
    std::uint64_t block_size = 1000;  // fast: values per block
    std::size_t max_batch = 1024;     // strict: requests per transaction
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
    // the allocating thread and must not call back into the allocator. Strict mode calls it after
    // the counter's next batch may have started (no lock held), so calls for one counter can
    // overlap and finish out of order: the callback must keep every range it was given.
    void on_reserve(
        std::function<void(const std::string& counter, std::uint64_t first, std::uint64_t last)>
            callback);

    [[nodiscard]] AllocatorStats stats() const;
    // strict: callers of next(counter) queued for the next batch's transaction (metrics, tests).
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

}  // namespace signet::ha
