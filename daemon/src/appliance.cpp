#include "appliance.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "audit_checkpointer.hpp"
#include "audit_log.hpp"
#include "catalog.hpp"
#include "committer.hpp"
#include "credentials.hpp"
#include "nonce_authority.hpp"
#include "pair.hpp"
#include "pair_catalog.hpp"
#include "pair_members.hpp"
#include "pair_nonces.hpp"
#include "pair_watermarks.hpp"
#include "signet/pkcs11/digest.hpp"
#include "signet/pkcs11/public_key.hpp"
#include "signet/pkcs11/self_test.hpp"
#include "signet/web/api.hpp"
#include "signet/web/server.hpp"
#include "signing_service.hpp"
#include "tls_identity.hpp"
#include "watermark_guard.hpp"

namespace signet::daemon {

struct Appliance::Parts {
    Config config;
    std::shared_ptr<Logger> logger;
    StartupReport report;
    std::shared_ptr<pkcs11::Module> module;
    std::shared_ptr<pkcs11::KeyStore> keys;
    std::unique_ptr<TlsIdentity> tls;
    std::shared_ptr<Committer> committer;
    std::shared_ptr<SigningService> service;
    std::shared_ptr<Catalog> catalog;
    std::shared_ptr<Pair> pair;            // null: standalone
    std::shared_ptr<PairCatalog> replica;  // catalog replication and pairing; null: standalone
    std::shared_ptr<PairMembers> members;  // the peers' addresses; null unless [ha] forward
    // Held here (not only through the service) so that the burns reported while the pair stops
    // still reach the audit log.
    std::shared_ptr<NonceAuthority> nonces;
    std::unique_ptr<web::Server> server;
    std::thread background;  // self-test, then audit key and handle warm-up
    std::mutex mu;
    std::unique_ptr<AuditCheckpointer> checkpointer;  // guarded by mu
    int lock_fd = -1;      // flock on <data_dir>/signetd.lock, held for the process's life
    bool stopped = false;  // guarded by mu
    ~Parts() {
        if (lock_fd >= 0) ::close(lock_fd);
    }
};

Appliance::Appliance() : p_(std::make_unique<Parts>()) {}
Appliance::~Appliance() { stop(); }
const StartupReport& Appliance::report() const noexcept { return p_->report; }

namespace {

Result<void> prepare_data_dir(const Config& c) {
    std::error_code ec;
    std::filesystem::create_directories(c.data_dir, ec);
    if (ec) {
        return make_error(Errc::io_error, "cannot create data directory " + c.data_dir.string() +
                                              ": " + ec.message());
    }
    if (::chmod(c.data_dir.c_str(), 0700) != 0) {
        return make_error(Errc::permission_denied,
                          "cannot restrict " + c.data_dir.string() + " to mode 0700");
    }
    return ok();
}

// A fresh one-time setup token when no admin exists; only its hash is stored. The token is also
// written to <data_dir>/setup-token (0600) for non-interactive installs.
Result<std::optional<std::string>> ensure_setup_token(const Config& c, Catalog& catalog,
                                                      Committer& committer, const Clock& clock,
                                                      std::optional<Bytes>& hash_out) {
    if (catalog.has_active_admin()) {
        std::error_code ec;
        std::filesystem::remove(c.setup_token_path(), ec);
        return std::optional<std::string>{};
    }
    const std::string token = new_token(kSetupTokenPrefix);
    const Bytes hash = token_hash(token);
    const std::string ts = format_rfc3339(clock.wall());
    SIGNET_TRY(committer.submit([&](Db& txn) -> Result<void> {
        auto st = SIGNET_TRY(txn.cached(
            "INSERT INTO meta (name, value) VALUES ('setup_token_hash', ?) ON CONFLICT(name) DO "
            "UPDATE SET value = excluded.value"));
        st->bind(1, hex_encode(hash));
        SIGNET_TRY(st->run());
        SIGNET_TRY(AuditLog::append(txn, {"system", "setup.token_issued", "", "ok", "{}"}, ts));
        return ok();
    }));
    // Created 0600 (no process-wide umask games with other threads running), never through a
    // symlink, and re-restricted if it existed with another mode.
    const auto file = c.setup_token_path();
    const int fd =
        ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return make_error(Errc::io_error, "cannot write " + file.string());
    const std::string line = token + "\n";
    const bool written = ::fchmod(fd, 0600) == 0 &&
                         ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ::close(fd);
    if (!written) return make_error(Errc::io_error, "cannot write " + file.string());
    hash_out = hash;
    return std::optional<std::string>{token};
}

// A store that has been in a pair holds only the values this appliance released itself: the
// peer's are missing, so running it standalone would issue them again. It remembers the pair
// (meta 'ha.cluster', and the appliance's name 'ha.name') and refuses to start without it, or as
// another appliance. Reads only: record_pair_membership() writes once the pair has accepted this
// start (a fenced appliance's new store must not look joined after a failed first start).
// Returns whether the store was in the pair before this start.
Result<bool> check_pair_membership(const Config& c, Db& reader) {
    auto meta = [&](const char* name) -> Result<std::optional<std::string>> {
        auto st = SIGNET_TRY(reader.prepare("SELECT value FROM meta WHERE name = ?"));
        st.bind(1, name);
        if (!SIGNET_TRY(st.step())) return std::optional<std::string>{};
        return std::optional<std::string>(st.text(0));
    };
    const auto joined = SIGNET_TRY(meta("ha.cluster"));
    if (!c.ha_mode) {
        if (!joined) return false;
        return make_error(Errc::conflict,
                          "the store " + c.database_path().string() + " belongs to pair '" +
                              *joined +
                              "': its counters lag the pair's, so it must not sign standalone; "
                              "start it with its [ha] section");
    }
    if (joined && *joined != c.ha_cluster) {
        return make_error(Errc::conflict, "the store " + c.database_path().string() +
                                              " belongs to pair '" + *joined + "', not '" +
                                              c.ha_cluster + "'");
    }
    const auto name = SIGNET_TRY(meta("ha.name"));
    if (name && *name != c.ha_name) {
        return make_error(Errc::conflict, "the store " + c.database_path().string() +
                                              " belongs to appliance '" + *name +
                                              "' of the pair, not '" + c.ha_name + "'");
    }
    return joined.has_value();
}

Result<void> record_pair_membership(const Config& c, Committer& committer) {
    return committer.submit([&](Db& txn) -> Result<void> {
        auto ins = SIGNET_TRY(txn.cached(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING"));
        ins->bind(1, "ha.cluster").bind(2, c.ha_cluster);
        SIGNET_TRY(ins->run());
        ins->reset();
        ins->bind(1, "ha.name").bind(2, c.ha_name);
        return ins->run();
    });
}

void write_public_pem(const std::filesystem::path& file, ByteView spki) {
    const std::string pem = pkcs11::spki_to_pem(spki);
    std::ofstream(file, std::ios::trunc) << pem;
}

}  // namespace

Result<int> lock_data_dir(const Config& c) {
    const auto path = c.data_dir / "signetd.lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return make_error(Errc::io_error, "cannot open " + path.string());
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {};
        // (void) does not silence FORTIFY's warn_unused_result: keep the count instead.
        const ssize_t got = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        std::string pid(buf, got > 0 ? static_cast<std::size_t>(got) : 0);
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        return make_error(Errc::conflict, "another signetd (pid " + pid + ") is using " +
                                              c.data_dir.string() + "; stop it first");
    }
    const std::string me = std::to_string(::getpid()) + "\n";
    // The pid only names the holder in the message above; the flock is the lock. Failing to write
    // it is harmless, and (void) does not silence FORTIFY's warn_unused_result.
    [[maybe_unused]] const bool pid_written =
        ::ftruncate(fd, 0) == 0 &&
        ::pwrite(fd, me.data(), me.size(), 0) == static_cast<ssize_t>(me.size());
    return fd;
}

void Appliance::run_background(Parts& p, std::shared_ptr<const Clock> clock) {
    const auto report = pkcs11::run_self_test(*p.keys);
    p.service->set_self_test(report);
    p.logger->log(report.passed() ? LogLevel::info : LogLevel::error, "appliance",
                  report.passed() ? "ready" : "self_test_failed",
                  {{"self_test", report.summary()}});
    bool generated = false;
    auto audit_key =
        p.keys->find_or_generate_internal(kAuditKeyName, pkcs11::Algorithm::ecdsa_p256, &generated);
    auto reader =
        audit_key ? Db::open(p.config.database_path(), false) : Result<Db>(audit_key.error());
    if (!audit_key || !reader) {
        p.logger->log(LogLevel::error, "appliance", "audit_checkpoints_unavailable",
                      {{"error", (audit_key ? reader.error() : audit_key.error()).message()}});
    } else {
        const std::string fingerprint = hex_encode(pkcs11::sha256(audit_key->spki_der));
        if (generated) {
            // A new audit key is itself a security event (it signs every later checkpoint).
            auto r = p.committer->submit([&](Db& txn) -> Result<void> {
                SIGNET_TRY(AuditLog::append(txn,
                                            {"system", "audit.key_created", audit_key->id, "ok",
                                             "{\"spki_sha256\":\"" + fingerprint + "\"}"},
                                            format_rfc3339(clock->wall())));
                return ok();
            });
            if (!r) {
                p.logger->log(LogLevel::error, "appliance", "audit_failed",
                              {{"error", r.error().message()}});
            }
        }
        p.logger->log(LogLevel::info, "appliance", "audit_key",
                      {{"spki_sha256", fingerprint}, {"created", generated ? "yes" : "no"}});
        write_public_pem(p.config.data_dir / "audit-key.pem", audit_key->spki_der);
        p.service->set_audit_key(audit_key->spki_der);
        const std::lock_guard lock(p.mu);
        if (!p.stopped) {
            p.checkpointer = std::make_unique<AuditCheckpointer>(
                p.keys, *audit_key, std::move(reader).value(), p.committer, clock, p.logger,
                std::chrono::seconds(10));
        }
    }
    std::vector<pkcs11::KeyHint> hints;
    for (const auto& k : p.catalog->keys()) hints.push_back({k->id, k->algorithm, k->spki});
    const auto start = std::chrono::steady_clock::now();
    const auto warmed = p.keys->warm_up(hints);
    p.logger->log(warmed ? LogLevel::info : LogLevel::warn, "appliance", "key_handles_cached",
                  {{"keys", hints.size()},
                   {"found", warmed ? *warmed : 0},
                   {"ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count()},
                   {"error", warmed ? "" : warmed.error().message()}});
}

Result<std::unique_ptr<Appliance>> Appliance::start(const Config& c,
                                                    std::shared_ptr<Logger> logger) {
    SIGNET_TRY(validate(c));
    std::unique_ptr<Appliance> a(new Appliance());
    Parts& p = *a->p_;
    p.config = c;
    p.logger = logger;
    auto clock = std::make_shared<SystemClock>();
    SIGNET_TRY(prepare_data_dir(c));
    p.lock_fd = SIGNET_TRY(lock_data_dir(c));

    // Store: migrate and check before anything else touches it.
    const std::string store = "the store " + c.database_path().string();
    auto writer = Db::open(c.database_path(), true);
    if (!writer) return writer.error().within("open " + store);
    const auto schema = migrate(*writer);
    if (!schema) return schema.error().within("migrate " + store);
    if (auto r = integrity_check(*writer); !r) {
        return r.error().within("check " + store + " (restore a backup)");
    }
    auto reader = std::make_shared<Db>(SIGNET_TRY(Db::open(c.database_path(), false)));
    p.committer = std::make_shared<Committer>(std::move(writer).value(), logger);
    auto catalog = std::make_shared<Catalog>();
    SIGNET_TRY(catalog->load(*reader));
    auto metrics = std::make_shared<web::Registry>();
    std::shared_ptr<NonceAuthority> nonces;
    std::shared_ptr<WatermarkGuard> watermarks;
    const bool was_in_pair = SIGNET_TRY(check_pair_membership(c, *reader));
    Config hc = c;
    if (c.ha_mode) {
        // In a pair, counters, reservations and watermarks live in etcd; SQLite keeps copies.
        if (hc.advertise_url.empty()) {
            hc.advertise_url = std::string(c.tls ? "https://" : "http://") + c.listen_address +
                               ":" + std::to_string(c.port);
        }
        p.pair = SIGNET_TRY(Pair::start(hc, was_in_pair, clock, logger, metrics));
        SIGNET_TRY(record_pair_membership(c, *p.committer));
        if (p.pair->rejoined()) {
            const std::string ts = format_rfc3339(clock->wall());
            SIGNET_TRY(p.committer->submit([&](Db& txn) -> Result<void> {
                SIGNET_TRY(AuditLog::append(
                    txn,
                    {"system", "ha.rejoin", c.ha_name, "ok",
                     R"({"reason":"joined on an empty store after a forced promotion fenced it"})"},
                    ts));
                return ok();
            }));
            logger->log(LogLevel::warn, "ha", "rejoined",
                        {{"appliance", c.ha_name}, {"cluster", c.ha_cluster}});
        }
        auto pn = std::make_shared<PairNonceAuthority>(p.pair->allocator(), p.pair->fence(),
                                                       p.pair->coordinator(), p.pair->prefix(),
                                                       p.committer, clock, logger, c.etcd_timeout);
        p.pair->allocator()->on_burn(
            [w = std::weak_ptr<PairNonceAuthority>(pn)](const ha::BurntRange& b) {
            if (auto n = w.lock()) n->audit_gap(b.counter, b.first, b.last, b.reason);
        });
        p.pair->allocator()->on_reserve(
            [w = std::weak_ptr<PairNonceAuthority>(pn)](const std::string& key, std::uint64_t first,
                                                        std::uint64_t last) {
            if (auto n = w.lock()) n->record_reserved(key, first, last);
        });
        SIGNET_TRY(pn->load(*reader));
        nonces = pn;
        auto pw = std::make_shared<PairWatermarkGuard>(p.pair->coordinator(), p.pair->fence(),
                                                       p.pair->prefix(), c.etcd_timeout);
        SIGNET_TRY(pw->load(*reader));
        watermarks = pw;
    } else {
        auto local_nonces = std::make_shared<LocalNonceAuthority>(p.committer, clock, logger);
        SIGNET_TRY(local_nonces->load(*reader));
        auto local_marks = std::make_shared<LocalWatermarkGuard>();
        SIGNET_TRY(local_marks->load(*reader));
        nonces = local_nonces;
        watermarks = local_marks;
    }
    p.nonces = nonces;
    logger->log(LogLevel::info, "store", "opened",
                {{"path", c.database_path().string()},
                 {"schema", *schema},
                 {"keys", catalog->key_count()}});

    // HSM.
    // Timed: with a software HSM, loading the module (every token object) dominates start-up.
    auto since = [t = std::chrono::steady_clock::now()] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - t)
            .count();
    };
    p.module = SIGNET_TRY(pkcs11::Module::load(c.module, logger));
    logger->log(LogLevel::info, "appliance", "hsm_module_loaded",
                {{"module", c.module}, {"ms", since()}});
    auto pin = read_secret_file(c.pin_file);
    if (!pin) return pin.error().within("read the HSM PIN");
    auto token = pkcs11::Token::open(p.module, {c.token_label, c.token_serial},
                                     std::move(pin).value(), {.max_sessions = c.max_sessions});
    if (!token) return token.error().within("open the signing token");
    logger->log(LogLevel::info, "appliance", "signing_token_open", {{"ms", since()}});
    p.keys = std::make_shared<pkcs11::KeyStore>(*token);

