// Router: maps (method, path pattern) to a handler. Patterns are literal segments and "{name}"
// segments that bind one path segment into Request::params.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "signet/web/http.hpp"

namespace signet::web {

using Handler = std::function<Response(Request&)>;

// Where a handler runs. `worker` handlers may block (HSM, SQLite, fsync): they run on the bounded
// worker pool, behind the admission queue. `inline_` handlers must be cheap and non-blocking
// (health, metrics): they run on the network thread and are never refused for overload.
enum class Execution { worker, inline_ };

struct Route {
    std::string method;
    std::string pattern;  // "/v1/keys/{id}/sign"
    std::string name;     // stable label for metrics, e.g. "keys.sign"
    Execution execution = Execution::worker;
    Handler handler;
    // Optional, for worker routes: true when this request is known to finish in short, bounded
    // time (a plain HSM signature, ~0.1 ms) so it may run on the I/O thread and skip two thread
    // hand-offs. The server lets at most ServerOptions::max_inline_fast such handlers run at once
    // (fewer than the I/O threads, so one stays free); beyond that the request goes to the workers.
    // Must be cheap and must not block.
    std::function<bool(const Request&)> fast_path{};
};

struct RouteMatch {
    const Route* route = nullptr;      // null when nothing matched
    bool path_matched = false;         // some route has this path (-> 405 instead of 404)
    std::vector<std::string> allowed;  // methods allowed on this path (for 405 Allow header)
};

// Built before the server starts and read-only afterwards (match() is then thread-safe).
class Router {
public:
    // Throws std::invalid_argument (a bug) for an empty method, a null handler, a pattern not
    // starting with '/', a "{...}" that is not a whole segment, or a duplicate method + pattern.
    void add(Route r);
    // Finds the route for method + req.path (segment by segment; a parameter needs a non-empty
    // segment; a literal segment beats a parameter) and binds path parameters into req.params
    // (cleared first). Methods compare case-sensitively; HEAD is not implied by GET.
    [[nodiscard]] RouteMatch match(Request& req) const;
    [[nodiscard]] const std::vector<Route>& routes() const noexcept { return routes_; }

private:
    std::vector<Route> routes_;
};

}  // namespace signet::web
