#include "signet/core/bytes.hpp"

#include <array>

namespace signet {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string b64_encode(ByteView b, const char* alphabet, bool pad) {
    std::string out;
    out.reserve((b.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= b.size(); i += 3) {
        const std::uint32_t v =
            (std::uint32_t{b[i]} << 16) | (std::uint32_t{b[i + 1]} << 8) | b[i + 2];
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    const std::size_t rest = b.size() - i;
    if (rest == 1) {
        const std::uint32_t v = std::uint32_t{b[i]} << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        if (pad) out += "==";
    } else if (rest == 2) {
        const std::uint32_t v = (std::uint32_t{b[i]} << 16) | (std::uint32_t{b[i + 1]} << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        if (pad) out += '=';
    }
    return out;
}

Result<Bytes> b64_decode(std::string_view s, const char* alphabet, bool allow_pad,
                         std::string_view what) {
    std::array<int, 256> table{};
    table.fill(-1);
    for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(alphabet[i])] = i;

    std::size_t len = s.size();
    std::size_t pad = 0;
    while (allow_pad && len > 0 && s[len - 1] == '=' && pad < 2) {
        --len;
        ++pad;
    }
    if (pad > 0 && s.size() % 4 != 0) {
        return make_error(Errc::invalid_argument, std::string(what) + ": bad padding");
    }
    if (len % 4 == 1) {
        return make_error(Errc::invalid_argument, std::string(what) + ": truncated input");
    }
    Bytes out;
    out.reserve(len * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (std::size_t i = 0; i < len; ++i) {
        const int v = table[static_cast<unsigned char>(s[i])];
        if (v < 0) {
            return make_error(
                Errc::invalid_argument,
                std::string(what) + ": invalid character at offset " + std::to_string(i));
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xff));
        }
    }
    // Non-canonical encodings (non-zero leftover bits) are rejected so each value has one form.
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        return make_error(Errc::invalid_argument, std::string(what) + ": non-canonical encoding");
    }
    return out;
}

}  // namespace

std::string hex_encode(ByteView b) {
    std::string out;
    out.reserve(b.size() * 2);
    for (const std::uint8_t c : b) {
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
    return out;
}

Result<Bytes> hex_decode(std::string_view s) {
    if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
    if (s.size() % 2 != 0) return make_error(Errc::invalid_argument, "hex: odd number of digits");
    Bytes out(s.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const int hi = hex_value(s[2 * i]);
        const int lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return make_error(Errc::invalid_argument,
                              "hex: invalid digit at offset " + std::to_string(2 * i));
        }
        out[i] = static_cast<std::uint8_t>((hi << 4) | lo);
    }
    return out;
}

std::string base64_encode(ByteView b) { return b64_encode(b, kB64, true); }
Result<Bytes> base64_decode(std::string_view s) { return b64_decode(s, kB64, true, "base64"); }
std::string base64url_encode(ByteView b) { return b64_encode(b, kB64Url, false); }
Result<Bytes> base64url_decode(std::string_view s) {
    return b64_decode(s, kB64Url, false, "base64url");
}

}  // namespace signet
