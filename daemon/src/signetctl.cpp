// signetctl: the command line for scripts and first-time setup. It talks to signetd's REST API
// (or, for `audit verify --db`, reads the store offline).
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "audit_log.hpp"
#include "backup.hpp"
#include "config.hpp"
#include "db.hpp"
#include "force_promote.hpp"
#include "rejoin.hpp"
#include "sanitizer_defaults.hpp"
#include "signet/core/secret_buffer.hpp"
#include "signet/pkcs11/public_key.hpp"
#include "signet/pkcs11/token.hpp"
#include "signet/web/client.hpp"
#include "tls_identity.hpp"

namespace json = boost::json;
using signet::Result;

namespace {

const char* kUsage = R"(usage: signetctl [connection options] COMMAND ...

Connection (or environment):
  --url URL              https://127.0.0.1:8443 (SIGNET_URL)
  --fingerprint SHA256   pin the server certificate (SIGNET_TLS_FINGERPRINT)
  --cert FILE            pin the certificate in FILE, e.g. <data_dir>/tls/cert.pem (SIGNET_TLS_CERT)
  --token-file FILE      API token file (SIGNET_TOKEN_FILE, or the token itself in SIGNET_TOKEN)
  --client-cert FILE --client-key FILE   mutual TLS

Commands:
  init --config OUT --data-dir DIR --pin-file FILE [--module PATH] [--token-label L]
       [--identity-token L] [--listen ADDR:PORT]      check the HSM login, write a config
  setup (--setup-token T | --setup-token-file F) --name NAME [--save-token FILE]
  health
  keys create --algorithm A --label L [--replicable] [--nonces none|envelope|reserved]
              [--watermark-required]
              [--rate PER_SECOND] [--burst N] [--client ID]...
  keys list | keys show ID | keys disable ID | keys destroy ID
  sign KEY (--digest HEX | --message TEXT) [--encoding der|raw|eth] [--hash sha256|keccak256]
           [--nonce | --reserved-nonce N] [--watermark N,N,...]
  nonces reserve KEY
  counters show KEY
  clients create --name N --role admin|signer|auditor [--cert-sha256 FP] | clients list
  clients revoke ID
  audit tail [--after N] [--limit N]
  audit verify [--db PATH [--audit-key <data_dir>/audit-key.pem]]   offline with --db
  backup --db <data_dir>/signet.db --out FILE  consistent copy of the store, also while signetd
                                              runs (run as signetd's user, on the appliance)
  restore --backup FILE --data-dir DIR [--counter-margin N [--watermark-margin H] |
          --confirm-counters]                 offline, signetd stopped: install a backup; no
                                              counter or watermark goes back (docs/ha.md)
  ha status                                   role, leader, etcd members, transport_sha256
  ha pair --peer NAME --transport-sha256 HEX  pairing ceremony: export this HSM's KEK to the
                                              peer whose transport key has that fingerprint
                                              (admin; run on each appliance of the pair)
  ha force-promote --config FILE --peer-fenced [--confirm-watermarks]
                                              offline, signetd stopped, local etcd member
                                              re-formed with --force-new-cluster: raise every
                                              counter past what the lost peer may have held
  ha rejoin --config FILE                     offline, on an appliance fenced by a forced
                                              promotion: check and print the steps to re-join
                                              (exit 0 once it may start, 1 while steps remain)
)";

struct Args {
    std::vector<std::string> positional;
    std::multimap<std::string, std::string> opts;
    [[nodiscard]] std::optional<std::string> get(const std::string& k) const {
        const auto it = opts.find(k);
        return it == opts.end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    [[nodiscard]] bool flag(const std::string& k) const { return opts.count(k) > 0; }
};

[[noreturn]] void die(const std::string& msg, int code = 1) {
    std::fprintf(stderr, "signetctl: %s\n", msg.c_str());
    std::exit(code);
}

// Options without a value; every other option takes exactly one.
const std::set<std::string> kFlags = {
    "--replicable",  "--watermark-required", "--nonce",           "--help",
    "--peer-fenced", "--confirm-watermarks", "--confirm-counters"};
const std::set<std::string> kConnection = {
    "--url", "--fingerprint", "--cert", "--token-file", "--client-cert", "--client-key", "--help"};
// The options each command accepts besides the connection options. A misspelt or misplaced
// option is refused, never ignored: `sign --nonces` must not sign without a nonce.
const std::map<std::string, std::set<std::string>> kCommandOptions = {
    {"init",
     {"--config", "--data-dir", "--pin-file", "--module", "--token-label", "--identity-token",
      "--listen"}},
    {"setup", {"--setup-token", "--setup-token-file", "--name", "--save-token"}},
    {"keys create",
     {"--algorithm", "--label", "--replicable", "--nonces", "--watermark-required", "--rate",
      "--burst", "--client"}},
    {"sign",
     {"--digest", "--message", "--encoding", "--hash", "--nonce", "--reserved-nonce",
      "--watermark"}},
    {"clients create", {"--name", "--role", "--cert-sha256"}},
    {"audit tail", {"--after", "--limit"}},
    {"audit verify", {"--db", "--audit-key"}},
    {"backup", {"--db", "--out"}},
    {"restore",
     {"--backup", "--data-dir", "--counter-margin", "--watermark-margin", "--confirm-counters"}},
    {"ha pair", {"--peer", "--transport-sha256"}},
    {"ha force-promote", {"--config", "--peer-fenced", "--confirm-watermarks"}},
    {"ha rejoin", {"--config"}},
};

// Exits 2 naming the first option that the command does not take, or that lacks its value.
void check_options(const Args& a) {
    std::string command = a.positional.empty() ? "" : a.positional[0];
    if (!kCommandOptions.count(command) && a.positional.size() > 1)
        command += " " + a.positional[1];
    const auto allowed = kCommandOptions.find(command);
    for (const auto& [opt, value] : a.opts) {
        if (kConnection.count(opt) ||
            (allowed != kCommandOptions.end() && allowed->second.count(opt)))
            continue;
        die("unknown option " + opt + (command.empty() ? "" : " for '" + command + "'") +
                " (signetctl --help lists every command's options)",
            2);
    }
}

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string s = argv[i];
        if (s.rfind("--", 0) != 0) {
            a.positional.push_back(s);
            continue;
        }
        std::string value;
        if (!kFlags.count(s)) {
            if (i + 1 >= argc || std::string_view(argv[i + 1]).rfind("--", 0) == 0)
                die("option " + s + " needs a value", 2);
            value = argv[++i];
        }
        a.opts.emplace(std::move(s), std::move(value));
    }
    check_options(a);
    return a;
}

