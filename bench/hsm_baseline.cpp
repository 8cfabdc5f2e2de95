// bench/hsm_baseline: the "HSM limit" every later benchmark divides by.
//
// For each algorithm and thread count it measures signatures per second
//   - raw:      C_SignInit + C_Sign on one dedicated session per thread (no Signet code in the
//   loop)
//   - keystore: signet::pkcs11::KeyStore::sign (pool lease, handle cache, encoding)
//   - openssl:  OpenSSL EVP with an in-memory key of the same algorithm (software reference)
// and prints a table. Run it through bench/with-softhsm (make bench-baseline), or point it at any
// token with --module/--token/--pin-file.

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "signet/core/secret_buffer.hpp"
#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/module.hpp"

namespace {

using signet::Bytes;
using signet::pkcs11::Algorithm;
using Clock = std::chrono::steady_clock;

struct Options {
    std::string module = "/usr/lib/softhsm/libsofthsm2.so";
    std::string token;
    std::string pin_file;
    double seconds = 2.0;
    std::vector<int> threads{1, 2};
    std::vector<Algorithm> algorithms{std::begin(signet::pkcs11::kAllAlgorithms),
                                      std::end(signet::pkcs11::kAllAlgorithms)};
    bool load_only = false;  // only time loading the module and opening the token; print RSS
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "hsm_baseline: %s\n"
                 "usage: hsm_baseline [--module PATH] --token LABEL --pin-file FILE\n"
                 "                    [--seconds S] [--threads 1,2] [--algorithms a,b]\n"
                 "       hsm_baseline --load-only ...   time C_Initialize + login, print RSS\n"
                 "Defaults come from SIGNET_BENCH_MODULE / SIGNET_BENCH_TOKEN / "
                 "SIGNET_BENCH_PIN_FILE (set by bench/with-softhsm).\n",
                 why);
    std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        const auto comma = s.find(',', start);
        out.push_back(
            s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    if (const char* e = std::getenv("SIGNET_BENCH_MODULE")) o.module = e;
    if (const char* e = std::getenv("SIGNET_BENCH_TOKEN")) o.token = e;
    if (const char* e = std::getenv("SIGNET_BENCH_PIN_FILE")) o.pin_file = e;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value for " + a).c_str());
            return argv[++i];
        };
        if (a == "--module") {
            o.module = value();
        } else if (a == "--token") {
            o.token = value();
        } else if (a == "--pin-file") {
            o.pin_file = value();
        } else if (a == "--load-only") {
            o.load_only = true;
        } else if (a == "--seconds") {
            o.seconds = std::stod(value());
        } else if (a == "--threads") {
            o.threads.clear();
            for (const auto& t : split(value())) o.threads.push_back(std::stoi(t));
        } else if (a == "--algorithms") {
            o.algorithms.clear();
            for (const auto& name : split(value())) {
                const auto alg = signet::pkcs11::parse_algorithm(name);
                if (!alg) usage(("unknown algorithm " + name).c_str());
                o.algorithms.push_back(*alg);
            }
        } else {
            usage(("unknown option " + a).c_str());
        }
    }
    if (o.token.empty() || o.pin_file.empty()) usage("--token and --pin-file are required");
    if (o.seconds <= 0) usage("--seconds must be positive");
    return o;
}

// Runs `threads` copies of `worker(stop)` for `seconds`; each returns how many operations it
// completed before `stop` was set, or nullopt on failure. Returns operations per second (-1 when a
// worker failed).
template <class Worker>
double run_for(int threads, double seconds, Worker& worker) {
    std::atomic<bool> stop{false};
    std::atomic<bool> failed{false};
    std::atomic<std::uint64_t> total{0};
    std::vector<std::thread> pool;
    const auto start = Clock::now();
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            const std::optional<std::uint64_t> n = worker(stop);
            if (!n) failed = true;
            total += n.value_or(0);
        });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& th : pool) th.join();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    return failed ? -1 : static_cast<double>(total.load()) / elapsed;
}

template <class Worker>
double measure(int threads, double seconds, Worker&& worker) {
    run_for(threads, std::min(0.5, seconds / 4), worker);  // warm-up: caches, sessions, handles
    return run_for(threads, seconds, worker);
}

// Repeats `op()` until `stop`; nullopt as soon as one fails.
template <class Op>
std::optional<std::uint64_t> repeat(const std::atomic<bool>& stop, Op&& op) {
    std::uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
        if (!op()) return std::nullopt;
        ++n;
    }
    return n;
}

const char* curve_or_type(Algorithm a) {
    switch (a) {
        case Algorithm::ecdsa_p256: return "P-256";
        case Algorithm::ecdsa_secp256k1: return "secp256k1";
        case Algorithm::ed25519: return "ED25519";
        case Algorithm::rsa_2048: return "RSA";
        case Algorithm::rsa_3072: return "RSA";
    }
    return "";
}

std::shared_ptr<EVP_PKEY> software_key(Algorithm a) {
    EVP_PKEY* key = nullptr;
    if (a == Algorithm::rsa_2048 || a == Algorithm::rsa_3072) {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA",
                                static_cast<size_t>(a == Algorithm::rsa_2048 ? 2048 : 3072));
    } else if (a == Algorithm::ed25519) {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    } else {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve_or_type(a));
    }
    return {key, EVP_PKEY_free};
}

