// Errors as values: signet::Error couples a boost::system::error_code (whose category keeps the raw
// foreign code: CKR_*, SQLite, errno, ...) with the operation that failed, so logs and API errors
// can say both what went wrong and where.
#pragma once

#include <boost/assert/source_location.hpp>
#include <boost/system/error_code.hpp>
#include <string>
#include <type_traits>

namespace signet {

// Signet's own error conditions (category "signet"). Values are stable: they are logged and mapped
// to API error codes.
enum class Errc : int {
    invalid_argument = 1,      // caller supplied malformed or out-of-range input
    not_found = 2,             // named object (token, key, file) does not exist
    already_exists = 3,        // object with that identity exists
    unsupported = 4,           // algorithm or operation not available with this key/module
    not_replicable = 5,        // key material cannot leave this HSM (module cannot wrap it)
    permission_denied = 6,     // file permissions or policy forbid the operation
    unavailable = 7,           // dependency (HSM, store, peer) temporarily unusable
    self_test_failed = 8,      // start-up known-answer/sign-verify test failed
    io_error = 9,              // filesystem or OS call failed
    internal = 10,             // invariant broken: a bug
    verification_failed = 11,  // a signature or integrity check did not verify
    // Conditions a client of the API can meet (each maps to one HTTP status in web/errors).
    unauthenticated = 12,       // missing, unknown or revoked credentials
    forbidden = 13,             // authenticated, but the role does not allow the operation
    policy_denied = 14,         // the key's policy refuses this client or operation
    rate_limited = 15,          // the key's token bucket is empty
    key_disabled = 16,          // the key exists but is disabled
    watermark_regression = 17,  // watermark below the stored one (or equal with another payload)
    reservation_invalid = 18,   // reserved nonce unknown, not the caller's, or already consumed
    conflict = 19,              // state does not allow the operation now
    unprocessable = 20,         // well-formed request that names something impossible
    payload_too_large = 21,     // body or batch beyond the configured limit
    overloaded = 22,            // admission queue full: retry later
    not_ready = 23,             // the appliance cannot serve this yet (self-test, HA role, ...)
    bad_request = 24,           // malformed HTTP or JSON
};

const boost::system::error_category& signet_category() noexcept;
boost::system::error_code make_error_code(Errc e) noexcept;

// Stable machine-readable name of an Errc ("invalid_argument", ...).
const char* errc_name(Errc e) noexcept;

// An error code plus the operation it came from. `context` names the operation and its subject
// (never secrets), e.g. "C_Login(token 'signet')".
struct Error {
    boost::system::error_code code;
    std::string context;

    // "context: code message" as written to logs and shown to operators.
    [[nodiscard]] std::string message() const;

    // Returns a copy whose context is prefixed with `outer` ("outer: inner context").
    [[nodiscard]] Error within(std::string_view outer) const;

    // True when the code equals `e` in the signet category.
    [[nodiscard]] bool is(Errc e) const noexcept { return code == make_error_code(e); }
};

// Makes an Error from any enum that has a make_error_code overload.
template <class E>
requires boost::system::is_error_code_enum<E>::value [[nodiscard]] Error make_error(
    E e, std::string context) {
    return Error{make_error_code(e), std::move(context)};
}

// Thrown by Result<T>::value() when it holds an error (bugs and start-up failures only).
class ErrorException : public std::runtime_error {
public:
    explicit ErrorException(Error e);
    [[nodiscard]] const Error& error() const noexcept { return error_; }

private:
    Error error_;
};

// Found by ADL from boost::system::result<T, Error>::value().
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

}  // namespace signet

template <>
struct boost::system::is_error_code_enum<signet::Errc> : std::true_type {};
