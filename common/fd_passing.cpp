#include "common/fd_passing.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace ringlb::common {

namespace {

constexpr size_t kMaxLine = 4096;

std::error_code errno_code(int err) {
    return {err, std::generic_category()};
}

// Waits until `sock` is ready for `events` or the deadline passes.
std::error_code wait_for(int sock, short events, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::make_error_code(std::errc::timed_out);
        pollfd p{sock, events, 0};
        int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n > 0) return {};
        if (n < 0 && errno != EINTR) return errno_code(errno);
    }
}

}  // namespace

std::error_code send_line(int sock, std::string_view line, std::span<const int> fds,
                          std::chrono::milliseconds timeout) {
    if (line.empty() || line.back() != '\n' || line.size() > kMaxLine ||
        fds.size() > kMaxFdsPerMessage)
        return std::make_error_code(std::errc::invalid_argument);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t sent = 0;
    while (sent < line.size()) {
        iovec iov{const_cast<char*>(line.data() + sent), line.size() - sent};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        std::vector<char> control;
        if (sent == 0 && !fds.empty()) {
            control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
            cmsg->cmsg_level = SOL_SOCKET;
            cmsg->cmsg_type = SCM_RIGHTS;
            cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
        }
        ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (auto ec = wait_for(sock, POLLOUT, deadline)) return ec;
            continue;
        }
        return errno_code(n < 0 ? errno : EPIPE);
    }
    return {};
}

std::error_code recv_line(int sock, std::string& line, std::vector<Fd>& fds,
                          std::chrono::milliseconds timeout) {
    line.clear();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        char c = 0;
        iovec iov{&c, 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (auto ec = wait_for(sock, POLLIN, deadline)) return ec;
            continue;
        }
        if (n < 0) return errno_code(errno);
        // Fds arrive with the byte they were sent with; take them even from a truncated message
        // so none leaks.
        for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
            if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
            size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
                fds.emplace_back(fd);
            }
        }
        if (msg.msg_flags & MSG_CTRUNC) return std::make_error_code(std::errc::message_size);
        if (n == 0) return std::make_error_code(std::errc::connection_aborted);
        if (c == '\n') return {};
        if (line.size() >= kMaxLine) return std::make_error_code(std::errc::message_size);
        line += c;
    }
}

}  // namespace ringlb::common