// `text` as a whole number from 0 to `max`, or exit 2 naming `what`: std::sto* would abort
// signetctl with an uncaught exception, accept a prefix ("12abc") or wrap a port above 65535.
std::uint64_t parse_count(const std::string& what, const std::string& text, std::uint64_t max) {
    std::uint64_t v = 0;
    const char* end = text.data() + text.size();
    const auto [p, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc() || p != end || v > max) {
        die(what + " must be a whole number from 0 to " + std::to_string(max) + ", not '" + text +
                "'",
            2);
    }
    return v;
}

// `text` as a finite number >= 0, or exit 2 naming `what`.
double parse_rate(const std::string& what, const std::string& text) {
    double v = 0;
    const char* end = text.data() + text.size();
    const auto [p, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc() || p != end || !(v >= 0) || v > 1e15)
        die(what + " must be a number >= 0, not '" + text + "'", 2);
    return v;
}

std::string env_or(const char* name, const std::string& dflt) {
    const char* v = std::getenv(name);
    return v && *v ? v : dflt;
}

std::string read_file_trimmed(const std::string& path) {
    auto secret = signet::read_secret_file(path);
    if (!secret) die(secret.error().message());
    return std::string(reinterpret_cast<const char*>(secret->data()), secret->size());
}

std::string fingerprint_of_cert_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) die("cannot read certificate " + path);
    X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    if (!x) die(path + " is not a PEM certificate");
    std::string fp = signet::daemon::cert_fingerprint(x);
    X509_free(x);
    return fp;
}

