#include "tests/integration/testkit.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/socket.hpp"
#include "tests/tools/pattern.hpp"

#ifndef RINGLB_BINARY
#error "RINGLB_BINARY must name the ringlb binary under test"
#endif
#ifndef RINGLB_ECHO_BINARY
#error "RINGLB_ECHO_BINARY must name the ringlb-echo binary"
#endif
#ifndef RINGLB_SOURCE_DIR
#error "RINGLB_SOURCE_DIR must name the source tree"
#endif

namespace ringlb::testkit {

using common::Fd;

namespace {

constexpr Millis kPollStep(5);
constexpr size_t kChunk = 64 * 1024;
constexpr size_t kMaxReportedFailures = 10;

Millis since(Clock::time_point start) {
    return std::chrono::duration_cast<Millis>(Clock::now() - start);
}

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

std::string errno_text(int err) {
    return std::strerror(err);
}

std::string tail(const std::string& text, size_t max = 4000) {
    if (text.size() <= max) return text;
    return "...\n" + text.substr(text.size() - max);
}

sockaddr_in loopback(uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

uint16_t ephemeral_low() {
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    unsigned low = 32768;
    unsigned high = 60999;
    if (!(in >> low >> high)) low = 32768;
    return static_cast<uint16_t>(low);
}

bool port_bindable(uint16_t port) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    // No SO_REUSEADDR: a port that still has TIME_WAIT sockets is skipped too.
    sockaddr_in sa = loopback(port);
    return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
}

uint16_t kernel_port() {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = loopback(0);
    if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return 0;
    return common::local_address(fd.get()).port();
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Files and ports

uint16_t free_port() {
    static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
    static std::set<uint16_t> handed_out;
    const uint16_t low = 10000;
    const uint16_t high = ephemeral_low();
    for (int attempt = 0; attempt < 1000 && high > low + 1000; ++attempt) {
        uint16_t port =
            static_cast<uint16_t>(std::uniform_int_distribution<int>(low, high - 1)(rng));
        if (handed_out.count(port) || !port_bindable(port)) continue;
        handed_out.insert(port);
        return port;
    }
    // The ephemeral range covers almost everything: let the kernel pick.
    for (int attempt = 0; attempt < 100; ++attempt) {
        uint16_t port = kernel_port();
        if (port != 0 && handed_out.insert(port).second) return port;
    }
    ADD_FAILURE() << "free_port: no free loopback port found";
    return 0;
}

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/ringlb-test-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) {
        ADD_FAILURE() << "mkdtemp(" << pattern << "): " << errno_text(errno);
        return;
    }
    path_ = buffer.data();
}

TempDir::~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, std::string_view text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) ADD_FAILURE() << "cannot write " << path;
}

std::string sanitizer_report(const std::string& log) {
    for (const char* marker :
         {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
        size_t at = log.find(marker);
        if (at == std::string::npos) continue;
        size_t begin = log.rfind('\n', at);
        begin = begin == std::string::npos ? 0 : begin + 1;
        return log.substr(begin, log.find('\n', at) - begin);
    }
    return {};
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::string project_version() {
    std::string text = read_file(std::string(RINGLB_SOURCE_DIR) + "/CMakeLists.txt");
    size_t at = text.find("project(ringlb VERSION ");
    if (at == std::string::npos) return {};
    at += std::strlen("project(ringlb VERSION ");
    size_t end = text.find_first_not_of("0123456789.", at);
    return text.substr(at, end - at);
}

// ---------------------------------------------------------------------------------------------
// Processes

Subprocess::~Subprocess() {
    kill_and_reap(SIGKILL);
}

bool Subprocess::spawn(const std::vector<std::string>& argv, const std::string& log_path,
                       std::string* error) {
    Fd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
    Fd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!log_fd || !null_fd) {
        if (error) *error = "open " + log_path + ": " + errno_text(errno);
        return false;
    }
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);

    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
        if (error) *error = "fork: " + errno_text(errno);
        return false;
    }
    if (pid == 0) {
        // Only async-signal-safe calls from here to exec. A child must not outlive a test run
        // that was killed (ctest timeout), so it dies with its parent.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        ::dup2(null_fd.get(), STDIN_FILENO);
        ::dup2(log_fd.get(), STDOUT_FILENO);
        ::dup2(log_fd.get(), STDERR_FILENO);
        ::close_range(3, ~0U, 0);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(args[0], args.data());
        const char* what = "exec failed: ";
        [[maybe_unused]] ssize_t w1 = ::write(STDERR_FILENO, what, std::strlen(what));
        [[maybe_unused]] ssize_t w2 = ::write(STDERR_FILENO, args[0], std::strlen(args[0]));
        [[maybe_unused]] ssize_t w3 = ::write(STDERR_FILENO, "\n", 1);
        ::_exit(127);
    }
    pid_ = pid;
    exit_code_.reset();
    return true;
}

void Subprocess::reap_if_exited(int options) {
    if (pid_ <= 0 || exit_code_) return;
    int status = 0;
    pid_t r;
    do {
        r = ::waitpid(pid_, &status, options);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) {
        if (WIFEXITED(status))
            exit_code_ = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
            exit_code_ = 128 + WTERMSIG(status);
        else
            exit_code_ = -1;
    } else if (r < 0) {
        exit_code_ = -1;  // not our child any more; nothing left to wait for
    }
}

bool Subprocess::running() {
    if (pid_ <= 0) return false;
    reap_if_exited(WNOHANG);
    return !exit_code_;
}

std::optional<int> Subprocess::wait(Millis timeout) {
    auto deadline = Clock::now() + timeout;
    while (running()) {
        if (Clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(kPollStep);
    }
    return exit_code_;
}

void Subprocess::kill_and_reap(int sig) {
    if (!running()) return;
    ::kill(pid_, sig);
    if (sig != SIGKILL && wait(Millis(10000))) return;
    if (sig != SIGKILL) ::kill(pid_, SIGKILL);
    reap_if_exited(0);
}

CommandResult run_ringlb(const std::vector<std::string>& args, Millis timeout) {
    std::vector<std::string> argv{RINGLB_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, timeout);
}

CommandResult run_command(const std::vector<std::string>& argv, Millis timeout) {
    TempDir dir;
    std::string log_path = dir.file("output.log");
    CommandResult result;
    Subprocess process;
    std::string error;
    if (!process.spawn(argv, log_path, &error)) {
        result.output = error;
        return result;
    }
    auto code = process.wait(timeout);
    if (!code) {
        process.kill_and_reap(SIGKILL);
        result.exit_code = -1;
    } else {
        result.exit_code = *code;
    }
    result.output = read_file(log_path);
    return result;
}

CommandResult run_check(std::string_view config_text) {
    TempDir dir;
    std::string path = dir.file("ringlb.toml");
    write_file(path, config_text);
    CommandResult result = run_ringlb({"check", path});
    result.config_path = path;
    return result;
}

::testing::AssertionResult spawn_until_ready(Subprocess& process,
                                             const std::vector<std::string>& argv,
                                             const std::string& log_path, Millis timeout) {
    std::string error;
    if (!process.spawn(argv, log_path, &error))
        return ::testing::AssertionFailure() << "spawn: " << error;
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (read_file(log_path).find("ready:") != std::string::npos)
            return ::testing::AssertionSuccess();
        if (!process.running())
            return ::testing::AssertionFailure() << "exited before ready:\n" << read_file(log_path);
        std::this_thread::sleep_for(Millis(20));
    }
    return ::testing::AssertionFailure() << "not ready in " << timeout.count() << " ms:\n"
                                         << read_file(log_path);
}

uint64_t ShardStats::get(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? 0 : it->second;
}

uint64_t sum_stat(const std::vector<ShardStats>& shards, const std::string& key) {
    uint64_t total = 0;
    for (const auto& shard : shards) total += shard.get(key);
    return total;
}

std::string StartResult::describe() const {
    std::string what;
    switch (status) {
        case Status::kReady:
            what = "ready";
            break;
        case Status::kExited:
            what = "ringlb exited before ready with code " + std::to_string(exit_code.value_or(-1));
            break;
        case Status::kTimeout:
            what = "ringlb did not log \"ready:\" in time (killed)";
            break;
        case Status::kSpawnFailed:
            what = "could not start ringlb";
            break;
    }
    return what + "; log:\n" + tail(log);
}

ProxyProcess::ProxyProcess() : log_path_(dir_.file("ringlb.log")) {}

ProxyProcess::~ProxyProcess() {
    process_.kill_and_reap(SIGKILL);
    std::string text = log();
    std::string report = sanitizer_report(text);
    if (!report.empty())
        ADD_FAILURE() << "sanitizer report from ringlb: " << report << "\n" << tail(text);
}

StartResult ProxyProcess::start(std::string_view config_text,
                                const std::vector<std::string>& extra_args, Millis timeout) {
    std::string path = dir_.file("ringlb.toml");
    write_file(path, config_text);
    return start_file(path, extra_args, timeout);
}

StartResult ProxyProcess::start_file(const std::string& config_path,
                                     const std::vector<std::string>& extra_args, Millis timeout) {
    process_.kill_and_reap(SIGKILL);
    config_path_ = config_path;
    std::vector<std::string> argv = launcher_;
    argv.insert(argv.end(), {RINGLB_BINARY, "run", config_path});
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    StartResult result;
    std::string error;
    if (!process_.spawn(argv, log_path_, &error)) {
        result.log = error;
        return result;
    }
    auto deadline = Clock::now() + timeout;
    for (;;) {
        bool alive = process_.running();
        result.log = read_file(log_path_);
        if (contains(result.log, "ready:")) {
            result.status = StartResult::Status::kReady;
            return result;
        }
        if (!alive) {
            result.status = StartResult::Status::kExited;
            result.exit_code = process_.exit_code();
            return result;
        }
        if (Clock::now() >= deadline) {
            process_.kill_and_reap(SIGKILL);
            result.status = StartResult::Status::kTimeout;
            result.log = read_file(log_path_);
            return result;
        }
        std::this_thread::sleep_for(kPollStep);
    }
}

