// The appliance as the REST API sees it. web/ never sees the HSM, the store or HA: the daemon
// implements this interface (SigningService) and hands it to make_api_router(). Every call is
// blocking and runs on the server's worker pool. Errors are signet::Errc conditions (see
// errors.hpp for their HTTP mapping) or foreign categories (pkcs11, sqlite) that map to 5xx.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"

namespace signet::web {

enum class Role { admin, signer, auditor };
[[nodiscard]] std::string_view to_string(Role r) noexcept;
[[nodiscard]] std::optional<Role> parse_role(std::string_view s) noexcept;

// What arrived with a request, for authentication. Never logged.
struct Credentials {
    std::optional<std::string> token;        // "Authorization: Bearer sgt_..." or X-Vault-Token
    std::optional<std::string> cert_sha256;  // mTLS client certificate fingerprint
    std::string remote;
    std::string request_id;
    // A request the paired appliance forwarded (X-Signet-Forwarded-Caller): the client it
    // authenticated, and that client's address (X-Signet-Forwarded-For). Believed only when
    // cert_sha256 is the peer appliance's own TLS certificate.
    std::optional<std::string> forwarded_caller;
    std::string forwarded_remote;
    // The route takes forwarded requests (signing routes only); elsewhere the header is refused.
    bool forwarding_route = false;
};

// An authenticated API client.
struct Caller {
    std::string client_id;
    std::string client_name;
    Role role = Role::signer;
    std::string remote;
    std::string request_id;
    std::string via;  // the paired appliance that forwarded this request; empty: it came directly
};

// Where a signing request must run when this appliance cannot serve it: the paired appliance's
// member name, API URL and TLS certificate fingerprint (pinned by the forwarder).
struct PeerRoute {
    std::string appliance;
    std::string url;
    std::string tls_sha256;
};

struct RateLimit {
    double per_second = 0;  // 0: unlimited
    double burst = 0;       // bucket size; 0 means max(1, per_second)
};

// How a key uses nonces; fixed when the key is created (set_policy refuses to change it), because
// each mode's guarantee depends on the key never having signed anything else:
//   none      plain signatures only;
//   envelope  every signature is an appliance-built nonce envelope ("nonce": true) and nothing
//             else, so no client can present its own bytes as an envelope for a nonce it chose;
//   reserved  every signature consumes a nonce reserved with POST /v1/keys/{id}/nonces.
enum class NonceMode { none, envelope, reserved };
[[nodiscard]] std::string_view to_string(NonceMode m) noexcept;
[[nodiscard]] std::optional<NonceMode> parse_nonce_mode(std::string_view s) noexcept;

struct KeyPolicy {
    std::vector<std::string> clients;  // client ids allowed to use the key; empty: any signer
    std::vector<std::string> operations{"sign", "verify", "reserve"};
    RateLimit rate_limit;
    NonceMode nonces = NonceMode::none;
    bool watermark_required = false;  // every signature must carry a watermark
};

struct KeyDescription {
    std::string id;
    std::string label;
    std::string algorithm;  // "ecdsa-p256", ...
    std::string key_class;  // "local" | "replicable"
    std::string state;      // "active" | "disabled"
    std::string created_at;
    std::string public_key_pem;
    std::string jwk_json;  // RFC 7517 JWK as a JSON object text
    std::optional<std::string> ethereum_address;
    KeyPolicy policy;
    // In a pair: the appliances whose HSM holds the private key, sorted by name. Empty on a
    // standalone appliance.
    std::vector<std::string> holders;
};

struct CreateKeyParams {
    std::string algorithm;
    std::string label;
    bool replicable = false;
    KeyPolicy policy;
};

struct SignParams {
    Bytes data;  // digest or message bytes
    bool is_digest = true;
    std::string hash = "sha256";   // message hash (and envelope hash)
    std::string encoding = "der";  // der | raw | eth
    std::string rsa_padding = "pkcs1v15";
    bool assign_nonce = false;  // "nonce": true
    std::optional<std::uint64_t> reserved_nonce;
    std::optional<std::vector<std::uint64_t>> watermark;
};

struct SignResult {
    Bytes signature;
    Bytes signed_digest;                      // what the HSM signed (empty for Ed25519 messages)
    std::optional<std::uint64_t> nonce;       // appliance-assigned or consumed reserved nonce
    std::optional<Bytes> envelope;            // the signed nonce envelope (docs/api.md)
    std::optional<std::uint8_t> recovery_id;  // secp256k1
};

struct CounterState {
    std::string key_id;
    std::uint64_t last_issued = 0;  // highest value ever released or reserved (0: none)
    std::uint64_t reserved_outstanding = 0;
};

struct ClientDescription {
    std::string id;
    std::string name;
    Role role = Role::signer;
    std::string state;  // "active" | "revoked"
    std::string created_at;
    std::optional<std::string> cert_sha256;
};

struct NewClient {
    ClientDescription client;
    std::string token;  // "sgt_..." shown once, stored only as a hash
};

struct AuditRecord {
    std::uint64_t seq = 0;
    std::string ts;
    std::string actor;
    std::string action;
    std::string subject;
    std::string outcome;
    std::string details_json;
    std::string hash_hex;
};

struct AuditVerification {
    bool ok = false;
    std::uint64_t records = 0;
    std::optional<std::uint64_t> first_bad_seq;
    std::string reason;
    std::uint64_t checkpoints = 0;                     // HSM-signed checkpoints verified
    std::optional<std::uint64_t> last_checkpoint_seq;  // records up to here are signed for
};

// One etcd member as this appliance sees it.
struct HaMember {
    std::string name;
    std::string url;
    bool reachable = false;
    bool leader = false;
    std::int64_t latency_ms = 0;
    std::string error;
};

// The appliance's place in a pair (GET /v1/ha/status, signetctl ha status).
struct HaStatus {
    std::string mode = "standalone";  // standalone | hot-standby | dual-active
    std::string role = "standalone";  // standalone | starting | standby | active | dual | isolated
    std::string name;
    std::string allocation;  // fast | strict | dense (pairs)
    std::string leader_name;
    std::string leader_url;
    std::int64_t term = 0;
    std::int64_t lease_remaining_ms = 0;
    std::string reason;  // why this appliance does not sign now
    std::uint64_t role_changes = 0;
    std::vector<HaMember> etcd;
    // Allocation counters since start: transactions, CAS conflicts, unknown outcomes, values
    // burnt, values issued.
    std::uint64_t txns = 0, conflicts = 0, unknown = 0, burnt = 0, issued = 0;
    // Hex SHA-256 of this appliance's transport key (SPKI): the fingerprint an operator gives the
    // peer's pairing ceremony. Empty when standalone.
    std::string transport_sha256;
    std::vector<std::string> kek_to;    // peers this appliance exported a KEK to
    std::vector<std::string> kek_from;  // peers whose KEK this appliance imported
};

// The outcome of POST /v1/ha/pair: this appliance exported a key-encryption key to `peer` and
// re-published its replicable keys wrapped under it.
struct PairResult {
    std::string peer;
    std::string kek_id;
    std::string peer_transport_sha256;
    std::uint64_t keys_wrapped = 0;
    std::vector<std::string> failures;  // "<key id>: <why>" for keys that could not be wrapped
};

struct Health {
    bool live = true;
    bool ready = false;
    std::string reason;  // why not ready
};

class Service {
public:
    virtual ~Service() = default;

