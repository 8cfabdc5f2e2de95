// Internal: typed, strict access to a JSON request body. Every member must be consumed (done()),
// so a misspelt option is an error instead of a silently weaker request.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "signet/core/result.hpp"
#include "signet/web/http.hpp"

namespace signet::web::detail {

// Parses the body as a JSON object; an empty body is an empty object.
[[nodiscard]] Result<boost::json::object> parse_object(const Request& req);

class Fields {
public:
    explicit Fields(const boost::json::object& o) : o_(o) {}
    [[nodiscard]] Result<std::optional<std::string>> string(std::string_view k);
    [[nodiscard]] Result<std::optional<bool>> boolean(std::string_view k);
    [[nodiscard]] Result<std::optional<std::uint64_t>> u64(std::string_view k);
    [[nodiscard]] Result<std::optional<std::vector<std::uint64_t>>> u64_array(std::string_view k);
    [[nodiscard]] Result<std::optional<std::vector<std::string>>> string_array(std::string_view k);
    // The raw member (marked consumed), or null.
    [[nodiscard]] const boost::json::value* raw(std::string_view k);
    // bad_request naming the first member nobody asked for.
    [[nodiscard]] Result<void> done() const;

private:
    const boost::json::value* find(std::string_view k);
    const boost::json::object& o_;
    std::set<std::string, std::less<>> used_;
};

}  // namespace signet::web::detail
