#include "credentials.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace signet::daemon {
namespace {

Bytes random_bytes(std::size_t n) {
    Bytes b(n);
    if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) {
        throw std::runtime_error("the system random generator failed");  // fatal: cannot continue
    }
    return b;
}

}  // namespace

std::string new_token(std::string_view prefix) {
    return std::string(prefix) + base64url_encode(random_bytes(32));
}

Bytes token_hash(std::string_view token) {
    Bytes out(32);
    unsigned int len = 0;
    EVP_Digest(token.data(), token.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
}

std::string new_id(std::string_view prefix) {
    return std::string(prefix) + hex_encode(random_bytes(8));
}

}  // namespace signet::daemon
