#include "signet/web/router.hpp"

#include <catch2/catch.hpp>
#include <stdexcept>

using namespace signet::web;

namespace {

Handler answer(int status) {
    return [status](Request&) {
        Response r;
        r.status = status;
        return r;
    };
}

Route route(std::string method, std::string pattern, std::string name, int status = 200) {
    return Route{std::move(method), std::move(pattern), std::move(name), Execution::worker,
                 answer(status)};
}

Request request(std::string method, std::string path) {
    Request r;
    r.method = std::move(method);
    r.path = std::move(path);
    return r;
}

Router sample_router() {
    Router r;
    r.add(route("GET", "/v1/keys", "keys.list"));
    r.add(route("POST", "/v1/keys", "keys.create"));
    r.add(route("GET", "/v1/keys/{id}", "keys.get"));
    r.add(route("DELETE", "/v1/keys/{id}", "keys.destroy"));
    r.add(route("POST", "/v1/keys/{id}/sign", "keys.sign"));
    r.add(route("GET", "/v1/keys/export", "keys.export"));
    r.add(route("GET", "/v1/transit/sign/{name}/{hash}", "transit.sign_hash"));
    return r;
}

}  // namespace

TEST_CASE("router binds {name} segments into params", "[web][unit]") {
    const auto router = sample_router();
    auto req = request("POST", "/v1/keys/k-17/sign");
    const auto m = router.match(req);
    REQUIRE(m.route != nullptr);
    CHECK(m.route->name == "keys.sign");
    CHECK(req.params == std::map<std::string, std::string>{{"id", "k-17"}});

    auto two = request("GET", "/v1/transit/sign/payments/sha2-256");
    const auto m2 = router.match(two);
    REQUIRE(m2.route != nullptr);
    CHECK(two.params.at("name") == "payments");
    CHECK(two.params.at("hash") == "sha2-256");
}

TEST_CASE("router prefers literal segments over parameters", "[web][unit]") {
    const auto router = sample_router();
    auto req = request("GET", "/v1/keys/export");
    const auto m = router.match(req);
    REQUIRE(m.route != nullptr);
    CHECK(m.route->name == "keys.export");
    CHECK(req.params.empty());

    auto other = request("GET", "/v1/keys/exporter");
    REQUIRE(router.match(other).route != nullptr);
    CHECK(other.params.at("id") == "exporter");
}

TEST_CASE("router tells an unknown path (404) from a wrong method (405)", "[web][unit]") {
    const auto router = sample_router();
    SECTION("unknown path") {
        for (const char* path : {"/v1/nope", "/v1/keys/a/b", "/v1/keys/", "/", "/v1/keys//sign"}) {
            auto req = request("GET", path);
            const auto m = router.match(req);
            INFO(path);
            CHECK(m.route == nullptr);
            CHECK_FALSE(m.path_matched);
            CHECK(m.allowed.empty());
        }
    }
    SECTION("known path, wrong method lists the allowed methods once each") {
        auto req = request("PUT", "/v1/keys/abc");
        const auto m = router.match(req);
        CHECK(m.route == nullptr);
        CHECK(m.path_matched);
        CHECK(m.allowed == std::vector<std::string>{"GET", "DELETE"});
        CHECK(req.params.empty());
    }
    SECTION("collection path") {
        auto req = request("PATCH", "/v1/keys");
        const auto m = router.match(req);
        CHECK(m.path_matched);
        CHECK(m.allowed == std::vector<std::string>{"GET", "POST"});
    }
    SECTION("methods are case-sensitive") {
        auto req = request("get", "/v1/keys");
        CHECK(router.match(req).route == nullptr);
    }
}

TEST_CASE("router clears params left over from an earlier match", "[web][unit]") {
    const auto router = sample_router();
    auto req = request("GET", "/v1/keys");
    req.params["id"] = "stale";
    REQUIRE(router.match(req).route != nullptr);
    CHECK(req.params.empty());
}

TEST_CASE("router refuses malformed or duplicate routes", "[web][unit]") {
    Router r;
    r.add(route("GET", "/a/{id}", "a"));
    CHECK_THROWS_AS(r.add(route("GET", "/a/{id}", "again")), std::invalid_argument);
    CHECK_THROWS_AS(r.add(route("GET", "no-slash", "x")), std::invalid_argument);
    CHECK_THROWS_AS(r.add(route("GET", "/a/x{id}", "x")), std::invalid_argument);
    CHECK_THROWS_AS(r.add(route("GET", "/a/{}", "x")), std::invalid_argument);
    CHECK_THROWS_AS(r.add(route("", "/b", "x")), std::invalid_argument);
    CHECK_THROWS_AS(r.add(Route{"GET", "/c", "c", Execution::inline_, nullptr}),
                    std::invalid_argument);
    CHECK(r.routes().size() == 1);
}
