// ringlb-echo: the test and demo backend.
//
//   ringlb-echo --listen IP:PORT|unix:/path [--mode echo|hash|http|peer|drip|sink] [--name NAME]
//               [--threads N] [--greeting TEXT] [--idle-close MS] [--accept-delay MS]
//               [--backlog N] [--drip-ms MS] [--log-connections]
//
// Modes:
//   echo: echoes every byte; on the client's EOF it flushes, shuts its write side and closes.
//   hash: the protocol in tests/tools/pattern.hpp (both directions checked byte-exactly).
//   http: a minimal HTTP/1.1 keepalive server answering "hello from NAME\n" (quick start, wrk).
//   peer: first writes the connection's peer address as "IP:PORT\n" (IPv6: "[IP]:PORT\n"), then
//         behaves as echo. Tells a test which source address a proxy connected from.
//   drip: a backend that keeps talking while the client is silent: writes the backend pattern of
//         tests/tools/pattern.hpp one byte every --drip-ms milliseconds (a byte the socket cannot
//         take is tried again at the next tick), discards what it receives, and on the client's
//         EOF shuts its write side and closes.
//   sink: a backend that listens but never answers: discards what it receives and never
//         writes. On the client's EOF it stays open and silent (a peer that never finishes its
//         side); it closes on a socket error only.
//
// SIGTERM ends it at once with exit code 0 (also as PID 1 of a container).
//
// Options:
//   --name NAME         the name in http replies and the startup line (default "ringlb-echo").
//   --threads N         accepting threads, each with its own epoll loop (1..256, default 1).
//   --greeting TEXT     a server-speaks-first backend: on accept, sends TEXT before anything else
//                       (before the peer line in peer mode), then behaves as its mode. TEXT may
//                       hold C escapes: \n \r \t \\ \0 \xHH.
//   --idle-close MS     closes (plain close, FIN) a connection that has received no byte for MS
//                       milliseconds since accept or since its last received byte, like a
//                       server's idle timeout. Bytes sent do not count as activity.
//   --accept-delay MS   slow to accept: waits MS milliseconds before each accept(2), one
//                       connection at a time. Meanwhile connections wait in the kernel's accept
//                       queue; their connect() has already completed (the kernel does the
//                       handshake), so a client sees a silent but connected backend.
//   --backlog N         listen(2) backlog (1..65535, default 4096; the kernel caps it at
//                       net.core.somaxconn).
//   --drip-ms MS        drip mode: milliseconds between two bytes (1..86400000, default 100).
//   --log-connections   logs "accepted from IP:PORT" to stderr for every accepted connection, and
//                       "idle-closed IP:PORT" for every --idle-close close.
//
// Each thread runs its own edge-triggered epoll loop over non-blocking sockets; idle connections
// hold no buffers, so thousands of them cost little memory. Idle-close deadlines sit in a list
// ordered by last receive (a receive moves its connection to the back), so finding expired
// connections costs O(1) per connection and the loop sleeps exactly until the next deadline.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/socket.hpp"
#include "tests/tools/pattern.hpp"

namespace ringlb::tools {
namespace {

using common::Fd;

enum class Mode { kEcho, kHash, kHttp, kPeer, kDrip, kSink };

constexpr size_t kScratchSize = 64 * 1024;
constexpr size_t kMaxHttpHeader = 64 * 1024;
constexpr int kMaxEvents = 256;
constexpr auto kAcceptPause = std::chrono::milliseconds(100);

struct Options {
    common::Address listen;
    Mode mode = Mode::kEcho;
    std::string name = "ringlb-echo";
    unsigned threads = 1;
    std::string greeting;                       // escapes already decoded
    std::chrono::milliseconds idle_close{0};    // 0: off
    std::chrono::milliseconds accept_delay{0};  // 0: off
    int backlog = 4096;
    std::chrono::milliseconds drip_interval{100};
    bool log_connections = false;
};

struct Conn {
    Fd fd;
    bool read_eof = false;
    // Bytes accepted for sending that the socket could not take yet. While non-empty the
    // connection stops reading (echo, http): backpressure instead of unbounded buffering.
    std::string out;
    size_t out_offset = 0;

