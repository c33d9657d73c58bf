// Contract tests for the event-engine seam, run against every engine over real loopback sockets.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "common/fd.hpp"
#include "common/socket.hpp"
#include "proxy/engine/engine.hpp"

namespace ringlb::engine {
namespace {

using common::Address;
using common::Fd;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Event {
    uint8_t tag = 0;
    Completion c;
};

// Records every completion; an optional hook lets a test act from inside the callback.
class Recorder final : public Handler {
  public:
    void on_complete(Op& op, const Completion& c) override {
        if (inside_call) ++violations;
        events.push_back({op.tag(), c});
        if (!c.more()) ++finals;
        if (hook) hook(op, c);
    }

    std::vector<Event> finals_of(uint8_t tag) const {
        std::vector<Event> out;
        for (const Event& e : events)
            if (e.tag == tag && !e.c.more()) out.push_back(e);
        return out;
    }

    std::vector<Event> events;
    std::function<void(Op&, const Completion&)> hook;
    bool inside_call = false;  // set while the test is inside an arming call
    int violations = 0;        // completions delivered from inside an arming call
    int finals = 0;
};

uint8_t pattern(uint64_t i) {
    return static_cast<uint8_t>((i * 0x9E3779B97F4A7C15ull) >> 56);
}

std::vector<char> make_payload(size_t len) {
    std::vector<char> data(len);
    for (size_t i = 0; i < len; ++i) data[i] = static_cast<char>(pattern(i));
    return data;
}

Address loopback_any_port() {
    auto addr = common::parse_address("127.0.0.1:0");
    return *addr;
}

void make_listener(int backlog, Fd& listener, Address& bound) {
    std::error_code ec;
    listener = common::listen_tcp(loopback_any_port(), backlog, ec);
    ASSERT_FALSE(ec) << ec.message();
    bound = common::local_address(listener.get());
    ASSERT_NE(bound.port(), 0);
}

bool wait_fd(int fd, short events, int timeout_ms) {
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, timeout_ms) == 1;
}

// A connected loopback TCP pair: `client` is blocking (for helper threads), `server` is
// non-blocking (for the engine).
void tcp_pair(Fd& client, Fd& server) {
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(4, listener, addr));
    client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(client.valid());
    ASSERT_EQ(::connect(client.get(), addr.sa(), addr.length), 0) << std::strerror(errno);
    ASSERT_TRUE(wait_fd(listener.get(), POLLIN, 2000));
    server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    ASSERT_TRUE(server.valid()) << std::strerror(errno);
}

std::string engine_name(const ::testing::TestParamInfo<EngineChoice>& info) {
    return info.param == EngineChoice::kEpoll ? "epoll" : "io_uring";
}

class EngineTest : public ::testing::TestWithParam<EngineChoice> {
  protected:
    void SetUp() override { create(EngineParams{}); }

    void TearDown() override {
        EXPECT_EQ(rec_.violations, 0) << "a completion was delivered inside an arming call";
    }

    void create(const EngineParams& params) {
        engine_.reset();
        try {
            engine_ = make_engine(GetParam(), params);
        } catch (const std::exception& e) {
            GTEST_SKIP() << "engine unavailable on this host: " << e.what();
        }
        ASSERT_NE(engine_, nullptr);
    }

    Engine& engine() { return *engine_; }

    // An engine made with `params` and a connected pair whose server side already holds `data`
    // (make_payload(total)), written before any receive is armed.
    void loaded_pair(const EngineParams& params, size_t total, Fd& client, Fd& server,
                     std::vector<char>& data) {
        ASSERT_NO_FATAL_FAILURE(create(params));
        ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
        data = make_payload(total);
        ASSERT_EQ(::write(client.get(), data.data(), total), static_cast<ssize_t>(total));
    }

    // Runs `fn` (an arming or cancelling call) while flagging that no completion may arrive.
    template <typename F>
    void call(F&& fn) {
        rec_.inside_call = true;
        fn();
        rec_.inside_call = false;
    }

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
        auto deadline = Clock::now() + limit;
        while (!done()) {
            if (Clock::now() >= deadline) return false;
            engine_->run_once(10ms);
        }
        return true;
    }

    void run_for(std::chrono::milliseconds span) {
        auto deadline = Clock::now() + span;
        while (Clock::now() < deadline) engine_->run_once(10ms);
    }

    // Ends `op` if a failed assertion left it armed, so no engine outlives a dangling op.
    void settle(Op& op) {
        if (!op.armed()) return;
        engine_->cancel(op);
        run_until([&] { return !op.armed(); }, 5s);
    }

    Recorder rec_;
    std::unique_ptr<Engine> engine_;
};

TEST_P(EngineTest, NameMatchesChoice) {
    EXPECT_STREQ(engine().name(), GetParam() == EngineChoice::kEpoll ? "epoll" : "io_uring");
}

