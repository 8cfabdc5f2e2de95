// Re-joining a pair after a forced promotion (docs/ha.md, "Re-joining after a forced promotion").
// `signetctl ha force-promote` marks every other appliance of the pair fenced at
// <prefix>fenced/<name>. The fenced appliance's store and HSM hold state from before the
// promotion (catalog, counter floors, held blocks, keys), which the survivor has moved past, so:
//   - signetd refuses to start on a store that was in the pair before, naming the promotion and
//     the guide;
//   - started on a store that was never in the pair, it joins as a new appliance and the mark is
//     removed;
//   - `signetctl ha rejoin --config FILE` checks each step on this appliance and prints what is
//     left to do.
#pragma once

#include <boost/json/object.hpp>
#include <string>
#include <vector>

#include "config.hpp"
#include "signet/ha/coordinator.hpp"

namespace signet::daemon {

// Every other appliance etcd knows of (published addresses and pairing transport keys).
[[nodiscard]] Result<std::vector<std::string>> other_appliances(ha::Coordinator& etcd,
                                                                const Config& c);
// The operations that mark `names` fenced by the promotion `record` (JSON text) and remove their
// published addresses.
[[nodiscard]] std::vector<ha::Op> fence_marks(const Config& c,
                                              const std::vector<std::string>& names,
                                              const std::string& record);

// At start, in a pair: refuses (Errc::conflict, with the steps to take) when this appliance is
// marked fenced and its store was in the pair before this start (`store_was_in_pair`); otherwise
// removes the mark, if any, and returns whether there was one.
[[nodiscard]] Result<bool> clear_fence_if_new(ha::Coordinator& etcd, const Config& c,
                                              bool store_was_in_pair);

// The re-join guide for this appliance: {"appliance", "cluster", "fenced": {...} or null,
// "ready": bool, "steps": [{"step", "done", "how"}]}. Offline: signetd must be stopped.
[[nodiscard]] Result<boost::json::object> rejoin_guide(const Config& c);

}  // namespace signet::daemon
