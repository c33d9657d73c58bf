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

void log(LogLevel level, const char* fmt, ...) {
    char line[1024];
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    gmtime_r(&ts.tv_sec, &utc);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &utc);
    n += static_cast<size_t>(snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ",
                                      ts.tv_nsec / 1000000, level_name(level)));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += static_cast<size_t>(m);
    if (n > sizeof(line) - 2) n = sizeof(line) - 2;
    line[n++] = '\n';
    // One write per line keeps lines whole across threads; a failed log write is not actionable.
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line, n);
}

}  // namespace ringlb::common
