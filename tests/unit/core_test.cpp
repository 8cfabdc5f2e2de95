// core: byte codecs, errors as values, structured log lines.
#include "signet/core/bytes.hpp"
#include "signet/core/error.hpp"
#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

#include "signet_test/result_matchers.hpp"
#include "signet_test/temp_dir.hpp"

using signet::Bytes;
using signet::Errc;

namespace {

Bytes all_byte_values() {
    Bytes b(256);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i);
    return b;
}

// The error of a failed decode, with its context (the message names what was wrong).
template <class T>
signet::Error error_of(const signet::Result<T>& r) {
    REQUIRE_FALSE(r.has_value());
    return r.error();
}

struct Rfc4648Vector {
    const char* plain;
    const char* base64;
    const char* base64url;
};
// RFC 4648 §10, with the unpadded base64url forms.
constexpr Rfc4648Vector kRfc4648[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

}  // namespace

TEST_CASE("hex encodes lower case and decodes either case with an optional 0x prefix",
          "[core][unit]") {
    CHECK(signet::hex_encode(Bytes{0x00, 0xff, 0x10, 0xab}) == "00ff10ab");
    CHECK(signet::hex_encode(Bytes{}).empty());
    for (const char* text : {"00ff10ab", "00FF10AB", "0x00ff10ab", "0X00Ff10aB"}) {
        INFO(text);
        const auto r = signet::hex_decode(text);
        REQUIRE_OK(r);
        CHECK(*r == Bytes{0x00, 0xff, 0x10, 0xab});
    }
    const Bytes all = all_byte_values();
    const auto back = signet::hex_decode(signet::hex_encode(all));
    REQUIRE_OK(back);
    CHECK(*back == all);
}

TEST_CASE("hex decoding rejects odd lengths and non-hex digits with invalid_argument",
          "[core][unit]") {
    const auto odd = error_of(signet::hex_decode("abc"));
    CHECK(odd.is(Errc::invalid_argument));
    CHECK_THAT(odd.message(), Catch::Contains("odd number of digits"));

    const auto bad = error_of(signet::hex_decode("00zz"));
    CHECK(bad.is(Errc::invalid_argument));
    CHECK_THAT(bad.message(), Catch::Contains("invalid digit at offset 2"));

    // A prefix is only a prefix: "0x" inside, signs and spaces are digits it does not know.
    for (const char* text : {"000x", "-1", " 00", "0xg0"}) {
        INFO(text);
        CHECK(error_of(signet::hex_decode(text)).is(Errc::invalid_argument));
    }
}

TEST_CASE("base64 and base64url match the RFC 4648 test vectors in both directions",
          "[core][unit]") {
    for (const Rfc4648Vector& v : kRfc4648) {
        INFO("plain '" << v.plain << "'");
        const Bytes plain = signet::to_bytes(v.plain);
        CHECK(signet::base64_encode(plain) == v.base64);
        CHECK(signet::base64url_encode(plain) == v.base64url);
        const auto b64 = signet::base64_decode(v.base64);
        REQUIRE_OK(b64);
        CHECK(*b64 == plain);
        const auto b64url = signet::base64url_decode(v.base64url);
        REQUIRE_OK(b64url);
        CHECK(*b64url == plain);
        // Standard base64 also accepts the unpadded form.
        const auto unpadded = signet::base64_decode(v.base64url);
        REQUIRE_OK(unpadded);
        CHECK(*unpadded == plain);
    }
}

TEST_CASE("base64url uses the URL-safe alphabet and both codecs round-trip every byte value",
          "[core][unit]") {
    const Bytes specials{0xfb, 0xff, 0xbf};
    CHECK(signet::base64_encode(specials) == "+/+/");
    CHECK(signet::base64url_encode(specials) == "-_-_");

    const Bytes all = all_byte_values();
    for (std::size_t len = 0; len <= all.size(); len += 37) {
        const Bytes part(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(len));
        const auto std_back = signet::base64_decode(signet::base64_encode(part));
        const auto url_back = signet::base64url_decode(signet::base64url_encode(part));
        REQUIRE_OK(std_back);
        REQUIRE_OK(url_back);
        CHECK(*std_back == part);
        CHECK(*url_back == part);
    }
}

