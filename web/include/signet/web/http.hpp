// Plain request/response values that handlers see. No Beast type crosses this header, so route
// handlers (and the REST API) compile without Beast.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace signet::web {

// Header names compare case-insensitively.
struct CaseInsensitiveLess {
    bool operator()(std::string_view a, std::string_view b) const noexcept;
    using is_transparent = void;
};
using Headers = std::map<std::string, std::string, CaseInsensitiveLess>;

struct Request {
    std::string method;                         // "GET", "POST", ...
    std::string target;                         // raw request target, e.g. "/v1/keys?x=1"
    std::string path;                           // percent-decoded path without the query
    std::map<std::string, std::string> query;   // decoded query parameters (last one wins)
    std::map<std::string, std::string> params;  // path parameters bound by the router ({id})
    Headers headers;
    std::string body;
    std::string remote;  // "ip:port" of the peer
    bool tls = false;
    // SHA-256 (lower-case hex) of the DER client certificate, when the peer presented one.
    std::optional<std::string> client_cert_sha256;
    std::string request_id;  // assigned by the server (or X-Request-Id if sane)

    [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
};

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    Headers headers;  // extra headers (Retry-After, Location, ...)
    std::string body;
};

}  // namespace signet::web
