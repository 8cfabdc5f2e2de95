// Catch2 helpers for Result<T>: on failure they print the error's message (operation + CKR name).
#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "signet/core/result.hpp"

namespace signet::test {

template <class T>
std::string error_text(const Result<T>& r) {
    return r ? std::string("(ok)") : r.error().message();
}

}  // namespace signet::test

#define REQUIRE_OK(expr)                                               \
    do {                                                               \
        const auto& signet_req_ok_ = (expr);                           \
        INFO("error: " << ::signet::test::error_text(signet_req_ok_)); \
        REQUIRE(signet_req_ok_.has_value());                           \
    } while (0)

#define CHECK_OK(expr)                                                 \
    do {                                                               \
        const auto& signet_chk_ok_ = (expr);                           \
        INFO("error: " << ::signet::test::error_text(signet_chk_ok_)); \
        CHECK(signet_chk_ok_.has_value());                             \
    } while (0)
