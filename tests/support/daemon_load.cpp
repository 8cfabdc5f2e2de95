#include "signet_test/daemon_load.hpp"

#include <algorithm>
#include <map>
#include <memory>

#include "signet_test/crypto_oracle.hpp"
#include "signet_test/daemon_api.hpp"
#include "signet_test/independent_verify.hpp"

namespace signet::test {

NonceLoad::NonceLoad(web::ClientOptions client, std::string token, std::string key_id,
                     LoadOptions options)
    : client_(std::move(client)),
      token_(std::move(token)),
      key_id_(std::move(key_id)),
      options_(std::move(options)) {}

NonceLoad::~NonceLoad() { join(); }

void NonceLoad::start() {
    deadline_ = std::chrono::steady_clock::now() + options_.max_duration;
    running_ = options_.threads;
    for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this, t] { run(t); });
}

void NonceLoad::run(int thread) {
    std::vector<std::unique_ptr<ApiClient>> apis;
    apis.push_back(std::make_unique<ApiClient>(client_, token_));
    for (const auto& o : options_.failover) apis.push_back(std::make_unique<ApiClient>(o, token_));
    std::size_t target = 0;
    for (int i = 0; i < options_.per_thread && std::chrono::steady_clock::now() < deadline_; ++i) {
        ApiClient& api = *apis[target];
        SignOp op;
        op.thread = thread;
        op.index = i;
        op.target = static_cast<int>(target);
        op.digest_hex =
            sha256_hex(options_.salt + "/" + std::to_string(thread) + "/" + std::to_string(i));
        const std::string body =
            json::serialize(json::object{{"digest", op.digest_hex}, {"nonce", true}});
        op.invoked = std::chrono::steady_clock::now();
        auto r = api.try_request("POST", "/v1/keys/" + key_id_ + "/sign", body);
        op.completed = std::chrono::steady_clock::now();
        const bool stop = !r;
        if (!r) {
            op.transport_failed = true;
        } else {
            op.status = r->status;
            op.error_code = r->error_code();
            if (r->status == 200 && r->json.is_object()) {
                const auto& o = r->json.as_object();
                op.acked = true;
                op.nonce = u64(o, "nonce");
                op.signature = unhex(str(o, "signature"));
                op.envelope = unhex(str(o, "envelope"));
            }
        }
        {
            const std::lock_guard lock(mu_);
            ops_.push_back(std::move(op));
        }
        if (!stop && r->status == 200) ++acked_;
        if (apis.size() > 1 && (stop || r->status == 503)) {
            target = (target + 1) % apis.size();  // fail over, as a pair's client would
            std::this_thread::sleep_for(options_.failover_pause);
            continue;
        }
        if (stop) break;  // the daemon is gone: this client's history ends here
    }
    --running_;
}

bool NonceLoad::wait_acked(std::size_t n, std::chrono::milliseconds bound) {
    const auto until = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < until) {
        if (acked_ >= n) return true;
        if (running_ == 0) return acked_ >= n;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return acked_ >= n;
}

void NonceLoad::join() {
    for (auto& t : threads_) {
        if (t.joinable()) t.join();
    }
    threads_.clear();
}

std::vector<SignOp> acknowledged(const std::vector<SignOp>& ops) {
    std::vector<SignOp> out;
    std::copy_if(ops.begin(), ops.end(), std::back_inserter(out),
                 [](const SignOp& o) { return o.acked; });
    return out;
}

namespace {
std::string name(const SignOp& o) {
    return "thread " + std::to_string(o.thread) + " op " + std::to_string(o.index) + " (nonce " +
           std::to_string(o.nonce) + ", digest " + o.digest_hex.substr(0, 8) + ")";
}
}  // namespace

std::vector<std::string> duplicate_nonces(const std::vector<SignOp>& ops, std::size_t limit) {
    std::vector<std::string> out;
    std::map<std::uint64_t, const SignOp*> seen;
    for (const auto& o : ops) {
        if (!o.acked) continue;
        const auto [it, fresh] = seen.emplace(o.nonce, &o);
        if (!fresh && out.size() < limit) {
            out.push_back("nonce " + std::to_string(o.nonce) + " issued to " + name(*it->second) +
                          " and to " + name(o));
        }
    }
    return out;
}

std::vector<std::string> per_thread_order_violations(const std::vector<SignOp>& ops,
                                                     std::size_t limit) {
    std::vector<std::string> out;
    std::map<int, const SignOp*> last;  // ops are recorded in each thread's order
    for (const auto& o : ops) {
        if (!o.acked) continue;
        auto& prev = last[o.thread];
        if (prev && prev->nonce >= o.nonce && out.size() < limit) {
            out.push_back(name(*prev) + " then " + name(o));
        }
        prev = &o;
    }
    return out;
}

std::vector<std::string> realtime_order_violations(const std::vector<SignOp>& ops,
                                                   std::size_t limit) {
    std::vector<const SignOp*> by_complete, by_invoke;
    for (const auto& o : ops) {
        if (!o.acked) continue;
        by_complete.push_back(&o);
        by_invoke.push_back(&o);
    }
    std::ranges::sort(by_complete, {}, &SignOp::completed);
    std::ranges::sort(by_invoke, {}, &SignOp::invoked);
    std::vector<std::string> out;
    std::size_t done = 0;
    const SignOp* max_done =
        nullptr;  // highest nonce among ops completed before the current invoke
    for (const SignOp* b : by_invoke) {
        while (done < by_complete.size() && by_complete[done]->completed < b->invoked) {
            if (!max_done || by_complete[done]->nonce > max_done->nonce)
                max_done = by_complete[done];
            ++done;
        }
        if (max_done && max_done->nonce >= b->nonce && out.size() < limit) {
            out.push_back(name(*max_done) + " completed before " + name(*b) + " was invoked");
        }
    }
    return out;
}

std::vector<std::string> envelope_violations(const std::vector<SignOp>& ops,
                                             const std::string& key_id, const Bytes& spki,
                                             std::size_t limit) {
    std::vector<std::string> out;
    for (const auto& o : ops) {
        if (!o.acked || out.size() >= limit) continue;
        const Bytes expected = rebuild_nonce_envelope(key_id, o.nonce, unhex(o.digest_hex));
        if (o.envelope != expected) {
            out.push_back(name(o) + ": envelope differs from the documented layout");
        } else if (!evp_verify(pkcs11::Algorithm::ecdsa_p256, spki, oracle_sha256(expected),
                               o.signature)) {
            out.push_back(name(o) + ": signature does not verify over the envelope");
        }
    }
    return out;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
}

}  // namespace signet::test
