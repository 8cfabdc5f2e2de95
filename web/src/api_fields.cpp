#include "api_fields.hpp"

namespace signet::web::detail {

namespace json = boost::json;

namespace {
Error bad(std::string why) { return make_error(Errc::bad_request, std::move(why)); }
}  // namespace

Result<json::object> parse_object(const Request& req) {
    if (req.body.empty()) return json::object{};
    boost::system::error_code ec;
    json::parse_options opts;
    opts.max_depth = 16;
    json::value v = json::parse(req.body, ec, {}, opts);
    if (ec) return bad("request body is not valid JSON: " + ec.message());
    if (!v.is_object()) return bad("request body must be a JSON object");
    return std::move(v.as_object());
}

const json::value* Fields::find(std::string_view k) {
    const auto it = o_.find(k);
    if (it == o_.end()) return nullptr;
    used_.emplace(k);
    return it->value().is_null() ? nullptr : &it->value();
}

const json::value* Fields::raw(std::string_view k) { return find(k); }

Result<std::optional<std::string>> Fields::string(std::string_view k) {
    const json::value* v = find(k);
    if (!v) return std::optional<std::string>{};
    if (!v->is_string()) return bad("'" + std::string(k) + "' must be a string");
    return std::optional<std::string>{std::string(v->as_string())};
}

Result<std::optional<bool>> Fields::boolean(std::string_view k) {
    const json::value* v = find(k);
    if (!v) return std::optional<bool>{};
    if (!v->is_bool()) return bad("'" + std::string(k) + "' must be true or false");
    return std::optional<bool>{v->as_bool()};
}

namespace {
std::optional<std::uint64_t> as_u64(const json::value& v) {
    if (v.is_uint64()) return v.as_uint64();
    if (v.is_int64() && v.as_int64() >= 0) return static_cast<std::uint64_t>(v.as_int64());
    return std::nullopt;
}
}  // namespace

Result<std::optional<std::uint64_t>> Fields::u64(std::string_view k) {
    const json::value* v = find(k);
    if (!v) return std::optional<std::uint64_t>{};
    const auto n = as_u64(*v);
    if (!n) return bad("'" + std::string(k) + "' must be an unsigned integer");
    return std::optional<std::uint64_t>{*n};
}

Result<std::optional<std::vector<std::uint64_t>>> Fields::u64_array(std::string_view k) {
    const json::value* v = find(k);
    if (!v) return std::optional<std::vector<std::uint64_t>>{};
    const std::string err = "'" + std::string(k) + "' must be an array of unsigned integers";
    if (!v->is_array()) return bad(err);
    std::vector<std::uint64_t> out;
    for (const auto& e : v->as_array()) {
        const auto n = as_u64(e);
        if (!n) return bad(err);
        out.push_back(*n);
    }
    return std::optional<std::vector<std::uint64_t>>{std::move(out)};
}

Result<std::optional<std::vector<std::string>>> Fields::string_array(std::string_view k) {
    const json::value* v = find(k);
    if (!v) return std::optional<std::vector<std::string>>{};
    const std::string err = "'" + std::string(k) + "' must be an array of strings";
    if (!v->is_array()) return bad(err);
    std::vector<std::string> out;
    for (const auto& e : v->as_array()) {
        if (!e.is_string()) return bad(err);
        out.emplace_back(e.as_string());
    }
    return std::optional<std::vector<std::string>>{std::move(out)};
}

Result<void> Fields::done() const {
    for (const auto& m : o_) {
        if (!used_.contains(std::string_view(m.key()))) {
            return bad("unknown field '" + std::string(m.key()) + "'");
        }
    }
    return ok();
}

}  // namespace signet::web::detail