signet::web::ClientOptions client_options(const Args& a) {
    signet::web::ClientOptions o;
    const std::string url = a.get("--url").value_or(env_or("SIGNET_URL", "https://127.0.0.1:8443"));
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos) die("--url must look like https://HOST:PORT");
    const std::string scheme = url.substr(0, scheme_end);
    if (scheme != "https" && scheme != "http") die("--url scheme must be https or http");
    o.tls = scheme == "https";
    std::string hostport = url.substr(scheme_end + 3);
    if (const auto slash = hostport.find('/'); slash != std::string::npos) hostport.resize(slash);
    const auto colon = hostport.rfind(':');
    o.host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
    if (o.host.size() > 2 && o.host.front() == '[') o.host = o.host.substr(1, o.host.size() - 2);
    o.port = colon == std::string::npos ? (o.tls ? 443 : 80)
                                        : static_cast<std::uint16_t>(parse_count(
                                              "the --url port", hostport.substr(colon + 1), 65535));
    o.pinned_sha256 = a.get("--fingerprint").value_or(env_or("SIGNET_TLS_FINGERPRINT", ""));
    const std::string cert = a.get("--cert").value_or(env_or("SIGNET_TLS_CERT", ""));
    if (o.pinned_sha256.empty() && !cert.empty()) o.pinned_sha256 = fingerprint_of_cert_file(cert);
    o.client_cert_file = a.get("--client-cert").value_or("");
    o.client_key_file = a.get("--client-key").value_or("");
    return o;
}

std::string api_token(const Args& a) {
    if (auto f = a.get("--token-file")) return read_file_trimmed(*f);
    if (const char* f = std::getenv("SIGNET_TOKEN_FILE"); f && *f) return read_file_trimmed(f);
    return env_or("SIGNET_TOKEN", "");
}

// Sends the request; prints the JSON body on success, the API error on failure (exit 1).
json::value call(const Args& a, const std::string& method, const std::string& target,
                 const json::value* body = nullptr, bool auth = true) {
    signet::web::HttpClient client(client_options(a));
    signet::web::Headers h;
    if (auth) {
        const std::string token = api_token(a);
        if (!token.empty()) h["Authorization"] = "Bearer " + token;
    }
    if (body) h["Content-Type"] = "application/json";
    auto r = client.request(method, target, body ? json::serialize(*body) : "", h);
    if (!r) die(r.error().message());
    json::value v;
    if (!r->body.empty()) {
        boost::system::error_code ec;
        v = json::parse(r->body, ec);
        if (ec) die("server answered HTTP " + std::to_string(r->status) + " with a non-JSON body");
    }
    if (r->status >= 400) {
        const auto* err = v.is_object() ? v.as_object().if_contains("error") : nullptr;
        if (err && err->is_object()) {
            const auto& e = err->as_object();
            die(std::string(e.at("code").as_string()) + ": " +
                std::string(e.at("message").as_string()) + " (HTTP " + std::to_string(r->status) +
                ", request " + std::string(e.at("request_id").as_string()) + ")");
        }
        die("HTTP " + std::to_string(r->status));
    }
    return v;
}