    // TLS identity (separate token).
    if (c.tls) {
        p.tls = SIGNET_TRY(
            TlsIdentity::load({p.module, c.module, c.identity_token_label, c.identity_pin(),
                               c.tls_dir(), c.subject_alt_names, c.request_client_certs},
                              *logger));
        p.report.tls_fingerprint = p.tls->fingerprint();
    }

    // Catalog replication (pairs): before the setup token, so that an admin made on the peer
    // already counts here.
    if (p.pair) {
        auto pairing = Pairing::start(
            {p.pair, p.keys, p.committer, clock, logger, c.so_pin_file, c.etcd_timeout});
        if (!pairing) return pairing.error().within("prepare the pairing transport key");
        p.replica = PairCatalog::start(
            {p.pair, catalog, p.committer, p.keys, *pairing, clock, logger, c.etcd_timeout});
    }
    std::shared_ptr<web::PeerForwarder> forwarder;
    if (p.pair && c.forward) {
        // validate() made sure of TLS with client certificates: the peers know each other by it.
        p.members = std::make_shared<PairMembers>(p.pair->coordinator(), p.pair->prefix(),
                                                  c.ha_name, c.etcd_timeout, logger);
        SIGNET_TRY(p.members->publish(hc.advertise_url, p.tls->fingerprint()));
        // The identity outlives the server, and with it every forwarded request.
        const TlsIdentity* identity = p.tls.get();
        forwarder = std::make_shared<web::PeerForwarder>(web::ForwarderOptions{
            [identity](ssl_ctx_st* ctx) { return identity->use_as_client(ctx); }, c.forward_timeout,
            16, std::max<std::size_t>(1, c.worker_threads / 2), logger, metrics});
    }

