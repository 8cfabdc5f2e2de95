#include "signet/core/bytes.hpp"
#include <catch2/catch.hpp>
TEST_CASE("hex round trip", "[core][unit]") {
    CHECK(signet::hex_encode(signet::to_bytes("ab")) == "6162");
}
