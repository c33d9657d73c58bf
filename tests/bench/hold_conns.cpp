// ringlb-hold: opens N idle TCP connections to one address and keeps them open, so the benchmark
// can read a proxy's memory per idle proxied connection.
//
//   ringlb-hold --connect IP:PORT --count N --hold SECONDS [--rate CONNS_PER_S] [--batch K]
//
// Prints "held N" once every connection is established, then keeps them until the hold time
// passes, stdin closes (when stdin is a pipe, socket or terminal) or SIGTERM/SIGINT arrives. On
// exit it prints "released N dropped D", where D counts connections the peer closed meanwhile.
// Exit status: 0 on success, 1 if the connections could not all be established, 2 on bad usage.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/fd.hpp"
#include "common/socket.hpp"

namespace {

using ringlb::common::Address;
using ringlb::common::Fd;
using Clock = std::chrono::steady_clock;

struct Options {
    Address target;
    long count = 0;
    double hold_seconds = 0;
    double rate = 5000;  // connections per second
    int batch = 64;      // connects in flight at once
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "ringlb-hold: %s\nusage: ringlb-hold --connect IP:PORT --count N --hold SECONDS "
                 "[--rate CONNS_PER_S] [--batch K]\n",
                 why);
    std::exit(2);
}

Options parse_args(int argc, char** argv) {
    Options opt;
    bool have_target = false;
    bool have_count = false;
    bool have_hold = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
        const char* value = argv[++i];
        char* end = nullptr;
        if (arg == "--connect") {
            std::string error;
            auto address = ringlb::common::parse_address(value, &error);
            if (!address) usage(("bad --connect: " + error).c_str());
            opt.target = *address;
            have_target = true;
        } else if (arg == "--count") {
            opt.count = std::strtol(value, &end, 10);
            if (*end != '\0' || opt.count <= 0) usage("bad --count");
            have_count = true;
        } else if (arg == "--hold") {
            opt.hold_seconds = std::strtod(value, &end);
            if (*end != '\0' || opt.hold_seconds < 0) usage("bad --hold");
            have_hold = true;
        } else if (arg == "--rate") {
            opt.rate = std::strtod(value, &end);
            if (*end != '\0' || opt.rate <= 0) usage("bad --rate");
        } else if (arg == "--batch") {
            opt.batch = static_cast<int>(std::strtol(value, &end, 10));
            if (*end != '\0' || opt.batch <= 0) usage("bad --batch");
        } else {
            usage(("unknown option " + arg).c_str());
        }
    }
    if (!have_target || !have_count || !have_hold)
        usage("--connect, --count and --hold are needed");
    return opt;
}

// Starts one non-blocking connect; returns an invalid Fd and prints why on failure.
Fd start_connect(const Address& target) {
    std::error_code ec;
    Fd fd = ringlb::common::tcp_socket(target.family(), ec);
    if (!fd) {
        std::fprintf(stderr, "ringlb-hold: socket: %s\n", ec.message().c_str());
        return {};
    }
    if (::connect(fd.get(), target.sa(), target.length) != 0 && errno != EINPROGRESS) {
        std::fprintf(stderr, "ringlb-hold: connect: %s\n", std::strerror(errno));
        return {};
    }
    return fd;
}

// Establishes one batch: every socket in `pending` must report writable with SO_ERROR 0 before
// the deadline. Connections refused under load (a full backlog answers with RST on some kernels)
// are retried a few times, since the point is to measure held connections, not to test accept.
bool complete_batch(const Address& target, std::vector<Fd>& pending, std::vector<Fd>& held) {
    constexpr int kRetries = 5;
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    std::vector<int> retries(pending.size(), 0);
    std::vector<bool> done(pending.size(), false);
    size_t remaining = pending.size();
    std::vector<pollfd> pfds;
    std::vector<size_t> index;
    while (remaining > 0) {
        pfds.clear();
        index.clear();
        for (size_t i = 0; i < pending.size(); ++i) {
            if (done[i]) continue;
            pfds.push_back({pending[i].get(), POLLOUT, 0});
            index.push_back(i);
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            std::fprintf(stderr, "ringlb-hold: %zu connects timed out\n", remaining);
            return false;
        }
        int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
        if (n < 0) {
            if (errno == EINTR) continue;
            std::fprintf(stderr, "ringlb-hold: poll: %s\n", std::strerror(errno));
            return false;
        }
        for (size_t k = 0; k < pfds.size(); ++k) {
            if (pfds[k].revents == 0) continue;
            size_t i = index[k];
            int err = 0;
            socklen_t len = sizeof(err);
            ::getsockopt(pending[i].get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err == 0) {
                held.push_back(std::move(pending[i]));
                done[i] = true;
                --remaining;
                continue;
            }
            if (++retries[i] > kRetries) {
                std::fprintf(stderr, "ringlb-hold: connect: %s\n", std::strerror(err));
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10 * retries[i]));
            pending[i] = start_connect(target);
            if (!pending[i]) return false;
        }
    }
    pending.clear();
    return true;
}