FdCounts ProxyProcess::fd_counts() const {
    FdCounts counts;
    std::string dir = "/proc/" + std::to_string(process_.pid()) + "/fd";
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
        counts.total = -1;
        return counts;
    }
    while (dirent* entry = ::readdir(d)) {
        if (entry->d_name[0] == '.') continue;
        char target[256];
        ssize_t n = ::readlinkat(::dirfd(d), entry->d_name, target, sizeof(target) - 1);
        if (n < 0) continue;  // closed while we looked
        target[n] = '\0';
        ++counts.total;
        if (std::strncmp(target, "socket:", 7) == 0)
            ++counts.sockets;
        else if (std::strncmp(target, "pipe:", 5) == 0)
            ++counts.pipes;
        else
            ++counts.other;
    }
    ::closedir(d);
    return counts;
}

int ProxyProcess::fd_count() const {
    return fd_counts().total;
}

namespace {

std::string hex_address_text(const std::string& hex) {
    // /proc/net/tcp: "0100007F:1F90" is 127.0.0.1:8080 (address in host byte order).
    size_t colon = hex.find(':');
    if (colon != 8) return hex;  // IPv6: leave as is
    uint32_t ip = static_cast<uint32_t>(std::strtoul(hex.substr(0, 8).c_str(), nullptr, 16));
    unsigned port = static_cast<unsigned>(std::strtoul(hex.c_str() + colon + 1, nullptr, 16));
    char text[32];
    std::snprintf(text, sizeof(text), "%u.%u.%u.%u:%u", ip & 0xff, (ip >> 8) & 0xff,
                  (ip >> 16) & 0xff, ip >> 24, port);
    return text;
}

uint16_t hex_port(const std::string& hex) {
    size_t colon = hex.rfind(':');
    if (colon == std::string::npos) return 0;
    return static_cast<uint16_t>(std::strtoul(hex.c_str() + colon + 1, nullptr, 16));
}

// /proc/net/tcp then /proc/net/tcp6 under `proc` ("/proc/self", "/proc/PID").
std::vector<TcpEntry> read_tcp_tables(const std::string& proc) {
    std::vector<TcpEntry> entries;
    for (const char* table : {"/net/tcp", "/net/tcp6"}) {
        std::istringstream lines(read_file(proc + table));
        std::string line;
        std::getline(lines, line);  // header
        while (std::getline(lines, line)) {
            std::istringstream fields(line);
            std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
            fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
                timeout >> inode;
            if (inode.empty()) continue;
            TcpEntry entry;
            entry.local = hex_address_text(local);
            entry.remote = hex_address_text(remote);
            entry.local_port = hex_port(local);
            entry.remote_port = hex_port(remote);
            entry.state = static_cast<unsigned>(std::strtoul(state.c_str(), nullptr, 16));
            size_t colon = queues.find(':');
            entry.tx_queue = std::strtoull(queues.substr(0, colon).c_str(), nullptr, 16);
            entry.rx_queue = colon == std::string::npos
                                 ? 0
                                 : std::strtoull(queues.c_str() + colon + 1, nullptr, 16);
            entry.inode = inode;
            entries.push_back(std::move(entry));
        }
    }
    return entries;
}

std::set<std::string> socket_inodes(pid_t pid) {
    std::set<std::string> inodes;
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* entry = ::readdir(d)) {
            char target[256];
            ssize_t n = ::readlinkat(::dirfd(d), entry->d_name, target, sizeof(target) - 1);
            if (n <= 0) continue;
            target[n] = '\0';
            if (std::strncmp(target, "socket:[", 8) == 0)
                inodes.insert(std::string(target + 8, std::strlen(target) - 9));
        }
        ::closedir(d);
    }
    return inodes;
}

}  // namespace

uint64_t kernel_buffering_to_client(const RunOptions& options) {
    unsigned long long min = 0, initial = 0, max = 0;
    std::string text = read_file("/proc/sys/net/ipv4/tcp_wmem");
    uint64_t send_max = 4ull << 20;
    if (std::sscanf(text.c_str(), "%llu %llu %llu", &min, &initial, &max) == 3 && max > 0)
        send_max = max;
    return send_max + 2 * static_cast<uint64_t>(std::max(options.recv_buffer_bytes, 0));
}

const char* tcp_state_name(unsigned state) {
    static const char* const kNames[] = {"?",          "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
                                         "FIN_WAIT1",  "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                         "CLOSE_WAIT", "LAST_ACK",    "LISTEN",    "CLOSING"};
    return state < sizeof(kNames) / sizeof(kNames[0]) ? kNames[state] : "?";
}

std::vector<TcpEntry> tcp_table() {
    return read_tcp_tables("/proc/self");
}

std::vector<TcpEntry> tcp_sockets_of(pid_t pid) {
    std::set<std::string> inodes = socket_inodes(pid);
    std::vector<TcpEntry> out;
    for (auto& entry : read_tcp_tables("/proc/" + std::to_string(pid)))
        if (inodes.count(entry.inode)) out.push_back(std::move(entry));
    return out;
}

std::string describe(const std::vector<TcpEntry>& entries) {
    std::string out;
    for (const auto& e : entries)
        out += e.local + " -> " + e.remote + " " + tcp_state_name(e.state) +
               " tx=" + std::to_string(e.tx_queue) + " rx=" + std::to_string(e.rx_queue) + "\n";
    return out;
}

int count_time_wait(uint16_t port_any_side) {
    int count = 0;
    for (const auto& e : tcp_table())
        if (e.state == kTcpTimeWait &&
            (e.local_port == port_any_side || e.remote_port == port_any_side))
            ++count;
    return count;
}

int count_time_wait_between(uint16_t local_port, uint16_t remote_port) {
    int count = 0;
    for (const auto& e : tcp_table())
        if (e.state == kTcpTimeWait && (local_port == 0 || e.local_port == local_port) &&
            (remote_port == 0 || e.remote_port == remote_port))
            ++count;
    return count;
}

std::string ProxyProcess::describe_sockets() const {
    return describe(tcp_sockets_of(process_.pid()));
}

FdCounts ProxyProcess::settled_fd_counts() const {
    FdCounts last = fd_counts();
    for (int i = 0; i < 10; ++i) {
        std::this_thread::sleep_for(Millis(100));
        FdCounts now = fd_counts();
        if (fd_counts_match(now, last, true)) return now;
        last = now;
    }
    return last;
}

std::string ProxyProcess::log() const {
    return read_file(log_path_);
}

std::string ProxyProcess::log_tail(size_t max_bytes) const {
    return tail(log(), max_bytes);
}

bool ProxyProcess::signal(int sig) {
    if (!process_.running()) return false;
    return ::kill(process_.pid(), sig) == 0;
}

bool ProxyProcess::wait_for_log(std::string_view needle, Millis timeout, size_t from) const {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        std::string text = log();
        if (text.size() > from && contains(std::string_view(text).substr(from), needle))
            return true;
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(kPollStep);
    }
}

namespace {

// Parses "... shard N stats: key=value key=value ..." from one line.
std::optional<ShardStats> parse_stats_line(std::string_view line) {
    size_t at = line.find("shard ");
    while (at != std::string_view::npos) {
        std::string_view rest = line.substr(at + 6);
        size_t digits = 0;
        while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits])))
            ++digits;
        if (digits > 0 && rest.substr(digits).starts_with(" stats:")) {
            ShardStats stats;
            stats.shard = std::atoi(std::string(rest.substr(0, digits)).c_str());
            std::istringstream tokens(std::string(rest.substr(digits + 7)));
            std::string token;
            while (tokens >> token) {
                size_t eq = token.find('=');
                if (eq == std::string::npos) continue;
                stats.values[token.substr(0, eq)] =
                    std::strtoull(token.c_str() + eq + 1, nullptr, 10);
            }
            return stats;
        }
        at = line.find("shard ", at + 1);
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::vector<ShardStats>> ProxyProcess::stats(size_t shards, Millis timeout,
                                                           std::string* why) {
    size_t from = log().size();
    if (!signal(SIGUSR1)) {
        if (why) *why = "ringlb is not running; log:\n" + tail(log());
        return std::nullopt;
    }
    auto deadline = Clock::now() + timeout;
    for (;;) {
        std::string text = log();
        std::map<int, ShardStats> by_shard;
        size_t pos = std::min(from, text.size());
        // Only whole lines: a line being written may be cut short.
        for (size_t end; (end = text.find('\n', pos)) != std::string::npos; pos = end + 1) {
            if (auto stats = parse_stats_line(std::string_view(text).substr(pos, end - pos)))
                by_shard[stats->shard] = *stats;
        }
        if (by_shard.size() >= shards) {
            std::vector<ShardStats> out;
            for (auto& [shard, stats] : by_shard) out.push_back(std::move(stats));
            return out;
        }
        if (Clock::now() >= deadline) {
            if (why)
                *why = "expected " + std::to_string(shards) + " \"shard N stats:\" lines after " +
                       "SIGUSR1, saw " + std::to_string(by_shard.size()) + "; log:\n" + tail(text);
            return std::nullopt;
        }
        std::this_thread::sleep_for(Millis(10));
    }
}

int ProxyProcess::stop(Millis timeout) {
    if (!process_.running()) return process_.exit_code().value_or(-1);
    ::kill(process_.pid(), SIGTERM);
    if (auto code = process_.wait(timeout)) return *code;
    ADD_FAILURE() << "ringlb did not exit within " << timeout.count()
                  << " ms of SIGTERM; killed. log:\n"
                  << tail(log());
    process_.kill_and_reap(SIGKILL);
    return -1;
}

BackendProcess::BackendProcess() : log_path_(dir_.file("backend.log")) {}

