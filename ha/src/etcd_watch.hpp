// Watches over the etcd JSON gateway: POST /v3/watch answers with a chunked stream of JSON
// documents ({"result": {"created": true}}, then {"result": {"events": [...]}} ...). Each watch
// owns one connection and one thread that reads the stream and runs the handlers.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "signet/ha/etcd_coordinator.hpp"

namespace signet::ha::detail {

struct WatchTarget {
    std::vector<EtcdEndpoint> endpoints;             // tried in order until one confirms the watch
    std::shared_ptr<boost::asio::ssl::context> tls;  // null: plain HTTP
    std::shared_ptr<Logger> logger;
    Milliseconds connect_timeout{300};
};

// Returns once a member confirmed the watch ("created"), so every change after the call returns
// is delivered. Errc::unavailable when no member confirmed it in time.
[[nodiscard]] Result<std::unique_ptr<Watch>> start_watch(const WatchTarget& target,
                                                         const std::string& key,
                                                         const std::string& range_end,
                                                         std::int64_t start_revision,
                                                         WatchHandlers handlers);

}  // namespace signet::ha::detail
