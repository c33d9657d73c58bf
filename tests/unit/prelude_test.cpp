// The session's prelude on the scripted FakeEngine: a PROXY header over several receives with
// the client's first bytes behind it, short sends of what goes upstream first, the race between
// prelude_timeout's cancel and arriving bytes, EOF and ENOBUFS while reading, a failed send.

#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include "proxy/shard/session.hpp"
#include "proxy/upstream/counters.hpp"
#include "tests/unit/fake_engine.hpp"
#include "tests/unit/shard_harness.hpp"

namespace ringlb::test {
namespace {

using engine::Op;
using engine::OpType;
using upstream::CloseReason;
using namespace std::chrono_literals;

constexpr uint16_t kPort = 9001;

// Connects armed so far, on any fd.
size_t connects(const engine::FakeEngine& fake) {
    size_t n = 0;
    for (const engine::ArmedOp& a : fake.history()) n += a.type == OpType::kConnect;
    return n;
}

class PreludeTest : public ShardTest {
  protected:
    // Completes the connect and every send that follows until the upstream leg receives (the
    // prelude's bytes are out and forwarding runs); returns the upstream fd.
    int connect_and_flush() {
        Op* connect = h_->connect_op();
        EXPECT_NE(connect, nullptr) << "no connect armed";
        if (!connect) return -1;
        int up = h_->fd_of(*connect);
        h_->fake().connect_ok(*connect);
        h_->run();
        for (int i = 0; i < 10 && !h_->recv_on(up); ++i) {
            Op* send = h_->send_on(up);
            EXPECT_NE(send, nullptr);
            if (!send) break;
            h_->fake().send_ok(*send);
            h_->run();
        }
        EXPECT_NE(h_->recv_on(up), nullptr) << "forwarding did not start";
        return up;
    }
    void close_both(int client, int up) {
        h_->fake().recv_eof(*h_->recv_on(client));
        h_->fake().recv_eof(*h_->recv_on(up));
        h_->run();
        EXPECT_EQ(h_->shard().session_count(), 0u);
    }
};

TEST_F(PreludeTest, AProxyHeaderOverSeveralReceivesIsStrippedAndTheRestGoesFirstInOrder) {
    ShardHarness& h = start(config_for({kPort}, "", "proxy_protocol = \"v1\""));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.accept_client();
    Op* recv = h.recv_on(client.fd);
    ASSERT_NE(recv, nullptr);
    ASSERT_TRUE(f.recv_data(*recv, "PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000"));
    h.run();
    EXPECT_EQ(h.connect_op(), nullptr) << "connected before the header was complete";
    recv = h.recv_on(client.fd);
    ASSERT_NE(recv, nullptr);
    ASSERT_TRUE(f.recv_data(*recv, "\r\nhel"));
    h.run();
    // Routed: connecting, and nothing more read from the client meanwhile.
    Op* connect = h.connect_op();
    ASSERT_NE(connect, nullptr);
    EXPECT_EQ(h.recv_on(client.fd), nullptr);
    int up = h.fd_of(*connect);
    f.connect_ok(*connect);
    h.run();
    // "hel" goes first, over two short sends, before the pumps start.
    Op* send = h.send_on(up);
    ASSERT_NE(send, nullptr);
    EXPECT_EQ(h.recv_on(client.fd), nullptr);
    f.short_send(*send, 1);
    h.run();
    send = h.send_on(up);
    ASSERT_NE(send, nullptr);
    f.send_ok(*send);
    h.run();
    recv = h.recv_on(client.fd);
    ASSERT_NE(recv, nullptr);
    ASSERT_TRUE(f.recv_data(*recv, "lo"));
    h.run();
    send = h.send_on(up);
    ASSERT_NE(send, nullptr);
    f.send_ok(*send);
    h.run();
    EXPECT_EQ(f.wire(up), "hello");
    EXPECT_EQ(f.buffers_free(), f.buffer_count());
    EXPECT_EQ(h.shard().counters().bytes_in.get(), 5u) << "the header counted as client bytes";
    close_both(client.fd, up);
}

TEST_F(PreludeTest, SendProxyWritesTheHeaderBeforeTheClientsBytes) {
    ShardHarness& h = start(config_for({kPort}, "send_proxy = \"v1\""));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.accept_client();
    int up = connect_and_flush();
    // A socketpair has no IP addresses: the header says so.
    EXPECT_EQ(f.wire(up), "PROXY UNKNOWN\r\n");
    Op* recv = h.recv_on(client.fd);
    ASSERT_NE(recv, nullptr);
    ASSERT_TRUE(f.recv_data(*recv, "data"));
    h.run();
    f.send_ok(*h.send_on(up));
    h.run();
    EXPECT_EQ(f.wire(up), "PROXY UNKNOWN\r\ndata");
    EXPECT_EQ(h.shard().counters().bytes_in.get(), 4u);
    close_both(client.fd, up);
}

TEST_F(PreludeTest, BytesThatRaceTheTimeoutCancelAreKept) {
    ShardHarness& h = start(config_for(
        {kPort}, "",
        "prelude_timeout = \"30ms\"\nroutes = [{ sni = \"a.example.com\", cluster = \"app\" }]"));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.accept_client();
    Op* recv = h.recv_on(client.fd);
    ASSERT_NE(recv, nullptr);
    f.hold_cancels(true);
    std::this_thread::sleep_for(60ms);
    h.run_one();  // the wheel fires on the real clock: the receive is cancelled
    ASSERT_TRUE(recv->cancelling());
    EXPECT_EQ(h.connect_op(), nullptr) << "routed before the cancelled receive ended";
    ASSERT_TRUE(f.recv_data(*recv, "\x16\x03\x01"));  // a ClientHello's first bytes, in the race
    release_held(f);
    f.hold_cancels(false);
    h.run();
    int up = connect_and_flush();
    EXPECT_EQ(f.wire(up), "\x16\x03\x01");
    EXPECT_EQ(f.buffers_free(), f.buffer_count());
    close_both(client.fd, up);
}

TEST_F(PreludeTest, ATimeoutWithNothingReadRoutesToTheListenersCluster) {
    ShardHarness& h = start(config_for(
        {kPort}, "",
        "prelude_timeout = \"30ms\"\nroutes = [{ sni = \"a.example.com\", cluster = \"app\" }]"));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.accept_client();
    std::this_thread::sleep_for(60ms);
    h.run_one();  // the wheel fires on the real clock: the receive is cancelled
    h.run();      // its -ECANCELED: routed
    int up = connect_and_flush();
    EXPECT_EQ(f.wire(up), "");
    close_both(client.fd, up);
}

TEST_F(PreludeTest, EofWithinTheProxyHeaderClosesWithoutConnecting) {
    ShardHarness& h = start(config_for({kPort}, "", "proxy_protocol = \"any\""));
    engine::FakeEngine& f = h.fake();
    size_t mark = h.closes_so_far();
    ShardHarness::Client client = h.accept_client();
    ASSERT_TRUE(f.recv_data(*h.recv_on(client.fd), "PROXY TCP4 "));
    h.run();
    f.recv_eof(*h.recv_on(client.fd));
    h.run();
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(connects(f), 0u);
    EXPECT_EQ(h.closes_of(client.fd, mark), 1u);
    EXPECT_EQ(f.buffers_free(), f.buffer_count());
}

TEST_F(PreludeTest, GarbageClosesAtOnceAndAResetToo) {
    ShardHarness& h = start(config_for({kPort}, "", "proxy_protocol = \"v2\""));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client garbage = h.accept_client();
    ASSERT_TRUE(f.recv_data(*h.recv_on(garbage.fd), "GET / HTTP/1.0\r\n\r\n"));
    h.run();
    ShardHarness::Client reset = h.accept_client();
    f.recv_error(*h.recv_on(reset.fd), -ECONNRESET);
    h.run();
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(connects(f), 0u);
    EXPECT_EQ(f.buffers_free(), f.buffer_count());
}

TEST_F(PreludeTest, EnobufsWhileReadingRetriesOnceABufferIsFree) {
    ShardHarness& h = start(config_for({kPort}, "", "proxy_protocol = \"v1\""));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.accept_client();
    f.enobufs(*h.recv_on(client.fd));
    h.run();
    Op* recv = h.recv_on(client.fd);
    ASSERT_NE(recv, nullptr) << "the prelude stopped reading after ENOBUFS";
    ASSERT_TRUE(f.recv_data(*recv, "PROXY UNKNOWN\r\n"));
    h.run();
    int up = connect_and_flush();
    EXPECT_EQ(f.wire(up), "");
    close_both(client.fd, up);
}

TEST_F(PreludeTest, AFailedSendOfThePreludeClosesBothLegsOnce) {
    ShardHarness& h = start(config_for({kPort}, "send_proxy = \"v2\""));
    engine::FakeEngine& f = h.fake();
    size_t mark = h.closes_so_far();
    ShardHarness::Client client = h.accept_client();
    Op* connect = h.connect_op();
    ASSERT_NE(connect, nullptr);
    int up = h.fd_of(*connect);
    f.connect_ok(*connect);
    h.run();
    Op* send = h.send_on(up);
    ASSERT_NE(send, nullptr);
    f.send_error(*send, -EPIPE);
    h.run();
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(h.closes_of(client.fd, mark), 1u);
    EXPECT_EQ(h.closes_of(up, mark), 1u);
    EXPECT_EQ(close_count(h.backend(0), CloseReason::k_error), 1u);
}

}  // namespace
}  // namespace ringlb::test

