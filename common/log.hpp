#pragma once

#include <cstdint>
#include <string_view>

#include "common/log_format.hpp"

namespace ringlb::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(std::string_view text, LogLevel& out);
const char* to_string(LogLevel level);

// The format of every line log() writes from now on (text until set: the lines written before
// the configuration is loaded).
void set_log_format(LogFormat format);
LogFormat log_format();

// Writes one whole line to stderr with a timestamp and level, in log_format(); lines from
// different threads never interleave (one write(2) per line). The message is cut at about 1000
// bytes before it is escaped.
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Rate limit for one source of a warning that can repeat per event (a shard out of fds, a
// listener's accept error): the first occurrence is logged at once, the ones within `window` of
// the last logged one are only counted, and the first one after the window is logged with how
// many were dropped. Out of fds, the shards and the admin endpoint used to log ~30 lines a
// second. Not thread-safe: each source (a shard, the admin server) owns its own. Time is passed
// in, so each owner uses its own clock and tests use theirs.
class LogLimiter {
  public:
    static constexpr uint64_t kDefaultWindowMs = 10000;

    explicit LogLimiter(uint64_t window_ms = kDefaultWindowMs) : window_ms_(window_ms) {}

    // One occurrence at `now_ms`: true if it is to be logged, false if it was counted instead.
    // After true, suppressed() and since_ms() describe what was dropped before it.
    bool admit(uint64_t now_ms);
    // Occurrences dropped between the previous logged one and the one just admitted.
    uint64_t suppressed() const { return reported_suppressed_; }
    // Time from the previous logged occurrence to the one just admitted.
    uint64_t since_ms() const { return reported_since_ms_; }
    uint64_t window_ms() const { return window_ms_; }

  private:
    uint64_t window_ms_;
    bool logged_ = false;
    uint64_t last_logged_ms_ = 0;
    uint64_t suppressed_ = 0;
    uint64_t reported_suppressed_ = 0;
    uint64_t reported_since_ms_ = 0;
};

// log() through `limiter`: nothing when it drops the occurrence, else the line with
// " (suppressed N in the last S s)" appended when it dropped N > 0 before.
void log_limited(LogLevel level, LogLimiter& limiter, uint64_t now_ms, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));

}  // namespace ringlb::common

#define RINGLB_LOG(level, ...)                                                                     \
    do {                                                                                           \
        if ((level) >= ::ringlb::common::log_level()) ::ringlb::common::log((level), __VA_ARGS__); \
    } while (0)
#define LOG_DEBUG(...) RINGLB_LOG(::ringlb::common::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) RINGLB_LOG(::ringlb::common::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) RINGLB_LOG(::ringlb::common::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) RINGLB_LOG(::ringlb::common::LogLevel::kError, __VA_ARGS__)
// A log line through a LogLimiter: LOG_LIMITED(level, limiter_, now_ms(), "fmt", args...).
#define LOG_LIMITED(level, limiter, now_ms, ...)                                      \
    do {                                                                              \
        if ((level) >= ::ringlb::common::log_level())                                 \
            ::ringlb::common::log_limited((level), (limiter), (now_ms), __VA_ARGS__); \
    } while (0)
#define LOG_WARN_LIMITED(limiter, now_ms, ...) \
    LOG_LIMITED(::ringlb::common::LogLevel::kWarn, limiter, now_ms, __VA_ARGS__)
#define LOG_ERROR_LIMITED(limiter, now_ms, ...) \
    LOG_LIMITED(::ringlb::common::LogLevel::kError, limiter, now_ms, __VA_ARGS__)