    // hash mode
    uint8_t header[kHashHeaderSize] = {};
    size_t header_got = 0;
    uint64_t to_send = 0;
    uint64_t sent = 0;
    uint64_t received = 0;
    bool trailer_queued = false;
    std::unique_ptr<Sha256> sha;

    // http mode
    std::string in;
    uint64_t body_left = 0;
    bool close_after_flush = false;

    // --idle-close: position in the worker's idle list and the time of the last received byte.
    std::list<int>::iterator idle_pos;
    bool in_idle_list = false;
    std::chrono::steady_clock::time_point last_receive;
    std::string peer;  // --log-connections only

    bool has_out() const { return out_offset < out.size(); }
};

enum class Flush { kDone, kBlocked, kError };

bool is_again(int err) {
    return err == EAGAIN || err == EWOULDBLOCK;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

class Worker {
  public:
    Worker(const Options& options, int listen_fd) : options_(options), listen_fd_(listen_fd) {}

    bool init() {
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_) return false;
        // Level-triggered so a connection left in the queue (EMFILE) is retried; EPOLLEXCLUSIVE
        // keeps several threads from all waking for one connection.
        epoll_event ev{};
        ev.events = EPOLLIN | (options_.threads > 1 ? EPOLLEXCLUSIVE : 0u);
        ev.data.fd = listen_fd_;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listen_fd_, &ev) != 0) return false;
        http_response_ =
            "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(options_.name.size() + 12) +
            "\r\nContent-Type: text/plain\r\n\r\nhello from " + options_.name + "\n";
        http_close_response_ = http_response_;
        http_close_response_.insert(http_close_response_.find("\r\n\r\n"), "\r\nConnection: close");
        return true;
    }