TEST_P(EngineTest, MultishotAcceptDeliversEveryConnection) {
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(64, listener, addr));

    // Two connections queue up before accept is armed: their edge is gone by then.
    std::vector<Fd> clients;
    auto connect_client = [&] {
        Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_EQ(::connect(c.get(), addr.sa(), addr.length), 0) << std::strerror(errno);
        clients.push_back(std::move(c));
    };
    for (int i = 0; i < 2; ++i) ASSERT_NO_FATAL_FAILURE(connect_client());

    Op op(&rec_, 1);
    call([&] { engine().accept(op, listener.get()); });
    EXPECT_TRUE(op.armed());
    for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(connect_client());

    std::vector<int> accepted;
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.more() && c.res >= 0) accepted.push_back(c.res);
    };
    EXPECT_TRUE(run_until([&] { return accepted.size() >= 5; }, 5s));
    run_for(50ms);
    EXPECT_EQ(accepted.size(), 5u);
    EXPECT_EQ(rec_.finals, 0) << "multishot accept ended early";
    EXPECT_TRUE(op.armed());

    std::vector<uint16_t> client_ports;
    for (const Fd& c : clients) client_ports.push_back(common::local_address(c.get()).port());
    for (int fd : accepted) {
        EXPECT_TRUE(::fcntl(fd, F_GETFL) & O_NONBLOCK);
        EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
        sockaddr_storage peer{};
        socklen_t len = sizeof(peer);
        ASSERT_EQ(::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len), 0);
        uint16_t port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
        EXPECT_NE(std::find(client_ports.begin(), client_ports.end(), port), client_ports.end());
    }

    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 5s));
    auto finals = rec_.finals_of(1);
    ASSERT_EQ(finals.size(), 1u);
    EXPECT_EQ(finals[0].c.res, -ECANCELED);
    for (int fd : accepted) engine().close_fd(fd);
}

TEST_P(EngineTest, AcceptRearmedLaterFindsQueuedConnections) {
    // After a pause (as after -EMFILE) connections that queued meanwhile raised no new edge for
    // the re-armed accept, yet must be delivered.
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(64, listener, addr));
    Op op(&rec_, 1);
    call([&] { engine().accept(op, listener.get()); });
    run_for(20ms);
    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));

    std::vector<Fd> clients;
    for (int i = 0; i < 3; ++i) {
        Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_EQ(::connect(c.get(), addr.sa(), addr.length), 0) << std::strerror(errno);
        clients.push_back(std::move(c));
    }
    run_for(50ms);  // lets the engine see (and drop) the edge while nothing is armed

    std::vector<int> accepted;
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.more() && c.res >= 0) accepted.push_back(c.res);
    };
    call([&] { engine().accept(op, listener.get()); });
    EXPECT_TRUE(run_until([&] { return accepted.size() >= 3; }, 2s));
    EXPECT_EQ(accepted.size(), 3u);
    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    for (int fd : accepted) engine().close_fd(fd);
}

TEST_P(EngineTest, PollArmedAfterDataArrivedStillReportsIt) {
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    Op op(&rec_, 3);
    call([&] { engine().poll(op, server.get(), POLLIN); });
    run_for(20ms);
    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    ASSERT_EQ(::write(client.get(), "late", 4), 4);
    run_for(50ms);  // the edge passes while no poll is armed

    rec_.events.clear();
    call([&] { engine().poll(op, server.get(), POLLIN); });
    EXPECT_TRUE(run_until(
        [&] {
            for (const Event& e : rec_.events)
                if (e.c.res > 0 && (e.c.res & POLLIN)) return true;
            return false;
        },
        2s));
    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
}

TEST_P(EngineTest, AcceptDrainsABurstLargerThanOneWakeup) {
    // All connections are queued before accept is armed, so no later edge will come: an engine
    // that bounds its work per wakeup must come back for the rest by itself.
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(512, listener, addr));
    constexpr size_t kConns = 150;
    std::vector<Fd> clients;
    for (size_t i = 0; i < kConns; ++i) {
        Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_EQ(::connect(c.get(), addr.sa(), addr.length), 0) << std::strerror(errno);
        clients.push_back(std::move(c));
    }
    std::vector<int> accepted;
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.more() && c.res >= 0) accepted.push_back(c.res);
    };
    Op op(&rec_, 1);
    call([&] { engine().accept(op, listener.get()); });
    EXPECT_TRUE(run_until([&] { return accepted.size() >= kConns; }, 5s));
    EXPECT_EQ(accepted.size(), kConns);
    EXPECT_EQ(rec_.finals, 0);
    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    for (int fd : accepted) engine().close_fd(fd);
}

TEST_P(EngineTest, AcceptedFdNumberReusedAfterPlainClose) {
    // close_fd() is the contract, but a session that lets an accepted socket's Fd close it must
    // not poison the number for the next accepted socket.
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(16, listener, addr));
    std::vector<int> accepted;
    Op accept_op(&rec_, 1);
    Op recv_op(&rec_, 4);
    std::string got;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (&o == &accept_op && c.more() && c.res >= 0) accepted.push_back(c.res);
        if (&o == &recv_op && c.has_buffer()) {
            got.append(engine().buffer(c.buffer_id).data(), static_cast<size_t>(c.res));
            engine().release_buffer(c.buffer_id);
        }
    };
    call([&] { engine().accept(accept_op, listener.get()); });
    for (int round = 0; round < 3; ++round) {
        Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_EQ(::connect(client.get(), addr.sa(), addr.length), 0);
        ASSERT_TRUE(run_until([&] { return accepted.size() == 1; }, 2s)) << "round " << round;
        int fd = accepted[0];
        accepted.clear();
        got.clear();
        call([&] { engine().recv(recv_op, fd); });
        run_for(20ms);  // nothing to read yet: the data must come with an edge
        ASSERT_EQ(::write(client.get(), "hi", 2), 2);
        client.reset();
        ASSERT_TRUE(run_until([&] { return !recv_op.armed(); }, 2s)) << "round " << round;
        EXPECT_EQ(got, "hi") << "round " << round;
        ::close(fd);  // deliberately not close_fd()
    }
    call([&] { engine().cancel(accept_op); });
    EXPECT_TRUE(run_until([&] { return !accept_op.armed(); }, 2s));
    settle(recv_op);
}

