// etcd v3 JSON gateway documents: building requests and reading responses. Facts of the wire
// format (etcd 3.4.23, checked against the real server): keys and values are base64; int64
// fields are JSON strings; fields holding their default (0, false, "", empty list) are omitted,
// so a failed txn has no "succeeded" and a PUT event has no "type"; errors are
// {"error": msg, "message": msg, "code": grpc_code} (unary) or {"error": {"grpc_code": ..,
// "message": ..}} (inside a stream).
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signet/ha/coordinator.hpp"

namespace signet::ha::detail {

// Request bodies.
[[nodiscard]] std::string range_request_json(const std::string& key, const std::string& range_end);
[[nodiscard]] std::string txn_request_json(const TxnRequest& request);
[[nodiscard]] std::string lease_grant_json(std::int64_t ttl_seconds);
[[nodiscard]] std::string lease_id_json(std::int64_t id);
[[nodiscard]] std::string watch_create_json(const std::string& key, const std::string& range_end,
                                            std::int64_t start_revision);

// An error reported by the gateway. `grpc_code` is the gRPC status code (3 invalid argument,
// 5 not found, 11 out of range, 14 unavailable, ...).
struct GatewayError {
    int grpc_code = 0;
    std::string message;
};
// The gateway error a document carries, if any.
[[nodiscard]] std::optional<GatewayError> find_gateway_error(const boost::json::value& doc);

// Parses a JSON text; bad_request (category signet) on malformed input.
[[nodiscard]] Result<boost::json::value> parse_json(std::string_view text);

// Responses. Errors are Errc::bad_request naming the field that did not have the expected form.
[[nodiscard]] Result<RangeResponse> parse_range_response(const boost::json::value& doc);
[[nodiscard]] Result<TxnResponse> parse_txn_response(const boost::json::value& doc,
                                                     const TxnRequest& request);
[[nodiscard]] Result<Lease> parse_lease_grant_response(const boost::json::value& doc);
// The TTL from now; 0 when the lease no longer exists (the gateway omits TTL then).
[[nodiscard]] Result<std::int64_t> parse_keepalive_ttl_seconds(const boost::json::value& doc);

struct StatusInfo {
    std::string member_id;
    std::string leader;
    std::int64_t raft_term = 0;
};
[[nodiscard]] Result<StatusInfo> parse_status_response(const boost::json::value& doc);

// One message of a watch stream ({"result": {...}}).
struct WatchMessage {
    bool created = false;
    bool canceled = false;
    std::int64_t compact_revision = 0;
    std::string cancel_reason;
    std::int64_t revision = 0;  // header.revision
    std::vector<WatchEvent> events;
};
[[nodiscard]] Result<WatchMessage> parse_watch_message(const boost::json::value& doc);

}  // namespace signet::ha::detail