    void run() {
        epoll_event events[kMaxEvents];
        for (;;) {
            auto now = std::chrono::steady_clock::now();
            int timeout = -1;
            if (accept_paused_) {
                if (now >= accept_resume_)
                    resume_accepting();
                else
                    timeout = ms_until(accept_resume_, now);
            }
            if (options_.mode == Mode::kDrip && drip_conns_ > 0) {
                if (now >= next_drip_) {
                    drip_all();
                    next_drip_ = now + options_.drip_interval;
                }
                int drip_timeout = ms_until(next_drip_, now);
                timeout = timeout < 0 ? drip_timeout : std::min(timeout, drip_timeout);
            }
            if (options_.idle_close.count() > 0) {
                expire_idle(now);
                if (!idle_list_.empty()) {
                    int idle_timeout = ms_until(
                        conns_[idle_list_.front()]->last_receive + options_.idle_close, now);
                    timeout = timeout < 0 ? idle_timeout : std::min(timeout, idle_timeout);
                }
            }
            int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, timeout);
            if (n < 0) {
                if (errno == EINTR) continue;
                LOG_ERROR("epoll_wait: %s", std::strerror(errno));
                std::exit(1);
            }
            for (int i = 0; i < n; ++i) {
                int fd = events[i].data.fd;
                if (fd == listen_fd_) {
                    if (options_.accept_delay.count() > 0 && !accept_paused_) {
                        // Leave the connection in the accept queue for accept_delay first.
                        pause_accepting(PauseReason::kDelay, options_.accept_delay);
                        continue;
                    }
                    if (!accept_paused_) accept_some(std::numeric_limits<size_t>::max());
                    continue;
                }
                // A stale event for an fd closed earlier in this batch finds nothing (or a new
                // connection, for which a spurious drive is harmless: it stops at EAGAIN).
                if (static_cast<size_t>(fd) < conns_.size() && conns_[fd]) drive(fd);
            }
        }
    }

  private:
    enum class PauseReason { kEmfile, kDelay };

    static int ms_until(std::chrono::steady_clock::time_point when,
                        std::chrono::steady_clock::time_point now) {
        if (when <= now) return 0;
        // Rounded up, so the loop never wakes just before a deadline and spins.
        return static_cast<int>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(when - now).count()) +
               1;
    }

    void set_accepting(bool on) {
        // EPOLLEXCLUSIVE registrations cannot be modified; delete and re-add instead.
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listen_fd_, nullptr);
        if (on) {
            epoll_event ev{};
            ev.events = EPOLLIN | (options_.threads > 1 ? EPOLLEXCLUSIVE : 0u);
            ev.data.fd = listen_fd_;
            ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listen_fd_, &ev);
        }
        accept_paused_ = !on;
    }

    void pause_accepting(PauseReason reason, std::chrono::milliseconds how_long) {
        set_accepting(false);
        pause_reason_ = reason;
        accept_resume_ = std::chrono::steady_clock::now() + how_long;
    }

    void resume_accepting() {
        set_accepting(true);
        // --accept-delay: the wait was for one connection; take it. More waiting connections
        // keep the (level-triggered) listener readable, which starts the next delay.
        if (pause_reason_ == PauseReason::kDelay) accept_some(1);
    }

    void accept_some(size_t max) {
        for (size_t accepted = 0; accepted < max;) {
            sockaddr_storage peer{};
            socklen_t peer_length = sizeof(peer);
            int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_length,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (is_again(errno)) return;
                if (errno == EINTR || errno == ECONNABORTED) continue;
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    LOG_WARN("accept: %s; pausing accepts", std::strerror(errno));
                    pause_accepting(PauseReason::kEmfile, kAcceptPause);
                    return;
                }
                LOG_ERROR("accept: %s", std::strerror(errno));
                return;
            }
            ++accepted;
            common::set_nodelay(fd);
            if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(fd + 1024);
            auto conn = std::make_unique<Conn>();
            conn->fd.reset(fd);
            if (options_.mode == Mode::kHash) conn->sha = std::make_unique<Sha256>();
            std::string peer_text;
            if (options_.mode == Mode::kPeer || options_.log_connections) {
                common::Address address;
                std::memcpy(&address.storage, &peer, sizeof(peer));
                address.length = peer_length;
                peer_text = address.to_string();
            }
            if (options_.log_connections) {
                LOG_INFO("accepted from %s", peer_text.c_str());
                conn->peer = peer_text;
            }
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
            ev.data.fd = fd;
            if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
                LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
                continue;  // conn's Fd closes the socket
            }
            Conn& c = *conn;
            conns_[fd] = std::move(conn);
            if (options_.mode == Mode::kDrip) {
                // The first byte goes out one interval after the first drip connection arrives.
                if (drip_conns_++ == 0)
                    next_drip_ = std::chrono::steady_clock::now() + options_.drip_interval;
            }
            if (options_.idle_close.count() > 0) {
                c.last_receive = std::chrono::steady_clock::now();
                c.idle_pos = idle_list_.insert(idle_list_.end(), fd);
                c.in_idle_list = true;
            }
            // Server-speaks-first bytes go out before anything the mode sends.
            bool ok = send_or_queue(c, options_.greeting.data(), options_.greeting.size());
            if (ok && options_.mode == Mode::kPeer) {
                peer_text += '\n';
                ok = send_or_queue(c, peer_text.data(), peer_text.size());
            }
            if (!ok) {
                close_conn(fd);
                continue;
            }
            // Data may already be waiting; the edge for it may have come before registration.
            drive(fd);
        }
    }

    // Closes every connection whose last receive is idle_close old; the list is ordered by last
    // receive, so this stops at the first one still in time.
    void expire_idle(std::chrono::steady_clock::time_point now) {
        while (!idle_list_.empty()) {
            int fd = idle_list_.front();
            Conn& c = *conns_[fd];
            if (c.last_receive + options_.idle_close > now) return;
            if (options_.log_connections) LOG_INFO("idle-closed %s", c.peer.c_str());
            close_conn(fd);
        }
    }

    void close_conn(int fd) {
        Conn& c = *conns_[fd];
        if (c.in_idle_list) idle_list_.erase(c.idle_pos);
        if (options_.mode == Mode::kDrip) --drip_conns_;
        conns_[fd].reset();
    }

    // One pattern byte to every drip connection whose greeting has gone out.
    void drip_all() {
        for (size_t fd = 0; fd < conns_.size(); ++fd) {
            if (!conns_[fd]) continue;
            Conn& c = *conns_[fd];
            if (c.has_out()) {
                if (flush(c) == Flush::kError) close_conn(static_cast<int>(fd));
                continue;
            }
            uint8_t byte = 0;
            pattern_fill(kBackendPatternSeed, c.sent, &byte, 1);
            ssize_t n = ::send(c.fd.get(), &byte, 1, MSG_NOSIGNAL);
            if (n == 1)
                ++c.sent;
            else if (n < 0 && !is_again(errno) && errno != EINTR)
                close_conn(static_cast<int>(fd));
        }
    }

    // Shuts the write side first so the peer sees a clean EOF after everything we sent.
    void finish_conn(int fd) {
        ::shutdown(fd, SHUT_WR);
        close_conn(fd);
    }

    Flush flush(Conn& c) {
        while (c.has_out()) {
            ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_offset, c.out.size() - c.out_offset,
                               MSG_NOSIGNAL);
            if (n > 0) {
                c.out_offset += static_cast<size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && is_again(errno)) return Flush::kBlocked;
            return Flush::kError;
        }
        c.out.clear();
        c.out_offset = 0;
        return Flush::kDone;
    }

    // Sends what it can of [data, data+n) and queues the rest. False on a socket error.
    bool send_or_queue(Conn& c, const char* data, size_t n) {
        if (!c.has_out()) {
            while (n > 0) {
                ssize_t m = ::send(c.fd.get(), data, n, MSG_NOSIGNAL);
                if (m > 0) {
                    data += m;
                    n -= static_cast<size_t>(m);
                    continue;
                }
                if (m < 0 && errno == EINTR) continue;
                if (m < 0 && is_again(errno)) break;
                return false;
            }
        }
        c.out.append(data, n);
        return true;
    }

    // Receives into the scratch buffer: >0 bytes, 0 EOF, -1 would block, -2 error.
    ssize_t receive(Conn& c) {
        for (;;) {
            ssize_t n = ::recv(c.fd.get(), scratch_, sizeof(scratch_), 0);
            if (n > 0 && c.in_idle_list) {
                c.last_receive = std::chrono::steady_clock::now();
                idle_list_.splice(idle_list_.end(), idle_list_, c.idle_pos);
            }
            if (n >= 0) return n;
            if (errno == EINTR) continue;
            return is_again(errno) ? -1 : -2;
        }
    }

    void drive(int fd) {
        switch (options_.mode) {
            case Mode::kEcho:
            case Mode::kPeer:
                drive_echo(fd);
                break;
            case Mode::kHash:
                drive_hash(fd);
                break;
            case Mode::kHttp:
                drive_http(fd);
                break;
            case Mode::kDrip:
            case Mode::kSink:
                drive_discard(fd);
                break;
        }
    }

    // drip and sink: everything received is dropped. The bytes drip sends go out from its tick.
    void drive_discard(int fd) {
        Conn& c = *conns_[fd];
        if (c.has_out() && flush(c) == Flush::kError) return close_conn(fd);
        // Also after EOF: a later reset shows as a receive error, and closes the connection.
        for (;;) {
            ssize_t n = receive(c);
            if (n == -1) return;
            if (n == -2) return close_conn(fd);
            if (n == 0) {
                c.read_eof = true;
                // sink: a silent peer that keeps its side open.
                if (options_.mode == Mode::kDrip) finish_conn(fd);
                return;
            }
        }
    }

    void drive_echo(int fd) {
        Conn& c = *conns_[fd];
        for (;;) {
            Flush f = flush(c);
            if (f == Flush::kError) return close_conn(fd);
            if (f == Flush::kBlocked) return;  // EPOLLOUT resumes us
            if (c.read_eof) return finish_conn(fd);
            ssize_t n = receive(c);
            if (n == -1) return;
            if (n == -2) return close_conn(fd);
            if (n == 0) {
                c.read_eof = true;
                continue;
            }
            if (!send_or_queue(c, reinterpret_cast<const char*>(scratch_), static_cast<size_t>(n)))
                return close_conn(fd);
        }
    }

    void drive_hash(int fd) {
        Conn& c = *conns_[fd];
        for (;;) {
            bool progress = false;
            // Only a greeting can be queued before the header; it goes out as soon as it can.
            if (c.header_got < kHashHeaderSize && c.has_out() && flush(c) == Flush::kError)
                return close_conn(fd);
            if (!c.read_eof) {
                ssize_t n = receive(c);
                if (n == -2) return close_conn(fd);
                if (n == 0) {
                    c.read_eof = true;
                    progress = true;
                    if (c.header_got < kHashHeaderSize) {
                        LOG_WARN("hash: client closed before the 8-byte header");
                        return close_conn(fd);
                    }
                } else if (n > 0) {
                    progress = true;
                    size_t used = 0;
                    if (c.header_got < kHashHeaderSize) {
                        used = std::min(kHashHeaderSize - c.header_got, static_cast<size_t>(n));
                        std::memcpy(c.header + c.header_got, scratch_, used);
                        c.header_got += used;
                        if (c.header_got == kHashHeaderSize) c.to_send = get_be64(c.header);
                    }
                    c.sha->update(scratch_ + used, static_cast<size_t>(n) - used);
                    c.received += static_cast<size_t>(n) - used;
                }
            }
            if (c.header_got == kHashHeaderSize) {
                Flush f = flush(c);
                if (f == Flush::kError) return close_conn(fd);
                if (f == Flush::kDone) {
                    if (c.trailer_queued) return finish_conn(fd);
                    if (c.sent < c.to_send) {
                        size_t chunk = static_cast<size_t>(
                            std::min<uint64_t>(c.to_send - c.sent, sizeof(scratch_)));
                        // The pattern is random access, so a short send just regenerates from the
                        // new offset next time; nothing is queued.
                        pattern_fill(kBackendPatternSeed, c.sent, scratch_, chunk);
                        ssize_t m = ::send(c.fd.get(), scratch_, chunk, MSG_NOSIGNAL);
                        if (m > 0) {
                            c.sent += static_cast<uint64_t>(m);
                            progress = true;
                        } else if (m < 0 && !is_again(errno) && errno != EINTR) {
                            return close_conn(fd);
                        }
                    } else if (c.read_eof) {
                        uint8_t trailer[kHashTrailerSize];
                        auto digest = c.sha->finish();
                        std::memcpy(trailer, digest.data(), kSha256Size);
                        put_be64(trailer + kSha256Size, c.received);
                        if (!send_or_queue(c, reinterpret_cast<const char*>(trailer),
                                           sizeof(trailer)))
                            return close_conn(fd);
                        c.trailer_queued = true;
                        progress = true;
                    }
                }
            }
            if (!progress) return;
        }
    }

    // Answers every complete request in c.in. Returns false on a malformed request.
    bool serve_http(Conn& c) {
        for (;;) {
            if (c.body_left > 0) {
                size_t skip = static_cast<size_t>(std::min<uint64_t>(c.body_left, c.in.size()));
                c.in.erase(0, skip);
                c.body_left -= skip;
                if (c.body_left > 0) return true;
            }
            size_t end = c.in.find("\r\n\r\n");
            if (end == std::string::npos) return c.in.size() <= kMaxHttpHeader;
            std::string_view head(c.in.data(), end);
            size_t line_end = head.find("\r\n");
            std::string_view request_line = head.substr(0, line_end);
            bool keep_alive = request_line.size() >= 8 &&
                              request_line.substr(request_line.size() - 8) == "HTTP/1.1";
            uint64_t content_length = 0;
            while (line_end != std::string_view::npos) {
                head.remove_prefix(line_end + 2);
                line_end = head.find("\r\n");
                std::string_view line = head.substr(0, line_end);
                size_t colon = line.find(':');
                if (colon == std::string_view::npos) continue;
                std::string_view key = trim(line.substr(0, colon));
                std::string_view value = trim(line.substr(colon + 1));
                if (iequals(key, "connection")) {
                    if (iequals(value, "close"))
                        keep_alive = false;
                    else if (iequals(value, "keep-alive"))
                        keep_alive = true;
                } else if (iequals(key, "content-length")) {
                    content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
                }
            }
            c.in.erase(0, end + 4);
            c.body_left = content_length;
            if (!send_or_queue(c, keep_alive ? http_response_.data() : http_close_response_.data(),
                               keep_alive ? http_response_.size() : http_close_response_.size()))
                return false;
            if (!keep_alive) {
                c.close_after_flush = true;
                c.in.clear();
                return true;
            }
        }
    }

    void drive_http(int fd) {
        Conn& c = *conns_[fd];
        for (;;) {
            Flush f = flush(c);
            if (f == Flush::kError) return close_conn(fd);
            if (f == Flush::kBlocked) return;
            if (c.close_after_flush) return finish_conn(fd);
            if (c.read_eof) return finish_conn(fd);
            ssize_t n = receive(c);
            if (n == -1) return;
            if (n == -2) return close_conn(fd);
            if (n == 0) {
                c.read_eof = true;
                continue;
            }
            c.in.append(reinterpret_cast<const char*>(scratch_), static_cast<size_t>(n));
            if (!serve_http(c)) return close_conn(fd);
        }
    }

    const Options& options_;
    int listen_fd_;
    Fd epoll_;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::string http_response_;
    std::string http_close_response_;
    bool accept_paused_ = false;
    PauseReason pause_reason_ = PauseReason::kEmfile;
    std::chrono::steady_clock::time_point accept_resume_;
    std::list<int> idle_list_;  // --idle-close: fds, oldest last receive first
    size_t drip_conns_ = 0;     // drip mode: open connections
    std::chrono::steady_clock::time_point next_drip_;
    uint8_t scratch_[kScratchSize];
};

