// Byte strings and their text encodings (hex, base64, base64url).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "signet/core/result.hpp"

namespace signet {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline Bytes to_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Lower-case hex, no prefix.
[[nodiscard]] std::string hex_encode(ByteView b);
// Accepts upper or lower case and an optional "0x" prefix; odd length or a non-hex digit is
// invalid_argument.
[[nodiscard]] Result<Bytes> hex_decode(std::string_view s);

// RFC 4648 standard alphabet with padding.
[[nodiscard]] std::string base64_encode(ByteView b);
// Accepts padded or unpadded standard base64; anything else is invalid_argument.
[[nodiscard]] Result<Bytes> base64_decode(std::string_view s);

// RFC 4648 §5 URL-safe alphabet without padding (JWK, JWS).
[[nodiscard]] std::string base64url_encode(ByteView b);
[[nodiscard]] Result<Bytes> base64url_decode(std::string_view s);

}  // namespace signet
