// Key fixtures for integration tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "signet/pkcs11/key_store.hpp"

namespace signet::test {

// Generates a key pair in `keys` (label "test-<algorithm>" unless given); throws ErrorException
// carrying the error message when the HSM refuses, so Catch reports why.
pkcs11::KeyInfo generate_key(pkcs11::KeyStore& keys, pkcs11::Algorithm a,
                             pkcs11::KeyClass key_class = pkcs11::KeyClass::local,
                             std::string label = {});

// Key stores on `n` tokens of their own, initialised for the caller ("fresh-<k>"), for tests that
// count what is on a token whatever else ran in the same process. SoftHSM discovers tokens only in
// C_Initialize (measured: a token made by softhsm2-util later stays invisible), so call this while
// no token of the test HSM is open; it throws saying so otherwise.
std::vector<std::shared_ptr<pkcs11::KeyStore>> fresh_key_stores(std::size_t n);
std::shared_ptr<pkcs11::KeyStore> fresh_key_store();

// How many objects on the key store's token match `tmpl`, counted with raw Cryptoki (at most 64):
// what is really on the token, whatever the key store believes. Throws on a Cryptoki error.
std::size_t count_objects(pkcs11::KeyStore& keys, std::vector<CK_ATTRIBUTE> tmpl);

}  // namespace signet::test
