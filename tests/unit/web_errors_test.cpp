#include "signet/web/errors.hpp"

#include <catch2/catch.hpp>
#include <utility>
#include <vector>

using namespace signet;
using namespace signet::web;

namespace {

// Stands in for pkcs11's category: web/ recognises it by name only.
class FakeCategory final : public boost::system::error_category {
public:
    explicit FakeCategory(const char* name) : name_(name) {}
    const char* name() const noexcept override { return name_; }
    std::string message(int ev) const override { return "CODE_" + std::to_string(ev); }

private:
    const char* name_;
};

const FakeCategory kPkcs11("pkcs11");
const FakeCategory kSqlite("sqlite");

Error error_in(const boost::system::error_category& cat, int value, std::string context) {
    return Error{boost::system::error_code(value, cat), std::move(context)};
}

}  // namespace

TEST_CASE("every Errc has its documented HTTP status", "[web][unit]") {
    const std::vector<std::pair<Errc, int>> expected = {
        {Errc::invalid_argument, 400},
        {Errc::bad_request, 400},
        {Errc::unauthenticated, 401},
        {Errc::forbidden, 403},
        {Errc::policy_denied, 403},
        {Errc::permission_denied, 403},
        {Errc::not_found, 404},
        {Errc::already_exists, 409},
        {Errc::conflict, 409},
        {Errc::key_disabled, 409},
        {Errc::watermark_regression, 409},
        {Errc::reservation_invalid, 409},
        {Errc::payload_too_large, 413},
        {Errc::unprocessable, 422},
        {Errc::unsupported, 422},
        {Errc::not_replicable, 422},
        {Errc::rate_limited, 429},
        {Errc::overloaded, 503},
        {Errc::not_ready, 503},
        {Errc::unavailable, 503},
        {Errc::self_test_failed, 503},
        {Errc::io_error, 500},
        {Errc::internal, 500},
        {Errc::verification_failed, 500},
    };
    // Every value from 1 to bad_request is covered, so a new Errc cannot slip through unmapped.
    REQUIRE(expected.size() == static_cast<std::size_t>(Errc::bad_request));
    for (const auto& [errc, status] : expected) {
        INFO(errc_name(errc));
        CHECK(http_status(errc) == status);
        const auto api = to_api_error(make_error(errc, "ctx"));
        CHECK(api.status == status);
        CHECK(api.code == errc_name(errc));
        CHECK(api.retry_after_seconds.has_value() == (status == 503 || status == 429));
    }
}

TEST_CASE("client errors keep their context as the message but 500s do not", "[web][unit]") {
    CHECK(to_api_error(make_error(Errc::invalid_argument, "field 'digest' must be 32 bytes"))
              .message == "field 'digest' must be 32 bytes");
    CHECK(to_api_error(make_error(Errc::not_found, "")).message == "not_found");
    const auto internal = to_api_error(make_error(Errc::io_error, "open /var/lib/signet/db"));
    CHECK(internal.message == "internal error");
}

TEST_CASE("HSM errors map to hsm_unavailable or hsm_error", "[web][unit]") {
    SECTION("retryable device and session conditions are 503") {
        for (const int ckr : {0x30, 0x32, 0xE0, 0xB0, 0xB3, 0xB8}) {
            INFO(ckr);
            const auto api = to_api_error(error_in(kPkcs11, ckr, "C_Sign(key 1)"));
            CHECK(api.status == 503);
            CHECK(api.code == "hsm_unavailable");
            CHECK(api.retry_after_seconds == 1);
            CHECK(api.message.find("CODE_" + std::to_string(ckr)) != std::string::npos);
            CHECK(api.message.find("C_Sign") == std::string::npos);
        }
    }
    SECTION("anything else from the HSM is 500") {
        for (const int ckr : {0x05, 0x31, 0x63, 0xA0}) {
            const auto api = to_api_error(error_in(kPkcs11, ckr, "C_Sign(key 1)"));
            CHECK(api.status == 500);
            CHECK(api.code == "hsm_error");
            CHECK_FALSE(api.retry_after_seconds);
        }
    }
}

TEST_CASE("foreign categories become a generic 500 internal", "[web][unit]") {
    const auto api = to_api_error(error_in(kSqlite, 11, "sqlite3_step(/var/lib/signet/signet.db)"));
    CHECK(api.status == 500);
    CHECK(api.code == "internal");
    CHECK(api.message == "internal error");
}

TEST_CASE("error responses are the documented JSON object, properly escaped", "[web][unit]") {
    SECTION("shape") {
        const auto r = error_response(make_error(Errc::not_found, "key 'k1' not found"), "req-1");
        CHECK(r.status == 404);
        CHECK(r.content_type == "application/json");
        CHECK(
            r.body ==
            R"({"error":{"code":"not_found","message":"key 'k1' not found","request_id":"req-1"}})");
        CHECK(r.headers.empty());
    }
    SECTION("escaping") {
        const auto r = error_response(
            ApiError{400, "bad_request", "quote \" backslash \\ newline \n ctl \x01 é", {}},
            "r\"1");
        CHECK(r.body ==
              "{\"error\":{\"code\":\"bad_request\",\"message\":\"quote \\\" backslash "
              "\\\\ newline \\n ctl \\u0001 é\",\"request_id\":\"r\\\"1\"}}");
    }
    SECTION("Retry-After") {
        const auto r = error_response(make_error(Errc::overloaded, "queue full"), "x");
        CHECK(r.status == 503);
        CHECK(r.headers.at("retry-after") == "1");
    }
}
