#include "common/socket.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

using ringlb::common::Fd;

TEST(SocketTest, ListenerIsReusePortAndAcceptedSocketsInheritNodelay) {
    std::error_code ec;
    auto address = ringlb::common::parse_address("127.0.0.1:0");
    ASSERT_TRUE(address);
    Fd listener = ringlb::common::listen_tcp(*address, 16, ec);
    ASSERT_TRUE(listener) << ec.message();
    int reuse = 0;
    socklen_t len = sizeof(reuse);
    ASSERT_EQ(::getsockopt(listener.get(), SOL_SOCKET, SO_REUSEPORT, &reuse, &len), 0);
    EXPECT_EQ(reuse, 1);

    ringlb::common::Address bound = ringlb::common::local_address(listener.get());
    ASSERT_NE(bound.port(), 0);
    // A second socket on the same address: what each shard does.
    Fd second = ringlb::common::listen_tcp(bound, 16, ec);
    EXPECT_TRUE(second) << ec.message();

    Fd client = ringlb::common::tcp_socket(AF_INET, ec);
    ASSERT_TRUE(client);
    int rc = ::connect(client.get(), bound.sa(), bound.length);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS);
    Fd accepted;
    for (int i = 0; i < 1000 && !accepted; ++i) {
        accepted.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK));
        if (!accepted) accepted.reset(::accept4(second.get(), nullptr, nullptr, SOCK_NONBLOCK));
        if (!accepted) ::usleep(1000);
    }
    ASSERT_TRUE(accepted);
    int nodelay = 0;
    len = sizeof(nodelay);
    ASSERT_EQ(::getsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    EXPECT_EQ(nodelay, 1);
}

TEST(SocketTest, ListenReportsBindErrors) {
    std::error_code ec;
    auto address = ringlb::common::parse_address("127.0.0.1:0");
    Fd listener = ringlb::common::listen_tcp(*address, 16, ec);
    ASSERT_TRUE(listener);
    // A plain (non-SO_REUSEPORT) socket already bound there makes our bind fail.
    Fd plain(::socket(AF_INET, SOCK_STREAM, 0));
    ringlb::common::Address bound = ringlb::common::local_address(listener.get());
    auto other = ringlb::common::parse_address("127.0.0.1:0");
    ASSERT_EQ(::bind(plain.get(), other->sa(), other->length), 0);
    ringlb::common::Address taken = ringlb::common::local_address(plain.get());
    Fd clash = ringlb::common::listen_tcp(taken, 16, ec);
    EXPECT_FALSE(clash);
    EXPECT_EQ(ec.value(), EADDRINUSE);
    (void)bound;
}
