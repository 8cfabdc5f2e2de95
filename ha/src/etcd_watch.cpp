#include "etcd_watch.hpp"

#include <atomic>
#include <boost/json/stream_parser.hpp>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "etcd_http.hpp"
#include "etcd_json.hpp"

namespace signet::ha::detail {
namespace {

namespace json = boost::json;

// Time a member gets, after the TCP/TLS connect, to confirm a watch. A healthy member answers in
// milliseconds; a stopped one never does, and the next member is tried.
constexpr Milliseconds kCreateTimeout{2000};

std::string where(const EtcdEndpoint& ep) {
    return "etcd watch at " + ep.name + " " + ep.host + ":" + std::to_string(ep.port);
}

// Shared by the Watch object and its thread, so a handler may destroy its own Watch.
struct WatchState {
    WatchTarget target;
    std::string request_body;
    WatchHandlers handlers;
    std::atomic<bool> stopping{false};

    std::mutex mu;
    std::condition_variable cv;
    bool setup_done = false;               // guarded by mu
    std::optional<Error> setup_error;      // guarded by mu
    std::shared_ptr<HttpConnection> conn;  // guarded by mu: the one interrupt() must reach

    void finish_setup(std::optional<Error> error) {
        {
            std::lock_guard lock(mu);
            if (setup_done) return;
            setup_done = true;
            setup_error = std::move(error);
        }
        cv.notify_all();
    }
    void deliver_error(const Error& e) {
        if (!stopping.load() && handlers.on_error) handlers.on_error(e);
    }
};

// Reads one member's stream. Returns the error that ended it before it was established (the
// caller then tries the next member); std::nullopt when the stream was established (its end was
// reported through on_error) or the watch is stopping.
std::optional<Error> run_stream(WatchState& st, const EtcdEndpoint& ep) {
    std::shared_ptr<HttpConnection> conn;
    {
        std::lock_guard lock(st.mu);
        if (st.stopping.load()) return std::nullopt;
        conn = std::make_shared<HttpConnection>(ep, st.target.tls);
        st.conn = conn;
    }
    const auto start = SteadyClock::now();
    auto connected = conn->connect(start + st.target.connect_timeout);
    if (!connected.ok) {
        return make_error(Errc::unavailable,
                          where(ep) + ": " + connected.stage + ": " + connected.error.message());
    }

    bool established = false;
    bool ended = false;  // a terminal message (cancel, error) was handled
    std::optional<Error> setup_failure;
    json::stream_parser parser;

    const auto handle = [&](const json::value& doc) -> bool {
        if (auto gw = find_gateway_error(doc)) {
            ended = true;
            Error e = make_error(Errc::unavailable, where(ep) + ": " + gw->message);
            if (established) {
                st.deliver_error(e);
            } else {
                setup_failure = std::move(e);
            }
            return false;
        }
        auto msg = parse_watch_message(doc);
        if (!msg) {
            ended = true;
            Error e = msg.error().within(where(ep));
            if (established) {
                st.deliver_error(e);
            } else {
                setup_failure = std::move(e);
            }
            return false;
        }
        if (msg->created && !established) {
            established = true;
            st.finish_setup(std::nullopt);
        }
        if (!msg->events.empty() && established && st.handlers.on_events) {
            // The contract promises one call per revision; etcd may batch several revisions
            // (catching up from history) into one message.
            std::size_t i = 0;
            while (i < msg->events.size()) {
                const auto rev = msg->events[i].kv.mod_revision;
                std::vector<WatchEvent> group;
                while (i < msg->events.size() && msg->events[i].kv.mod_revision == rev) {
                    group.push_back(std::move(msg->events[i]));
                    ++i;
                }
                if (st.stopping.load()) return false;
                st.handlers.on_events(group, rev);
            }
        }
        if (msg->canceled) {
            ended = true;
            Error e =
                msg->compact_revision > 0
                    ? make_error(HaErrc::compacted, where(ep) + ": compacted up to revision " +
                                                        std::to_string(msg->compact_revision))
                    : make_error(Errc::unavailable,
                                 where(ep) + ": canceled by the member: " +
                                     (msg->cancel_reason.empty() ? std::string("no reason")
                                                                 : msg->cancel_reason));
            if (established) {
                st.deliver_error(e);
            } else {
                setup_failure = std::move(e);
            }
            return false;
        }
        return !st.stopping.load();
    };

    const auto on_data = [&](std::string_view data) -> bool {
        while (!data.empty()) {
            boost::system::error_code ec;
            const auto used = parser.write_some(data.data(), data.size(), ec);
            if (ec) {
                ended = true;
                Error e = make_error(Errc::bad_request, where(ep) + ": malformed stream");
                if (established) {
                    st.deliver_error(e);
                } else {
                    setup_failure = std::move(e);
                }
                return false;
            }
            data.remove_prefix(used);
            if (parser.done()) {
                const auto doc = parser.release();
                parser.reset();
                if (!handle(doc)) return false;
            }
        }
        return true;
    };

    const auto out = conn->post_stream("/v3/watch", st.request_body,
                                       SteadyClock::now() + kCreateTimeout, &established, on_data);
    {
        std::lock_guard lock(st.mu);
        st.conn.reset();
    }
    if (st.stopping.load()) return std::nullopt;
    if (!established) {
        if (setup_failure) return setup_failure;
        if (!out.ok) {
            return make_error(Errc::unavailable,
                              where(ep) + ": " + out.stage + ": " + out.error.message());
        }
        return make_error(Errc::unavailable, where(ep) +
                                                 ": stream ended before it was created (HTTP " +
                                                 std::to_string(out.reply.status) + ")");
    }
    if (!ended) {
        const std::string why = out.ok ? "stream ended" : out.stage + ": " + out.error.message();
        if (st.target.logger) {
            st.target.logger->log(LogLevel::warn, "etcd", "watch_lost",
                                  {{"endpoint", ep.name}, {"error", why}});
        }
        st.deliver_error(make_error(Errc::unavailable, where(ep) + ": " + why));
    }
    return std::nullopt;
}

void watch_thread(const std::shared_ptr<WatchState>& st) {
    std::optional<Error> last;
    for (const auto& ep : st->target.endpoints) {
        if (st->stopping.load()) break;
        last = run_stream(*st, ep);
        if (!last) break;
        if (st->target.logger) {
            st->target.logger->log(
                LogLevel::warn, "etcd", "endpoint_failover",
                {{"call", "watch"}, {"endpoint", ep.name}, {"error", last->message()}});
        }
    }
    if (last) {
        st->finish_setup(std::move(last));
    } else {
        // Stopping, or the stream was established and has ended: setup (if anyone still waits)
        // is over either way.
        st->finish_setup(make_error(Errc::unavailable, "etcd watch: canceled"));
    }
}

class EtcdWatch final : public Watch {
public:
    EtcdWatch(std::shared_ptr<WatchState> st, std::thread thread)
        : st_(std::move(st)), thread_(std::move(thread)) {}
    EtcdWatch(const EtcdWatch&) = delete;
    EtcdWatch& operator=(const EtcdWatch&) = delete;
    ~EtcdWatch() override { stop_and_join(st_, thread_); }

