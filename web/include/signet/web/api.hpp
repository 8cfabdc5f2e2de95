// The REST API v1: adds every /v1 route, /metrics and /v1/openapi.json to a Router. Handlers parse
// and validate JSON (400 on malformed input, unknown members or wrong types), authenticate through
// the Service, call it, and render its results or errors (errors.hpp).
#pragma once

#include <memory>

#include "signet/web/forwarder.hpp"
#include "signet/web/metrics.hpp"
#include "signet/web/router.hpp"
#include "signet/web/service.hpp"

namespace signet::web {

struct ApiOptions {
    std::size_t batch_max = 256;  // digests per sign-batch request
    // In a pair: sends signing requests this appliance cannot serve to the peer (route_signing).
    // Null: they are refused here with the reason (e.g. 503 not_active naming the active).
    std::shared_ptr<PeerForwarder> forwarder;
};

void add_api_routes(Router& router, std::shared_ptr<Service> service,
                    std::shared_ptr<Registry> metrics, ApiOptions options = {});

// The OpenAPI 3 document served at /v1/openapi.json.
[[nodiscard]] const std::string& openapi_document();

}  // namespace signet::web