TEST_P(EngineTest, ConnectSucceeds) {
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(16, listener, addr));
    std::error_code ec;
    Fd sock = common::tcp_socket(AF_INET, ec);
    ASSERT_FALSE(ec);

    Op op(&rec_, 2);
    call([&] { engine().connect(op, sock.get(), addr.sa(), addr.length, 2000ms); });
    EXPECT_TRUE(op.armed());
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 5s));
    ASSERT_EQ(rec_.events.size(), 1u);
    EXPECT_FALSE(rec_.events[0].c.more());
    EXPECT_EQ(rec_.events[0].c.res, 0) << std::strerror(-rec_.events[0].c.res);

    ASSERT_TRUE(wait_fd(listener.get(), POLLIN, 2000));
    Fd peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(peer.valid());
    ASSERT_EQ(::write(peer.get(), "x", 1), 1);
    ASSERT_TRUE(wait_fd(sock.get(), POLLIN, 2000));
    char c = 0;
    EXPECT_EQ(::read(sock.get(), &c, 1), 1);
    EXPECT_EQ(c, 'x');
    // The timeout must not fire after success.
    run_for(50ms);
    EXPECT_EQ(rec_.events.size(), 1u);
}

TEST_P(EngineTest, ConnectRefused) {
    // A bound but not listening port answers SYN with RST, and stays ours for the test.
    Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    Address any = loopback_any_port();
    ASSERT_EQ(::bind(holder.get(), any.sa(), any.length), 0);
    Address addr = common::local_address(holder.get());

    std::error_code ec;
    Fd sock = common::tcp_socket(AF_INET, ec);
    ASSERT_FALSE(ec);
    Op op(&rec_, 2);
    call([&] { engine().connect(op, sock.get(), addr.sa(), addr.length, 2000ms); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 5s));
    ASSERT_EQ(rec_.events.size(), 1u);
    EXPECT_FALSE(rec_.events[0].c.more());
    EXPECT_EQ(rec_.events[0].c.res, -ECONNREFUSED);
}

TEST_P(EngineTest, ConnectTimesOut) {
    // With backlog 0 the accept queue holds one connection; once it is full the listener drops
    // further SYNs, so a connect stays in SYN_SENT until our timeout.
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(0, listener, addr));
    std::vector<Fd> fillers;
    bool full = false;
    for (int i = 0; i < 16 && !full; ++i) {
        std::error_code ec;
        Fd c = common::tcp_socket(AF_INET, ec);
        ASSERT_FALSE(ec);
        int rc = ::connect(c.get(), addr.sa(), addr.length);
        ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
        if (rc != 0 && !wait_fd(c.get(), POLLOUT, 300)) full = true;
        fillers.push_back(std::move(c));
    }
    if (!full) GTEST_SKIP() << "could not fill the accept queue on this host";

    std::error_code ec;
    Fd sock = common::tcp_socket(AF_INET, ec);
    ASSERT_FALSE(ec);
    Op op(&rec_, 2);
    auto start = Clock::now();
    call([&] { engine().connect(op, sock.get(), addr.sa(), addr.length, 300ms); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 5s));
    auto elapsed = Clock::now() - start;
    ASSERT_EQ(rec_.events.size(), 1u);
    EXPECT_EQ(rec_.events[0].c.res, -ETIMEDOUT) << std::strerror(-rec_.events[0].c.res);
    EXPECT_GE(elapsed, 280ms);
    EXPECT_LE(elapsed, 1500ms);
    settle(op);
}

TEST_P(EngineTest, PollReportsEachReadableEdge) {
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    Op op(&rec_, 3);
    call([&] { engine().poll(op, server.get(), POLLIN | POLLRDHUP); });
    run_for(50ms);  // the contract allows one spurious first completion
    ASSERT_EQ(rec_.finals, 0);
    rec_.events.clear();

    auto saw = [&](uint32_t bits) {
        for (const Event& e : rec_.events)
            if (e.c.more() && e.c.res >= 0 && (static_cast<uint32_t>(e.c.res) & bits)) return true;
        return false;
    };
    char buf[64];
    for (const char* msg : {"hello", "again"}) {
        ASSERT_EQ(::write(client.get(), msg, 5), 5);
        EXPECT_TRUE(run_until([&] { return saw(POLLIN); }, 2s)) << "no edge for " << msg;
        EXPECT_EQ(::recv(server.get(), buf, sizeof(buf), MSG_DONTWAIT), 5);
        EXPECT_EQ(std::string(buf, 5), msg);
        for (const Event& e : rec_.events) EXPECT_TRUE(e.c.more());
        rec_.events.clear();
    }

    ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
    EXPECT_TRUE(run_until([&] { return saw(POLLRDHUP); }, 2s));
    EXPECT_TRUE(op.armed());

    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    ASSERT_EQ(rec_.finals, 1);
    EXPECT_EQ(rec_.finals_of(3)[0].c.res, -ECANCELED);
}