TEST_CASE(
    "base64 decoding rejects foreign characters, bad padding, truncation and non-canonical "
    "bits",
    "[core][unit]") {
    struct Case {
        const char* input;
        bool url;
        const char* why;
    };
    const Case cases[] = {
        {"Zm9v!A", false, "invalid character at offset 4"},
        {"Zm9v\nZm", false, "invalid character at offset 4"},
        {"Zg==Zg==", false, "invalid character at offset 2"},
        {"-_8=", false, "invalid character at offset 0"},
        {"Zg=", false, "bad padding"},
        {"Zm9vY", false, "truncated input"},
        {"Zh==", false, "non-canonical encoding"},  // 'h' leaves non-zero bits after 'f'
        {"Zm9=", false, "non-canonical encoding"},
        {"+/8", true, "invalid character at offset 0"},
        {"Zg==", true, "invalid character at offset 2"},  // base64url is unpadded
        {"Zh", true, "non-canonical encoding"},
        {"Z", true, "truncated input"},
    };
    for (const Case& c : cases) {
        INFO((c.url ? "base64url '" : "base64 '") << c.input << "'");
        const auto r = c.url ? signet::base64url_decode(c.input) : signet::base64_decode(c.input);
        const auto e = error_of(r);
        CHECK(e.is(Errc::invalid_argument));
        CHECK_THAT(e.message(), Catch::Contains(c.why));
    }
}

TEST_CASE("an Error message names the operation and the code, and within adds outer context",
          "[core][unit]") {
    const signet::Error inner = signet::make_error(Errc::not_found, "open key 0a1b");
    CHECK(inner.message() == "open key 0a1b: not_found");
    CHECK(inner.is(Errc::not_found));
    CHECK_FALSE(inner.is(Errc::internal));
    CHECK(inner.code.category().name() == std::string("signet"));

    const signet::Error outer = inner.within("sign request 7");
    CHECK(outer.context == "sign request 7: open key 0a1b");
    CHECK(outer.message() == "sign request 7: open key 0a1b: not_found");
    CHECK(outer.code == inner.code);
    CHECK(inner.context == "open key 0a1b");  // within() returns a copy

    const signet::Error bare{signet::make_error_code(Errc::unavailable), ""};
    CHECK(bare.message() == "unavailable");
    CHECK(bare.within("etcd").message() == "etcd: unavailable");
}

TEST_CASE("every Errc has a stable snake_case name", "[core][unit]") {
    const std::pair<Errc, const char*> names[] = {
        {Errc::invalid_argument, "invalid_argument"},
        {Errc::not_found, "not_found"},
        {Errc::already_exists, "already_exists"},
        {Errc::unsupported, "unsupported"},
        {Errc::not_replicable, "not_replicable"},
        {Errc::permission_denied, "permission_denied"},
        {Errc::unavailable, "unavailable"},
        {Errc::self_test_failed, "self_test_failed"},
        {Errc::io_error, "io_error"},
        {Errc::internal, "internal"},
        {Errc::verification_failed, "verification_failed"},
    };
    for (const auto& [e, name] : names) {
        CHECK(std::string(signet::errc_name(e)) == name);
        CHECK(signet::make_error_code(e).message() == name);
    }
    CHECK(signet::make_error_code(Errc::not_found).value() == 2);  // values are logged: stable
}

namespace {

signet::Result<int> parse_positive(int v) {
    if (v <= 0) return signet::make_error(Errc::invalid_argument, "value must be positive");
    return v;
}

signet::Result<int> doubled_positive(int v) {
    const int checked = SIGNET_TRY(parse_positive(v));
    return 2 * checked;
}

}  // namespace

TEST_CASE("SIGNET_TRY propagates the first error and value() throws it with its message",
          "[core][unit]") {
    const auto good = doubled_positive(21);
    REQUIRE_OK(good);
    CHECK(*good == 42);

    const auto bad = doubled_positive(-1);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().message() == "value must be positive: invalid_argument");
    try {
        (void)bad.value();
        FAIL("value() of an error did not throw");
    } catch (const signet::ErrorException& e) {
        CHECK(std::string(e.what()) == "value must be positive: invalid_argument");
        CHECK(e.error().is(Errc::invalid_argument));
    }
}

