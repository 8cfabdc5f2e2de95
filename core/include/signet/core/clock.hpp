// Clock port: logic that must be driven by tests takes time from here, never from the OS directly.
#pragma once

#include <chrono>
#include <string>

namespace signet {

class Clock {
public:
    virtual ~Clock() = default;
    // CLOCK_MONOTONIC: durations, rate limits, leases. Never wall-clock.
    [[nodiscard]] virtual std::chrono::steady_clock::time_point monotonic() const = 0;
    // Wall clock: timestamps shown to humans and written to the audit log only.
    [[nodiscard]] virtual std::chrono::system_clock::time_point wall() const = 0;
};

class SystemClock final : public Clock {
public:
    [[nodiscard]] std::chrono::steady_clock::time_point monotonic() const override {
        return std::chrono::steady_clock::now();
    }
    [[nodiscard]] std::chrono::system_clock::time_point wall() const override {
        return std::chrono::system_clock::now();
    }
};

// RFC 3339 UTC with milliseconds: "2026-11-27T23:37:23.123Z".
[[nodiscard]] std::string format_rfc3339(std::chrono::system_clock::time_point t);

}  // namespace signet
