#include "common/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace ringlb::common {

namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};

const char* level_name(LogLevel level) {
    switch (level) {
        case LogLevel::kDebug:
            return "debug";
        case LogLevel::kInfo:
            return "info";
        case LogLevel::kWarn:
            return "warn";
        case LogLevel::kError:
            return "error";
    }
    return "?";
}
}  // namespace

void set_log_level(LogLevel level) {
    g_level.store(level, std::memory_order_relaxed);
}
LogLevel log_level() {
    return g_level.load(std::memory_order_relaxed);
}

bool parse_log_level(std::string_view text, LogLevel& out) {
    if (text == "debug")
        out = LogLevel::kDebug;
    else if (text == "info")
        out = LogLevel::kInfo;
    else if (text == "warn")
        out = LogLevel::kWarn;
    else if (text == "error")
        out = LogLevel::kError;
    else
        return false;
    return true;
}

namespace {

// One line: timestamp, level, the formatted message, `suffix`, newline.
void write_line(LogLevel level, const char* suffix, const char* fmt, va_list ap) {
    char line[1024];
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    gmtime_r(&ts.tv_sec, &utc);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &utc);
    n += static_cast<size_t>(snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ",
                                      ts.tv_nsec / 1000000, level_name(level)));
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (m < 0) m = 0;
    n += static_cast<size_t>(m);
    if (n > sizeof(line) - 2) n = sizeof(line) - 2;
    if (suffix != nullptr) {
        m = snprintf(line + n, sizeof(line) - n - 1, "%s", suffix);
        if (m > 0) n += static_cast<size_t>(m);
        if (n > sizeof(line) - 2) n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    // One write per line keeps lines whole across threads; a failed log write is not actionable.
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line, n);
}

}  // namespace

void log(LogLevel level, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_line(level, nullptr, fmt, ap);
    va_end(ap);
}

bool LogLimiter::admit(uint64_t now_ms) {
    if (logged_ && now_ms - last_logged_ms_ < window_ms_) {
        ++suppressed_;
        return false;
    }
    reported_suppressed_ = suppressed_;
    reported_since_ms_ = logged_ ? now_ms - last_logged_ms_ : 0;
    suppressed_ = 0;
    logged_ = true;
    last_logged_ms_ = now_ms;
    return true;
}

void log_limited(LogLevel level, LogLimiter& limiter, uint64_t now_ms, const char* fmt, ...) {
    if (!limiter.admit(now_ms)) return;
    char suffix[96];
    suffix[0] = '\0';
    if (limiter.suppressed() > 0) {
        // Whole seconds, rounded: the span is at least the window, so ms would be noise.
        snprintf(suffix, sizeof(suffix), " (suppressed %llu in the last %llu s)",
                 static_cast<unsigned long long>(limiter.suppressed()),
                 static_cast<unsigned long long>((limiter.since_ms() + 500) / 1000));
    }
    va_list ap;
    va_start(ap, fmt);
    write_line(level, suffix[0] ? suffix : nullptr, fmt, ap);
    va_end(ap);
}

}  // namespace ringlb::common