TEST_P(EngineTest, RecvDeliversExactBytesAcrossManyBuffers) {
    EngineParams params;
    params.buffer_size = 16 * 1024;
    params.buffer_count = 64;
    ASSERT_NO_FATAL_FAILURE(create(params));
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));

    constexpr size_t kTotal = 8u << 20;
    std::thread writer([&] {
        std::vector<char> data = make_payload(kTotal);
        size_t off = 0;
        while (off < kTotal) {
            size_t chunk = std::min<size_t>(kTotal - off, 100'003);  // odd sizes cross buffers
            ssize_t n = ::write(client.get(), data.data() + off, chunk);
            if (n <= 0) break;
            off += static_cast<size_t>(n);
        }
        ::shutdown(client.get(), SHUT_WR);
    });

    Op op(&rec_, 4);
    size_t received = 0;
    size_t mismatches = 0;
    size_t data_completions = 0;
    int rearms = 0;
    bool eof = false;
    int32_t error = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (c.res > 0) {
            if (!c.has_buffer()) {
                error = -1000;
                return;
            }
            ++data_completions;
            std::span<char> buf = engine().buffer(c.buffer_id);
            if (buf.size() < static_cast<size_t>(c.res)) ++mismatches;
            for (int32_t i = 0; i < c.res && static_cast<size_t>(i) < buf.size(); ++i)
                if (static_cast<uint8_t>(buf[i]) != pattern(received + i)) ++mismatches;
            received += static_cast<size_t>(c.res);
            engine().release_buffer(c.buffer_id);
        }
        if (c.more()) return;
        if (c.res == 0) {
            eof = true;
        } else if (c.res > 0 || c.res == -ENOBUFS) {
            ++rearms;  // the engine stopped early; the contract says re-arm
            engine().recv(o, server.get());
        } else {
            error = c.res;
        }
    };
    call([&] { engine().recv(op, server.get()); });
    bool done = run_until([&] { return eof || error != 0; }, 30s);
    writer.join();
    EXPECT_TRUE(done);
    EXPECT_EQ(error, 0) << std::strerror(-error);
    EXPECT_TRUE(eof);
    EXPECT_EQ(received, kTotal);
    EXPECT_EQ(mismatches, 0u);
    EXPECT_GT(data_completions, 1u) << "expected a multishot stream of completions";
    EXPECT_LT(rearms, 64);
    EXPECT_EQ(engine().buffers_free(), params.buffer_count);
    EXPECT_FALSE(op.armed());
    settle(op);
}

TEST_P(EngineTest, RecvReportsNoBufsAndResumesAfterRelease) {
    EngineParams params;
    params.buffer_size = 4096;
    params.buffer_count = 4;
    constexpr size_t kTotal = 64 * 1024;
    Fd client, server;
    std::vector<char> data;
    ASSERT_NO_FATAL_FAILURE(loaded_pair(params, kTotal, client, server, data));

    Op op(&rec_, 5);
    std::vector<std::pair<uint16_t, int32_t>> held;
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.res > 0 && c.has_buffer()) held.emplace_back(c.buffer_id, c.res);
    };
    call([&] { engine().recv(op, server.get()); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 5s));
    ASSERT_EQ(rec_.finals, 1);
    EXPECT_EQ(rec_.events.back().c.res, -ENOBUFS);
    EXPECT_EQ(held.size(), params.buffer_count);
    EXPECT_EQ(engine().buffers_free(), 0u);

    size_t received = 0;
    size_t mismatches = 0;
    auto consume = [&](uint16_t id, int32_t len) {
        std::span<char> buf = engine().buffer(id);
        for (int32_t i = 0; i < len; ++i)
            if (buf[i] != data[received + i]) ++mismatches;
        received += static_cast<size_t>(len);
        engine().release_buffer(id);
    };
    for (auto [id, len] : held) consume(id, len);
    EXPECT_EQ(engine().buffers_free(), params.buffer_count);

    // Re-arm with a handler that keeps up. io_uring may still end with -ENOBUFS: the kernel
    // fills every buffer in one batch before the handler sees (and releases) any of them. The
    // caller's answer is the same as above: re-arm.
    rec_.events.clear();
    bool eof = false;
    int32_t error = 0;
    int nobufs_rearms = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (c.res > 0 && c.has_buffer()) consume(c.buffer_id, c.res);
        if (c.more()) return;
        if (c.res == 0) {
            eof = true;
        } else if (c.res == -ENOBUFS && engine().buffers_free() > 0 && nobufs_rearms < 100) {
            ++nobufs_rearms;
            engine().recv(o, server.get());
        } else {
            error = c.res;
        }
    };
    call([&] { engine().recv(op, server.get()); });
    EXPECT_TRUE(run_until([&] { return received == kTotal || error != 0; }, 5s));
    EXPECT_EQ(error, 0) << std::strerror(-error);
    EXPECT_EQ(received, kTotal);
    EXPECT_EQ(mismatches, 0u);
    EXPECT_TRUE(op.armed());
    // epoll reads synchronously into buffers the handler has just released.
    if (GetParam() == EngineChoice::kEpoll) {
        EXPECT_EQ(nobufs_rearms, 0);
    }

    client.reset();  // EOF ends the multishot recv with res 0
    EXPECT_TRUE(run_until([&] { return eof || error != 0; }, 5s));
    EXPECT_TRUE(eof);
    EXPECT_EQ(rec_.finals, 2 + nobufs_rearms);
    EXPECT_EQ(engine().buffers_free(), params.buffer_count);
    settle(op);
}

TEST_P(EngineTest, RecvTakesEveryFreeBufferBeforeReportingNoBufs) {
    // io_uring keeps only a few free buffers in the kernel's ring (the rest wait cache-hot in
    // user space): a receive that drains the ring while spare buffers remain must go on, not
    // end with -ENOBUFS.
    EngineParams params;
    params.buffer_size = 4096;
    params.buffer_count = 64;
    constexpr size_t kBuffers = 50;
    constexpr size_t kTotal = kBuffers * 4096;
    Fd client, server;
    std::vector<char> data;
    ASSERT_NO_FATAL_FAILURE(loaded_pair(params, kTotal, client, server, data));

    Op op(&rec_, 5);
    std::vector<std::pair<uint16_t, int32_t>> held;  // never released until the end
    size_t received = 0;
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.res > 0 && c.has_buffer()) {
            held.emplace_back(c.buffer_id, c.res);
            received += static_cast<size_t>(c.res);
        }
    };
    call([&] { engine().recv(op, server.get()); });
    EXPECT_TRUE(run_until([&] { return received == kTotal || !op.armed(); }, 5s));
    EXPECT_EQ(received, kTotal);
    EXPECT_EQ(rec_.finals, 0) << "the receive ended (last result " << rec_.events.back().c.res
                              << ") with " << engine().buffers_free() << " buffers free";
    EXPECT_TRUE(op.armed());
    EXPECT_EQ(engine().buffers_free(), params.buffer_count - held.size());

    size_t offset = 0;
    size_t mismatches = 0;
    for (auto [id, len] : held) {
        std::span<char> buf = engine().buffer(id);
        for (int32_t i = 0; i < len; ++i)
            if (buf[i] != data[offset + i]) ++mismatches;
        offset += static_cast<size_t>(len);
        engine().release_buffer(id);
    }
    EXPECT_EQ(mismatches, 0u);
    EXPECT_EQ(engine().buffers_free(), params.buffer_count);
    settle(op);
}

