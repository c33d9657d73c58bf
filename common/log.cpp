#include "common/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>

namespace ringlb::common {

namespace {
std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::atomic<LogFormat> g_format{LogFormat::kText};
}  // namespace

const char* to_string(LogLevel level) {
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

void set_log_level(LogLevel level) {
    g_level.store(level, std::memory_order_relaxed);
}
LogLevel log_level() {
    return g_level.load(std::memory_order_relaxed);
}

void set_log_format(LogFormat format) {
    g_format.store(format, std::memory_order_relaxed);
}
LogFormat log_format() {
    return g_format.load(std::memory_order_relaxed);
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

// One line: timestamp, level, the formatted message followed by `suffix`, in log_format().
void write_line(LogLevel level, const char* suffix, const char* fmt, va_list ap) {
    // The message is cut here, before escaping, as the text line always was (about 1000 bytes);
    // an escaped JSON message may be longer.
    char message[1024];
    int m = vsnprintf(message, sizeof(message), fmt, ap);
    size_t n = m < 0 ? 0 : std::min(static_cast<size_t>(m), sizeof(message) - 1);
    if (suffix != nullptr) {
        m = snprintf(message + n, sizeof(message) - n, "%s", suffix);
        if (m > 0) n = std::min(n + static_cast<size_t>(m), sizeof(message) - 1);
    }
    std::string_view text(message, n);

    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    // Reused per thread: no allocation per line once a thread's longest line has been written.
    thread_local std::string line;
    line.clear();
    char stamp_text[40];
    std::string_view stamp = format_timestamp(ts, stamp_text);
    LogFormat format = log_format();
    if (format == LogFormat::kText) {
        line.append(stamp);
        line += ' ';
        line += to_string(level);
        line += ' ';
        line.append(text);
        line += '\n';
    } else {
        FieldWriter fields(line, format);
        fields.text("ts", stamp);
        fields.text("level", to_string(level));
        fields.text("msg", text);
        fields.end();
    }
    // One write per line keeps lines whole across threads; a failed log write is not actionable.
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line.data(), line.size());
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