// Writes `secret` and a newline to `path` with mode 0600, also over an existing file (a umask only
// applies at creation), never through a symlink. Returns "" or why it failed.
std::string save_secret(const std::string& path, const std::string& secret) {
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return std::generic_category().message(errno);
    const std::string line = secret + "\n";
    bool ok = ::fchmod(fd, 0600) == 0 &&
              ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    int err = errno;
    if (::close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    return ok ? std::string() : std::generic_category().message(err);
}

void print(const json::value& v) { std::cout << json::serialize(v) << "\n"; }

std::string need(const Args& a, const std::string& k) {
    auto v = a.get(k);
    if (!v || v->empty()) die("missing " + k);
    return *v;
}

std::vector<std::uint64_t> parse_numbers(const std::string& what, const std::string& s) {
    std::vector<std::uint64_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) out.push_back(parse_count(what, item, UINT64_MAX));
    return out;
}

int cmd_init(const Args& a) {
    signet::daemon::Config c;
    c.data_dir = need(a, "--data-dir");
    c.pin_file = need(a, "--pin-file");
    c.module = a.get("--module").value_or(c.module);
    c.token_label = a.get("--token-label").value_or(c.token_label);
    c.identity_token_label = a.get("--identity-token").value_or(c.identity_token_label);
    if (auto l = a.get("--listen")) {
        if (auto r = signet::daemon::apply_flags(c, {"--listen", *l}); !r) die(r.error().message());
    }
    const std::string out = need(a, "--config");
    std::fprintf(stderr, "checking the HSM: module %s, token '%s'...\n", c.module.c_str(),
                 c.token_label.c_str());
    auto module = signet::pkcs11::Module::load(c.module);
    if (!module) die(module.error().message());
    for (const auto& label : {c.token_label, c.identity_token_label}) {
        auto pin = signet::read_secret_file(c.pin_file);
        if (!pin) die(pin.error().message());
        auto token = signet::pkcs11::Token::open(*module, {label, ""}, std::move(*pin));
        if (!token) die(token.error().message());
    }
    std::error_code ec;
    std::filesystem::create_directories(c.data_dir, ec);
    if (ec) die("cannot create " + c.data_dir.string() + ": " + ec.message());
    ::chmod(c.data_dir.c_str(), 0700);
    std::ofstream f(out);
    f << "# signetd configuration (docs/config.md)\n"
      << "[server]\nlisten = \"" << c.listen_address << ":" << c.port << "\"\n\n"
      << "[hsm]\nmodule = \"" << c.module << "\"\ntoken_label = \"" << c.token_label
      << "\"\npin_file = \"" << c.pin_file.string() << "\"\n\n"
      << "[tls]\nidentity_token_label = \"" << c.identity_token_label << "\"\n\n"
      << "[store]\ndata_dir = \"" << c.data_dir.string() << "\"\n";
    if (!f) die("cannot write " + out);
    std::fprintf(stderr, "HSM login ok on both tokens; wrote %s\n", out.c_str());
    return 0;
}

int cmd_keys(const Args& a) {
    const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
    if (sub == "create") {
        json::object policy;
        json::array clients;
        for (auto [it, end] = a.opts.equal_range("--client"); it != end; ++it)
            clients.emplace_back(it->second);
        policy["clients"] = clients;
        policy["nonces"] = a.get("--nonces").value_or("none");
        policy["watermark_required"] = a.flag("--watermark-required");
        if (auto r = a.get("--rate")) {
            policy["rate_limit"] =
                json::object{{"per_second", parse_rate("--rate", *r)},
                             {"burst", parse_rate("--burst", a.get("--burst").value_or("0"))}};
        }
        json::value body = json::object{{"algorithm", need(a, "--algorithm")},
                                        {"label", need(a, "--label")},
                                        {"replicable", a.flag("--replicable")},
                                        {"policy", policy}};
        std::fprintf(
            stderr, "generating the %s key in the HSM%s...\n", need(a, "--algorithm").c_str(),
            need(a, "--algorithm").rfind("rsa", 0) == 0 ? " (RSA takes a few seconds)" : "");
        print(call(a, "POST", "/v1/keys", &body));
    } else if (sub == "list") {
        print(call(a, "GET", "/v1/keys"));
    } else if (sub == "show" && a.positional.size() > 2) {
        print(call(a, "GET", "/v1/keys/" + a.positional[2]));
    } else if (sub == "disable" && a.positional.size() > 2) {
        print(call(a, "POST", "/v1/keys/" + a.positional[2] + "/disable"));
    } else if (sub == "destroy" && a.positional.size() > 2) {
        call(a, "DELETE", "/v1/keys/" + a.positional[2]);
        print(json::object{{"id", a.positional[2]}, {"state", "destroyed"}});
        std::fprintf(stderr, "key %s destroyed in the HSM\n", a.positional[2].c_str());
    } else {
        die("usage: signetctl keys create|list|show ID|disable ID|destroy ID", 2);
    }
    return 0;
}

