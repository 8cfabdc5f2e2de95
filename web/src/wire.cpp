#include "signet/web/wire.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <vector>

#include "signet/core/bytes.hpp"

namespace signet::web::wire {
namespace http = boost::beast::http;

namespace {

// Fields the server itself owns on the wire; a handler setting them would corrupt framing.
bool is_hop_by_hop(std::string_view name) noexcept {
    static constexpr std::array<std::string_view, 6> kHop = {
        "Connection", "Content-Length", "Transfer-Encoding", "Keep-Alive", "Upgrade", "TE"};
    const CaseInsensitiveLess less;
    for (const auto h : kHop) {
        if (!less(h, name) && !less(name, h)) return true;
    }
    return false;
}

// Repeated fields are joined with ", " (RFC 9110 §5.3).
template <class Fields>
Headers to_headers(const Fields& fields) {
    Headers out;
    for (const auto& f : fields) {
        const std::string_view value(f.value().data(), f.value().size());
        auto [it, inserted] = out.try_emplace(std::string(f.name_string()), value);
        if (!inserted) {
            it->second += ", ";
            it->second += value;
        }
    }
    return out;
}

}  // namespace

void apply_limits(RequestParser& parser, const Limits& limits) {
    // Beast counts the request line and every header line against header_limit (u32).
    parser.header_limit(
        static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
    parser.body_limit(limits.max_body_bytes);
}

std::optional<ApiError> read_failure(const boost::system::error_code& ec) {
    if (ec == http::error::header_limit) {
        return ApiError{431, "header_too_large", "request header fields too large", {}};
    }
    if (ec == http::error::body_limit) {
        return ApiError{413, errc_name(Errc::payload_too_large), "request body too large", {}};
    }
    // A clean end of stream, or a message cut short: nobody is left to read an answer.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;
    // Every other Beast HTTP error is a malformed request; transport errors (reset, timeout,
    // cancellation) have other categories.
    if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
        return ApiError{400, errc_name(Errc::bad_request), "malformed HTTP request", {}};
    }
    return std::nullopt;
}

bool is_sane_request_id(std::string_view id) noexcept {
    if (id.empty() || id.size() > 64) return false;
    for (const char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::string new_request_id() {
    std::array<std::uint8_t, 16> b{};
    if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
        // Ids only correlate logs; uniqueness within the process is enough if the DRBG fails.
        static std::atomic<std::uint64_t> counter{0};
        const auto n = counter.fetch_add(1, std::memory_order_relaxed);
        const auto t =
            static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        for (std::size_t i = 0; i < 8; ++i) {
            b[i] = static_cast<std::uint8_t>(t >> (8 * i));
            b[8 + i] = static_cast<std::uint8_t>(n >> (8 * i));
        }
    }
    return hex_encode(b);
}

std::string request_id_for(const BeastRequest& msg) {
    const auto it = msg.find("X-Request-Id");
    if (it != msg.end()) {
        const std::string_view v(it->value().data(), it->value().size());
        if (is_sane_request_id(v)) return std::string(v);
    }
    return new_request_id();
}

Result<Request> to_request(BeastRequest&& msg) {
    const std::string_view target(msg.target().data(), msg.target().size());
    const auto url = boost::urls::parse_origin_form(target);
    if (!url) return make_error(Errc::bad_request, "request target is not origin-form");
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(target);
    req.path = url->path();
    if (req.path.empty()) req.path = "/";
    for (const auto& p : url->params()) req.query[p.key] = p.value;
    req.headers = to_headers(msg);
    req.body = std::move(msg.body());
    return req;
}

BeastResponse to_beast(Response&& r, const ResponseContext& ctx) {
    BeastResponse res;
    res.version(ctx.version);
    // A status outside 100..599 is a handler bug; the client still gets a valid response.
    const bool valid = r.status >= 100 && r.status <= 599;
    res.result(static_cast<unsigned>(valid ? r.status : 500));
    if (ctx.default_headers != nullptr) {
        for (const auto& [k, v] : *ctx.default_headers) {
            if (!is_hop_by_hop(k)) res.set(k, v);
        }
    }
    for (const auto& [k, v] : r.headers) {
        if (!is_hop_by_hop(k)) res.set(k, v);
    }
    if (!r.content_type.empty()) res.set(http::field::content_type, r.content_type);
    res.set("X-Request-Id", ctx.request_id);
    res.keep_alive(ctx.keep_alive);
    res.body() = std::move(r.body);
    res.prepare_payload();
    return res;
}

BeastRequest make_request(std::string_view method, std::string_view target, std::string body,
                          const Headers& headers, std::string_view host) {
    BeastRequest req;
    const auto verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) {
        req.method_string(method);
    } else {
        req.method(verb);
    }
    req.target(target);
    req.version(11);
    req.set(http::field::host, host);
    req.set(http::field::user_agent, "signet");
    for (const auto& [k, v] : headers) {
        if (!is_hop_by_hop(k)) req.set(k, v);
    }
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    return req;
}

Response from_beast(BeastResponse&& msg) {
    Response r;
    r.status = static_cast<int>(msg.result_int());
    r.content_type.clear();
    r.headers = to_headers(msg);
    if (const auto it = r.headers.find("Content-Type"); it != r.headers.end()) {
        r.content_type = it->second;
    }
    r.body = std::move(msg.body());
    return r;
}

std::string_view method_label(std::string_view method) noexcept {
    static constexpr std::array<std::string_view, 9> kMethods = {
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};
    for (const auto m : kMethods) {
        if (m == method) return m;
    }
    return "other";
}

std::string certificate_sha256(X509* cert) {
    const int len = i2d_X509(cert, nullptr);
    if (len <= 0) return {};
    std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
    auto* p = der.data();
    i2d_X509(cert, &p);
    std::array<std::uint8_t, EVP_MAX_MD_SIZE> md{};
    unsigned int md_len = 0;
    if (EVP_Digest(der.data(), der.size(), md.data(), &md_len, EVP_sha256(), nullptr) != 1)
        return {};
    return hex_encode(ByteView(md.data(), md_len));
}

}  // namespace signet::web::wire
