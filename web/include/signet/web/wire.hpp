// Conversions between Beast messages and the plain Request/Response values, shared by the server,
// the client and their tests. This header pulls in Beast: route handlers never include it.
#pragma once

#include <openssl/types.h>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "signet/core/result.hpp"
#include "signet/web/errors.hpp"
#include "signet/web/http.hpp"

namespace signet::web::wire {

using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;
using BeastResponse = boost::beast::http::response<boost::beast::http::string_body>;
using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

struct Limits {
    std::size_t max_header_bytes = 8 * 1024;  // request line + header fields
    std::size_t max_body_bytes = 1024 * 1024;
};

// Applies the limits to a fresh parser (a parser reads exactly one message).
void apply_limits(RequestParser& parser, const Limits& limits);

// What to answer when reading a request failed: 431 for a header beyond the limit, 413 for a body
// beyond it, 400 for malformed HTTP. nullopt when nobody is there to answer (end of stream, reset,
// timeout, cancellation): the connection just closes.
[[nodiscard]] std::optional<ApiError> read_failure(const boost::system::error_code& ec);

// True for a client-supplied X-Request-Id the server may adopt: [A-Za-z0-9._-]{1,64}.
[[nodiscard]] bool is_sane_request_id(std::string_view id) noexcept;
// A fresh request id: 16 random bytes as 32 lower-case hex digits.
[[nodiscard]] std::string new_request_id();
// The client's X-Request-Id when sane, otherwise a fresh id.
[[nodiscard]] std::string request_id_for(const BeastRequest& msg);

// Converts a parsed request, moving its body. The target must be origin-form ("/path?query");
// anything else (absolute-form, '*', bad percent-encoding) is Errc::bad_request. Repeated header
// fields are joined with ", " (RFC 9110 §5.3). remote, tls, client_cert_sha256 and request_id are
// left for the caller.
[[nodiscard]] Result<Request> to_request(BeastRequest&& msg);

struct ResponseContext {
    unsigned version = 11;                     // HTTP version of the request being answered
    bool keep_alive = true;                    // false: "Connection: close"
    std::string_view request_id;               // echoed as X-Request-Id
    const Headers* default_headers = nullptr;  // applied first; the handler's headers override
};

// Builds the wire response: default headers, then the handler's headers (hop-by-hop fields such as
// Connection, Content-Length and Transfer-Encoding are the server's and are dropped), then
// Content-Type and X-Request-Id; Content-Length is computed.
[[nodiscard]] BeastResponse to_beast(Response&& r, const ResponseContext& ctx);

// Client side: a request with Host, the given headers and body (Content-Length computed).
[[nodiscard]] BeastRequest make_request(std::string_view method, std::string_view target,
                                        std::string body, const Headers& headers,
                                        std::string_view host);
// Client side: the plain Response for a received message (moves the body).
[[nodiscard]] Response from_beast(BeastResponse&& msg);

// A bounded metric label for a request method: the standard method name, or "other".
[[nodiscard]] std::string_view method_label(std::string_view method) noexcept;

// Lower-case hex SHA-256 of the certificate's DER encoding (pinning and client identity).
[[nodiscard]] std::string certificate_sha256(X509* cert);

}  // namespace signet::web::wire
