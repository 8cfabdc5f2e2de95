// Logger port: structured key=value lines with a component and an event name. Implementations must
// be thread-safe. Callers never pass PINs, tokens, passwords, key bytes or request bodies as
// fields.
#pragma once

#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace signet {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

[[nodiscard]] std::string_view to_string(LogLevel l) noexcept;

struct LogField {
    std::string_view key;
    std::string value;

    LogField(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
    LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
    LogField(std::string_view k, const char* v) : key(k), value(v) {}
    template <class N>
    requires std::is_arithmetic_v<N> LogField(std::string_view k, N n)
        : key(k), value(std::to_string(n)) {}
};

class Logger {
public:
    virtual ~Logger() = default;

    [[nodiscard]] virtual bool enabled(LogLevel level) const noexcept = 0;
    // Writes one record. `event` is a stable snake_case name (e.g. "token_relogin").
    virtual void write(LogLevel level, std::string_view component, std::string_view event,
                       std::initializer_list<LogField> fields) = 0;

    // Level is checked before any field is formatted by the caller's arguments.
    void log(LogLevel level, std::string_view component, std::string_view event,
             std::initializer_list<LogField> fields = {}) {
        if (enabled(level)) write(level, component, event, fields);
    }
};

// Discards everything.
class NullLogger final : public Logger {
public:
    [[nodiscard]] bool enabled(LogLevel) const noexcept override { return false; }
    void write(LogLevel, std::string_view, std::string_view,
               std::initializer_list<LogField>) override {}
};

// Writes "ts=... level=... component=... event=... k=v ..." lines to stderr; values containing
// spaces, quotes, '=' or control characters are quoted and escaped so one record is one line.
class StderrLogger final : public Logger {
public:
    explicit StderrLogger(LogLevel min_level = LogLevel::info) : min_(min_level) {}
    [[nodiscard]] bool enabled(LogLevel level) const noexcept override { return level >= min_; }
    void write(LogLevel level, std::string_view component, std::string_view event,
               std::initializer_list<LogField> fields) override;

private:
    LogLevel min_;
    std::mutex mu_;  // serialises writes so records do not interleave
};

// Formats one record as a single line without a trailing newline (used by StderrLogger and tests).
[[nodiscard]] std::string format_log_line(std::string_view timestamp, LogLevel level,
                                          std::string_view component, std::string_view event,
                                          std::initializer_list<LogField> fields);

// Process-wide null logger for components constructed without one.
[[nodiscard]] std::shared_ptr<Logger> null_logger();

}  // namespace signet