    static void stop_and_join(const std::shared_ptr<WatchState>& st, std::thread& thread) {
        st->stopping.store(true);
        {
            std::lock_guard lock(st->mu);
            if (st->conn) st->conn->interrupt();
        }
        if (!thread.joinable()) return;
        if (thread.get_id() == std::this_thread::get_id()) {
            // Destroyed from its own handler: the thread holds the state and ends on its own
            // (stopping is set, so no handler runs after this one returns).
            thread.detach();
        } else {
            thread.join();
        }
    }

private:
    std::shared_ptr<WatchState> st_;
    std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<Watch>> start_watch(const WatchTarget& target, const std::string& key,
                                           const std::string& range_end,
                                           std::int64_t start_revision, WatchHandlers handlers) {
    if (target.endpoints.empty()) {
        return make_error(Errc::invalid_argument, "etcd watch: no endpoints");
    }
    auto st = std::make_shared<WatchState>();
    st->target = target;
    st->request_body = watch_create_json(key, range_end, start_revision);
    st->handlers = std::move(handlers);
    std::thread thread([st] { watch_thread(st); });

    std::optional<Error> error;
    {
        std::unique_lock lock(st->mu);
        // Bounded: every member's attempt ends by its connect and create deadlines.
        st->cv.wait(lock, [&] { return st->setup_done; });
        error = st->setup_error;
    }
    if (error) {
        EtcdWatch::stop_and_join(st, thread);
        return *error;
    }
    return std::unique_ptr<Watch>(std::make_unique<EtcdWatch>(st, std::move(thread)));
}

}  // namespace signet::ha::detail