BackendProcess::~BackendProcess() {
    process_.kill_and_reap(SIGKILL);
    std::string text = log();
    std::string report = sanitizer_report(text);
    if (!report.empty())
        ADD_FAILURE() << "sanitizer report from ringlb-echo: " << report << "\n" << tail(text);
}

::testing::AssertionResult BackendProcess::start(EchoMode mode, const std::string& name,
                                                 Millis timeout) {
    BackendOptions options;
    options.mode = mode;
    options.name = name;
    return start(options, timeout);
}

namespace {

const char* echo_mode_text(EchoMode mode) {
    switch (mode) {
        case EchoMode::kEcho:
            return "echo";
        case EchoMode::kHash:
            return "hash";
        case EchoMode::kHttp:
            return "http";
        case EchoMode::kPeer:
            return "peer";
        case EchoMode::kDrip:
            return "drip";
        case EchoMode::kSink:
            return "sink";
    }
    return "echo";
}

// Raw bytes in the escape syntax ringlb-echo's --greeting decodes.
std::string escape_greeting(std::string_view raw) {
    std::string out;
    for (char ch : raw) {
        auto byte = static_cast<unsigned char>(ch);
        if (ch == '\\') {
            out += "\\\\";
        } else if (byte >= 0x20 && byte < 0x7f) {
            out += ch;
        } else {
            char hex[8];
            std::snprintf(hex, sizeof(hex), "\\x%02x", byte);
            out += hex;
        }
    }
    return out;
}

// Every line of `log` after `marker` (to the end of that line), in order.
std::vector<std::string> log_values(const std::string& log, std::string_view marker) {
    std::vector<std::string> out;
    size_t pos = 0;
    while ((pos = log.find(marker, pos)) != std::string::npos) {
        size_t begin = pos + marker.size();
        size_t end = log.find('\n', begin);
        if (end == std::string::npos) break;  // a line still being written
        out.push_back(log.substr(begin, end - begin));
        pos = end;
    }
    return out;
}

}  // namespace

::testing::AssertionResult BackendProcess::start(const BackendOptions& options, Millis timeout) {
    host_ = options.host;
    std::string port = std::to_string(options.port);
    const bool unix = host_.starts_with("unix:");
    std::string listen = unix                                   ? host_
                         : host_.find(':') != std::string::npos ? "[" + host_ + "]:" + port
                                                                : host_ + ":" + port;
    std::vector<std::string> argv{RINGLB_ECHO_BINARY, "--listen", listen, "--mode",
                                  echo_mode_text(options.mode)};
    auto add = [&argv](const char* flag, const std::string& value) {
        argv.push_back(flag);
        argv.push_back(value);
    };
    if (!options.name.empty()) add("--name", options.name);
    if (options.threads != 1) add("--threads", std::to_string(options.threads));
    if (!options.greeting.empty()) add("--greeting", escape_greeting(options.greeting));
    if (options.idle_close.count() > 0)
        add("--idle-close", std::to_string(options.idle_close.count()));
    if (options.accept_delay.count() > 0)
        add("--accept-delay", std::to_string(options.accept_delay.count()));
    if (options.backlog > 0) add("--backlog", std::to_string(options.backlog));
    if (options.drip_interval.count() > 0)
        add("--drip-ms", std::to_string(options.drip_interval.count()));
    if (options.log_connections) argv.push_back("--log-connections");
    std::string error;
    if (!process_.spawn(argv, log_path_, &error)) return ::testing::AssertionFailure() << error;
    auto deadline = Clock::now() + timeout;
    for (;;) {
        bool alive = process_.running();
        std::string text = log();
        size_t at = text.find("listening on ");
        size_t end = at == std::string::npos ? at : text.find_first_of(" \n", at + 13);
        if (end != std::string::npos && unix) return ::testing::AssertionSuccess();
        if (end != std::string::npos) {
            std::string address = text.substr(at + 13, end - at - 13);
            size_t colon = address.rfind(':');
            port_ = colon == std::string::npos
                        ? 0
                        : static_cast<uint16_t>(std::atoi(address.c_str() + colon + 1));
            if (port_ == 0)
                return ::testing::AssertionFailure() << "cannot parse the port from: " << text;
            return ::testing::AssertionSuccess();
        }
        if (!alive)
            return ::testing::AssertionFailure() << "ringlb-echo exited early; log:\n" << text;
        if (Clock::now() >= deadline) {
            process_.kill_and_reap(SIGKILL);
            return ::testing::AssertionFailure() << "ringlb-echo did not listen in time; log:\n"
                                                 << text;
        }
        std::this_thread::sleep_for(kPollStep);
    }
}

std::string BackendProcess::address() const {
    if (host_.starts_with("unix:")) return host_;
    if (host_.find(':') != std::string::npos) return "[" + host_ + "]:" + std::to_string(port_);
    return host_ + ":" + std::to_string(port_);
}

std::vector<std::string> BackendProcess::accepted_peers() const {
    return log_values(log(), "accepted from ");
}

size_t BackendProcess::idle_closes() const {
    return log_values(log(), "idle-closed ").size();
}

std::string BackendProcess::log() const {
    return read_file(log_path_);
}

::testing::AssertionResult BlackholeBackend::start() {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = loopback(0);
    if (!listener_ || ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
        ::listen(listener_.get(), 0) != 0)
        return ::testing::AssertionFailure() << "blackhole listener: " << errno_text(errno);
    port_ = common::local_address(listener_.get()).port();
    // With backlog 0 the kernel queues one or two connections; once the queue is full it drops
    // SYNs, which is exactly "a backend that never answers". Connect until one hangs.
    for (int i = 0; i < 16; ++i) {
        Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        sockaddr_in to = loopback(port_);
        int r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to));
        if (r != 0 && errno != EINPROGRESS)
            return ::testing::AssertionFailure() << "blackhole filler: " << errno_text(errno);
        bool completed = r == 0;
        if (!completed) {
            pollfd p{fd.get(), POLLOUT, 0};
            completed = ::poll(&p, 1, 200) > 0;
        }
        fillers_.push_back(std::move(fd));
        if (!completed) return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "the backlog-0 accept queue never filled";
}

// ---------------------------------------------------------------------------------------------
// Proxy configuration and startup

namespace {

// Extra raw TOML lines, ending in a newline.
std::string extra_lines(const std::string& text) {
    if (text.empty() || text.back() == '\n') return text;
    return text + "\n";
}

}  // namespace

std::string make_config(ProxyConfigSpec& spec) {
    if (spec.listen_port == 0) spec.listen_port = free_port();
    if (spec.admin && spec.admin_port == 0) spec.admin_port = free_port();
    std::ostringstream out;
    out << "[runtime]\n"
        << "workers = " << spec.workers << "\n"
        << "engine = \"" << spec.engine << "\"\n";
    for (const char* key : {"drain_timeout", "drain_spread"})
        if (!contains(spec.runtime_extra, key)) out << key << " = \"0s\"\n";
    out << extra_lines(spec.runtime_extra) << "\n[[listener]]\n"
        << "name = \"test\"\n"
        << "bind = \"127.0.0.1:" << spec.listen_port << "\"\n"
        << "cluster = \"app\"\n"
        << "forward = \"" << spec.forward << "\"\n"
        << extra_lines(spec.listener_extra) << "\n[[cluster]]\n"
        << "name = \"app\"\n"
        << "connect_timeout = \"" << spec.connect_timeout << "\"\n"
        << "backends = [";
    for (size_t i = 0; i < spec.backends.size(); ++i) {
        out << (i ? ", " : " ") << "{ address = \"" << spec.backends[i] << "\"";
        if (i < spec.backend_extra.size() && !spec.backend_extra[i].empty())
            out << ", " << spec.backend_extra[i];
        out << " }";
    }
    out << " ]\n" << extra_lines(spec.cluster_extra);
    if (spec.admin) out << "\n[admin]\nbind = \"127.0.0.1:" << spec.admin_port << "\"\n";
    return out.str();
}

std::string engine_forward_name(const ::testing::TestParamInfo<EngineForward>& info) {
    return std::get<0>(info.param) + "_" + std::get<1>(info.param);
}

std::string engine_name(const ::testing::TestParamInfo<std::string>& info) {
    return info.param;
}

bool io_uring_available(std::string* reason) {
    io_uring_params params{};
    long fd = ::syscall(__NR_io_uring_setup, 4, &params);
    if (fd < 0) {
        if (reason) *reason = "io_uring_setup: " + errno_text(errno);
        return false;
    }
    ::close(static_cast<int>(fd));
    return true;
}

StartVerdict start_proxy(ProxyProcess& proxy, std::string_view config_text,
                         const std::string& engine, std::string* message) {
    StartResult result = proxy.start(config_text);
    if (result.ready()) return StartVerdict::kReady;
    *message = result.describe();
    // A crash is never a skip; an orderly refusal to run io_uring is, when the host (seccomp,
    // sysctl, old kernel) is the reason.
    bool exited_cleanly =
        result.status == StartResult::Status::kExited && result.exit_code.value_or(128) < 128;
    if (engine == "io_uring" && exited_cleanly && contains(result.log, "io_uring")) {
        std::string reason;
        if (!io_uring_available(&reason)) {
            *message = "io_uring is unavailable on this host (" + reason + "); ringlb said:\n" +
                       tail(result.log, 1000);
            return StartVerdict::kSkip;
        }
        if (contains(result.log, "unavailable") || contains(result.log, "not supported")) {
            *message = "ringlb reports io_uring unusable on this host:\n" + tail(result.log, 1000);
            return StartVerdict::kSkip;
        }
    }
    return StartVerdict::kFail;
}