int cmd_sign(const Args& a) {
    if (a.positional.size() < 2)
        die("usage: signetctl sign KEY (--digest HEX | --message TEXT)", 2);
    json::object body;
    if (auto d = a.get("--digest")) {
        body["digest"] = *d;
    } else if (auto m = a.get("--message")) {
        body["message"] = signet::hex_encode(signet::as_bytes(*m));
    } else {
        die("--digest or --message is required", 2);
    }
    if (auto e = a.get("--encoding")) body["encoding"] = *e;
    if (auto h = a.get("--hash")) body["hash"] = *h;
    if (a.flag("--nonce")) body["nonce"] = true;
    if (auto n = a.get("--reserved-nonce"))
        body["reserved_nonce"] = parse_count("--reserved-nonce", *n, UINT64_MAX);
    if (auto w = a.get("--watermark")) {
        json::array arr;
        for (auto v : parse_numbers("--watermark", *w)) arr.emplace_back(v);
        body["watermark"] = arr;
    }
    json::value b = body;
    print(call(a, "POST", "/v1/keys/" + a.positional[1] + "/sign", &b));
    return 0;
}

int cmd_clients(const Args& a) {
    const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
    if (sub == "create") {
        json::object body{{"name", need(a, "--name")}, {"role", need(a, "--role")}};
        if (auto fp = a.get("--cert-sha256")) body["cert_sha256"] = *fp;
        json::value b = body;
        const auto v = call(a, "POST", "/v1/clients", &b);
        print(v);
        std::fprintf(stderr, "the token above is shown once; store it now\n");
    } else if (sub == "list") {
        print(call(a, "GET", "/v1/clients"));
    } else if (sub == "revoke" && a.positional.size() > 2) {
        print(call(a, "POST", "/v1/clients/" + a.positional[2] + "/revoke"));
    } else {
        die("usage: signetctl clients create|list|revoke ID", 2);
    }
    return 0;
}

int cmd_audit(const Args& a) {
    const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
    if (sub == "verify" && a.get("--db")) {
        auto db = signet::daemon::Db::open(*a.get("--db"), false);
        if (!db) die(db.error().message());
        std::optional<signet::Bytes> pinned;
        if (auto key = a.get("--audit-key")) {  // <data_dir>/audit-key.pem, kept off the appliance
            std::ifstream in(*key);
            std::stringstream pem;
            pem << in.rdbuf();
            auto spki = signet::pkcs11::spki_from_pem(pem.str());
            if (!spki) die("--audit-key " + *key + ": " + spki.error().message());
            pinned = std::move(spki).value();
        }
        auto v = signet::daemon::AuditLog::verify(*db, {pinned, std::nullopt});
        if (!v) die(v.error().message());
        if (!v->ok) {
            std::printf("audit log BROKEN at record %llu: %s\n",
                        static_cast<unsigned long long>(v->first_bad_seq.value_or(0)),
                        v->reason.c_str());
            return 1;
        }
        std::printf("audit log ok: %llu records, chain intact, %llu HSM-signed checkpoints",
                    static_cast<unsigned long long>(v->records),
                    static_cast<unsigned long long>(v->checkpoints));
        if (v->last_checkpoint_seq) {
            std::printf(" (newest covers record %llu%s)",
                        static_cast<unsigned long long>(*v->last_checkpoint_seq),
                        pinned ? ", signed by the pinned audit key" : "");
        }
        std::printf("\n");
        return 0;
    }
    if (sub == "verify") {
        const auto v = call(a, "POST", "/v1/audit/verify");
        print(v);
        return v.as_object().at("ok").as_bool() ? 0 : 1;
    }
    if (sub == "tail") {
        print(call(a, "GET",
                   "/v1/audit?after=" + a.get("--after").value_or("0") +
                       "&limit=" + a.get("--limit").value_or("100")));
        return 0;
    }
    die("usage: signetctl audit tail|verify [--db PATH]", 2);
}