TEST_P(EngineTest, RecvResumesAfterPerWakeupBound) {
    // Everything is in the socket before recv is armed: no later edge will come, so an engine
    // that bounds its reads per wakeup must resume by itself.
    EngineParams params;
    params.buffer_size = 1024;
    params.buffer_count = 256;
    constexpr size_t kTotal = 64 * 1024;
    Fd client, server;
    std::vector<char> data;
    ASSERT_NO_FATAL_FAILURE(loaded_pair(params, kTotal, client, server, data));
    ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);

    Op op(&rec_, 4);
    std::string got;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (c.has_buffer()) {
            got.append(engine().buffer(c.buffer_id).data(), static_cast<size_t>(c.res));
            engine().release_buffer(c.buffer_id);
        }
        if (!c.more() && c.res == -ENOBUFS) engine().recv(o, server.get());
    };
    call([&] { engine().recv(op, server.get()); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 5s));
    EXPECT_EQ(rec_.events.back().c.res, 0) << "expected EOF";
    EXPECT_EQ(got, std::string(data.data(), kTotal));
}

TEST_P(EngineTest, RecvOnceTakesOneBufferPerArming) {
    EngineParams params;
    params.buffer_size = 4096;
    params.buffer_count = 8;
    constexpr size_t kTotal = 10000;
    Fd client, server;
    std::vector<char> data;
    ASSERT_NO_FATAL_FAILURE(loaded_pair(params, kTotal, client, server, data));
    client.reset();

    Op op(&rec_, 4);
    std::string got;
    int arms = 1;
    bool eof = false;
    int32_t error = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (c.more()) {
            error = -1000;  // recv_once never delivers kMore
            return;
        }
        if (c.res == 0) {
            eof = true;
            return;
        }
        if (c.res < 0 || !c.has_buffer()) {
            error = c.res < 0 ? c.res : -1001;
            return;
        }
        EXPECT_LE(c.res, 4096);
        EXPECT_EQ(engine().buffers_free(), params.buffer_count - 1) << "one buffer per arming";
        got.append(engine().buffer(c.buffer_id).data(), static_cast<size_t>(c.res));
        engine().release_buffer(c.buffer_id);
        ++arms;
        engine().recv_once(o, server.get());
    };
    call([&] { engine().recv_once(op, server.get()); });
    EXPECT_TRUE(run_until([&] { return eof || error != 0; }, 5s));
    EXPECT_EQ(error, 0);
    EXPECT_TRUE(eof);
    EXPECT_EQ(got, std::string(data.data(), kTotal));
    EXPECT_GE(arms, 4);  // at least ceil(10000 / 4096) data completions, plus EOF
    EXPECT_EQ(rec_.finals, arms);
    EXPECT_EQ(engine().buffers_free(), params.buffer_count);
}

TEST_P(EngineTest, RecvOnceHandlerMayDestroyOpInItsCompletion) {
    // Arm on an fd the engine already watches, then let data arrive before the next run_once:
    // the op must not be touched after the completion whose handler freed it.
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    for (int round = 0; round < 3; ++round) {
        auto op = std::make_unique<Op>(&rec_, 4);
        std::string got;
        rec_.hook = [&](Op& o, const Completion& c) {
            if (c.has_buffer()) {
                got.append(engine().buffer(c.buffer_id).data(), static_cast<size_t>(c.res));
                engine().release_buffer(c.buffer_id);
            }
            if (!c.more() && &o == op.get()) op.reset();
        };
        call([&] { engine().recv_once(*op, server.get()); });
        ASSERT_EQ(::write(client.get(), "abc", 3), 3);
        EXPECT_TRUE(run_until([&] { return op == nullptr; }, 2s)) << "round " << round;
        EXPECT_EQ(got, "abc");
        run_for(20ms);
        if (op) settle(*op);
    }
    EXPECT_EQ(rec_.finals, 3);
}

