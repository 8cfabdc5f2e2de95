#include "signet/web/http.hpp"

#include <algorithm>

namespace signet::web {
namespace {

constexpr unsigned char ascii_lower(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    return (u >= 'A' && u <= 'Z') ? static_cast<unsigned char>(u - 'A' + 'a') : u;
}

}  // namespace

// ASCII-only folding: header names are tokens (RFC 9110 §5.1), never locale-dependent text.
bool CaseInsensitiveLess::operator()(std::string_view a, std::string_view b) const noexcept {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        return ascii_lower(x) < ascii_lower(y);
    });
}

std::optional<std::string_view> Request::header(std::string_view name) const {
    const auto it = headers.find(name);
    if (it == headers.end()) return std::nullopt;
    return std::string_view(it->second);
}

}  // namespace signet::web