TEST_CASE("a log line is key=value pairs and quotes and escapes spaces, quotes and newlines",
          "[core][unit]") {
    const std::string line = signet::format_log_line(
        "2024-05-01T12:00:00.000Z", signet::LogLevel::warn, "pkcs11", "token_recovering",
        {{"token", "label 'signet a'"},
         {"attempt", 2},
         {"quote", "say \"hi\""},
         {"lines", "a\nb\r\tc"},
         {"plain", "C_Sign"},
         {"eq", "a=b"},
         {"empty", ""},
         {"backslash", "a\\b"},
         {"control", std::string_view("\x01\x7f", 2)}});
    CHECK(line ==
          "ts=2024-05-01T12:00:00.000Z level=warn component=pkcs11 event=token_recovering "
          "token=\"label 'signet a'\" attempt=2 quote=\"say \\\"hi\\\"\" "
          "lines=\"a\\nb\\r\\tc\" plain=C_Sign eq=\"a=b\" empty=\"\" backslash=\"a\\\\b\" "
          "control=\"\\u0001\\u007f\"");
    CHECK(line.find('\n') == std::string::npos);  // one record is one line

    // A field cannot forge another field or record: the injected text stays inside quotes.
    const std::string forged = signet::format_log_line("t", signet::LogLevel::info, "web", "login",
                                                       {{"user", "bob level=error\nts=x"}});
    CHECK(forged == "ts=t level=info component=web event=login user=\"bob level=error\\nts=x\"");
}

namespace {

// Records what reaches write(), to observe the level check in Logger::log.
class RecordingLogger final : public signet::Logger {
public:
    explicit RecordingLogger(signet::LogLevel min) : min_(min) {}
    [[nodiscard]] bool enabled(signet::LogLevel l) const noexcept override { return l >= min_; }
    void write(signet::LogLevel, std::string_view, std::string_view event,
               std::initializer_list<signet::LogField>) override {
        events.emplace_back(event);
    }
    std::vector<std::string> events;

private:
    signet::LogLevel min_;
};

// Redirects this process's stderr into a file for the lifetime of the object.
class StderrCapture {
public:
    explicit StderrCapture(std::filesystem::path file) : file_(std::move(file)) {
        std::fflush(stderr);
        saved_ = ::dup(STDERR_FILENO);
        FILE* f = std::fopen(file_.c_str(), "w");
        REQUIRE(f != nullptr);
        ::dup2(::fileno(f), STDERR_FILENO);
        std::fclose(f);
    }
    ~StderrCapture() { restore(); }
    StderrCapture(const StderrCapture&) = delete;
    StderrCapture& operator=(const StderrCapture&) = delete;

    std::string finish() {
        restore();
        std::ifstream in(file_);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        saved_ = -1;
    }
    std::filesystem::path file_;
    int saved_ = -1;
};

}  // namespace

TEST_CASE("loggers drop records below their level before writing", "[core][unit]") {
    RecordingLogger rec(signet::LogLevel::warn);
    rec.log(signet::LogLevel::debug, "core", "dropped_debug");
    rec.log(signet::LogLevel::info, "core", "dropped_info");
    rec.log(signet::LogLevel::warn, "core", "kept_warn");
    rec.log(signet::LogLevel::error, "core", "kept_error", {{"k", "v"}});
    CHECK(rec.events == std::vector<std::string>{"kept_warn", "kept_error"});

    CHECK_FALSE(signet::null_logger()->enabled(signet::LogLevel::error));
    CHECK(signet::null_logger() == signet::null_logger());  // one shared instance
    CHECK(signet::to_string(signet::LogLevel::debug) == "debug");
    CHECK(signet::to_string(signet::LogLevel::error) == "error");
}

TEST_CASE("the stderr logger writes one timestamped key=value line per record", "[core][unit]") {
    const signet::test::TempDir dir;
    StderrCapture capture(dir.path() / "stderr.txt");
    signet::StderrLogger logger(signet::LogLevel::info);
    logger.log(signet::LogLevel::debug, "core", "not_written");
    logger.log(signet::LogLevel::error, "core", "written", {{"reason", "two words"}});
    const std::string out = capture.finish();
    INFO(out);
    const std::regex expected(
        "ts=\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z level=error component=core "
        "event=written reason=\"two words\"\n");
    CHECK(std::regex_match(out, expected));
}
