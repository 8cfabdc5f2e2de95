#include "signet/web/errors.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <cstring>

namespace signet::web {
namespace {

// Raw CK_RV values (PKCS#11 v2.40 §11.1) for the HSM conditions a retry may cure. web/ sees the
// pkcs11 category only by name, so it cannot include the Cryptoki header (dependency direction).
constexpr int kCkrDeviceError = 0x30;
constexpr int kCkrDeviceRemoved = 0x32;
constexpr int kCkrSessionFirst = 0xB0;  // CKR_SESSION_CLOSED
constexpr int kCkrSessionLast = 0xB8;   // CKR_SESSION_READ_WRITE_SO_EXISTS
constexpr int kCkrTokenNotPresent = 0xE0;

// Retry-After for every retryable refusal: short, because admission and rate limits recover
// quickly and a client backing off longer is its own choice.
constexpr int kRetryAfterSeconds = 1;

bool hsm_retryable(int ckr) noexcept {
    return ckr == kCkrDeviceError || ckr == kCkrDeviceRemoved || ckr == kCkrTokenNotPresent ||
           (ckr >= kCkrSessionFirst && ckr <= kCkrSessionLast);
}

std::string signet_message(const Error& e, Errc errc, int status) {
    // 500s are bugs or local failures whose context (paths, operations) is for the log only.
    if (status == 500) return "internal error";
    if (!e.context.empty()) return e.context;
    return errc_name(errc);
}

// Stable API codes of signet::ha::HaErrc conditions, from the category's own names (web/ does not
// see the enum): the role conditions keep their name, the rest say what a client can do.
std::string ha_code(const boost::system::error_code& code) {
    const std::string name = code.message();
    if (name == "not_active" || name == "fenced" || name == "allocation_stopped") return name;
    if (name == "conflict") return "conflict_retry";
    return "coordinator_unavailable";
}

}  // namespace

int http_status(Errc e) noexcept {
    switch (e) {
        case Errc::invalid_argument:
        case Errc::bad_request: return 400;
        case Errc::unauthenticated: return 401;
        case Errc::forbidden:
        case Errc::policy_denied:
        case Errc::permission_denied: return 403;
        case Errc::not_found: return 404;
        case Errc::already_exists:
        case Errc::conflict:
        case Errc::key_disabled:
        case Errc::watermark_regression:
        case Errc::reservation_invalid: return 409;
        case Errc::payload_too_large: return 413;
        case Errc::unprocessable:
        case Errc::unsupported:
        case Errc::not_replicable: return 422;
        case Errc::rate_limited: return 429;
        case Errc::overloaded:
        case Errc::not_ready:
        case Errc::unavailable:
        case Errc::self_test_failed: return 503;
        case Errc::io_error:
        case Errc::internal:
        case Errc::verification_failed: return 500;
    }
    return 500;
}

ApiError to_api_error(const Error& e) {
    ApiError out;
    const auto& cat = e.code.category();
    if (cat == signet_category()) {
        const auto errc = static_cast<Errc>(e.code.value());
        out.status = http_status(errc);
        out.code = errc_name(errc);
        out.message = signet_message(e, errc, out.status);
        if (out.status == 503 || out.status == 429) out.retry_after_seconds = kRetryAfterSeconds;
    } else if (std::strcmp(cat.name(), "pkcs11") == 0) {
        // The CKR name is safe and useful to show; the operation context stays in the log.
        if (hsm_retryable(e.code.value())) {
            out = {503, "hsm_unavailable", "the HSM is unavailable (" + e.code.message() + ")",
                   kRetryAfterSeconds};
        } else {
            out = {
                500, "hsm_error", "the HSM refused the operation (" + e.code.message() + ")", {}};
        }
    } else if (std::strcmp(cat.name(), "ha") == 0) {
        // Pair conditions (signet::ha::HaErrc, seen here by name: web/ does not depend on ha/).
        // All are "try again, maybe elsewhere": the message names the active when known.
        out = {503, ha_code(e.code), e.context.empty() ? e.code.message() : e.context,
               kRetryAfterSeconds};
    } else {
        out = {500, "internal", "internal error", {}};
    }
    return out;
}

Response error_response(const ApiError& e, std::string_view request_id) {
    Response r;
    r.status = e.status;
    r.content_type = "application/json";
    boost::json::object inner;
    inner["code"] = e.code;
    inner["message"] = e.message;
    inner["request_id"] = request_id;
    boost::json::object outer;
    outer["error"] = std::move(inner);
    r.body = boost::json::serialize(outer);
    if (e.retry_after_seconds) r.headers["Retry-After"] = std::to_string(*e.retry_after_seconds);
    return r;
}

Response error_response(const Error& e, std::string_view request_id) {
    return error_response(to_api_error(e), request_id);
}

}  // namespace signet::web