TEST_P(EngineTest, SendLargeBufferToSlowReader) {
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    int small = 64 * 1024;
    ASSERT_EQ(::setsockopt(server.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    ASSERT_EQ(::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);

    constexpr size_t kTotal = 8u << 20;
    const std::vector<char> data = make_payload(kTotal);
    std::atomic<bool> go{false};
    std::atomic<size_t> read_total{0};
    std::atomic<size_t> read_mismatches{0};
    std::thread reader([&] {
        while (!go.load()) std::this_thread::sleep_for(1ms);
        std::vector<char> buf(32 * 1024);
        size_t off = 0;
        int reads = 0;
        for (;;) {
            ssize_t n = ::read(client.get(), buf.data(), buf.size());
            if (n <= 0) break;
            for (ssize_t i = 0; i < n; ++i)
                if (off + i >= kTotal || buf[i] != data[off + i]) ++read_mismatches;
            off += static_cast<size_t>(n);
            read_total.store(off);
            if (++reads % 16 == 0) std::this_thread::sleep_for(1ms);  // slow, not stalled
        }
    });

    Op op(&rec_, 6);
    size_t sent = 0;
    int sends = 0;
    int32_t error = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (c.more()) {
            error = -1000;
            return;
        }
        if (c.res <= 0) {
            error = c.res == 0 ? -1001 : c.res;
            return;
        }
        sent += static_cast<size_t>(c.res);
        // Re-arm from inside the final completion for whatever the engine did not send.
        if (sent < kTotal) {
            ++sends;
            engine().send(o, server.get(), data.data() + sent, kTotal - sent);
        }
    };
    ++sends;
    call([&] { engine().send(op, server.get(), data.data(), kTotal); });
    run_for(100ms);
    // The reader has not started: the kernel cannot hold 8 MiB, so the send must be waiting.
    EXPECT_TRUE(op.armed());
    EXPECT_LT(sent, kTotal);

    go.store(true);
    EXPECT_TRUE(run_until([&] { return sent >= kTotal || error != 0; }, 30s));
    EXPECT_EQ(error, 0);
    EXPECT_EQ(sent, kTotal);
    ::shutdown(server.get(), SHUT_WR);
    reader.join();
    EXPECT_EQ(read_total.load(), kTotal);
    EXPECT_EQ(read_mismatches.load(), 0u);
    EXPECT_LT(sends, 10000);
    settle(op);
}

TEST_P(EngineTest, SendToClosedPeerFailsWithoutSigpipe) {
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    client.reset();  // peer gone: the first send may still succeed, later ones see RST/EPIPE

    Op op(&rec_, 6);
    std::vector<char> data(64 * 1024, 'z');
    int32_t error = 0;
    int attempts = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (c.res < 0) {
            error = c.res;
        } else if (++attempts < 100) {
            engine().send(o, server.get(), data.data(), data.size());
        }
    };
    call([&] { engine().send(op, server.get(), data.data(), data.size()); });
    EXPECT_TRUE(run_until([&] { return error != 0 || attempts >= 100; }, 5s));
    EXPECT_TRUE(error == -EPIPE || error == -ECONNRESET) << "res " << error;
    settle(op);
}

TEST_P(EngineTest, TimerFiresAfterDelay) {
    Op op(&rec_, 7);
    auto start = Clock::now();
    call([&] { engine().timer(op, 60ms); });
    EXPECT_TRUE(op.armed());
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 5s));
    auto elapsed = Clock::now() - start;
    ASSERT_EQ(rec_.events.size(), 1u);
    EXPECT_EQ(rec_.events[0].c.res, 0);
    EXPECT_FALSE(rec_.events[0].c.more());
    EXPECT_GE(elapsed, 59ms);
    EXPECT_LT(elapsed, 1000ms);
}

TEST_P(EngineTest, TimersFireInDeadlineOrder) {
    Op a(&rec_, 1), b(&rec_, 2), c(&rec_, 3);
    call([&] {
        engine().timer(a, 90ms);
        engine().timer(b, 30ms);
        engine().timer(c, 60ms);
    });
    EXPECT_TRUE(run_until([&] { return rec_.finals == 3; }, 5s));
    ASSERT_EQ(rec_.events.size(), 3u);
    EXPECT_EQ(rec_.events[0].tag, 2);
    EXPECT_EQ(rec_.events[1].tag, 3);
    EXPECT_EQ(rec_.events[2].tag, 1);
}

TEST_P(EngineTest, CancelledTimerCompletesWithEcanceled) {
    Op op(&rec_, 7);
    Op other(&rec_, 8);
    call([&] {
        engine().timer(op, 10s);
        engine().timer(other, 20ms);
    });
    run_for(30ms);
    call([&] {
        engine().cancel(op);
        engine().cancel(op);  // already cancelling: no-op
    });
    EXPECT_TRUE(op.armed()) << "the final completion must arrive later, from run_once";
    auto start = Clock::now();
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    EXPECT_LT(Clock::now() - start, 1s);
    run_for(50ms);
    auto finals = rec_.finals_of(7);
    ASSERT_EQ(finals.size(), 1u);
    EXPECT_EQ(finals[0].c.res, -ECANCELED);
    ASSERT_EQ(rec_.finals_of(8).size(), 1u);
    EXPECT_EQ(rec_.finals_of(8)[0].c.res, 0);

    call([&] { engine().cancel(op); });  // not armed: no-op
    run_for(30ms);
    EXPECT_EQ(rec_.finals, 2);
}

TEST_P(EngineTest, CancelMultishotRecvDeliversExactlyOneFinal) {
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    Op op(&rec_, 4);
    size_t data_events = 0;
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.has_buffer()) {
            ++data_events;
            engine().release_buffer(c.buffer_id);
        }
    };
    call([&] { engine().recv(op, server.get()); });
    ASSERT_EQ(::write(client.get(), "ping", 4), 4);
    EXPECT_TRUE(run_until([&] { return data_events > 0; }, 2s));

    call([&] {
        engine().cancel(op);
        engine().cancel(op);
    });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    // Nothing may follow the final completion, even with new data on the socket.
    ASSERT_EQ(::write(client.get(), "pong", 4), 4);
    run_for(100ms);
    ASSERT_EQ(rec_.finals, 1);
    EXPECT_EQ(rec_.events.back().c.res, -ECANCELED);
    EXPECT_FALSE(rec_.events.back().c.more());
    EXPECT_EQ(engine().buffers_free(), EngineParams{}.buffer_count);
}

