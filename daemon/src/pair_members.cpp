#include "pair_members.hpp"

#include <boost/json.hpp>
#include <cctype>
#include <set>

namespace signet::daemon {

namespace json = boost::json;

std::string plain_fingerprint(const std::string& sha256) {
    std::string out;
    for (const char c : sha256) {
        if (c != ':') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

PairMembers::PairMembers(std::shared_ptr<ha::Coordinator> etcd, std::string prefix,
                         std::string self, ha::Milliseconds timeout, std::shared_ptr<Logger> logger)
    : etcd_(std::move(etcd)),
      prefix_(prefix + "appliances/"),
      fenced_(std::move(prefix) + "fenced/"),
      self_(std::move(self)),
      timeout_(timeout),
      logger_(std::move(logger)) {}

PairMembers::~PairMembers() { stop(); }

Result<void> PairMembers::publish(const std::string& url, const std::string& tls_sha256) {
    const json::object record{
        {"name", self_}, {"url", url}, {"tls_sha256", plain_fingerprint(tls_sha256)}};
    ha::TxnRequest t;
    t.success.push_back(ha::Op::put(prefix_ + self_, json::serialize(record)));
    if (auto r = etcd_->txn(t, timeout_); !r) {
        return r.error().within("publish this appliance's address at " + prefix_ + self_);
    }
    if (auto r = refresh(); !r) {
        logger_->log(LogLevel::warn, "ha", "members_unread", {{"error", r.error().message()}});
    }
    thread_ = std::thread([this] { loop(); });
    return ok();
}

void PairMembers::stop() {
    {
        const std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

Result<void> PairMembers::refresh() {
    // The fence marks first: an appliance fenced by a forced promotion is neither trusted nor a
    // forwarding target, whatever its old record says.
    const auto fenced = SIGNET_TRY(etcd_->range(fenced_, ha::prefix_end(fenced_), timeout_));
    std::set<std::string> excluded;
    for (const auto& kv : fenced.kvs) excluded.insert(kv.key.substr(fenced_.size()));
    const auto read = SIGNET_TRY(etcd_->range(prefix_, ha::prefix_end(prefix_), timeout_));
    std::map<std::string, PairMember> peers;
    for (const auto& kv : read.kvs) {
        boost::system::error_code ec;
        const json::value v = json::parse(kv.value, ec);
        const json::object* o = ec ? nullptr : v.if_object();
        const json::value* name = o ? o->if_contains("name") : nullptr;
        const json::value* url = o ? o->if_contains("url") : nullptr;
        const json::value* fp = o ? o->if_contains("tls_sha256") : nullptr;
        if (!name || !url || !fp || !name->is_string() || !url->is_string() || !fp->is_string() ||
            kv.key != prefix_ + std::string(name->get_string())) {
            logger_->log(LogLevel::warn, "ha", "member_record_invalid", {{"key", kv.key}});
            continue;
        }
        PairMember m{std::string(name->get_string()), std::string(url->get_string()),
                     std::string(fp->get_string())};
        if (m.name != self_ && !excluded.contains(m.name)) peers.emplace(m.name, std::move(m));
    }
    const std::lock_guard lock(mu_);
    // Two reads may finish out of order (the loop's and a refresh on a miss): keep the newer.
    if (read.revision < revision_) return ok();
    revision_ = read.revision;
    peers_ = std::move(peers);
    return ok();
}

void PairMembers::loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
        cv_.wait_for(lock, std::chrono::seconds(1));
        if (stopping_) break;
        lock.unlock();
        // A failed read keeps the last records: the peer's address and certificate do not change
        // while etcd is unreachable, and forwarding fails on its own if the peer is gone.
        (void)refresh();
        lock.lock();
    }
}

std::optional<PairMember> PairMembers::find(const std::string& name) const {
    const std::lock_guard lock(mu_);
    const auto it = peers_.find(name);
    if (it == peers_.end()) return std::nullopt;
    return it->second;
}

std::optional<PairMember> PairMembers::by_certificate(const std::string& sha256) {
    const std::string fp = plain_fingerprint(sha256);
    if (fp.empty()) return std::nullopt;
    auto find_fp = [&]() -> std::optional<PairMember> {
        for (const auto& [name, m] : peers_) {
            if (m.tls_sha256 == fp) return m;
        }
        return std::nullopt;
    };
    {
        const std::lock_guard lock(mu_);
        if (auto m = find_fp()) return m;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_miss_refresh_ < std::chrono::milliseconds(500)) return std::nullopt;
        last_miss_refresh_ = now;
    }
    (void)refresh();
    const std::lock_guard lock(mu_);
    return find_fp();
}

}  // namespace signet::daemon
