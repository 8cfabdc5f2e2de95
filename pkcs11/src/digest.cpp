#include "signet/pkcs11/digest.hpp"

#include <cryptopp/keccak.h>
#include <openssl/sha.h>

namespace signet::pkcs11 {

Bytes sha256(ByteView data) {
    Bytes out(SHA256_DIGEST_LENGTH);
    ::SHA256(data.data(), data.size(), out.data());
    return out;
}

Bytes keccak256(ByteView data) {
    // OpenSSL 3.0 has no Keccak-256 (only SHA3-256, which pads differently).
    CryptoPP::Keccak_256 h;
    Bytes out(CryptoPP::Keccak_256::DIGESTSIZE);
    h.CalculateDigest(out.data(), data.data(), data.size());
    return out;
}

Bytes digest(Hash h, ByteView data) {
    switch (h) {
        case Hash::sha256: return sha256(data);
        case Hash::keccak256: return keccak256(data);
    }
    return sha256(data);
}

}  // namespace signet::pkcs11