std::string http_post(uint16_t port, const std::string& path) {
    ClientSession client;
    if (!client.connect(port)) return "connect: " + client.error();
    if (!client.send(
            "POST " + path +
            " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
        return "send: " + client.error();
    std::string data;
    client.wait_for_close(Millis(15000), &data);
    return data;
}

std::string first_byte(uint16_t port) {
    ClientSession c;
    if (!c.connect(port)) return "connect: " + c.error();
    std::string got;
    if (!c.receive(1, &got, Millis(2000))) return "<closed>";
    return got;
}

// ---------------------------------------------------------------------------------------------
// Clients

namespace {

// One client exchange as a non-blocking state machine, driven by edge-triggered epoll events.
class ExchangeConn {
  public:
    explicit ExchangeConn(const ExchangeSpec& spec) : spec_(spec) {
        if (spec.kind == ExchangeKind::kHash) {
            tools::put_be64(header_, spec.recv_bytes);
            header_size_ = tools::kHashHeaderSize;
            recv_seed_ = tools::kBackendPatternSeed;
            recv_bytes_ = spec.recv_bytes;
            trailer_expected_ = true;
        } else {
            recv_seed_ = spec.seed;
            recv_bytes_ = spec.send_bytes;
        }
    }

    // Starts connecting; false if it already failed.
    bool start(uint16_t port, int epoll_fd, uint64_t tag) {
        start_ = Clock::now();
        fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd_) return !fail("socket: " + errno_text(errno));
        if (recv_buffer_ > 0 && ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &recv_buffer_,
                                             sizeof(recv_buffer_)) != 0)
            return !fail("setsockopt SO_RCVBUF: " + errno_text(errno));
        sockaddr_in sa = loopback(port);
        int r = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
        if (r != 0 && errno != EINPROGRESS) return !fail("connect: " + errno_text(errno));
        connected_ = r == 0;
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = tag;
        if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd_.get(), &ev) != 0)
            return !fail("epoll_ctl: " + errno_text(errno));
        return true;
    }

    // A slow reader: at most `bytes_per_second` read per second since start() (0: no limit).
    void limit_recv(uint64_t bytes_per_second) { recv_rate_ = bytes_per_second; }
    // SO_RCVBUF for the socket start() makes (0: leave the kernel's autotuning).
    void set_recv_buffer(int bytes) { recv_buffer_ = bytes; }

    // Makes all the progress the socket allows; true once finished (ok or failed).
    bool drive(uint8_t* scratch) {
        if (done_) return true;
        if (!connected_) {
            int err = 0;
            socklen_t len = sizeof(err);
            ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) return fail("connect: " + errno_text(err));
            sockaddr_in peer{};
            socklen_t peer_len = sizeof(peer);
            if (::getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0)
                return false;  // still in progress
            connected_ = true;
        }
        for (;;) {
            bool progress = false;
            if (!shut_wr_ && !send_some(scratch, progress)) return true;
            size_t want = recv_allowance();
            if (!eof_ && want > 0 && (!spec_.read_after_shutdown || shut_wr_)) {
                ssize_t n = ::recv(fd_.get(), scratch, want, 0);
                if (n > 0) {
                    progress = true;
                    if (!consume(scratch, static_cast<size_t>(n))) return true;
                } else if (n == 0) {
                    eof_ = true;
                    return finish_on_eof();
                } else if (errno == EINTR) {
                    progress = true;
                } else if (errno != EAGAIN) {
                    return fail(errno == ECONNRESET ? "connection reset by peer " + state()
                                                    : "recv: " + errno_text(errno) + " " + state());
                }
            }
            if (!progress) return false;
        }
    }

    // Fails an exchange still running when the deadline passes.
    void expire() {
        if (!done_) fail("deadline exceeded " + state());
    }

    bool done() const { return done_; }
    ExchangeResult result() const {
        ExchangeResult r;
        r.ok = done_ && error_.empty();
        r.error = done_ ? error_ : "not finished";
        r.sent = payload_sent_;
        r.received = pattern_received_;
        r.elapsed = std::chrono::duration_cast<Millis>(end_ - start_);
        return r;
    }
    void close() { fd_.reset(); }

  private:
    size_t recv_allowance() const {
        if (recv_rate_ == 0) return kChunk;
        auto elapsed_us =
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start_);
        uint64_t budget = recv_rate_ * static_cast<uint64_t>(elapsed_us.count()) / 1'000'000;
        uint64_t got = pattern_received_ + trailer_got_;
        return budget > got ? static_cast<size_t>(std::min<uint64_t>(budget - got, kChunk)) : 0;
    }

    bool send_some(uint8_t* scratch, bool& progress) {
        ssize_t n;
        if (header_sent_ < header_size_) {
            n = ::send(fd_.get(), header_ + header_sent_, header_size_ - header_sent_,
                       MSG_NOSIGNAL);
            if (n > 0) header_sent_ += static_cast<size_t>(n);
        } else if (payload_sent_ < spec_.send_bytes) {
            size_t chunk =
                static_cast<size_t>(std::min<uint64_t>(spec_.send_bytes - payload_sent_, kChunk));
            // The pattern is random access: a short send regenerates from the new offset.
            tools::pattern_fill(spec_.seed, payload_sent_, scratch, chunk);
            n = ::send(fd_.get(), scratch, chunk, MSG_NOSIGNAL);
            if (n > 0) {
                sha_.update(scratch, static_cast<size_t>(n));
                payload_sent_ += static_cast<uint64_t>(n);
            }
        } else {
            if (::shutdown(fd_.get(), SHUT_WR) != 0) {
                fail("shutdown(SHUT_WR): " + errno_text(errno) + " " + state());
                return false;
            }
            shut_wr_ = true;
            progress = true;
            return true;
        }
        if (n > 0 || (n < 0 && errno == EINTR)) {
            progress = true;
        } else if (n < 0 && errno != EAGAIN) {
            fail(std::string(errno == ECONNRESET || errno == EPIPE
                                 ? "connection reset while sending: "
                                 : "send: ") +
                 errno_text(errno) + " " + state());
            return false;
        }
        return true;
    }

    bool consume(const uint8_t* data, size_t n) {
        size_t pos = 0;
        if (pattern_received_ < recv_bytes_) {
            size_t take =
                static_cast<size_t>(std::min<uint64_t>(recv_bytes_ - pattern_received_, n));
            size_t bad = tools::pattern_mismatch(recv_seed_, pattern_received_, data, take);
            if (bad < take) {
                uint8_t expected = 0;
                tools::pattern_fill(recv_seed_, pattern_received_ + bad, &expected, 1);
                char text[160];
                std::snprintf(
                    text, sizeof(text),
                    "backend->client data mismatch at byte %llu of %llu: expected 0x%02x, "
                    "got 0x%02x",
                    static_cast<unsigned long long>(pattern_received_ + bad),
                    static_cast<unsigned long long>(recv_bytes_), expected, data[bad]);
                fail(text);
                return false;
            }
            pattern_received_ += take;
            pos = take;
        }
        if (pos < n && trailer_expected_ && trailer_got_ < tools::kHashTrailerSize) {
            size_t take = std::min(tools::kHashTrailerSize - trailer_got_, n - pos);
            std::memcpy(trailer_ + trailer_got_, data + pos, take);
            trailer_got_ += take;
            pos += take;
        }
        if (pos < n) {
            fail(std::to_string(n - pos) + " unexpected bytes after the end of the reply " +
                 state());
            return false;
        }
        return true;
    }

    bool finish_on_eof() {
        if (pattern_received_ < recv_bytes_)
            return fail("short read: EOF after " + std::to_string(pattern_received_) + " of " +
                        std::to_string(recv_bytes_) + " backend->client bytes " + state());
        if (trailer_expected_ && trailer_got_ < tools::kHashTrailerSize)
            return fail("short read: EOF after " + std::to_string(trailer_got_) + " of " +
                        std::to_string(tools::kHashTrailerSize) + " trailer bytes " + state());
        if (!shut_wr_)
            return fail("EOF from the peer before the client finished sending " + state());
        if (trailer_expected_) {
            uint64_t counted = tools::get_be64(trailer_ + tools::kSha256Size);
            if (counted != payload_sent_)
                return fail("client->backend byte count mismatch: backend received " +
                            std::to_string(counted) + " payload bytes, client sent " +
                            std::to_string(payload_sent_));
            auto digest = sha_.finish();
            if (std::memcmp(digest.data(), trailer_, tools::kSha256Size) != 0)
                return fail("client->backend data mismatch: SHA-256 of the " +
                            std::to_string(payload_sent_) +
                            " bytes the backend received differs from what the client sent");
        }
        done_ = true;
        end_ = Clock::now();
        fd_.reset();
        return true;
    }

    bool fail(std::string reason) {
        if (!done_) {
            done_ = true;
            end_ = Clock::now();
            error_ = std::move(reason);
            fd_.reset();
        }
        return true;  // finished; callers treat "true" as done
    }

    std::string state() const {
        char text[200];
        std::snprintf(
            text, sizeof(text),
            "(connected=%d sent %llu/%llu%s, received %llu/%llu + trailer %zu/%zu, eof=%d)",
            connected_ ? 1 : 0, static_cast<unsigned long long>(payload_sent_),
            static_cast<unsigned long long>(spec_.send_bytes), shut_wr_ ? " shut" : "",
            static_cast<unsigned long long>(pattern_received_),
            static_cast<unsigned long long>(recv_bytes_), trailer_got_,
            trailer_expected_ ? tools::kHashTrailerSize : size_t{0}, eof_ ? 1 : 0);
        return text;
    }

    ExchangeSpec spec_;
    Fd fd_;
    uint64_t recv_rate_ = 0;
    int recv_buffer_ = 0;
    Clock::time_point start_;
    Clock::time_point end_;
    bool connected_ = false;
    bool shut_wr_ = false;
    bool eof_ = false;
    bool done_ = false;
    std::string error_;

    uint8_t header_[tools::kHashHeaderSize] = {};
    size_t header_size_ = 0;
    size_t header_sent_ = 0;
    uint64_t payload_sent_ = 0;
    tools::Sha256 sha_;

    uint64_t recv_seed_ = 0;
    uint64_t recv_bytes_ = 0;
    uint64_t pattern_received_ = 0;
    bool trailer_expected_ = false;
    uint8_t trailer_[tools::kHashTrailerSize] = {};
    size_t trailer_got_ = 0;
};