    std::optional<Bytes> setup_hash;
    p.report.setup_token =
        SIGNET_TRY(ensure_setup_token(c, *catalog, *p.committer, *clock, setup_hash));

    p.service = std::make_shared<SigningService>(
        ServiceDeps{catalog, p.keys, p.committer, nonces, watermarks, reader, clock, logger,
                    metrics, p.pair, p.replica, p.members},
        ServiceOptions{c.batch_max, std::chrono::seconds(60), setup_hash, c.setup_token_path()});

    if (p.replica) {
        p.replica->on_setup_complete([w = std::weak_ptr<SigningService>(p.service)] {
            if (auto s = w.lock()) s->setup_completed_elsewhere();
        });
    }

    auto router = std::make_shared<web::Router>();
    web::add_api_routes(*router, p.service, metrics, {c.batch_max, forwarder});
    web::ServerOptions so;
    so.address = c.listen_address;
    so.port = c.port;
    so.io_threads = c.io_threads;
    so.max_inline_fast = c.max_inline_fast;
    so.worker_threads = c.worker_threads;
    so.queue_limit = c.queue_limit;
    so.max_connections = c.max_connections;
    so.max_body_bytes = c.max_body_bytes;
    so.max_header_bytes = c.max_header_bytes;
    so.request_timeout = c.request_timeout;
    so.shutdown_grace = c.shutdown_grace;
    so.default_headers = {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}};
    if (p.tls) {
        so.tls_context = SIGNET_TRY(p.tls->make_server_context());
        so.default_headers["Strict-Transport-Security"] = "max-age=31536000";
    }
    p.server = std::make_unique<web::Server>(so, router, metrics, logger);
    if (auto r = p.server->start(); !r) {
        return r.error().within("listen on " + c.listen_address + ":" + std::to_string(c.port));
    }
    p.report.port = p.server->port();
    p.report.url = std::string(c.tls ? "https://" : "http://") +
                   (c.listen_address.find(':') != std::string::npos ? "[" + c.listen_address + "]"
                                                                    : c.listen_address) +
                   ":" + std::to_string(p.report.port);

    // In the background: /v1/health/ready stays 503 until the self-test passed; then the audit
    // checkpoints start and every key's handle is cached (one pass over the token instead of one
    // search per key at its first signature).
    p.catalog = catalog;
    p.background = std::thread([&p, clock] { run_background(p, clock); });
    return a;
}

void Appliance::stop() {
    Parts& p = *p_;
    {
        const std::lock_guard lock(p.mu);
        if (p.stopped) return;
        p.stopped = true;  // the background thread starts no checkpointer after this
    }
    if (p.server) p.server->stop();
    if (p.background.joinable()) p.background.join();
    if (p.service) p.service->flush_tally();
    if (p.checkpointer) p.checkpointer->stop();  // after the tally: the final checkpoint covers it
    p.service.reset();
    // After the server: no request is in flight. Resigning lets the peer take over at once, and
    // the burnt rest of each block reaches the audit log through the committer still running.
    if (p.members) p.members->stop();
    if (p.replica) p.replica->stop();  // before the pair: its watches use the coordinator
    if (p.pair) p.pair->stop();
    if (p.committer) p.committer->stop();
    if (p.logger) p.logger->log(LogLevel::info, "appliance", "stopped");
}

}  // namespace signet::daemon
