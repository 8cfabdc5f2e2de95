#include "rate_limiter.hpp"

#include <algorithm>

namespace signet::daemon {

bool RateLimiter::try_acquire(const std::string& key_id, const web::RateLimit& limit, double cost) {
    if (limit.per_second <= 0) return true;
    const double burst = limit.burst > 0 ? limit.burst : std::max(1.0, limit.per_second);
    const auto now = clock_->monotonic();
    const std::lock_guard lock(mu_);
    Bucket& b = buckets_[key_id];
    if (b.per_second != limit.per_second || b.burst != burst) {
        b = Bucket{burst, limit.per_second, burst, now};
    }
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(b.burst, b.tokens + std::max(0.0, elapsed) * b.per_second);
    b.last = now;
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
}

void RateLimiter::forget(const std::string& key_id) {
    const std::lock_guard lock(mu_);
    buckets_.erase(key_id);
}

}  // namespace signet::daemon