std::vector<ExchangeResult> run_all(uint16_t port, const std::vector<ExchangeSpec>& specs,
                                    const RunOptions& options) {
    static const long fd_limit = common::raise_fd_limit();
    (void)fd_limit;
    auto deadline = Clock::now() + options.deadline;
    std::vector<std::unique_ptr<ExchangeConn>> conns;
    conns.reserve(specs.size());
    for (const auto& spec : specs) {
        conns.push_back(std::make_unique<ExchangeConn>(spec));
        conns.back()->limit_recv(options.recv_bytes_per_second);
        conns.back()->set_recv_buffer(options.recv_buffer_bytes);
    }
    // A slow reader leaves bytes unread, and edge-triggered epoll does not report them again:
    // every connection is driven on a 10 ms tick as well.
    const bool ticking = options.recv_bytes_per_second > 0;
    std::vector<uint8_t> scratch(kChunk);

    Fd epoll_fd(::epoll_create1(EPOLL_CLOEXEC));
    size_t next = 0;
    size_t active = 0;
    size_t finished = 0;
    auto finish = [&](ExchangeConn& conn) {
        conn.close();
        ++finished;
    };
    auto start_more = [&] {
        while (next < conns.size() &&
               (options.max_in_flight == 0 || active < options.max_in_flight)) {
            ExchangeConn& conn = *conns[next];
            uint64_t tag = next++;
            if (!conn.start(port, epoll_fd.get(), tag) || conn.drive(scratch.data())) {
                finish(conn);
                continue;
            }
            ++active;
        }
    };
    start_more();
    std::vector<epoll_event> events(256);
    while (finished < conns.size()) {
        int timeout = remaining_ms(deadline);
        if (timeout == 0) break;
        int n = ::epoll_wait(epoll_fd.get(), events.data(), static_cast<int>(events.size()),
                             std::min(timeout, ticking ? 10 : 100));
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; ++i) {
            ExchangeConn& conn = *conns[events[i].data.u64];
            if (conn.done()) continue;
            if (conn.drive(scratch.data())) {
                finish(conn);
                --active;
            }
        }
        for (size_t i = 0; ticking && i < next; ++i) {
            ExchangeConn& conn = *conns[i];
            if (conn.done()) continue;
            if (conn.drive(scratch.data())) {
                finish(conn);
                --active;
            }
        }
        start_more();
    }
    std::vector<ExchangeResult> results;
    results.reserve(conns.size());
    for (auto& conn : conns) {
        conn->expire();
        results.push_back(conn->result());
    }
    return results;
}

RunSummary summarize(const std::vector<ExchangeResult>& results, Millis elapsed) {
    RunSummary summary;
    summary.total = results.size();
    summary.elapsed = elapsed;
    for (size_t i = 0; i < results.size(); ++i) {
        if (results[i].ok) {
            ++summary.succeeded;
            continue;
        }
        ++summary.failed;
        if (summary.failures.size() < kMaxReportedFailures)
            summary.failures.push_back("#" + std::to_string(i) + ": " + results[i].error);
    }
    return summary;
}

}  // namespace

ExchangeResult exchange(uint16_t port, const ExchangeSpec& spec, Millis timeout) {
    RunOptions options;
    options.deadline = timeout;
    return run_all(port, {spec}, options).front();
}

ExchangeResult hash_exchange(uint16_t port, uint64_t send_bytes, uint64_t recv_bytes,
                             Millis timeout) {
    ExchangeSpec spec;
    spec.kind = ExchangeKind::kHash;
    spec.send_bytes = send_bytes;
    spec.recv_bytes = recv_bytes;
    return exchange(port, spec, timeout);
}

ExchangeResult echo_exchange(uint16_t port, uint64_t bytes, bool read_after_shutdown,
                             Millis timeout) {
    ExchangeSpec spec;
    spec.kind = ExchangeKind::kEcho;
    spec.send_bytes = bytes;
    spec.read_after_shutdown = read_after_shutdown;
    return exchange(port, spec, timeout);
}

std::string RunSummary::describe() const {
    std::string text = std::to_string(succeeded) + "/" + std::to_string(total) +
                       " exchanges succeeded in " + std::to_string(elapsed.count()) + " ms";
    if (failed > 0) {
        text += "; " + std::to_string(failed) + " failed, first failures:";
        for (const auto& failure : failures) text += "\n  " + failure;
    }
    return text;
}

RunSummary run_concurrent(uint16_t port, const std::vector<ExchangeSpec>& specs,
                          const RunOptions& options) {
    auto start = Clock::now();
    auto results = run_all(port, specs, options);
    return summarize(results, since(start));
}

RunSummary run_concurrent(uint16_t port, size_t count, const ExchangeSpec& spec,
                          const RunOptions& options) {
    std::vector<ExchangeSpec> specs(count, spec);
    for (size_t i = 0; i < count; ++i) specs[i].seed = spec.seed * 1000003 + i;
    return run_concurrent(port, specs, options);
}

ConnectionStream::ConnectionStream(uint16_t port, uint64_t bytes, Millis pause) {
    thread_ = std::thread([this, port, bytes, pause] {
        uint64_t seed = 1000;
        while (!stop_.load()) {
            ExchangeSpec spec;
            spec.kind = ExchangeKind::kEcho;
            spec.send_bytes = bytes;
            spec.seed = ++seed;
            ExchangeResult r = exchange(port, spec, Millis(10000));
            if (r.ok)
                succeeded_.fetch_add(1);
            else if (failed_.fetch_add(1) == 0)
                first_failure_ = r.error;
            if (pause.count() > 0) std::this_thread::sleep_for(pause);
        }
    });
}

void ConnectionStream::stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------------------------------------
// Low-level helpers

Fd connect_to(uint16_t port, Millis timeout, std::string* error) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        if (error) *error = "socket: " + errno_text(errno);
        return {};
    }
    sockaddr_in sa = loopback(port);
    int r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    if (r != 0 && errno != EINPROGRESS) {
        if (error) *error = "connect: " + errno_text(errno);
        return {};
    }
    if (r != 0) {
        pollfd p{fd.get(), POLLOUT, 0};
        int ready;
        do {
            ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
        } while (ready < 0 && errno == EINTR);
        if (ready <= 0) {
            if (error) *error = "connect: timed out";
            return {};
        }
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            if (error) *error = "connect: " + errno_text(err);
            return {};
        }
    }
    int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

common::Fd connect_from(const char* source, uint16_t port, uint16_t* local_port) {
    common::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) return {};
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
        int err = errno;  // callers tell a reset (a refusal) from other failures
        fd.reset();
        errno = err;
        return {};
    }
    socklen_t len = sizeof(from);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&from), &len);
    *local_port = ntohs(from.sin_port);
    timeval tv{10, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

std::string random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(rng());
    return out;
}

std::string echo_through(int fd, const std::string& payload) {
    std::thread writer([&] {
        send_all(fd, payload.data(), payload.size(), Millis(10000));
        ::shutdown(fd, SHUT_WR);
    });
    std::string back;
    wait_for_close(fd, Millis(20000), &back);
    writer.join();
    return back;
}

bool send_all(int fd, const void* data, size_t n, Millis timeout) {
    auto deadline = Clock::now() + timeout;
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        pollfd pfd{fd, POLLOUT, 0};
        if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0) return false;
        ssize_t m = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (m > 0) {
            p += m;
            n -= static_cast<size_t>(m);
        } else if (m < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        }
    }
    return true;
}

bool recv_exactly(int fd, size_t n, Millis timeout, size_t* got) {
    auto deadline = Clock::now() + timeout;
    std::vector<char> buffer(kChunk);
    size_t done = 0;
    bool ok = true;
    while (done < n) {
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0) {
            ok = false;
            break;
        }
        ssize_t m = ::recv(fd, buffer.data(), std::min(n - done, buffer.size()), MSG_DONTWAIT);
        if (m > 0) {
            done += static_cast<size_t>(m);
        } else if (m == 0 || (errno != EAGAIN && errno != EINTR)) {
            ok = false;
            break;
        }
    }
    if (got) *got = done;
    return ok;
}

const char* to_string(CloseKind kind) {
    switch (kind) {
        case CloseKind::kEof:
            return "EOF";
        case CloseKind::kReset:
            return "reset";
        case CloseKind::kTimeout:
            return "timeout";
        case CloseKind::kOtherError:
            return "error";
    }
    return "?";
}

CloseResult wait_for_close(int fd, Millis timeout, std::string* data) {
    auto start = Clock::now();
    auto deadline = start + timeout;
    std::vector<char> buffer(kChunk);
    CloseResult result;
    for (;;) {
        pollfd pfd{fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, remaining_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            result.kind = CloseKind::kTimeout;
            break;
        }
        ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n > 0) {
            result.bytes_before += static_cast<uint64_t>(n);
            result.last_byte_at = Clock::now();
            if (data) data->append(buffer.data(), static_cast<size_t>(n));
            continue;
        }
        if (n == 0) {
            result.kind = CloseKind::kEof;
            break;
        }
        if (errno == EAGAIN || errno == EINTR) continue;
        result.kind = errno == ECONNRESET ? CloseKind::kReset : CloseKind::kOtherError;
        break;
    }
    result.at = Clock::now();
    result.elapsed = std::chrono::duration_cast<Millis>(result.at - start);
    return result;
}