TEST_P(EngineTest, CancelMultishotPollDeliversExactlyOneFinal) {
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    Op op(&rec_, 3);
    call([&] { engine().poll(op, server.get(), POLLIN); });
    ASSERT_EQ(::write(client.get(), "ping", 4), 4);
    EXPECT_TRUE(run_until([&] { return !rec_.events.empty(); }, 2s));
    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    ASSERT_EQ(::write(client.get(), "pong", 4), 4);
    run_for(100ms);
    ASSERT_EQ(rec_.finals, 1);
    EXPECT_EQ(rec_.events.back().c.res, -ECANCELED);
    EXPECT_FALSE(rec_.events.back().c.more());
}

TEST_P(EngineTest, CancelFromInsideMoreCompletion) {
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    // A burst large enough that the engine would deliver several buffers in one wakeup.
    EngineParams params;
    params.buffer_size = 1024;
    params.buffer_count = 64;
    ASSERT_NO_FATAL_FAILURE(create(params));
    std::vector<char> data = make_payload(32 * 1024);
    ASSERT_EQ(::write(client.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));

    Op op(&rec_, 4);
    int more_after_cancel = 0;
    size_t bytes = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        if (c.has_buffer()) {
            bytes += static_cast<size_t>(c.res);
            engine().release_buffer(c.buffer_id);
        }
        if (!c.more()) return;
        if (o.cancelling()) ++more_after_cancel;
        engine().cancel(o);
    };
    call([&] { engine().recv(op, server.get()); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    run_for(100ms);
    ASSERT_EQ(rec_.finals, 1);
    EXPECT_FALSE(rec_.events.back().c.more());
    EXPECT_LE(bytes, data.size());
    // io_uring may deliver completions the kernel produced before the cancel; epoll stops at once.
    if (GetParam() == EngineChoice::kEpoll) {
        EXPECT_EQ(more_after_cancel, 0);
    }
    EXPECT_EQ(engine().buffers_free(), params.buffer_count);
}

TEST_P(EngineTest, WakeFromAnotherThreadInterruptsRunOnce) {
    Op op(&rec_, 7);
    call([&] { engine().timer(op, 20s); });  // something pending, far away
    engine().run_once(0ms);
    std::thread waker([&] {
        std::this_thread::sleep_for(100ms);
        engine().wake();
    });
    auto start = Clock::now();
    engine().run_once(10s);
    auto elapsed = Clock::now() - start;
    waker.join();
    EXPECT_LT(elapsed, 3s);

    // A wake that lands before run_once is not lost either.
    engine().wake();
    start = Clock::now();
    engine().run_once(10s);
    EXPECT_LT(Clock::now() - start, 3s);

    // Once consumed, a wake must not keep waking: the next run_once sleeps its full time.
    engine().run_once(0ms);
    start = Clock::now();
    engine().run_once(150ms);
    EXPECT_GE(Clock::now() - start, 100ms);
    EXPECT_TRUE(op.armed());
    settle(op);
}

TEST_P(EngineTest, HandlerRearmsFromInsideFinalCompletion) {
    Op op(&rec_, 7);
    int fired = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        EXPECT_FALSE(o.armed()) << "armed must be cleared before the final completion";
        if (c.res == 0 && ++fired < 5) engine().timer(o, 5ms);
    };
    call([&] { engine().timer(op, 5ms); });
    EXPECT_TRUE(run_until([&] { return fired >= 5; }, 5s));
    run_for(50ms);
    EXPECT_EQ(fired, 5);
    EXPECT_FALSE(op.armed());
    EXPECT_EQ(rec_.finals, 5);
}

TEST_P(EngineTest, RecvRearmedAfterEofOnReusedFdNumber) {
    // The first connection ends; its fd number is closed through the engine and very likely
    // reused by the next connection, which must still get its data.
    Fd client, server;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client, server));
    Op op(&rec_, 4);
    std::string got;
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.has_buffer()) {
            got.append(engine().buffer(c.buffer_id).data(), static_cast<size_t>(c.res));
            engine().release_buffer(c.buffer_id);
        }
    };
    call([&] { engine().recv(op, server.get()); });
    ASSERT_EQ(::write(client.get(), "one", 3), 3);
    client.reset();
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
    EXPECT_EQ(got, "one");
    EXPECT_EQ(rec_.events.back().c.res, 0);
    int old_number = server.get();
    engine().close_fd(server.release());

    Fd client2, server2;
    ASSERT_NO_FATAL_FAILURE(tcp_pair(client2, server2));
    got.clear();
    call([&] { engine().recv(op, server2.get()); });
    ASSERT_EQ(::write(client2.get(), "two", 3), 3);
    EXPECT_TRUE(run_until([&] { return got.size() >= 3; }, 2s))
        << "fd number reused: " << (server2.get() == old_number);
    EXPECT_EQ(got, "two");
    call([&] { engine().cancel(op); });
    EXPECT_TRUE(run_until([&] { return !op.armed(); }, 2s));
}

// An echo server written against the seam the way a shard uses it (multishot accept and recv,
// one send at a time per connection, close_fd on EOF), driven by many concurrent connections:
// exercises fd reuse, per-wakeup work bounds and buffer accounting together.
class EchoConn final : public Handler {
  public:
    EchoConn(Engine& engine, int fd)
        : engine_(engine), fd_(fd), recv_op_(this, 1), send_op_(this, 2) {}

    void start() { engine_.recv(recv_op_, fd_); }

