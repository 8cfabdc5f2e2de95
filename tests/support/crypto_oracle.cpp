#include "signet_test/crypto_oracle.hpp"

#include <cryptopp/keccak.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace signet::test {
namespace {

// secp256k1 group order n, big-endian.
constexpr std::uint8_t kOrder[32] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
// n / 2 (floor), big-endian.
constexpr std::uint8_t kHalfOrder[32] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};

struct SecpFree {
    void operator()(secp256k1_context* c) const noexcept { secp256k1_context_destroy(c); }
};

secp256k1_context* secp() {
    static const std::unique_ptr<secp256k1_context, SecpFree> ctx(
        secp256k1_context_create(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY));
    return ctx.get();
}

Bytes serialize_uncompressed(const secp256k1_pubkey& pub) {
    Bytes out(65);
    std::size_t len = out.size();
    secp256k1_ec_pubkey_serialize(secp(), out.data(), &len, &pub, SECP256K1_EC_UNCOMPRESSED);
    out.resize(len);
    return out;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("unhex: bad digit");
}

}  // namespace

Bytes oracle_sha256(const Bytes& data) {
    Bytes out(32);
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(sha256) failed");
    }
    return out;
}

Bytes oracle_keccak256(const Bytes& data) {
    CryptoPP::Keccak_256 h;
    Bytes out(CryptoPP::Keccak_256::DIGESTSIZE);
    h.CalculateDigest(out.data(), data.data(), data.size());
    return out;
}

Bytes oracle_digest(pkcs11::Hash h, const Bytes& data) {
    return h == pkcs11::Hash::keccak256 ? oracle_keccak256(data) : oracle_sha256(data);
}

Bytes oracle_ecdsa_der(const Bytes& raw) {
    if (raw.size() != 64 && raw.size() != 65) throw std::invalid_argument("raw ECDSA size");
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), &ECDSA_SIG_free);
    BIGNUM* r = BN_bin2bn(raw.data(), 32, nullptr);
    BIGNUM* s = BN_bin2bn(raw.data() + 32, 32, nullptr);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        throw std::runtime_error("ECDSA_SIG_set0 failed");
    }
    const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    Bytes out(static_cast<std::size_t>(len));
    unsigned char* p = out.data();
    i2d_ECDSA_SIG(sig.get(), &p);
    return out;
}

Bytes unhex(std::string_view hex) {
    if (hex.size() % 2 != 0) throw std::invalid_argument("unhex: odd length");
    Bytes out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<std::uint8_t>(hex_digit(hex[2 * i]) * 16 + hex_digit(hex[2 * i + 1]));
    }
    return out;
}

Bytes secp256k1_point_of(const Bytes& private_key) {
    secp256k1_pubkey pub;
    if (private_key.size() != 32 || !secp256k1_ec_pubkey_create(secp(), &pub, private_key.data())) {
        throw std::invalid_argument("not a secp256k1 private key");
    }
    return serialize_uncompressed(pub);
}

std::optional<Bytes> secp256k1_recover_point(const Bytes& raw64, int recid, const Bytes& digest32) {
    if (raw64.size() < 64 || digest32.size() != 32) return std::nullopt;
    secp256k1_ecdsa_recoverable_signature sig;
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(secp(), &sig, raw64.data(), recid)) {
        return std::nullopt;
    }
    secp256k1_pubkey pub;
    if (!secp256k1_ecdsa_recover(secp(), &pub, &sig, digest32.data())) return std::nullopt;
    return serialize_uncompressed(pub);
}

bool secp256k1_is_low_s(const Bytes& raw64) {
    const auto s = raw64.begin() + 32;
    return !std::lexicographical_compare(std::begin(kHalfOrder), std::end(kHalfOrder), s, s + 32);
}

Bytes secp256k1_negate_s(const Bytes& raw64) {
    Bytes out = raw64;
    int borrow = 0;
    for (int i = 31; i >= 0; --i) {
        const auto idx = static_cast<std::size_t>(i);
        int d = kOrder[idx] - raw64[32 + idx] - borrow;
        borrow = d < 0 ? 1 : 0;
        if (d < 0) d += 256;
        out[32 + idx] = static_cast<std::uint8_t>(d);
    }
    return out;
}

std::string oracle_eth_address(const Bytes& point65) {
    const Bytes h = oracle_keccak256(Bytes(point65.begin() + 1, point65.end()));
    static constexpr char kHex[] = "0123456789abcdef";
    std::string lower;
    for (std::size_t i = 12; i < 32; ++i) {
        lower += kHex[h[i] >> 4];
        lower += kHex[h[i] & 15];
    }
    // EIP-55: upper-case a letter when the matching nibble of keccak256(lower-case hex) is >= 8.
    const Bytes check = oracle_keccak256(Bytes(lower.begin(), lower.end()));
    std::string out = "0x";
    for (std::size_t i = 0; i < lower.size(); ++i) {
        const int nibble = i % 2 == 0 ? check[i / 2] >> 4 : check[i / 2] & 15;
        const char c = lower[i];
        out += (c >= 'a' && nibble >= 8) ? static_cast<char>(c - 'a' + 'A') : c;
    }
    return out;
}

}  // namespace signet::test