std::vector<CloseResult> wait_for_close_all(const std::vector<int>& fds, Millis timeout) {
    auto start = Clock::now();
    auto deadline = start + timeout;
    std::vector<char> buffer(kChunk);
    std::vector<CloseResult> results(fds.size());
    std::vector<bool> open(fds.size(), true);
    size_t left = fds.size();
    while (left > 0) {
        std::vector<pollfd> pfds;
        std::vector<size_t> index;
        for (size_t i = 0; i < fds.size(); ++i) {
            if (!open[i]) continue;
            pfds.push_back({fds[i], POLLIN, 0});
            index.push_back(i);
        }
        int ready = ::poll(pfds.data(), pfds.size(), remaining_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;  // the rest keep kTimeout
        for (size_t k = 0; k < pfds.size(); ++k) {
            if (pfds[k].revents == 0) continue;
            size_t i = index[k];
            ssize_t n = ::recv(fds[i], buffer.data(), buffer.size(), MSG_DONTWAIT);
            if (n > 0) {
                results[i].bytes_before += static_cast<uint64_t>(n);
                results[i].last_byte_at = Clock::now();
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            results[i].kind = n == 0                ? CloseKind::kEof
                              : errno == ECONNRESET ? CloseKind::kReset
                                                    : CloseKind::kOtherError;
            results[i].at = Clock::now();
            results[i].elapsed = std::chrono::duration_cast<Millis>(results[i].at - start);
            open[i] = false;
            --left;
        }
    }
    for (size_t i = 0; i < fds.size(); ++i) {
        if (!open[i]) continue;
        results[i].at = Clock::now();
        results[i].elapsed = std::chrono::duration_cast<Millis>(results[i].at - start);
    }
    return results;
}

void reset_close(Fd& fd) {
    linger lg{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    fd.reset();
}

namespace {

// Sends `request` and reads the reply until the server closes.
std::optional<std::string> http_exchange(uint16_t port, std::string_view request, Millis timeout,
                                         std::string* error) {
    auto deadline = Clock::now() + timeout;
    std::string why;
    Fd fd = connect_to(port, timeout, &why);
    if (!fd) {
        if (error) *error = why;
        return std::nullopt;
    }
    if (!send_all(fd.get(), request.data(), request.size(), timeout)) {
        if (error) *error = "sending the request failed";
        return std::nullopt;
    }
    std::string response;
    char buffer[4096];
    for (;;) {
        pollfd pfd{fd.get(), POLLIN, 0};
        if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0) {
            if (error) *error = "timed out reading the response: \"" + response + "\"";
            return std::nullopt;
        }
        ssize_t n = ::recv(fd.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            response.append(buffer, static_cast<size_t>(n));
        } else if (n == 0) {
            break;
        } else if (errno != EAGAIN && errno != EINTR) {
            if (error) *error = "recv: " + errno_text(errno);
            return std::nullopt;
        }
    }
    return response;
}

std::string get_request(std::string_view path) {
    return "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
}

}  // namespace

std::optional<std::string> http_get(uint16_t port, Millis timeout, std::string* error) {
    return http_get(port, "/", timeout, error);
}

std::optional<std::string> http_get(uint16_t port, std::string_view path, Millis timeout,
                                    std::string* error) {
    auto response = http_exchange(port, get_request(path), timeout, error);
    if (!response) return std::nullopt;
    size_t body = response->find("\r\n\r\n");
    if (!response->starts_with("HTTP/1.1 200") || body == std::string::npos) {
        if (error) *error = "unexpected response: \"" + *response + "\"";
        return std::nullopt;
    }
    return response->substr(body + 4);
}

std::optional<HttpResponse> http_request(uint16_t port, std::string_view path, Millis timeout,
                                         std::string* error) {
    auto response = http_exchange(port, get_request(path), timeout, error);
    if (!response) return std::nullopt;
    size_t body = response->find("\r\n\r\n");
    int status = 0;
    if (response->starts_with("HTTP/1.") && response->size() >= 12) {
        auto [end, ec] = std::from_chars(response->data() + 9, response->data() + 12, status);
        if (ec != std::errc() || end != response->data() + 12) status = 0;
    }
    if (status == 0 || body == std::string::npos) {
        if (error) *error = "malformed response: \"" + *response + "\"";
        return std::nullopt;
    }
    HttpResponse out;
    out.status = status;
    out.head = response->substr(0, body);
    out.body = response->substr(body + 4);
    return out;
}

// ---------------------------------------------------------------------------------------------
// ClientSession

bool ClientSession::connect(uint16_t port, Millis timeout) {
    error_.clear();
    fd_ = connect_to(port, timeout, &error_);
    connected_at_ = last_send_at_ = last_receive_at_ = Clock::now();
    return static_cast<bool>(fd_);
}

bool ClientSession::send(std::string_view bytes, Millis timeout) {
    if (!fd_) {
        error_ = "send: not connected";
        return false;
    }
    if (!send_all(fd_.get(), bytes.data(), bytes.size(), timeout)) {
        error_ = "send of " + std::to_string(bytes.size()) + " bytes failed or timed out";
        return false;
    }
    last_send_at_ = Clock::now();
    return true;
}

bool ClientSession::receive(size_t n, std::string* out, Millis timeout) {
    if (!fd_) {
        error_ = "receive: not connected";
        return false;
    }
    auto deadline = Clock::now() + timeout;
    size_t got = 0;
    char buffer[4096];
    while (got < n) {
        pollfd pfd{fd_.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, remaining_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            error_ =
                "timed out after " + std::to_string(got) + " of " + std::to_string(n) + " bytes";
            return false;
        }
        ssize_t m = ::recv(fd_.get(), buffer, std::min(sizeof(buffer), n - got), MSG_DONTWAIT);
        if (m > 0) {
            if (out) out->append(buffer, static_cast<size_t>(m));
            got += static_cast<size_t>(m);
            last_receive_at_ = Clock::now();
        } else if (m == 0) {
            error_ = "EOF after " + std::to_string(got) + " of " + std::to_string(n) + " bytes";
            return false;
        } else if (errno != EAGAIN && errno != EINTR) {
            error_ = "recv after " + std::to_string(got) + " of " + std::to_string(n) +
                     " bytes: " + errno_text(errno);
            return false;
        }
    }
    return true;
}

bool ClientSession::expect(std::string_view expected, Millis timeout) {
    std::string got;
    if (!receive(expected.size(), &got, timeout)) {
        error_ += " (expected \"" + std::string(expected) + "\", got \"" + got + "\")";
        return false;
    }
    if (got != expected) {
        error_ = "expected \"" + std::string(expected) + "\", got \"" + got + "\"";
        return false;
    }
    return true;
}

void ClientSession::shutdown_write() {
    if (fd_) ::shutdown(fd_.get(), SHUT_WR);
}

void ClientSession::reset() {
    if (fd_) reset_close(fd_);
}

CloseResult ClientSession::wait_for_close(Millis timeout, std::string* data) {
    if (!fd_) {
        CloseResult result;
        result.kind = CloseKind::kOtherError;
        result.at = Clock::now();
        return result;
    }
    CloseResult result = testkit::wait_for_close(fd_.get(), timeout, data);
    if (result.bytes_before > 0) last_receive_at_ = result.last_byte_at;
    return result;
}

bool ClientSession::stays_open(Millis how_long, std::string* data) {
    CloseResult result = wait_for_close(how_long, data);
    if (result.kind == CloseKind::kTimeout) return true;
    error_ = std::string("closed (") + to_string(result.kind) + ") after " +
             std::to_string(between(connected_at_, result).count()) + " ms from connect";
    return false;
}

Millis ClientSession::between(Clock::time_point from, const CloseResult& close) {
    return std::chrono::duration_cast<Millis>(close.at - from);
}

bool fd_counts_match(const FdCounts& now, const FdCounts& baseline, bool pipes_exact) {
    if (now.total < 0) return false;
    return now.sockets == baseline.sockets && now.other == baseline.other &&
           (pipes_exact ? now.pipes == baseline.pipes : true);
}

std::string to_string(const FdCounts& counts) {
    return "total=" + std::to_string(counts.total) + " sockets=" + std::to_string(counts.sockets) +
           " pipes=" + std::to_string(counts.pipes) + " other=" + std::to_string(counts.other);
}

FdCounts wait_for_fd_baseline(const ProxyProcess& proxy, const FdCounts& baseline, Millis timeout,
                              bool pipes_exact) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        FdCounts now = proxy.fd_counts();
        if (fd_counts_match(now, baseline, pipes_exact) || Clock::now() >= deadline) return now;
        std::this_thread::sleep_for(Millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

namespace {

bool is_metric_name_char(char c, bool first) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
}

bool is_label_name_char(char c, bool first) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
}

bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

// A cursor over one exposition line.
class LineCursor {
  public:
    explicit LineCursor(std::string_view line) : line_(line) {}

    void skip_blanks() {
        while (pos_ < line_.size() && is_blank(line_[pos_])) ++pos_;
    }
    bool done() const { return pos_ >= line_.size(); }
    char peek() const { return done() ? '\0' : line_[pos_]; }
    bool consume(char c) {
        if (peek() != c || done()) return false;
        ++pos_;
        return true;
    }
    std::string_view name(bool (*is_char)(char, bool)) {
        size_t begin = pos_;
        while (pos_ < line_.size() && is_char(line_[pos_], pos_ == begin)) ++pos_;
        return line_.substr(begin, pos_ - begin);
    }
    std::string_view token() {
        size_t begin = pos_;
        while (pos_ < line_.size() && !is_blank(line_[pos_])) ++pos_;
        return line_.substr(begin, pos_ - begin);
    }
    std::string_view rest() {
        std::string_view out = line_.substr(std::min(pos_, line_.size()));
        pos_ = line_.size();
        return out;
    }
    // A quoted label value after its opening quote; false on a bad escape or a missing quote.
    bool quoted(std::string& out, std::string& why) {
        while (pos_ < line_.size()) {
            char c = line_[pos_++];
            if (c == '"') return true;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= line_.size()) break;
            char e = line_[pos_++];
            if (e == '\\' || e == '"')
                out += e;
            else if (e == 'n')
                out += '\n';
            else {
                why = std::string("invalid escape \\") + e + " in a label value";
                return false;
            }
        }
        why = "unterminated label value";
        return false;
    }

  private:
    std::string_view line_;
    size_t pos_ = 0;
};

std::optional<double> parse_sample_value(std::string_view text) {
    if (text == "+Inf" || text == "Inf" || text == "+inf" || text == "inf")
        return std::numeric_limits<double>::infinity();
    if (text == "-Inf" || text == "-inf") return -std::numeric_limits<double>::infinity();
    if (text == "NaN" || text == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (text.starts_with('+')) text.remove_prefix(1);
    if (text.empty() || text.front() == '+') return std::nullopt;
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

std::string format_value(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    char text[64];
    if (value == std::floor(value) && std::fabs(value) < 1e15)
        std::snprintf(text, sizeof(text), "%.0f", value);
    else
        std::snprintf(text, sizeof(text), "%.17g", value);
    return text;
}

std::string labels_text(const Labels& labels) {
    if (labels.empty()) return "";
    std::string out = "{";
    bool first = true;
    for (const auto& [key, value] : labels) {
        if (!first) out += ",";
        first = false;
        out += key + "=\"";
        for (char c : value) {
            if (c == '\\' || c == '"')
                out += std::string("\\") + c;
            else if (c == '\n')
                out += "\\n";
            else
                out += c;
        }
        out += "\"";
    }
    return out + "}";
}

bool labels_include(const Labels& have, const Labels& want) {
    for (const auto& [key, value] : want) {
        auto it = have.find(key);
        if (it == have.end() || it->second != value) return false;
    }
    return true;
}

std::string unescape_help(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == '\\' || text[i + 1] == 'n')) {
            out += text[i + 1] == 'n' ? '\n' : '\\';
            ++i;
        } else {
            out += text[i];
        }
    }
    return out;
}

}  // namespace

