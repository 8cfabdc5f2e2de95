#include "signet/pkcs11/algorithm.hpp"

#include <array>
#include <utility>

namespace signet::pkcs11 {
namespace {

template <class E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<E, std::string_view>, N>& table,
                        std::string_view s) noexcept {
    for (const auto& [value, name] : table) {
        if (name == s) return value;
    }
    return std::nullopt;
}

template <class E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& table, E e) noexcept {
    for (const auto& [value, name] : table) {
        if (value == e) return name;
    }
    return "unknown";
}

constexpr std::array<std::pair<Algorithm, std::string_view>, 5> kAlgorithms{{
    {Algorithm::ecdsa_p256, "ecdsa-p256"},
    {Algorithm::ecdsa_secp256k1, "ecdsa-secp256k1"},
    {Algorithm::ed25519, "ed25519"},
    {Algorithm::rsa_2048, "rsa-2048"},
    {Algorithm::rsa_3072, "rsa-3072"},
}};
constexpr std::array<std::pair<KeyClass, std::string_view>, 2> kKeyClasses{{
    {KeyClass::local, "local"},
    {KeyClass::replicable, "replicable"},
}};
constexpr std::array<std::pair<Hash, std::string_view>, 2> kHashes{{
    {Hash::sha256, "sha256"},
    {Hash::keccak256, "keccak256"},
}};
constexpr std::array<std::pair<SignatureEncoding, std::string_view>, 3> kEncodings{{
    {SignatureEncoding::raw, "raw"},
    {SignatureEncoding::der, "der"},
    {SignatureEncoding::eth, "eth"},
}};
constexpr std::array<std::pair<RsaPadding, std::string_view>, 2> kPaddings{{
    {RsaPadding::pkcs1v15, "pkcs1v15"},
    {RsaPadding::pss, "pss"},
}};

}  // namespace

std::string_view to_string(Algorithm a) noexcept { return name_of(kAlgorithms, a); }
std::optional<Algorithm> parse_algorithm(std::string_view s) noexcept {
    return lookup(kAlgorithms, s);
}
std::string_view to_string(KeyClass c) noexcept { return name_of(kKeyClasses, c); }
std::optional<KeyClass> parse_key_class(std::string_view s) noexcept {
    return lookup(kKeyClasses, s);
}
std::string_view to_string(Hash h) noexcept { return name_of(kHashes, h); }
std::optional<Hash> parse_hash(std::string_view s) noexcept { return lookup(kHashes, s); }
std::string_view to_string(SignatureEncoding e) noexcept { return name_of(kEncodings, e); }
std::optional<SignatureEncoding> parse_signature_encoding(std::string_view s) noexcept {
    return lookup(kEncodings, s);
}
std::string_view to_string(RsaPadding p) noexcept { return name_of(kPaddings, p); }
std::optional<RsaPadding> parse_rsa_padding(std::string_view s) noexcept {
    return lookup(kPaddings, s);
}

}  // namespace signet::pkcs11