// One signature with OpenSSL over the same input shape the HSM gets.
bool openssl_sign_once(EVP_PKEY* key, Algorithm a, const Bytes& digest) {
    unsigned char sig[512];
    size_t len = sizeof sig;
    if (a == Algorithm::ed25519) {
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                                   EVP_MD_CTX_free);
        return EVP_DigestSignInit(md.get(), nullptr, nullptr, nullptr, key) == 1 &&
               EVP_DigestSign(md.get(), sig, &len, digest.data(), digest.size()) == 1;
    }
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(key, nullptr),
                                                                    EVP_PKEY_CTX_free);
    if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) return false;
    if (a == Algorithm::rsa_2048 || a == Algorithm::rsa_3072) {
        if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1) {
            return false;
        }
    }
    return EVP_PKEY_sign(ctx.get(), sig, &len, digest.data(), digest.size()) == 1;
}

CK_MECHANISM_TYPE raw_mechanism(Algorithm a) {
    if (a == Algorithm::ed25519) return CKM_EDDSA;
    if (a == Algorithm::rsa_2048 || a == Algorithm::rsa_3072) return CKM_RSA_PKCS;
    return CKM_ECDSA;
}

Bytes raw_input(Algorithm a, const Bytes& digest) {
    if (a != Algorithm::rsa_2048 && a != Algorithm::rsa_3072) return digest;
    // DigestInfo(SHA-256) || digest, as CKM_RSA_PKCS expects for a PKCS#1 v1.5 signature.
    Bytes in{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
             0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
    in.insert(in.end(), digest.begin(), digest.end());
    return in;
}

}  // namespace

long vm_rss_kib() {
    std::FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (std::fgets(line, sizeof line, f)) {
        if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    }
    std::fclose(f);
    return kib;
}

int main(int argc, char** argv) {
    const Options opt = parse(argc, argv);
    const auto load_start = Clock::now();
    auto module = signet::pkcs11::Module::load(opt.module);
    if (!module) usage(module.error().message().c_str());
    auto pin = signet::read_secret_file(opt.pin_file);
    if (!pin) usage(pin.error().message().c_str());
    int max_threads = 1;
    for (const int t : opt.threads) max_threads = std::max(max_threads, t);
    signet::pkcs11::TokenOptions topts;
    topts.max_sessions = static_cast<std::size_t>(max_threads) + 1;
    const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
    const auto open_start = Clock::now();
    auto token = signet::pkcs11::Token::open(*module, {opt.token, ""}, std::move(*pin), topts);
    if (!token) usage(token.error().message().c_str());
    if (opt.load_only) {
        // What the HSM module alone costs a process on this token (SoftHSM loads every object of
        // every token at C_Initialize and keeps it in memory).
        std::printf("load_s=%.3f open_s=%.3f rss_kib=%ld\n", load_s,
                    std::chrono::duration<double>(Clock::now() - open_start).count(), vm_rss_kib());
        return 0;
    }
    signet::pkcs11::KeyStore keys(*token);

    std::printf("# hsm_baseline: module %s, token '%s', %.1f s per cell, %u hardware threads\n",
                opt.module.c_str(), opt.token.c_str(), opt.seconds,
                std::thread::hardware_concurrency());
    std::printf("%-16s %7s %14s %14s %9s %14s %9s\n", "algorithm", "threads", "raw C_Sign/s",
                "KeyStore/s", "ks/raw", "OpenSSL/s", "raw/ossl");

    const Bytes digest(32, 0x5a);
    for (const Algorithm a : opt.algorithms) {
        auto key = keys.generate({a, signet::pkcs11::KeyClass::local, "bench", std::nullopt});
        if (!key) usage(key.error().message().c_str());
        const Bytes tbs = raw_input(a, digest);
        const auto ossl_key = software_key(a);
        for (const int threads : opt.threads) {
            const double raw = measure(threads, opt.seconds, [&](const std::atomic<bool>& stop) {
                // One dedicated session per worker for the whole run: only Cryptoki in the loop.
                auto n = keys.token().run(
                    "bench raw sign",
                    [&](signet::pkcs11::Session& s) -> signet::Result<std::uint64_t> {
                        const auto h = SIGNET_TRY(keys.handles(s, key->id));
                        CK_MECHANISM mech{raw_mechanism(a), nullptr, 0};
                        CK_RV rv = CKR_OK;
                        auto count = repeat(stop, [&] {
                            unsigned char sig[512];
                            CK_ULONG len = sizeof sig;
                            rv = s.fn().C_SignInit(s.handle(), &mech, h.private_key);
                            if (rv == CKR_OK) {
                                rv = s.fn().C_Sign(s.handle(), const_cast<CK_BYTE*>(tbs.data()),
                                                   tbs.size(), sig, &len);
                            }
                            return rv == CKR_OK;
                        });
                        if (!count) return signet::pkcs11::ck_error(rv, "C_Sign");
                        return *count;
                    });
                return n ? std::optional<std::uint64_t>(*n) : std::nullopt;
            });
            const signet::pkcs11::SignRequest req{
                digest,
                a == Algorithm::ed25519 ? signet::pkcs11::Input::message
                                        : signet::pkcs11::Input::digest,
                signet::pkcs11::Hash::sha256, signet::pkcs11::SignatureEncoding::raw,
                signet::pkcs11::RsaPadding::pkcs1v15};
            const double ks = measure(threads, opt.seconds, [&](const std::atomic<bool>& stop) {
                return repeat(stop, [&] { return keys.sign(key->id, req).has_value(); });
            });
            const double ossl = measure(threads, opt.seconds, [&](const std::atomic<bool>& stop) {
                return repeat(stop, [&] { return openssl_sign_once(ossl_key.get(), a, digest); });
            });
            std::printf("%-16s %7d %14.0f %14.0f %8.2fx %14.0f %8.2fx\n",
                        std::string(to_string(a)).c_str(), threads, raw, ks, raw > 0 ? ks / raw : 0,
                        ossl, ossl > 0 ? raw / ossl : 0);
            std::fflush(stdout);
        }
        (void)keys.destroy(key->id);
    }
    return 0;
}
