#include "web_fixture.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <stdexcept>
#include <thread>

#include "signet/core/bytes.hpp"
#include "signet_test/result_matchers.hpp"

namespace signet::test {

namespace net = boost::asio;
using tcp = net::ip::tcp;

void CapturingLogger::write(LogLevel level, std::string_view component, std::string_view event,
                            std::initializer_list<LogField> fields) {
    auto line = format_log_line("-", level, component, event, fields);
    std::lock_guard lock(mu_);
    lines_.push_back(std::move(line));
}

std::vector<std::string> CapturingLogger::lines() const {
    std::lock_guard lock(mu_);
    return lines_;
}

bool CapturingLogger::contains(std::string_view needle) const {
    std::lock_guard lock(mu_);
    for (const auto& l : lines_) {
        if (l.find(needle) != std::string::npos) return true;
    }
    return false;
}

void Gate::pass() {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait_for(lock, max_hold_, [this] { return open_; });
}

void Gate::open() {
    {
        std::lock_guard lock(mu_);
        open_ = true;
    }
    cv_.notify_all();
}

bool Gate::wait_entered(int n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return entered_ >= n; });
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

void ServerFixture::add(std::string method, std::string pattern, web::Handler h,
                        web::Execution exec) {
    auto name = method + " " + pattern;
    router->add(
        web::Route{std::move(method), std::move(pattern), std::move(name), exec, std::move(h)});
}

void ServerFixture::start(web::ServerOptions options) {
    options.address = "127.0.0.1";
    options.port = 0;
    server = std::make_unique<web::Server>(std::move(options), router, metrics, logger);
    REQUIRE_OK(server->start());
    REQUIRE(server->port() != 0);
}

web::ClientOptions ServerFixture::client_options() const {
    web::ClientOptions o;
    o.host = "127.0.0.1";
    o.port = server->port();
    o.tls = false;
    o.timeout = 10s;
    return o;
}

web::Response echo(web::Request& req) {
    web::Response r;
    r.content_type = "text/plain";
    r.body = req.method + " " + req.path;
    for (const auto& [k, v] : req.params) r.body += " " + k + "=" + v;
    r.body += " " + req.body;
    r.headers["X-Remote"] = req.remote;
    return r;
}

struct RawConnection::Impl {
    net::io_context ioc;
    tcp::socket socket{ioc};
};

RawConnection::RawConnection(std::uint16_t port) : impl_(std::make_unique<Impl>()) {
    impl_->socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
}

RawConnection::~RawConnection() = default;

void RawConnection::send(std::string_view bytes) {
    net::write(impl_->socket, net::buffer(bytes.data(), bytes.size()));
}

RawConnection::ReadResult RawConnection::read(std::chrono::milliseconds timeout,
                                              std::string_view until) {
    ReadResult out;
    std::array<char, 4096> buf{};
    std::function<void()> next = [&] {
        impl_->socket.async_read_some(net::buffer(buf),
                                      [&](boost::system::error_code ec, std::size_t n) {
            out.data.append(buf.data(), n);
            if (ec == net::error::operation_aborted) return;
            if (ec) {
                out.closed = true;
                return;
            }
            if (until.empty() || out.data.find(until) == std::string::npos) next();
        });
    };
    next();
    impl_->ioc.restart();
    impl_->ioc.run_for(timeout);
    if (impl_->ioc.stopped()) return out;
    impl_->socket.cancel();  // timed out with a read pending
    impl_->ioc.restart();
    impl_->ioc.run();
    return out;
}

namespace {

template <class T, void (*Free)(T*)>
std::shared_ptr<T> own(T* p, const char* what) {
    if (p == nullptr) throw std::runtime_error(std::string("OpenSSL: ") + what);
    return std::shared_ptr<T>(p, Free);
}

std::string to_pem(const std::function<int(BIO*)>& write) {
    auto bio = own<BIO, BIO_free_all>(BIO_new(BIO_s_mem()), "BIO_new");
    if (write(bio.get()) != 1) throw std::runtime_error("OpenSSL: PEM write");
    char* data = nullptr;
    const long len = BIO_ctrl(bio.get(), BIO_CTRL_INFO, 0, &data);  // BIO_get_mem_data()
    return std::string(data, static_cast<std::size_t>(len));
}

void check(int rc, const char* what) {
    if (rc != 1) throw std::runtime_error(std::string("OpenSSL: ") + what);
}

}  // namespace

TestCertificate make_certificate(const std::string& common_name) {
    TestCertificate c;
    auto kctx = own<EVP_PKEY_CTX, EVP_PKEY_CTX_free>(EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr),
                                                     "EVP_PKEY_CTX_new_id");
    check(EVP_PKEY_keygen_init(kctx.get()), "keygen_init");
    check(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx.get(), NID_X9_62_prime256v1), "curve");
    EVP_PKEY* raw_key = nullptr;
    check(EVP_PKEY_keygen(kctx.get(), &raw_key), "keygen");
    c.key = own<EVP_PKEY, EVP_PKEY_free>(raw_key, "key");

    c.cert = own<X509, X509_free>(X509_new(), "X509_new");
    X509* x = c.cert.get();
    check(X509_set_version(x, 2), "version");
    check(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), "serial");
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    check(X509_set_pubkey(x, c.key.get()), "pubkey");
    X509_NAME* name = X509_get_subject_name(x);
    std::string cn = common_name;
    check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0),
          "CN");
    check(X509_set_issuer_name(x, name), "issuer");
    if (X509_sign(x, c.key.get(), EVP_sha256()) <= 0)
        throw std::runtime_error("OpenSSL: X509_sign");

    c.cert_pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, x); });
    c.key_pem = to_pem([&](BIO* b) {
        return PEM_write_bio_PrivateKey(b, c.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    });
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    check(X509_digest(x, EVP_sha256(), md.data(), &len), "X509_digest");
    c.sha256 = hex_encode(ByteView(md.data(), len));
    return c;
}

SSL_CTX* server_tls_context(const TestCertificate& cert, bool request_client_cert) {
    std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx(SSL_CTX_new(TLS_server_method()),
                                                     SSL_CTX_free);
    if (!ctx) throw std::runtime_error("OpenSSL: SSL_CTX_new");
    check(static_cast<int>(SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION)), "min proto");
    check(SSL_CTX_use_certificate(ctx.get(), cert.cert.get()), "use_certificate");
    check(SSL_CTX_use_PrivateKey(ctx.get(), cert.key.get()), "use_PrivateKey");
    if (request_client_cert) {
        // Accept any client certificate: identity is its fingerprint, checked by the application.
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    }
    return ctx.release();
}

}  // namespace signet::test