    // Errc::unauthenticated when the credentials are missing, unknown or revoked (audited).
    [[nodiscard]] virtual Result<Caller> authenticate(const Credentials& c) = 0;
    [[nodiscard]] virtual Health health() = 0;
    // Consumes the one-time setup token and creates the first admin client.
    [[nodiscard]] virtual Result<NewClient> complete_setup(const std::string& setup_token,
                                                           const std::string& admin_name,
                                                           const Credentials& c) = 0;

    [[nodiscard]] virtual Result<KeyDescription> create_key(const Caller& c,
                                                            const CreateKeyParams& p) = 0;
    [[nodiscard]] virtual Result<std::vector<KeyDescription>> list_keys(const Caller& c) = 0;
    [[nodiscard]] virtual Result<KeyDescription> get_key(const Caller& c,
                                                         const std::string& id) = 0;
    [[nodiscard]] virtual Result<KeyDescription> disable_key(const Caller& c,
                                                             const std::string& id) = 0;
    [[nodiscard]] virtual Result<KeyDescription> set_policy(const Caller& c, const std::string& id,
                                                            const KeyPolicy& p) = 0;
    [[nodiscard]] virtual Result<void> destroy_key(const Caller& c, const std::string& id) = 0;

    [[nodiscard]] virtual Result<SignResult> sign(const Caller& c, const std::string& key_id,
                                                  const SignParams& p) = 0;
    // Digests only; no nonce or watermark. All succeed or the call fails.
    [[nodiscard]] virtual Result<std::vector<SignResult>> sign_batch(
        const Caller& c, const std::string& key_id, const std::vector<Bytes>& digests,
        const SignParams& options) = 0;
    [[nodiscard]] virtual Result<bool> verify(const Caller& c, const std::string& key_id,
                                              const SignParams& p, const Bytes& signature) = 0;
    [[nodiscard]] virtual Result<std::uint64_t> reserve_nonce(const Caller& c,
                                                              const std::string& key_id) = 0;
    [[nodiscard]] virtual Result<CounterState> counter(const Caller& c,
                                                       const std::string& key_id) = 0;

    [[nodiscard]] virtual Result<NewClient> create_client(
        const Caller& c, const std::string& name, Role role,
        const std::optional<std::string>& cert_sha256) = 0;
    [[nodiscard]] virtual Result<std::vector<ClientDescription>> list_clients(const Caller& c) = 0;
    [[nodiscard]] virtual Result<void> revoke_client(const Caller& c, const std::string& id) = 0;

    [[nodiscard]] virtual Result<std::vector<AuditRecord>> audit_tail(const Caller& c,
                                                                      std::uint64_t after_seq,
                                                                      std::size_t limit) = 0;
    [[nodiscard]] virtual Result<AuditVerification> audit_verify(const Caller& c) = 0;

    [[nodiscard]] virtual Result<HaStatus> ha_status(const Caller& c) = 0;
    // The pairing ceremony's export to `peer` (admin, audited): refused unless the peer's published
    // transport key has SHA-256 `transport_sha256`.
    [[nodiscard]] virtual Result<PairResult> pair(const Caller& c, const std::string& peer,
                                                  const std::string& transport_sha256) = 0;

    // In a pair: the peer that must serve a signing request (sign, sign-batch, nonce reservation)
    // for `key_id` that this appliance cannot, i.e. the active when this one is the hot standby,
    // or in dual-active the appliance whose HSM alone holds the key. nullopt: serve (or refuse)
    // here. Cheap and non-blocking (the I/O thread asks it); the API never forwards a request that
    // was itself forwarded.
    [[nodiscard]] virtual std::optional<PeerRoute> route_signing(const std::string& key_id) {
        (void)key_id;
        return std::nullopt;
    }
    // A request this appliance forwarded to `to` was answered with `status` (0: no answer), for
    // the forwarding side's audit tally.
    virtual void forwarded(const Caller& c, const std::string& key_id, const PeerRoute& to,
                           int status) {
        (void)c;
        (void)key_id;
        (void)to;
        (void)status;
    }
};

}  // namespace signet::web