bool stdin_is_watchable() {
    struct stat st {};
    if (::fstat(STDIN_FILENO, &st) != 0) return false;
    // /dev/null reads EOF at once; only a pipe, socket or terminal tells us "the caller is gone".
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || ::isatty(STDIN_FILENO);
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse_args(argc, argv);
    long limit = ringlb::common::raise_fd_limit();
    if (limit > 0 && opt.count + 16 > limit) {
        std::fprintf(stderr, "ringlb-hold: --count %ld exceeds the fd limit %ld\n", opt.count,
                     limit);
        return 1;
    }

    // Signals arrive through a signalfd so the wait below is one poll over everything.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    Fd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    signal(SIGPIPE, SIG_IGN);

    std::vector<Fd> held;
    held.reserve(static_cast<size_t>(opt.count));
    std::vector<Fd> pending;
    const auto start = Clock::now();
    while (static_cast<long>(held.size()) < opt.count) {
        long want = std::min<long>(opt.batch, opt.count - static_cast<long>(held.size()));
        // Pacing: batch k may start only at k*batch/rate seconds, so a slow acceptor's backlog
        // never sees more than a rate-limited burst.
        auto due =
            start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(static_cast<double>(held.size()) / opt.rate));
        std::this_thread::sleep_until(due);
        for (long i = 0; i < want; ++i) {
            Fd fd = start_connect(opt.target);
            if (!fd) return 1;
            pending.push_back(std::move(fd));
        }
        if (!complete_batch(opt.target, pending, held)) {
            std::fprintf(stderr, "ringlb-hold: established %zu of %ld\n", held.size(), opt.count);
            return 1;
        }
    }
    std::printf("held %zu\n", held.size());
    std::fflush(stdout);

    // Watch every connection for a peer close, plus stdin and the signals.
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) {
        std::fprintf(stderr, "ringlb-hold: epoll_create1: %s\n", std::strerror(errno));
        return 1;
    }
    constexpr uint64_t kStdinTag = ~0ULL;
    constexpr uint64_t kSignalTag = ~0ULL - 1;
    auto add = [&](int fd, uint32_t events, uint64_t tag) {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = tag;
        ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
    };
    for (size_t i = 0; i < held.size(); ++i) add(held[i].get(), EPOLLIN | EPOLLRDHUP, i);
    if (stdin_is_watchable()) add(STDIN_FILENO, EPOLLIN, kStdinTag);
    if (sigfd) add(sigfd.get(), EPOLLIN, kSignalTag);

    size_t dropped = 0;
    const auto hold_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(opt.hold_seconds));
    bool stop = false;
    epoll_event events[64];
    while (!stop) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(hold_until - Clock::now());
        if (left.count() <= 0) break;
        int n = ::epoll_wait(ep.get(), events, 64, static_cast<int>(left.count()));
        if (n < 0 && errno != EINTR) break;
        for (int k = 0; k < n; ++k) {
            uint64_t tag = events[k].data.u64;
            if (tag == kSignalTag) {
                stop = true;
            } else if (tag == kStdinTag) {
                char buf[256];
                ssize_t r = ::read(STDIN_FILENO, buf, sizeof(buf));
                if (r <= 0) stop = true;
            } else if (tag < held.size() && held[tag]) {
                // The peer closed (or sent something, which an idle backend should not): either
                // way the connection no longer counts as held.
                ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, held[tag].get(), nullptr);
                held[tag].reset();
                ++dropped;
            }
        }
    }
    std::printf("released %zu dropped %zu\n", held.size() - dropped, dropped);
    std::fflush(stdout);
    return 0;
}