std::string to_string(const MetricSample& sample) {
    return sample.name + labels_text(sample.labels) + " " + format_value(sample.value);
}

std::optional<Metrics> Metrics::parse(std::string_view text, std::string* error) {
    Metrics metrics;
    size_t line_number = 0;
    auto fail = [&](const std::string& why, std::string_view line) -> std::optional<Metrics> {
        if (error)
            *error = "line " + std::to_string(line_number) + ": " + why + ": \"" +
                     std::string(line) + "\"";
        return std::nullopt;
    };
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
        ++line_number;
        if (line.ends_with('\r')) line.remove_suffix(1);
        LineCursor cursor(line);
        cursor.skip_blanks();
        if (cursor.done()) continue;
        if (cursor.consume('#')) {
            cursor.skip_blanks();
            std::string_view keyword = cursor.token();
            if (keyword != "HELP" && keyword != "TYPE") continue;  // a plain comment
            cursor.skip_blanks();
            std::string family(cursor.name(is_metric_name_char));
            if (family.empty()) return fail("# " + std::string(keyword) + " without a name", line);
            if (!cursor.done() && !is_blank(cursor.peek()))
                return fail("invalid metric name", line);
            cursor.skip_blanks();
            std::string_view rest = cursor.rest();
            if (keyword == "HELP") {
                metrics.helps_[family] = unescape_help(rest);
                continue;
            }
            while (!rest.empty() && is_blank(rest.back())) rest.remove_suffix(1);
            if (rest != "counter" && rest != "gauge" && rest != "histogram" && rest != "summary" &&
                rest != "untyped")
                return fail("unknown metric type \"" + std::string(rest) + "\"", line);
            if (metrics.types_.count(family)) return fail("second # TYPE for " + family, line);
            metrics.types_[family] = std::string(rest);
            continue;
        }
        MetricSample sample;
        sample.name = std::string(cursor.name(is_metric_name_char));
        if (sample.name.empty()) return fail("expected a metric name", line);
        if (!cursor.done() && cursor.peek() != '{' && !is_blank(cursor.peek()))
            return fail("invalid metric name", line);
        cursor.skip_blanks();
        if (cursor.consume('{')) {
            for (;;) {
                cursor.skip_blanks();
                if (cursor.consume('}')) break;
                std::string key(cursor.name(is_label_name_char));
                if (key.empty()) return fail("expected a label name or '}'", line);
                cursor.skip_blanks();
                if (!cursor.consume('=')) return fail("expected '=' after label " + key, line);
                cursor.skip_blanks();
                if (!cursor.consume('"')) return fail("expected '\"' after " + key + "=", line);
                std::string value;
                std::string why;
                if (!cursor.quoted(value, why)) return fail(why, line);
                if (!sample.labels.emplace(key, std::move(value)).second)
                    return fail("duplicate label " + key, line);
                cursor.skip_blanks();
                if (cursor.consume(',')) continue;
                if (cursor.consume('}')) break;
                return fail("expected ',' or '}' after a label", line);
            }
            cursor.skip_blanks();
        }
        std::string_view value_text = cursor.token();
        auto value = parse_sample_value(value_text);
        if (!value) return fail("invalid value \"" + std::string(value_text) + "\"", line);
        sample.value = *value;
        cursor.skip_blanks();
        if (!cursor.done()) {
            std::string_view timestamp = cursor.token();
            int64_t ignored = 0;
            auto [end_ts, ec] =
                std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(), ignored);
            if (ec != std::errc() || end_ts != timestamp.data() + timestamp.size())
                return fail("invalid timestamp \"" + std::string(timestamp) + "\"", line);
            cursor.skip_blanks();
            if (!cursor.done()) return fail("unexpected text after the timestamp", line);
        }
        metrics.samples_.push_back(std::move(sample));
    }
    return metrics;
}

std::vector<const MetricSample*> Metrics::find(std::string_view name, const Labels& labels) const {
    std::vector<const MetricSample*> out;
    for (const auto& sample : samples_)
        if (sample.name == name && labels_include(sample.labels, labels)) out.push_back(&sample);
    return out;
}

double Metrics::sum(std::string_view name, const Labels& labels) const {
    double total = 0;
    for (const MetricSample* sample : find(name, labels)) total += sample->value;
    return total;
}

size_t Metrics::count(std::string_view name, const Labels& labels) const {
    return find(name, labels).size();
}

bool Metrics::has(std::string_view name) const {
    return std::any_of(samples_.begin(), samples_.end(),
                       [name](const MetricSample& sample) { return sample.name == name; });
}

std::string Metrics::type(std::string_view family) const {
    auto it = types_.find(family);
    return it == types_.end() ? "" : it->second;
}

std::vector<std::string> Metrics::families() const {
    std::vector<std::string> out;
    for (const auto& [family, type] : types_) out.push_back(family);
    return out;
}

std::string Metrics::help(std::string_view family) const {
    auto it = helps_.find(family);
    return it == helps_.end() ? "" : it->second;
}

std::string Metrics::describe(std::string_view name, const Labels& labels) const {
    std::string out;
    for (const MetricSample* sample : find(name, labels)) out += to_string(*sample) + "\n";
    if (out.empty()) out = "(no sample " + std::string(name) + labels_text(labels) + ")\n";
    return out;
}

std::optional<Metrics> scrape_metrics(uint16_t admin_port, std::string* error, Millis timeout) {
    std::string why;
    auto body = http_get(admin_port, "/metrics", timeout, &why);
    if (!body) {
        if (error) *error = "GET /metrics on port " + std::to_string(admin_port) + ": " + why;
        return std::nullopt;
    }
    auto metrics = Metrics::parse(*body, &why);
    if (!metrics && error) *error = "/metrics does not parse: " + why;
    return metrics;
}

bool wait_for_metric(uint16_t admin_port, std::string_view name, const Labels& labels,
                     const std::function<bool(double)>& predicate, Millis timeout,
                     std::string* last) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        std::string why;
        auto metrics = scrape_metrics(admin_port, &why, Millis(2000));
        if (metrics) {
            double value = metrics->sum(name, labels);
            bool done = predicate(value);
            if (last)
                *last = "sum of " + std::string(name) + labels_text(labels) + " = " +
                        format_value(value) + " over:\n" + metrics->describe(name, labels);
            if (done) return true;
        } else if (last) {
            *last = why;
        }
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(Millis(50));
    }
}

bool wait_for_metric(uint16_t admin_port, std::string_view name, const Labels& labels,
                     double min_value, Millis timeout, std::string* last) {
    return wait_for_metric(
        admin_port, name, labels, [min_value](double value) { return value >= min_value; }, timeout,
        last);
}

::testing::AssertionResult promtool_check(const std::string& exposition) {
    std::string promtool;
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':') && promtool.empty();) {
        std::string candidate = (dir.empty() ? "." : dir) + "/promtool";
        if (::access(candidate.c_str(), X_OK) == 0) promtool = candidate;
    }
    if (promtool.empty())
        return ::testing::AssertionFailure()
               << "promtool is not installed (Debian package prometheus; scripts/install-deps.sh "
                  "installs it)";
    TempDir dir;
    write_file(dir.file("metrics.txt"), exposition);
    std::string command = promtool + " check metrics < " + dir.file("metrics.txt") + " > " +
                          dir.file("promtool.out") + " 2>&1";
    int status = std::system(command.c_str());
    if (status == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << command << " (status " << status << "):\n"
                                         << read_file(dir.file("promtool.out"));
}

// ---------------------------------------------------------------------------------------------
// Socket options of another process

