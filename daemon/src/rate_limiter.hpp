// Token buckets per key (policy rate_limit), on CLOCK_MONOTONIC from the Clock port.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "signet/core/clock.hpp"
#include "signet/web/service.hpp"

namespace signet::daemon {

class RateLimiter {
public:
    explicit RateLimiter(std::shared_ptr<const Clock> clock) : clock_(std::move(clock)) {}
    // Takes `cost` tokens from the key's bucket; false when it does not hold that many. A limit of
    // 0 per second is unlimited. Changing the limit resets the bucket to full.
    [[nodiscard]] bool try_acquire(const std::string& key_id, const web::RateLimit& limit,
                                   double cost = 1);
    void forget(const std::string& key_id);

private:
    struct Bucket {
        double tokens = 0;
        double per_second = 0;
        double burst = 0;
        std::chrono::steady_clock::time_point last;
    };
    std::shared_ptr<const Clock> clock_;
    std::mutex mu_;
    std::unordered_map<std::string, Bucket> buckets_;  // guarded by mu_
};

}  // namespace signet::daemon
