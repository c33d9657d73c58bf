#include "proxy/admin/process_stats.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/fd.hpp"

namespace ringlb::admin {

namespace {

bool read_file(const char* path, std::string& out) {
    common::Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    out.clear();
    char buffer[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
        if (n < 0) return false;
        if (n == 0) return true;
        out.append(buffer, static_cast<size_t>(n));
    }
}

std::optional<double> count_open_fds() {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc/self/fd"), ::closedir);
    if (!dir) return std::nullopt;
    int own = ::dirfd(dir.get());
    uint64_t count = 0;
    while (const dirent* entry = ::readdir(dir.get())) {
        if (entry->d_name[0] == '.') continue;
        if (std::atoi(entry->d_name) == own) continue;  // the directory read right now
        ++count;
    }
    return static_cast<double>(count);
}

// Unix time the process started: its start in clock ticks after boot (/proc/self/stat, field
// 22) plus the boot time (/proc/stat btime). Fixed for the process, so read once.
std::optional<double> start_time() {
    static std::atomic<double> cached{0};
    if (double t = cached.load(std::memory_order_relaxed); t > 0) return t;
    std::string stat, system;
    if (!read_file("/proc/self/stat", stat) || !read_file("/proc/stat", system))
        return std::nullopt;
    // Field 2 (comm) is in parentheses and may hold spaces: count fields after the last ')'.
    size_t pos = stat.rfind(')');
    if (pos == std::string::npos) return std::nullopt;
    const char* p = stat.c_str() + pos + 1;
    const char* field22 = nullptr;
    for (int field = 3; field <= 22 && *p != '\0'; ++field) {
        while (*p == ' ') ++p;
        if (field == 22) field22 = p;
        while (*p != ' ' && *p != '\0') ++p;
    }
    if (field22 == nullptr) return std::nullopt;
    unsigned long long ticks = std::strtoull(field22, nullptr, 10);
    size_t b = system.find("\nbtime ");
    if (b == std::string::npos) return std::nullopt;
    double boot = std::strtod(system.c_str() + b + 7, nullptr);
    long hz = ::sysconf(_SC_CLK_TCK);
    if (boot <= 0 || hz <= 0) return std::nullopt;
    double t = boot + static_cast<double>(ticks) / static_cast<double>(hz);
    cached.store(t, std::memory_order_relaxed);
    return t;
}

}  // namespace

ProcessStats read_process_stats() {
    ProcessStats stats;
    stats.open_fds = count_open_fds();
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
        stats.max_fds = static_cast<double>(limit.rlim_cur);
    std::string statm;
    if (read_file("/proc/self/statm", statm)) {
        unsigned long long size = 0, resident = 0;
        long page = ::sysconf(_SC_PAGESIZE);
        if (std::sscanf(statm.c_str(), "%llu %llu", &size, &resident) == 2 && page > 0) {
            stats.virtual_memory_bytes = static_cast<double>(size) * static_cast<double>(page);
            stats.resident_memory_bytes = static_cast<double>(resident) * static_cast<double>(page);
        }
    }
    stats.start_time_seconds = start_time();
    rusage usage{};
    if (::getrusage(RUSAGE_SELF, &usage) == 0) {
        auto seconds = [](const timeval& tv) {
            return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
        };
        stats.cpu_seconds = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    }
    return stats;
}

}  // namespace ringlb::admin
