// Forced promotion of the survivor of a pair without a witness (docs/ha.md, "Force promotion").
// Offline: signetd must be stopped on this appliance (the data directory's lock is taken), the
// peer fenced by the operator (powered off, or cut off from the survivor and its clients), and
// this appliance's etcd member re-formed as a one-member cluster (`etcd --force-new-cluster`).
//
// Why counters are bumped: with two voters, a value block the peer took was committed only once
// both members had its entry, but the survivor may not yet have learned that it was committed;
// `--force-new-cluster` drops entries the member has not seen committed. So the survivor's etcd
// can lag what the peer issued by the transactions in flight at the peer's loss: at most a couple
// of blocks or batches per counter. Every counter is raised by kMarginBlocks x the largest block
// or batch, which is more than that.
#pragma once

#include <boost/json/object.hpp>
#include <string>

#include "config.hpp"

namespace signet::daemon {

struct ForcePromoteOptions {
    bool peer_fenced = false;         // the operator confirms the peer cannot sign
    bool confirm_watermarks = false;  // the operator accepts the watermark caveat (docs)
};

inline constexpr std::uint64_t kMarginBlocks = 4;

// Raises every counter of the pair by the margin, removes the peer's leader and member keys, and
// records the promotion in etcd and in the local audit log. Refuses (changing nothing) when the
// peer is not confirmed fenced, signetd runs on this data directory, etcd cannot be written, or
// watermarks exist and are not confirmed. Returns what was done, for printing.
[[nodiscard]] Result<boost::json::object> force_promote(const Config& c,
                                                        const ForcePromoteOptions& o);

}  // namespace signet::daemon