void usage() {
    std::fprintf(
        stderr,
        "usage: ringlb-echo --listen IP:PORT|unix:/path [--mode echo|hash|http|peer|drip|sink]\n"
        "                   [--name NAME] [--threads N] [--greeting TEXT] [--idle-close MS]\n"
        "                   [--accept-delay MS] [--backlog N] [--drip-ms MS]\n"
        "                   [--log-connections]\n"
        "  --mode echo        echo every byte; close after the client's EOF (default)\n"
        "  --mode hash        the hash protocol of tests/tools/pattern.hpp\n"
        "  --mode http        HTTP/1.1 keepalive server answering \"hello from NAME\"\n"
        "  --mode peer        send the client's address as \"IP:PORT\\n\", then echo\n"
        "  --mode drip        send one pattern byte every --drip-ms ms; discard input\n"
        "  --mode sink        discard input, never write, stay open after the client's EOF\n"
        "  --name NAME        name in http replies and the startup line\n"
        "  --threads N        accepting threads, 1..256 (default 1)\n"
        "  --greeting TEXT    send TEXT on accept, before anything else (escapes: \\n \\r \\t\n"
        "                     \\\\ \\0 \\xHH)\n"
        "  --idle-close MS    close a connection that received nothing for MS ms\n"
        "  --accept-delay MS  wait MS ms before each accept (connections queue in the kernel)\n"
        "  --backlog N        listen(2) backlog, 1..65535 (default 4096)\n"
        "  --drip-ms MS       drip mode: ms between two bytes (default 100)\n"
        "  --log-connections  log \"accepted from IP:PORT\" per connection (and idle closes)\n");
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Decodes the C escapes a shell argument cannot carry literally; false on a malformed escape.
bool unescape(std::string_view text, std::string& out) {
    out.clear();
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\') {
            out += text[i];
            continue;
        }
        if (++i == text.size()) return false;
        switch (text[i]) {
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case '0':
                out += '\0';
                break;
            case '\\':
                out += '\\';
                break;
            case 'x': {
                int high = i + 1 < text.size() ? hex_digit(text[i + 1]) : -1;
                int low = i + 2 < text.size() ? hex_digit(text[i + 2]) : -1;
                if (high < 0 || low < 0) return false;
                out += static_cast<char>(high * 16 + low);
                i += 2;
                break;
            }
            default:
                return false;
        }
    }
    return true;
}