    void on_complete(Op& op, const Completion& c) override {
        if (&op == &recv_op_) {
            if (c.res > 0 && c.has_buffer()) {
                queue_.push_back({c.buffer_id, static_cast<size_t>(c.res)});
                if (!send_op_.armed()) send_next();
            }
            if (c.more()) return;
            if (c.res == 0)
                eof_ = true;
            else if (c.res > 0 || c.res == -ENOBUFS)
                starved_ = true;  // re-armed by the test loop
            else
                errors_++;
        } else {
            if (c.res <= 0) {
                errors_++;
                drop_queue();
            } else {
                Chunk& front = queue_.front();
                front.off += static_cast<size_t>(c.res);
                if (front.off == front.len) {
                    engine_.release_buffer(front.id);
                    queue_.erase(queue_.begin());
                }
                if (!queue_.empty()) send_next();
            }
        }
        maybe_close();
    }

    void rearm_if_starved() {
        if (!starved_ || engine_.buffers_free() == 0) return;
        starved_ = false;
        engine_.recv(recv_op_, fd_);
    }

    bool closed() const { return fd_ < 0; }
    int errors() const { return errors_; }
    void abort() {
        if (recv_op_.armed()) engine_.cancel(recv_op_);
        if (send_op_.armed()) engine_.cancel(send_op_);
    }
    bool idle() const { return !recv_op_.armed() && !send_op_.armed(); }

  private:
    struct Chunk {
        uint16_t id;
        size_t len;
        size_t off = 0;
    };

    void send_next() {
        Chunk& front = queue_.front();
        engine_.send(send_op_, fd_, engine_.buffer(front.id).data() + front.off,
                     front.len - front.off);
    }
    void drop_queue() {
        for (const Chunk& c : queue_) engine_.release_buffer(c.id);
        queue_.clear();
    }
    void maybe_close() {
        if (fd_ < 0 || recv_op_.armed() || send_op_.armed() || starved_) return;
        if (!eof_ && errors_ == 0) return;
        drop_queue();
        engine_.close_fd(fd_);
        fd_ = -1;
    }

    Engine& engine_;
    int fd_;
    Op recv_op_;
    Op send_op_;
    std::vector<Chunk> queue_;
    bool eof_ = false;
    bool starved_ = false;
    int errors_ = 0;
};

TEST_P(EngineTest, EchoServerOverManyConcurrentConnections) {
    EngineParams params;
    params.buffer_size = 4096;
    params.buffer_count = 128;  // fewer buffers than connections: -ENOBUFS must be survivable
    ASSERT_NO_FATAL_FAILURE(create(params));
    Fd listener;
    Address addr;
    ASSERT_NO_FATAL_FAILURE(make_listener(1024, listener, addr));

    constexpr int kConns = 200;
    constexpr size_t kBytes = 48 * 1024;
    std::atomic<int> client_failures{0};
    std::atomic<bool> clients_done{false};
    std::thread clients([&] {
        std::vector<Fd> socks;
        for (int i = 0; i < kConns; ++i) {
            Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            if (::connect(c.get(), addr.sa(), addr.length) != 0) ++client_failures;
            socks.push_back(std::move(c));
        }
        std::vector<char> buf(kBytes);
        for (int i = 0; i < kConns; ++i) {
            for (size_t k = 0; k < kBytes; ++k) buf[k] = static_cast<char>(pattern(k + i * 7919));
            if (::write(socks[i].get(), buf.data(), kBytes) != static_cast<ssize_t>(kBytes))
                ++client_failures;
            ::shutdown(socks[i].get(), SHUT_WR);
        }
        for (int i = 0; i < kConns; ++i) {
            size_t off = 0;
            for (;;) {
                ssize_t n = ::read(socks[i].get(), buf.data(), buf.size());
                if (n <= 0) break;
                for (ssize_t k = 0; k < n; ++k)
                    if (static_cast<uint8_t>(buf[k]) != pattern(off + k + i * 7919)) {
                        ++client_failures;
                        break;
                    }
                off += static_cast<size_t>(n);
            }
            if (off != kBytes) ++client_failures;
        }
        clients_done.store(true);
    });

    std::vector<std::unique_ptr<EchoConn>> conns;
    Op accept_op(&rec_, 9);
    rec_.hook = [&](Op&, const Completion& c) {
        if (c.more() && c.res >= 0) {
            conns.push_back(std::make_unique<EchoConn>(engine(), c.res));
            conns.back()->start();
        }
    };
    call([&] { engine().accept(accept_op, listener.get()); });
    auto all_closed = [&] {
        if (static_cast<int>(conns.size()) < kConns) return false;
        for (auto& c : conns)
            if (!c->closed()) return false;
        return true;
    };
    auto deadline = Clock::now() + 30s;
    while (!(clients_done.load() && all_closed()) && Clock::now() < deadline) {
        engine().run_once(10ms);
        for (auto& c : conns) c->rearm_if_starved();
    }
    bool finished = clients_done.load() && all_closed();
    if (!finished) ::shutdown(listener.get(), SHUT_RDWR);
    clients.join();
    EXPECT_TRUE(finished);
    EXPECT_EQ(client_failures.load(), 0);
    EXPECT_EQ(static_cast<int>(conns.size()), kConns);
    int errors = 0;
    for (auto& c : conns) errors += c->errors();
    EXPECT_EQ(errors, 0);
    EXPECT_EQ(engine().buffers_free(), params.buffer_count);

    for (auto& c : conns) c->abort();
    run_until(
        [&] {
            for (auto& c : conns)
                if (!c->idle()) return false;
            return true;
        },
        5s);
    settle(accept_op);
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineTest,
                         ::testing::Values(EngineChoice::kEpoll, EngineChoice::kIoUring),
                         engine_name);

}  // namespace
}  // namespace ringlb::engine