// Offline, on the appliance: the store file is read directly (SQLite's online backup API), so no
// API route can write files into the data directory and a backup works with signetd stopped too.
int cmd_backup(const Args& a) {
    if (a.positional.size() != 1)
        die("usage: signetctl backup --db <data_dir>/signet.db --out FILE", 2);
    const signet::SystemClock clock;
    const auto r = signet::daemon::backup_store(need(a, "--db"), need(a, "--out"), clock);
    if (!r) die("backup failed: " + r.error().message());
    print(*r);
    std::fprintf(stderr,
                 "backup written to %s (mode 0600): it holds token hashes and the audit log, no "
                 "private key; keep it off the appliance\n",
                 std::string(r->at("file").as_string()).c_str());
    return 0;
}

int cmd_restore(const Args& a) {
    if (a.positional.size() != 1) {
        die("usage: signetctl restore --backup FILE --data-dir DIR [--counter-margin N "
            "[--watermark-margin H] | --confirm-counters]",
            2);
    }
    signet::daemon::RestoreOptions o;
    o.backup = need(a, "--backup");
    o.data_dir = need(a, "--data-dir");
    constexpr std::uint64_t kMax = INT64_MAX;
    if (auto m = a.get("--counter-margin"))
        o.counter_margin = parse_count("--counter-margin", *m, kMax);
    if (auto m = a.get("--watermark-margin"))
        o.watermark_margin = parse_count("--watermark-margin", *m, kMax);
    o.confirm_counters = a.flag("--confirm-counters");
    if (o.counter_margin && o.confirm_counters)
        die("--counter-margin and --confirm-counters exclude each other", 2);
    if (o.watermark_margin && !o.counter_margin)
        die("--watermark-margin goes with --counter-margin", 2);
    const signet::SystemClock clock;
    const auto r = signet::daemon::restore_store(o, clock);
    if (!r) die("restore refused: " + r.error().message());
    print(*r);
    std::fprintf(stderr, "store restored into %s; start signetd\n",
                 std::string(r->at("restored").as_string()).c_str());
    return 0;
}