// A whole decimal number in [min, max]; nullopt otherwise.
std::optional<long> parse_number(std::string_view text, long min, long max) {
    long value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max)
        return std::nullopt;
    return value;
}

bool parse_options(int argc, char** argv, Options& options) {
    bool have_listen = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--log-connections") {
            options.log_connections = true;
            continue;
        }
        if (i + 1 >= argc) return false;
        std::string_view value = argv[++i];
        if (arg == "--listen") {
            std::string error;
            auto address = common::parse_socket_address(value, &error);
            if (!address) {
                std::fprintf(stderr, "ringlb-echo: --listen %s: %s\n", argv[i], error.c_str());
                return false;
            }
            options.listen = *address;
            have_listen = true;
        } else if (arg == "--mode") {
            if (value == "echo")
                options.mode = Mode::kEcho;
            else if (value == "hash")
                options.mode = Mode::kHash;
            else if (value == "http")
                options.mode = Mode::kHttp;
            else if (value == "peer")
                options.mode = Mode::kPeer;
            else if (value == "drip")
                options.mode = Mode::kDrip;
            else if (value == "sink")
                options.mode = Mode::kSink;
            else
                return false;
        } else if (arg == "--name") {
            options.name = value;
        } else if (arg == "--threads") {
            auto threads = parse_number(value, 1, 256);
            if (!threads) return false;
            options.threads = static_cast<unsigned>(*threads);
        } else if (arg == "--greeting") {
            if (!unescape(value, options.greeting)) {
                std::fprintf(stderr, "ringlb-echo: --greeting: malformed escape in %s\n", argv[i]);
                return false;
            }
        } else if (arg == "--idle-close") {
            auto ms = parse_number(value, 1, 86400000);
            if (!ms) return false;
            options.idle_close = std::chrono::milliseconds(*ms);
        } else if (arg == "--accept-delay") {
            auto ms = parse_number(value, 1, 86400000);
            if (!ms) return false;
            options.accept_delay = std::chrono::milliseconds(*ms);
        } else if (arg == "--drip-ms") {
            auto ms = parse_number(value, 1, 86400000);
            if (!ms) return false;
            options.drip_interval = std::chrono::milliseconds(*ms);
        } else if (arg == "--backlog") {
            auto backlog = parse_number(value, 1, 65535);
            if (!backlog) return false;
            options.backlog = static_cast<int>(*backlog);
        } else {
            return false;
        }
    }
    return have_listen;
}

