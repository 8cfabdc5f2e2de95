// API errors: every error a client can see has an HTTP status, a stable machine code and a human
// message: {"error":{"code":"...","message":"...","request_id":"..."}}.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "signet/core/error.hpp"
#include "signet/web/http.hpp"

namespace signet::web {

struct ApiError {
    int status = 500;
    std::string code;     // stable, snake_case
    std::string message;  // for humans; never contains secrets
    std::optional<int> retry_after_seconds;
};

// Maps an Error to what the client sees. Signet conditions (Errc) keep their name as the code and
// their context as the message, except 500s, which say only "internal error"; 429 and 503 carry
// Retry-After: 1. HSM (pkcs11 category) failures become 503 "hsm_unavailable" (CKR_DEVICE_ERROR,
// CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_SESSION_*) or 500 "hsm_error", with the CKR name
// but not the operation; anything else is 500 "internal" with a generic message (details go to
// the log, not the client).
[[nodiscard]] ApiError to_api_error(const Error& e);

// The JSON error response for `e`, with Retry-After when set.
[[nodiscard]] Response error_response(const ApiError& e, std::string_view request_id);
[[nodiscard]] Response error_response(const Error& e, std::string_view request_id);

// HTTP status for a Signet condition.
[[nodiscard]] int http_status(Errc e) noexcept;

}  // namespace signet::web