int cmd_ha(const Args& a) {
    const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
    if (sub == "status" && a.positional.size() == 2) {
        print(call(a, "GET", "/v1/ha/status"));
        return 0;
    }
    if (sub == "pair" && a.positional.size() == 2) {
        // The fingerprint must come from the peer itself (its console, `signetctl ha status`
        // against it, or its start-up log), never from etcd: it is what the ceremony trusts.
        json::value body = json::object{{"peer", need(a, "--peer")},
                                        {"transport_sha256", need(a, "--transport-sha256")}};
        print(call(a, "POST", "/v1/ha/pair", &body));
        return 0;
    }
    if (sub == "force-promote" && a.positional.size() == 2) {
        auto config = signet::daemon::load_config(need(a, "--config"));
        if (!config) die(config.error().message());
        const auto r = signet::daemon::force_promote(
            *config, {a.flag("--peer-fenced"), a.flag("--confirm-watermarks")});
        if (!r) die("force-promote refused: " + r.error().message());
        print(*r);
        return 0;
    }
    if (sub == "rejoin" && a.positional.size() == 2) {
        auto config = signet::daemon::load_config(need(a, "--config"));
        if (!config) die(config.error().message());
        const auto r = signet::daemon::rejoin_guide(*config);
        if (!r) die("rejoin: " + r.error().message());
        // The steps for the operator on stderr; the whole report as JSON on stdout.
        int n = 0;
        for (const auto& s : r->at("steps").as_array()) {
            const auto& o = s.as_object();
            const bool done = o.at("done").as_bool();
            std::fprintf(stderr, "%d. [%s] %s\n", ++n, done ? "done" : "open",
                         std::string(o.at("step").as_string()).c_str());
            const std::string how(o.at("how").as_string());
            if (!done && !how.empty()) std::fprintf(stderr, "     %s\n", how.c_str());
        }
        print(*r);
        return r->at("ready_to_start").as_bool() ? 0 : 1;
    }
    die("usage: signetctl ha status | ha pair --peer NAME --transport-sha256 HEX | ha "
        "force-promote --config FILE --peer-fenced [--confirm-watermarks] | ha rejoin --config "
        "FILE",
        2);
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse_args(argc, argv);
    if (a.positional.empty() || a.flag("--help")) {
        std::fputs(kUsage, a.positional.empty() && !a.flag("--help") ? stderr : stdout);
        return a.flag("--help") ? 0 : 2;
    }
    const std::string& cmd = a.positional[0];
    if (cmd == "init") return cmd_init(a);
    if (cmd == "setup") {
        std::string token = a.get("--setup-token").value_or("");
        if (auto f = a.get("--setup-token-file")) {
            std::error_code ec;
            if (!std::filesystem::exists(std::filesystem::symlink_status(*f, ec))) {
                die("no setup token file " + *f +
                    ": signetd writes it only while no admin exists and deletes it when setup "
                    "completes (already set up?)");
            }
            token = read_file_trimmed(*f);
        }
        if (token.empty()) die("--setup-token or --setup-token-file is required", 2);
        json::value body = json::object{{"setup_token", token}, {"name", need(a, "--name")}};
        const auto v = call(a, "POST", "/v1/setup", &body, false);
        const std::string api = std::string(v.as_object().at("token").as_string());
        if (auto save = a.get("--save-token")) {
            if (const auto why = save_secret(*save, api); !why.empty()) {
                print(v);  // the admin token is shown once: never lose it
                die("setup is complete, but the admin token could not be saved to " + *save + " (" +
                    why + "); it is printed above: store it now");
            }
            std::fprintf(stderr, "admin token saved to %s (mode 0600)\n", save->c_str());
            print(v.as_object().at("client"));
        } else {
            print(v);
        }
        return 0;
    }
    if (cmd == "health") {
        print(call(a, "GET", "/v1/health/ready", nullptr, false));
        return 0;
    }
    if (cmd == "keys") return cmd_keys(a);
    if (cmd == "sign") return cmd_sign(a);
    if (cmd == "nonces") {
        if (a.positional.size() != 3 || a.positional[1] != "reserve")
            die("usage: signetctl nonces reserve KEY", 2);
        print(call(a, "POST", "/v1/keys/" + a.positional[2] + "/nonces"));
        return 0;
    }
    if (cmd == "counters") {
        if (a.positional.size() != 3 || a.positional[1] != "show")
            die("usage: signetctl counters show KEY", 2);
        print(call(a, "GET", "/v1/keys/" + a.positional[2] + "/counter"));
        return 0;
    }
    if (cmd == "clients") return cmd_clients(a);
    if (cmd == "audit") return cmd_audit(a);
    if (cmd == "ha") return cmd_ha(a);
    if (cmd == "backup") return cmd_backup(a);
    if (cmd == "restore") return cmd_restore(a);
    std::fprintf(stderr, "signetctl: unknown command '%s'\n\n", cmd.c_str());
    std::fputs(kUsage, stderr);
    return 2;
}