const char* mode_name(Mode mode) {
    switch (mode) {
        case Mode::kEcho:
            return "echo";
        case Mode::kHash:
            return "hash";
        case Mode::kHttp:
            return "http";
        case Mode::kPeer:
            return "peer";
        case Mode::kDrip:
            return "drip";
        case Mode::kSink:
            return "sink";
    }
    return "?";
}

int run(int argc, char** argv) {
    Options options;
    if (!parse_options(argc, argv, options)) {
        usage();
        return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);
    // As PID 1 of a container (the app of the sidecar pod test) a signal without a handler is
    // ignored, so SIGTERM (podman stop, the kubelet) would end it only at the stop timeout's
    // SIGKILL. It holds no state: exit at once.
    ::signal(SIGTERM, [](int) { ::_exit(0); });
    common::raise_fd_limit();

    // SO_REUSEADDR only: a second backend on the same port must fail loudly rather than share
    // the port (SO_REUSEPORT) and silently take half of another test's connections.
    Fd listener(::socket(options.listen.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int one = 1;
    if (!listener ||
        ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::bind(listener.get(), options.listen.sa(), options.listen.length) != 0 ||
        ::listen(listener.get(), options.backlog) != 0) {
        LOG_ERROR("cannot listen on %s: %s", options.listen.to_string().c_str(),
                  std::strerror(errno));
        return 1;
    }

    std::vector<std::unique_ptr<Worker>> workers;
    for (unsigned i = 0; i < options.threads; ++i) {
        workers.push_back(std::make_unique<Worker>(options, listener.get()));
        if (!workers.back()->init()) {
            LOG_ERROR("epoll setup: %s", std::strerror(errno));
            return 1;
        }
    }
    LOG_INFO("listening on %s mode=%s name=%s threads=%u",
             common::local_address(listener.get()).to_string().c_str(), mode_name(options.mode),
             options.name.c_str(), options.threads);

    std::vector<std::thread> threads;
    for (unsigned i = 1; i < options.threads; ++i)
        threads.emplace_back([&workers, i] { workers[i]->run(); });
    workers[0]->run();  // never returns; the process ends by signal
    return 0;
}

}  // namespace
}  // namespace ringlb::tools

int main(int argc, char** argv) {
    return ringlb::tools::run(argc, argv);
}
