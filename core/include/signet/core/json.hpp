// Minimal JSON text helpers for hand-built documents (audit details, error bodies). Structured
// parsing and building use Boost.JSON in the components that link it.
#pragma once

#include <string>
#include <string_view>

namespace signet {

// Escapes `s` for use inside a JSON string literal (quotes, backslash, control characters).
[[nodiscard]] std::string json_escape(std::string_view s);
// "\"" + json_escape(s) + "\"".
[[nodiscard]] std::string json_quote(std::string_view s);

}  // namespace signet
