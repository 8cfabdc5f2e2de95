// Coordinator port: the only way the HA logic reaches the distributed engine. Its vocabulary is
// etcd v3's (a multi-version key-value store with one store revision, leases, compare-and-swap
// transactions and watches) because etcd is the engine; the logic never implements consensus.
// Real adapter: EtcdCoordinator (etcd_coordinator.hpp). Tests: a fake with injectable faults
// (tests/support/fake_coordinator.hpp).
//
// Outcomes: a call either succeeds, fails with HaErrc::outcome_unknown (the request may or may not
// have been applied: a deadline or connection loss after it was sent), or fails with another code
// meaning it was certainly not applied (Errc::unavailable for "could not reach a member",
// HaErrc::lease_not_found, ...). Callers that change state must treat outcome_unknown as "maybe
// applied": the nonce allocator burns the values of such a transaction, never reuses them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "signet/core/result.hpp"

namespace signet::ha {

// HA error conditions (category "ha"). Values are stable: they are logged and shown in API errors.
enum class HaErrc : int {
    outcome_unknown = 1,     // sent, but no answer: the change may or may not have been applied
    lease_not_found = 2,     // the lease expired or was revoked
    compacted = 3,           // a watch asked for a revision the store has compacted away
    not_active = 4,          // this appliance does not hold the active role (hot-standby)
    fenced = 5,              // the role's lease cannot be proven valid by CLOCK_MONOTONIC
    allocation_stopped = 6,  // quorum lost: the held block is used up and no new one can be had
    conflict = 7,            // a compare-and-swap kept losing against a concurrent writer
};
const boost::system::error_category& ha_category() noexcept;
boost::system::error_code make_error_code(HaErrc e) noexcept;
const char* ha_errc_name(HaErrc e) noexcept;

using Milliseconds = std::chrono::milliseconds;

struct KeyValue {
    std::string key;
    std::string value;
    std::int64_t create_revision = 0;  // 0: the key does not exist
    std::int64_t mod_revision = 0;
    std::int64_t version = 0;
    std::int64_t lease = 0;  // 0: none
};

// One comparison of a transaction's guard (etcd Compare). A missing key compares as
// create_revision = mod_revision = version = 0; a value compare on a missing key always fails
// (etcd's rule), so "value equals X" also asserts that the key exists.
struct Compare {
    enum class Target { value, version, create_revision, mod_revision, lease };
    enum class Op { equal, not_equal, greater, less };
    std::string key;
    Target target = Target::mod_revision;
    Op op = Op::equal;
    std::string value;        // for Target::value
    std::int64_t number = 0;  // for the other targets

    [[nodiscard]] static Compare value_equals(std::string key, std::string value);
    [[nodiscard]] static Compare mod_revision_equals(std::string key, std::int64_t rev);
    [[nodiscard]] static Compare create_revision_equals(std::string key, std::int64_t rev);
    [[nodiscard]] static Compare absent(std::string key);  // create_revision == 0
};

// One operation of a transaction branch (etcd RequestOp).
struct Op {
    enum class Kind { get, put, del };
    Kind kind = Kind::get;
    std::string key;
    std::string range_end;  // get/del: non-empty selects [key, range_end) (prefix_end(key): prefix)
    std::string value;      // put
    std::int64_t lease = 0;  // put: attach to this lease (0: none)

    [[nodiscard]] static Op get(std::string key, std::string range_end = {});
    [[nodiscard]] static Op put(std::string key, std::string value, std::int64_t lease = 0);
    [[nodiscard]] static Op del(std::string key, std::string range_end = {});
};

struct TxnRequest {
    std::vector<Compare> compare;  // all must hold for `success` to run
    std::vector<Op> success;
    std::vector<Op> failure;
};

struct TxnResponse {
    bool succeeded = false;
    std::int64_t revision = 0;  // the store revision after the transaction (header.revision)
    // One entry per operation of the branch that ran; filled for gets (the keys read), empty for
    // puts and deletes.
    std::vector<std::vector<KeyValue>> results;
};

struct RangeResponse {
    std::vector<KeyValue> kvs;
    std::int64_t revision = 0;  // the store revision the read saw
};

struct Lease {
    std::int64_t id = 0;
    Milliseconds ttl{0};  // as granted by the engine (it may round a requested TTL up)
};

struct WatchEvent {
    enum class Type { put, del };
    Type type = Type::put;
    KeyValue kv;  // for del: key and mod_revision only
};

// A live watch; destroying it cancels the stream (the callback is not called after the destructor
// returns).
class Watch {
public:
    virtual ~Watch() = default;
};

struct WatchHandlers {
    // Events in revision order; several events of one revision arrive in one call.
    std::function<void(const std::vector<WatchEvent>&, std::int64_t revision)> on_events;
    // The stream ended (engine unreachable, compacted, cancelled by the engine). No more calls
    // follow; the owner re-reads and re-watches from the revision it has applied.
    std::function<void(const Error&)> on_error;
};

struct MemberStatus {
    std::string name;
    std::string client_url;
    bool reachable = false;
    bool is_leader = false;
    std::int64_t raft_term = 0;
    Milliseconds latency{0};  // status round trip
    std::string error;        // why unreachable
};

class Coordinator {
public:
    virtual ~Coordinator() = default;

    // A linearizable read of [key, range_end) (range_end empty: just `key`).
    [[nodiscard]] virtual Result<RangeResponse> range(const std::string& key,
                                                      const std::string& range_end,
                                                      Milliseconds timeout) = 0;
    // An atomic compare-then-branch. Never retried internally (it is not idempotent in general).
    [[nodiscard]] virtual Result<TxnResponse> txn(const TxnRequest& request,
                                                  Milliseconds timeout) = 0;

    [[nodiscard]] virtual Result<Lease> lease_grant(Milliseconds ttl, Milliseconds timeout) = 0;
    // Renews the lease; returns the TTL granted from now. HaErrc::lease_not_found when it expired.
    [[nodiscard]] virtual Result<Milliseconds> lease_keepalive(std::int64_t lease_id,
                                                               Milliseconds timeout) = 0;
    [[nodiscard]] virtual Result<void> lease_revoke(std::int64_t lease_id,
                                                    Milliseconds timeout) = 0;

    // Streams changes of [key, range_end) from `start_revision` (0: from now). Handlers run on a
    // thread of the coordinator, one call at a time, and must not block for long.
    [[nodiscard]] virtual Result<std::unique_ptr<Watch>> watch(const std::string& key,
                                                               const std::string& range_end,
                                                               std::int64_t start_revision,
                                                               WatchHandlers handlers) = 0;

    // Health of every configured member (for status pages and metrics; never for safety).
    [[nodiscard]] virtual std::vector<MemberStatus> members(Milliseconds timeout) = 0;
};

// The smallest key greater than every key starting with `prefix` (etcd's prefix range_end).
[[nodiscard]] std::string prefix_end(const std::string& prefix);

}  // namespace signet::ha

template <>
struct boost::system::is_error_code_enum<signet::ha::HaErrc> : std::true_type {};
