#include "common/fd_passing.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

namespace ringlb::common {
namespace {

using namespace std::chrono_literals;

struct Pair {
    Pair() {
        int sv[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        a.reset(sv[0]);
        b.reset(sv[1]);
    }
    Fd a, b;
};

ino_t inode_of(int fd) {
    struct stat st {};
    ::fstat(fd, &st);
    return st.st_ino;
}

TEST(FdPassingTest, LinesCarryTheirFdsInOrder) {
    Pair p;
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    Fd r(pipe_fds[0]), w(pipe_fds[1]);
    int both[] = {r.get(), w.get()};
    ASSERT_FALSE(send_line(p.a.get(), "L 127.0.0.1:80\n", both, 1000ms));
    ASSERT_FALSE(send_line(p.a.get(), "E\n", {}, 1000ms));
    std::string line;
    std::vector<Fd> fds;
    ASSERT_FALSE(recv_line(p.b.get(), line, fds, 1000ms));
    EXPECT_EQ(line, "L 127.0.0.1:80");
    ASSERT_EQ(fds.size(), 2u);
    // The same files, under new numbers.
    EXPECT_EQ(inode_of(fds[0].get()), inode_of(r.get()));
    EXPECT_EQ(inode_of(fds[1].get()), inode_of(w.get()));
    EXPECT_NE(fds[0].get(), r.get());
    EXPECT_EQ(::fcntl(fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    std::vector<Fd> none;
    ASSERT_FALSE(recv_line(p.b.get(), line, none, 1000ms));
    EXPECT_EQ(line, "E");
    EXPECT_TRUE(none.empty());
}

TEST(FdPassingTest, TimeoutEofAndBadInput) {
    Pair p;
    std::string line;
    std::vector<Fd> fds;
    EXPECT_EQ(recv_line(p.b.get(), line, fds, 50ms), std::make_error_code(std::errc::timed_out));
    EXPECT_EQ(send_line(p.a.get(), "no newline", {}, 50ms),
              std::make_error_code(std::errc::invalid_argument));
    p.a.reset();
    EXPECT_EQ(recv_line(p.b.get(), line, fds, 50ms),
              std::make_error_code(std::errc::connection_aborted));
}

TEST(FdPassingTest, OverlongLineIsAnError) {
    Pair p;
    std::string big(5000, 'x');
    big += '\n';
    EXPECT_EQ(send_line(p.a.get(), big, {}, 50ms),
              std::make_error_code(std::errc::invalid_argument));
    // A peer that sends one anyway is cut off after 4096 bytes.
    ASSERT_EQ(::write(p.a.get(), big.data(), big.size()), static_cast<ssize_t>(big.size()));
    std::string line;
    std::vector<Fd> fds;
    EXPECT_EQ(recv_line(p.b.get(), line, fds, 1000ms),
              std::make_error_code(std::errc::message_size));
}

}  // namespace
}  // namespace ringlb::common
