#include "signet/core/logger.hpp"

#include "signet/core/clock.hpp"
#include "signet/core/json.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace signet {
namespace {

bool needs_quotes(std::string_view v) noexcept {
    if (v.empty()) return true;
    for (const char c : v) {
        if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20 ||
            c == 0x7f) {
            return true;
        }
    }
    return false;
}

void append_value(std::string& out, std::string_view v) {
    if (!needs_quotes(v)) {
        out += v;
        return;
    }
    out += json_quote(v);  // one record stays one line: newlines and quotes are escaped
}

}  // namespace

std::string format_rfc3339(std::chrono::system_clock::time_point now) {
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms.count()));
    return buf;
}

namespace {
std::string utc_now() { return format_rfc3339(std::chrono::system_clock::now()); }
}  // namespace

std::string_view to_string(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::debug: return "debug";
        case LogLevel::info: return "info";
        case LogLevel::warn: return "warn";
        case LogLevel::error: return "error";
    }
    return "unknown";
}

std::string format_log_line(std::string_view timestamp, LogLevel level, std::string_view component,
                            std::string_view event, std::initializer_list<LogField> fields) {
    std::string line;
    line.reserve(96);
    line += "ts=";
    line += timestamp;
    line += " level=";
    line += to_string(level);
    line += " component=";
    append_value(line, component);
    line += " event=";
    append_value(line, event);
    for (const LogField& f : fields) {
        line += ' ';
        line += f.key;
        line += '=';
        append_value(line, f.value);
    }
    return line;
}

void StderrLogger::write(LogLevel level, std::string_view component, std::string_view event,
                         std::initializer_list<LogField> fields) {
    std::string line = format_log_line(utc_now(), level, component, event, fields);
    line += '\n';
    const std::lock_guard lock(mu_);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

std::shared_ptr<Logger> null_logger() {
    static const std::shared_ptr<Logger> instance = std::make_shared<NullLogger>();
    return instance;
}

}  // namespace signet