namespace {

std::optional<SockOpts> read_sockopts(int fd, std::string* error) {
    SockOpts opts;
    int value = 0;
    socklen_t length = sizeof(value);
    auto get = [&](int level, int name, const char* what) {
        length = sizeof(value);
        if (::getsockopt(fd, level, name, &value, &length) == 0) return true;
        if (error) *error = std::string("getsockopt(") + what + "): " + errno_text(errno);
        return false;
    };
    if (!get(SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE")) return std::nullopt;
    opts.keepalive = value != 0;
    if (!get(IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE")) return std::nullopt;
    opts.keepidle = value;
    if (!get(IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL")) return std::nullopt;
    opts.keepintvl = value;
    if (!get(IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT")) return std::nullopt;
    opts.keepcnt = value;
    if (!get(IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT")) return std::nullopt;
    opts.user_timeout_ms = static_cast<unsigned>(value);
    return opts;
}

Fd open_pidfd(pid_t pid, std::string* error) {
    Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd && error) *error = "pidfd_open(" + std::to_string(pid) + "): " + errno_text(errno);
    return pidfd;
}

// A duplicate of `pid`'s `fd` in this process.
Fd steal_fd(int pidfd, pid_t pid, int fd, std::string* error) {
    Fd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
    if (!copy && error)
        *error = "pidfd_getfd(pid " + std::to_string(pid) + ", fd " + std::to_string(fd) +
                 "): " + errno_text(errno);
    return copy;
}

}  // namespace

std::optional<SockOpts> sockopts_of(pid_t pid, int fd, std::string* error) {
    Fd pidfd = open_pidfd(pid, error);
    if (!pidfd) return std::nullopt;
    Fd copy = steal_fd(pidfd.get(), pid, fd, error);
    if (!copy) return std::nullopt;
    return read_sockopts(copy.get(), error);
}

std::optional<std::vector<ProcessSocket>> process_tcp_sockets(pid_t pid, std::string* error) {
    Fd pidfd = open_pidfd(pid, error);
    if (!pidfd) return std::nullopt;
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    std::vector<int> fds;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* entry = ::readdir(d)) {
            char target[256];
            ssize_t n = ::readlinkat(::dirfd(d), entry->d_name, target, sizeof(target) - 1);
            if (n <= 0) continue;
            target[n] = '\0';
            if (std::strncmp(target, "socket:", 7) == 0) fds.push_back(std::atoi(entry->d_name));
        }
        ::closedir(d);
    } else {
        if (error) *error = "opendir " + dir + ": " + errno_text(errno);
        return std::nullopt;
    }
    std::sort(fds.begin(), fds.end());
    std::vector<ProcessSocket> out;
    for (int fd : fds) {
        Fd copy = steal_fd(pidfd.get(), pid, fd, error);
        if (!copy) {
            if (errno == EBADF) continue;  // closed since we listed it
            return std::nullopt;
        }
        int domain = 0;
        int protocol = 0;
        int listening = 0;
        socklen_t length = sizeof(int);
        if (::getsockopt(copy.get(), SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 ||
            (domain != AF_INET && domain != AF_INET6))
            continue;
        length = sizeof(int);
        if (::getsockopt(copy.get(), SOL_SOCKET, SO_PROTOCOL, &protocol, &length) != 0 ||
            protocol != IPPROTO_TCP)
            continue;
        length = sizeof(int);
        ::getsockopt(copy.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &length);
        ProcessSocket socket;
        socket.fd = fd;
        socket.listening = listening != 0;
        socket.local = common::local_address(copy.get()).to_string();
        common::Address peer;
        peer.length = sizeof(peer.storage);
        if (::getpeername(copy.get(), reinterpret_cast<sockaddr*>(&peer.storage), &peer.length) ==
            0)
            socket.peer = peer.to_string();
        auto opts = read_sockopts(copy.get(), error);
        if (!opts) return std::nullopt;
        socket.opts = *opts;
        out.push_back(std::move(socket));
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// ss

bool SsSocket::owned_by(pid_t pid) const {
    return std::any_of(owners.begin(), owners.end(),
                       [pid](const auto& owner) { return owner.first == pid; });
}

namespace {

// Splits on blanks outside quotes and parentheses: users:(("a b",pid=1,fd=3)) is one token.
std::vector<std::string_view> ss_tokens(std::string_view line) {
    std::vector<std::string_view> tokens;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && is_blank(line[i])) ++i;
        if (i >= line.size()) break;
        size_t begin = i;
        int depth = 0;
        bool quoted = false;
        for (; i < line.size(); ++i) {
            char c = line[i];
            if (quoted) {
                if (c == '"') quoted = false;
                continue;
            }
            if (c == '"')
                quoted = true;
            else if (c == '(')
                ++depth;
            else if (c == ')' && depth > 0)
                --depth;
            else if (is_blank(c) && depth == 0)
                break;
        }
        tokens.push_back(line.substr(begin, i - begin));
    }
    return tokens;
}

bool all_digits(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
    });
}

// Reads a decimal number at text[pos...]; advances pos.
std::optional<long> take_number(std::string_view text, size_t& pos) {
    size_t begin = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) ++pos;
    if (pos == begin) return std::nullopt;
    return std::strtol(std::string(text.substr(begin, pos - begin)).c_str(), nullptr, 10);
}

void parse_ss_record(std::string_view first, SsSocket& socket) {
    std::vector<std::string_view> tokens = ss_tokens(first);
    size_t at = 0;
    // "ss state X" leaves the State column out; then the record starts with Recv-Q.
    if (!tokens.empty() && !all_digits(tokens[0])) socket.state = std::string(tokens[at++]);
    at += 2;  // Recv-Q, Send-Q
    if (at < tokens.size()) socket.local = std::string(tokens[at++]);
    if (at < tokens.size()) socket.peer = std::string(tokens[at++]);
    for (; at < tokens.size(); ++at) {
        std::string_view token = tokens[at];
        if (token.starts_with("users:(")) {
            size_t pos = 0;
            while ((pos = token.find("pid=", pos)) != std::string_view::npos) {
                pos += 4;
                auto pid = take_number(token, pos);
                size_t fd_at = token.find("fd=", pos);
                if (!pid || fd_at == std::string_view::npos) break;
                size_t fd_pos = fd_at + 3;
                auto fd = take_number(token, fd_pos);
                if (!fd) break;
                socket.owners.emplace_back(static_cast<pid_t>(*pid), static_cast<int>(*fd));
                pos = fd_pos;
            }
        } else if (token.starts_with("timer:(") && token.ends_with(")")) {
            std::string_view inside = token.substr(7, token.size() - 8);
            size_t comma1 = inside.find(',');
            size_t comma2 =
                comma1 == std::string_view::npos ? comma1 : inside.find(',', comma1 + 1);
            socket.timer = std::string(inside.substr(0, comma1));
            if (comma1 != std::string_view::npos) {
                socket.timer_expires = std::string(inside.substr(comma1 + 1, comma2 - comma1 - 1));
                socket.timer_ms = parse_ss_duration(socket.timer_expires);
            }
            if (comma2 != std::string_view::npos)
                socket.timer_retransmits =
                    std::atoi(std::string(inside.substr(comma2 + 1)).c_str());
        }
    }
}

const char* find_ss_binary() {
    for (const char* path : {"/usr/bin/ss", "/bin/ss", "/usr/sbin/ss", "/sbin/ss"})
        if (::access(path, X_OK) == 0) return path;
    return nullptr;
}

}  // namespace

std::optional<Millis> parse_ss_duration(std::string_view text) {
    // iproute2 prints [Nmin][S"sec" | S"." MMM"ms" | MMM"ms"], e.g. "1min29sec", "29.512ms".
    size_t pos = 0;
    long total_ms = 0;
    auto first = take_number(text, pos);
    if (!first) return std::nullopt;
    if (text.substr(pos).starts_with("min")) {
        total_ms += *first * 60000;
        pos += 3;
        if (pos == text.size()) return Millis(total_ms);
        first = take_number(text, pos);
        if (!first) return std::nullopt;
    }
    std::string_view rest = text.substr(pos);
    if (rest == "sec") return Millis(total_ms + *first * 1000);
    if (rest == "ms") return Millis(total_ms + *first);
    if (rest.starts_with(".")) {
        ++pos;
        auto ms = take_number(text, pos);
        if (!ms || text.substr(pos) != "ms") return std::nullopt;
        return Millis(total_ms + *first * 1000 + *ms);
    }
    return std::nullopt;
}

std::vector<SsSocket> parse_ss(std::string_view text) {
    std::vector<SsSocket> sockets;
    bool in_record = false;
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
        if (line.empty()) continue;
        if (is_blank(line.front())) {
            // The -i detail line (or an empty one) of the record above.
            if (in_record) sockets.back().line += "\n" + std::string(line);
            continue;
        }
        std::vector<std::string_view> tokens = ss_tokens(line);
        in_record = false;
        if (tokens.size() < 4 || tokens[0] == "State" || tokens[0] == "Recv-Q" ||
            tokens[0] == "Netid")
            continue;
        SsSocket socket;
        socket.line = std::string(line);
        parse_ss_record(line, socket);
        if (socket.local.empty() || socket.peer.empty()) continue;
        sockets.push_back(std::move(socket));
        in_record = true;
    }
    return sockets;
}

std::string run_ss(std::string* error) {
    const char* binary = find_ss_binary();
    if (!binary) {
        if (error) *error = "ss (iproute2) is not installed";
        return "";
    }
    TempDir dir;
    Subprocess ss;
    std::string why;
    if (!ss.spawn({binary, "-tiepona"}, dir.file("ss.out"), &why)) {
        if (error) *error = why;
        return "";
    }
    auto code = ss.wait(Millis(10000));
    std::string output = read_file(dir.file("ss.out"));
    if (code != std::optional<int>(0)) {
        if (error)
            *error = "ss -tiepona exited with " + std::to_string(code.value_or(-1)) + ": " +
                     tail(output, 1000);
        return "";
    }
    return output;
}

std::vector<SsSocket> ss_sockets(pid_t pid, std::string* error) {
    std::vector<SsSocket> out;
    for (auto& socket : parse_ss(run_ss(error)))
        if (socket.owned_by(pid)) out.push_back(std::move(socket));
    return out;
}

std::string ss_info(pid_t pid, std::string* error) {
    std::string out;
    for (const auto& socket : ss_sockets(pid, error)) out += socket.line + "\n";
    return out;
}

}  // namespace ringlb::testkit
