// JSON forms shared by the REST API and the daemon's store (one codec, so the stored policy and the
// API's policy can never drift apart).
#pragma once

#include <boost/json/value.hpp>

#include "signet/core/result.hpp"
#include "signet/web/service.hpp"

namespace signet::web {

[[nodiscard]] boost::json::value policy_to_json(const KeyPolicy& p);
// Validates types and values: operations from {sign, verify, reserve}, non-negative finite rates,
// client ids as strings. Unknown members are invalid_argument (typos must not weaken a policy).
[[nodiscard]] Result<KeyPolicy> policy_from_json(const boost::json::value& v);

}  // namespace signet::web
