// API tokens and setup tokens: generated from the OS CSPRNG, shown once, stored only as SHA-256.
// (256 random bits need no slow hash: there is nothing to brute-force.)
#pragma once

#include <string>
#include <string_view>

#include "signet/core/bytes.hpp"

namespace signet::daemon {

inline constexpr std::string_view kApiTokenPrefix = "sgt_";
inline constexpr std::string_view kSetupTokenPrefix = "sst_";

// prefix + base64url(32 random bytes).
[[nodiscard]] std::string new_token(std::string_view prefix);
[[nodiscard]] Bytes token_hash(std::string_view token);
// `prefix` + 16 random hex digits, for client ids.
[[nodiscard]] std::string new_id(std::string_view prefix);

}  // namespace signet::daemon