namespace ringlb::shard {
namespace {

// pause_after_header(): the listener's access control gets the header's source before anything
// after the header is looked at; resume() then goes on as feed() would have.
TEST(PreludeStepsTest, PausesAfterTheHeaderOnlyWhenAsked) {
    config::ListenerConfig listener;
    listener.proxy_protocol = config::ProxyProtocol::kV1;
    const std::string bytes = "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\nhello";
    for (bool pause : {false, true}) {
        SCOPED_TRACE(pause);
        ListenerCounters counters;
        Prelude prelude(listener, nullptr, counters);
        if (pause) prelude.pause_after_header();
        std::span<const char> all(bytes.data(), bytes.size());
        EXPECT_EQ(prelude.feed(all.first(20)), Prelude::Step::kMore);
        EXPECT_EQ(prelude.source(), nullptr);
        Prelude::Step step = prelude.feed(all.subspan(20));
        if (pause) {
            EXPECT_EQ(step, Prelude::Step::kHeader);
            ASSERT_NE(prelude.source(), nullptr);
            EXPECT_EQ(prelude.source()->to_string(), "192.0.2.1:40000");
            step = prelude.resume();
        }
        EXPECT_EQ(step, Prelude::Step::kRoute);
        EXPECT_EQ(counters.prelude[static_cast<size_t>(PreludeResult::k_proxy_accepted)].get(), 1u);
        prelude.prepare_output("");
        EXPECT_EQ(std::string(prelude.unsent().data(), prelude.unsent().size()), "hello");
    }
}

}  // namespace
}  // namespace ringlb::shard
