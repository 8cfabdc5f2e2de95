// Result<T>: the return type of every fallible operation at a module boundary.
#pragma once

#include <boost/system/result.hpp>

#include "signet/core/error.hpp"

namespace signet {

template <class T>
using Result = boost::system::result<T, Error>;

// Success value for Result<void>.
inline Result<void> ok() { return {}; }

}  // namespace signet

// Propagates the error of a Result-returning expression; otherwise yields its value.
// Usage: auto v = SIGNET_TRY(parse(x));  (GNU statement expression, supported by GCC and Clang;
// __extension__ keeps -Wpedantic quiet about it. __COUNTER__ keeps nested uses from shadowing.)
#define SIGNET_TRY(expr) SIGNET_TRY_IMPL_(expr, SIGNET_TRY_NAME_(__COUNTER__))
#define SIGNET_TRY_CAT_(a, b) a##b
#define SIGNET_TRY_NAME_(n) SIGNET_TRY_CAT_(signet_try_r_, n)
#define SIGNET_TRY_IMPL_(expr, name)               \
    __extension__({                                \
        auto&& name = (expr);                      \
        if (!name) return std::move(name).error(); \
        std::move(name).value();                   \
    })
