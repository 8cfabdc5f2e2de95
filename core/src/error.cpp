#include "signet/core/error.hpp"

#include <boost/throw_exception.hpp>

namespace signet {
namespace {

class SignetCategory final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "signet"; }
    std::string message(int ev) const override { return errc_name(static_cast<Errc>(ev)); }
};

}  // namespace

const boost::system::error_category& signet_category() noexcept {
    static const SignetCategory category;
    return category;
}

boost::system::error_code make_error_code(Errc e) noexcept {
    return {static_cast<int>(e), signet_category()};
}

const char* errc_name(Errc e) noexcept {
    switch (e) {
        case Errc::invalid_argument: return "invalid_argument";
        case Errc::not_found: return "not_found";
        case Errc::already_exists: return "already_exists";
        case Errc::unsupported: return "unsupported";
        case Errc::not_replicable: return "not_replicable";
        case Errc::permission_denied: return "permission_denied";
        case Errc::unavailable: return "unavailable";
        case Errc::self_test_failed: return "self_test_failed";
        case Errc::io_error: return "io_error";
        case Errc::internal: return "internal";
        case Errc::verification_failed: return "verification_failed";
        case Errc::unauthenticated: return "unauthenticated";
        case Errc::forbidden: return "forbidden";
        case Errc::policy_denied: return "policy_denied";
        case Errc::rate_limited: return "rate_limited";
        case Errc::key_disabled: return "key_disabled";
        case Errc::watermark_regression: return "watermark_regression";
        case Errc::reservation_invalid: return "reservation_invalid";
        case Errc::conflict: return "conflict";
        case Errc::unprocessable: return "unprocessable";
        case Errc::payload_too_large: return "payload_too_large";
        case Errc::overloaded: return "overloaded";
        case Errc::not_ready: return "not_ready";
        case Errc::bad_request: return "bad_request";
    }
    return "unknown";
}

std::string Error::message() const {
    std::string out = context;
    if (!out.empty()) out += ": ";
    out += code.message();
    return out;
}

Error Error::within(std::string_view outer) const {
    std::string ctx(outer);
    if (!context.empty()) {
        ctx += ": ";
        ctx += context;
    }
    return Error{code, std::move(ctx)};
}

ErrorException::ErrorException(Error e) : std::runtime_error(e.message()), error_(std::move(e)) {}

void throw_exception_from_error(const Error& e, const boost::source_location& loc) {
    boost::throw_exception(ErrorException(e), loc);
}

}  // namespace signet
