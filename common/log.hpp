#pragma once

#include <string_view>

namespace ringlb::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(std::string_view text, LogLevel& out);

// Writes one whole line to stderr with a timestamp and level; lines from different threads never
// interleave (one write(2) per line).
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace ringlb::common

#define RINGLB_LOG(level, ...)                                                                     \
    do {                                                                                           \
        if ((level) >= ::ringlb::common::log_level()) ::ringlb::common::log((level), __VA_ARGS__); \
    } while (0)
#define LOG_DEBUG(...) RINGLB_LOG(::ringlb::common::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) RINGLB_LOG(::ringlb::common::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) RINGLB_LOG(::ringlb::common::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) RINGLB_LOG(::ringlb::common::LogLevel::kError, __VA_ARGS__)
