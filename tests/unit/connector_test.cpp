// The upstream connector (picking, retries, per-backend limits and the wait queue, running out
// of fds) driven through real sessions on the scripted FakeEngine.

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "proxy/shard/session.hpp"
#include "proxy/upstream/connector.hpp"
#include "proxy/upstream/counters.hpp"
#include "proxy/upstream/warm_pool.hpp"
#include "tests/unit/fake_engine.hpp"
#include "tests/unit/shard_harness.hpp"

namespace ringlb::test {
namespace {

using engine::ArmedOp;
using engine::Op;
using engine::OpType;
using upstream::CloseReason;
using upstream::ConnectFailure;
using namespace std::chrono_literals;

constexpr uint16_t kPortBase = 20001;

std::vector<uint16_t> ports(size_t n) {
    std::vector<uint16_t> out;
    for (size_t i = 0; i < n; ++i) out.push_back(static_cast<uint16_t>(kPortBase + i));
    return out;
}

// Armed timers (no fd), oldest arming first.
std::vector<Op*> armed_timers(const engine::FakeEngine& fake) {
    std::vector<Op*> out;
    for (const ArmedOp* rec : fake.armed_ops())
        if (rec->type == OpType::kTimer) out.push_back(rec->op);
    return out;
}

class ConnectorTest : public ShardTest {
  protected:
    // Fails every connect the session makes; returns the backend indices it tried, in order.
    std::vector<size_t> fail_every_connect(size_t limit = 200) {
        std::vector<size_t> tried;
        while (Op* connect = h_->connect_op()) {
            tried.push_back(h_->port_of(*connect) - kPortBase);
            h_->fake().connect_error(*connect, -ECONNREFUSED);
            h_->run();
            if (tried.size() > limit) break;
        }
        return tried;
    }

    // A client through to forwarding: accepted, connected, both receives armed.
    struct Forwarding {
        ShardHarness::Client client;
        int up = -1;
    };
    Forwarding connect_client() {
        Forwarding s;
        s.client = h_->accept_client();
        Op* connect = h_->connect_op();
        EXPECT_NE(connect, nullptr);
        if (connect == nullptr) return s;
        s.up = h_->fd_of(*connect);
        h_->fake().connect_ok(*connect);
        h_->run();
        EXPECT_NE(h_->recv_on(s.client.fd), nullptr);
        return s;
    }
    // Both ways end with EOF, delivered in one loop iteration.
    void end_in_one_iteration(const Forwarding& s) {
        Op* c = h_->recv_on(s.client.fd);
        Op* u = h_->recv_on(s.up);
        ASSERT_NE(c, nullptr);
        ASSERT_NE(u, nullptr);
        h_->fake().recv_eof(*c);
        h_->fake().recv_eof(*u);
        h_->run_one();
    }
};

// ---- retries -------------------------------------------------------------------------------

TEST_F(ConnectorTest, RetriesPastBackend64NeverTryABackendTwice) {
    // Three heavy backends past index 63 (in the tried set's spill words): round-robin would
    // pick them again and again unless they are excluded once tried.
    const std::set<size_t> heavy = {64, 80, 99};
    std::string text =
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\ncluster = \"app\"\n"
        "[[cluster]]\nname = \"app\"\nretries = 16\nbackends = [\n";
    for (size_t i = 0; i < 100; ++i) {
        text += "  { address = \"127.0.0.1:" + std::to_string(kPortBase + i) +
                "\", weight = " + (heavy.count(i) ? "1000" : "1") + " },\n";
    }
    text += "]\n";
    ShardHarness& h = start(text);
    constexpr uint64_t kSessions = 3;
    for (uint64_t round = 0; round < kSessions; ++round) {
        ShardHarness::Client client = h.accept_client();
        std::vector<size_t> tried = fail_every_connect();
        EXPECT_EQ(tried.size(), 17u) << "round " << round;
        std::set<size_t> distinct(tried.begin(), tried.end());
        EXPECT_EQ(distinct.size(), tried.size()) << "a backend was tried twice in round " << round;
        for (size_t i : heavy) EXPECT_EQ(distinct.count(i), 1u) << "round " << round << ": " << i;
        EXPECT_TRUE(std::any_of(tried.begin(), tried.end(), [](size_t i) { return i < 64; }));
        EXPECT_EQ(h.shard().session_count(), 0u);
        EXPECT_EQ(peer_state(client.peer), "<eof>");
    }
    EXPECT_EQ(h.cluster().counters.no_backend.get(), kSessions);
    EXPECT_EQ(h.cluster().counters.retries.get(), 16 * kSessions);
    uint64_t failures = 0;
    for (const upstream::BackendState& b : h.cluster().backends) failures += failures_total(b);
    EXPECT_EQ(failures, 17 * kSessions);
}

TEST_F(ConnectorTest, RetriesZeroClosesTheClientAfterOneFailure) {
    ShardHarness& h = start(config_for(ports(3), "retries = 0"));
    ShardHarness::Client client = h.accept_client();
    size_t mark = h.closes_so_far();
    std::vector<size_t> tried = fail_every_connect();
    EXPECT_EQ(tried.size(), 1u);
    EXPECT_EQ(std::count_if(h.fake().history().begin(), h.fake().history().end(),
                            [](const ArmedOp& a) { return a.type == OpType::kConnect; }),
              1);
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(h.closes_of(client.fd, mark), 1u);
    EXPECT_EQ(peer_state(client.peer), "<eof>");
    EXPECT_EQ(h.cluster().counters.no_backend.get(), 1u);
    EXPECT_EQ(h.cluster().counters.retries.get(), 0u);
    EXPECT_EQ(h.cluster().counters.connects.get(), 1u);
}

// ---- health verdicts and passive health -------------------------------------------------------

std::shared_ptr<upstream::HealthVerdicts> down(const std::vector<uint16_t>& down_ports) {
    auto v = std::make_shared<upstream::HealthVerdicts>();
    for (uint16_t p : down_ports)
        v->down.insert(upstream::HealthVerdicts::key("app", "127.0.0.1:" + std::to_string(p)));
    return v;
}

TEST_F(ConnectorTest, DownBackendsAreSkippedUntilEveryBackendIsDown) {
    ShardHarness& h = start(config_for(ports(3), "retries = 0"));
    h.shard().set_health(down({kPortBase, kPortBase + 1}));
    for (int i = 0; i < 6; ++i) {
        [[maybe_unused]] ShardHarness::Client client = h.accept_client();
        Op* connect = h.connect_op();
        ASSERT_NE(connect, nullptr);
        EXPECT_EQ(h.port_of(*connect), kPortBase + 2) << "client " << i;
        h.fake().connect_error(*connect, -ECONNREFUSED);
        h.run();
    }
    EXPECT_EQ(h.shard().counters().backends_down.get(), 2u);
    EXPECT_EQ(h.cluster().counters.all_down.get(), 0u);

    // All down, when_all_down = "try_anyway" (the default): every backend is tried again.
    h.shard().set_health(down(ports(3)));
    std::set<uint16_t> tried;
    for (int i = 0; i < 6; ++i) {
        [[maybe_unused]] ShardHarness::Client client = h.accept_client();
        Op* connect = h.connect_op();
        ASSERT_NE(connect, nullptr);
        tried.insert(h.port_of(*connect));
        h.fake().connect_error(*connect, -ECONNREFUSED);
        h.run();
    }
    EXPECT_EQ(tried.size(), 3u);
    EXPECT_EQ(h.cluster().counters.all_down.get(), 6u);

    // Back up: verdicts name backends, so an empty set brings all of them back.
    h.shard().set_health(down({}));
    EXPECT_EQ(h.shard().counters().backends_down.get(), 0u);
}

TEST_F(ConnectorTest, EveryBackendDownWithFailClosesTheClientWithoutAConnect) {
    ShardHarness& h = start(config_for(ports(2), "when_all_down = \"fail\""));
    h.shard().set_health(down(ports(2)));
    ShardHarness::Client client = h.accept_client();
    EXPECT_EQ(h.connect_op(), nullptr);
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(peer_state(client.peer), "<eof>");
    EXPECT_EQ(h.cluster().counters.all_down.get(), 1u);
    EXPECT_EQ(h.cluster().counters.no_backend.get(), 1u);
}

TEST_F(ConnectorTest, PassiveHealthReportsFailuresAndTheFirstSuccessOnly) {
    std::vector<std::pair<std::string, bool>> reports;
    HarnessOptions options;
    options.report_outcome = [&](const std::string& cluster, const std::string& backend, bool ok) {
        EXPECT_EQ(cluster, "app");
        reports.emplace_back(backend, ok);
    };
    ShardHarness& h = start(config_for(ports(1), "retries = 0\neject_after = 3"), options);
    const std::string b = "127.0.0.1:" + std::to_string(kPortBase);
    for (int i = 0; i < 2; ++i) {
        [[maybe_unused]] ShardHarness::Client client = h.accept_client();
        fail_every_connect();
    }
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_EQ(reports[0], std::make_pair(b, false));
    EXPECT_EQ(reports[1], std::make_pair(b, false));
    // Two sessions that end normally: one success report, then nothing.
    for (int i = 0; i < 2; ++i) {
        Forwarding s = connect_client();
        end_in_one_iteration(s);
    }
    ASSERT_EQ(reports.size(), 3u);
    EXPECT_EQ(reports[2], std::make_pair(b, true));
    // Reset by the backend before it said anything: a failure.
    Forwarding s = connect_client();
    Op* u = h.recv_on(s.up);
    ASSERT_NE(u, nullptr);
    h.fake().recv_error(*u, -ECONNRESET);
    h.run();
    ASSERT_EQ(reports.size(), 4u);
    EXPECT_EQ(reports[3], std::make_pair(b, false));
}

TEST_F(ConnectorTest, WithoutEjectAfterNothingIsReported) {
    size_t reports = 0;
    HarnessOptions options;
    options.report_outcome = [&](const std::string&, const std::string&, bool) { ++reports; };
    ShardHarness& h = start(config_for(ports(1), "retries = 0"), options);
    [[maybe_unused]] ShardHarness::Client client = h.accept_client();
    fail_every_connect();
    Forwarding s = connect_client();
    end_in_one_iteration(s);
    EXPECT_EQ(reports, 0u);
}

// ---- max_connections and the queue ---------------------------------------------------------

class QueueTest : public ConnectorTest {
  protected:
    void SetUp() override {
        ConnectorTest::SetUp();
        start(config_for({kPortBase}, "queue = { size = 2, timeout = \"5s\" }", "",
                         ", max_connections = 1"));
    }
};

TEST_F(QueueTest, FullBackendQueuesThenDispatchesOldestFirst) {
    ShardHarness& h = *h_;
    engine::FakeEngine& f = h.fake();
    upstream::ClusterState& cs = h.cluster();
    ASSERT_EQ(h.backend(0).limit, 1u);

    Forwarding first = connect_client();
    EXPECT_EQ(h.backend(0).active, 1u);

    ShardHarness::Client second = h.accept_client();
    ShardHarness::Client third = h.accept_client();
    EXPECT_EQ(h.connect_op(), nullptr) << "a connect past max_connections";
    std::vector<Op*> timers = armed_timers(f);
    ASSERT_EQ(timers.size(), 2u) << "one queue timer per waiting client";
    for (Op* t : timers) EXPECT_EQ(f.find(*t)->after, 5000ms);
    EXPECT_EQ(cs.queue_length, 2u);
    EXPECT_EQ(cs.counters.queue_length.get(), 2u);
    EXPECT_EQ(cs.counters.queued.get(), 2u);
    Op* second_timer = timers[0];
    Op* third_timer = timers[1];

    size_t mark = h.closes_so_far();
    ShardHarness::Client fourth = h.accept_client();
    EXPECT_EQ(h.closes_of(fourth.fd, mark), 1u) << "a client past the queue is closed at once";
    EXPECT_EQ(peer_state(fourth.peer), "<eof>");
    EXPECT_EQ(cs.counters.queue_full.get(), 1u);
    EXPECT_EQ(h.shard().session_count(), 3u);

    // The first session ends: its slot goes to the oldest waiter, which resumes from its own
    // (cancelled) timer completion, not from inside the first session's teardown.
    end_in_one_iteration(first);
    EXPECT_EQ(h.shard().session_count(), 2u);
    EXPECT_EQ(h.connect_op(), nullptr) << "connected from inside another session's teardown";
    EXPECT_TRUE(second_timer->cancelling());
    EXPECT_FALSE(third_timer->cancelling());
    EXPECT_EQ(cs.queue_length, 1u);
    h.run_one();
    Op* connect = h.connect_op();
    ASSERT_NE(connect, nullptr) << "the oldest waiter did not get the free slot";
    EXPECT_EQ(h.backend(0).active, 1u);
    int second_up = h.fd_of(*connect);

    // The third waits on and times out.
    mark = h.closes_so_far();
    f.fire_timer(*third_timer);
    h.run();
    EXPECT_EQ(h.closes_of(third.fd, mark), 1u);
    EXPECT_EQ(peer_state(third.peer), "<eof>");
    EXPECT_EQ(cs.counters.queue_timeouts.get(), 1u);
    EXPECT_EQ(cs.queue_length, 0u);
    EXPECT_EQ(cs.counters.queue_length.get(), 0u);
    EXPECT_EQ(h.shard().session_count(), 1u);

    f.connect_ok(*connect);
    h.run();
    end_in_one_iteration(Forwarding{second, second_up});
    h.run();
    EXPECT_EQ(close_count(h.backend(0), CloseReason::k_done), 2u);
    EXPECT_EQ(close_count(h.backend(0), CloseReason::k_queue_timeout), 0u);
    EXPECT_EQ(cs.counters.queued.get(), 2u);
}

TEST_F(QueueTest, QueueTimerFiringAsTheWaiterIsAbandonedCountsNothing) {
    ShardHarness& h = *h_;
    engine::FakeEngine& f = h.fake();
    upstream::ClusterState& cs = h.cluster();
    Forwarding first = connect_client();
    ShardHarness::Client waiter = h.accept_client();
    std::vector<Op*> timers = armed_timers(f);
    ASSERT_EQ(timers.size(), 1u);
    f.fire_timer(*timers[0]);  // the timeout is on its way...
    std::vector<shard::Session*> sessions = h.shard().sessions();
    ASSERT_EQ(sessions.size(), 2u);
    sessions.front()->abort();  // ...when the waiter's session goes (newest first)
    EXPECT_EQ(cs.queue_length, 0u);
    size_t mark = h.closes_so_far();
    h.run();
    EXPECT_EQ(h.shard().session_count(), 1u);
    EXPECT_EQ(h.closes_of(waiter.fd, mark), 1u);
    EXPECT_EQ(cs.counters.queue_timeouts.get(), 0u);
    EXPECT_EQ(cs.counters.queue_length.get(), 0u);
    EXPECT_EQ(h.connect_op(), nullptr);
    end_in_one_iteration(first);
    h.run();
}

// A freed slot is reserved for the waiter it was dispatched to: the waiter resumes only on a
// later loop iteration (when its cancelled timer completes), and a client accepted meanwhile (in
// the same completion batch as the first session's end, which io_uring delivers together) queues
// behind the waiters instead of taking the slot; the newest finds the queue full.
TEST_F(QueueTest, AFreedSlotGoesToTheOldestWaiterNotToANewcomer) {
    ShardHarness& h = *h_;
    engine::FakeEngine& f = h.fake();
    upstream::ClusterState& cs = h.cluster();
    Forwarding first = connect_client();
    ShardHarness::Client second = h.accept_client();
    ShardHarness::Client third = h.accept_client();
    ASSERT_EQ(cs.queue_length, 2u);

    // In one batch: the first session ends, and two new clients arrive.
    f.recv_eof(*h.recv_on(first.client.fd));
    f.recv_eof(*h.recv_on(first.up));
    ShardHarness::Client fourth = h.queue_client();
    ShardHarness::Client fifth = h.queue_client();
    size_t mark = h.closes_so_far();
    h.run();

    EXPECT_EQ(h.closes_of(second.fd, mark), 0u) << "the oldest waiter was closed";
    EXPECT_EQ(cs.counters.queue_full.get(), 1u) << "only the newest client finds the queue full";
    EXPECT_EQ(h.closes_of(fifth.fd, mark), 1u) << "the newest client should be the one refused";
    EXPECT_EQ(h.closes_of(third.fd, mark) + h.closes_of(fourth.fd, mark), 0u);
    EXPECT_EQ(cs.queue_length, 2u) << "third and fourth wait";
    Op* connect = h.connect_op();
    ASSERT_NE(connect, nullptr);
    f.connect_ok(*connect);
    h.run();
    EXPECT_NE(h.recv_on(second.fd), nullptr) << "the slot went to someone else than the oldest";
    h.stop();  // aborts whatever still waits
}

// A waiter woken for a freed slot that leaves before it resumes passes the slot to the next
// waiter (today only stop_here() aborts a waiting request; a client reset while waiting will).
TEST_F(QueueTest, ASlotDispatchedToAWaiterThatLeavesGoesToTheNext) {
    ShardHarness& h = *h_;
    upstream::ClusterState& cs = h.cluster();
    Forwarding first = connect_client();
    h.accept_client();
    ShardHarness::Client third = h.accept_client();
    ASSERT_EQ(cs.queue_length, 2u);
    end_in_one_iteration(first);  // the second is dispatched, resumes next iteration...
    std::vector<shard::Session*> sessions = h.shard().sessions();
    ASSERT_EQ(sessions.size(), 2u);
    sessions[1]->abort();  // ...but leaves first (sessions are listed newest first)
    h.run();
    EXPECT_EQ(h.shard().session_count(), 1u);
    Op* connect = h.connect_op();
    ASSERT_NE(connect, nullptr) << "a slot is free and the third client still waits";
    h.fake().connect_ok(*connect);
    h.run();
    EXPECT_NE(h.recv_on(third.fd), nullptr);
    h.stop();
}

// ---- warm pool -----------------------------------------------------------------------------

// A pool of one warm socket to a real loopback backend (the hand-over polls the socket for
// real, so it must really be connected).
class PoolTest : public ConnectorTest {
  protected:
    void SetUp() override {
        ConnectorTest::SetUp();
        uint16_t port = 0;
        backend_ = backend_listener(&port);
        start(config_for({port}, "pool = { warm = 1 }"));
        Op* connect = h_->connect_op();
        ASSERT_NE(connect, nullptr) << "the pool did not start filling";
        pool_fd_ = h_->fd_of(*connect);
        backend_end_ = h_->connect_for_real(*connect, backend_.get());
        h_->fake().connect_ok(*connect);
        h_->run();
        ASSERT_EQ(pool().idle(), 1u);
        ASSERT_NE(h_->armed(OpType::kPoll, pool_fd_), nullptr) << "idle socket not watched";
    }
    void TearDown() override {
        // The pool keeps ops armed (its watch, its refill connect, its idle timer): check the
        // sessions are gone, then stop.
        if (h_ && !h_->stopped()) {
            EXPECT_EQ(h_->shard().session_count(), 0u);
            EXPECT_EQ(h_->backend(0).active, 0u);
            EXPECT_EQ(h_->fake().buffers_free(), h_->fake().buffer_count());
            h_->stop();
        }
        if (h_) h_->finish();
        h_.reset();
        backend_.reset();
        ConnectorTest::TearDown();
    }
    upstream::WarmPool& pool() { return *h_->backend(0).pool; }

    common::Fd backend_;
    int pool_fd_ = -1;
    int backend_end_ = -1;
};

TEST_F(PoolTest, AWarmSocketIsHandedToTheNextClient) {
    ShardHarness& h = *h_;
    engine::FakeEngine& f = h.fake();
    size_t connects_before = armings(f, OpType::kConnect, pool_fd_);
    ShardHarness::Client client = h.accept_client();
    EXPECT_NE(h.recv_on(pool_fd_), nullptr) << "the session does not forward on the pooled socket";
    EXPECT_NE(h.recv_on(client.fd), nullptr);
    EXPECT_EQ(armings(f, OpType::kConnect, pool_fd_), connects_before);
    EXPECT_EQ(h.backend(0).counters.pool_hits.get(), 1u);
    EXPECT_EQ(h.backend(0).counters.connections.get(), 1u);
    EXPECT_EQ(h.backend(0).counters.pool_idle.get(), 0u);
    EXPECT_EQ(h.cluster().counters.connects.get(), 0u) << "a pool hit is no client connect";
    EXPECT_NE(h.connect_op(), nullptr) << "the pool does not refill";

    ASSERT_TRUE(f.recv_data(*h.recv_on(client.fd), "hi"));
    h.run();
    Op* send = h.send_on(pool_fd_);
    ASSERT_NE(send, nullptr);
    f.send_ok(*send);
    h.run();
    EXPECT_EQ(f.wire(pool_fd_), "hi");
    size_t mark = h.closes_so_far();
    f.recv_eof(*h.recv_on(client.fd));
    f.recv_eof(*h.recv_on(pool_fd_));
    h.run();
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(h.closes_of(pool_fd_, mark), 1u);
    EXPECT_EQ(close_count(h.backend(0), CloseReason::k_done), 1u);
}

TEST_F(PoolTest, AClientLeavingDuringTheHandOverGivesTheSocketBack) {
    ShardHarness& h = *h_;
    engine::FakeEngine& f = h.fake();
    f.hold_cancels(true);
    ShardHarness::Client client = h.queue_client();
    h.run_one();
    Op* watch = h.armed(OpType::kPoll, pool_fd_);
    ASSERT_NE(watch, nullptr);
    ASSERT_TRUE(watch->cancelling()) << "the hand-over ends the pool's watch first";
    EXPECT_EQ(h.backend(0).active, 1u);
    size_t mark = h.closes_so_far();
    ASSERT_EQ(h.shard().sessions().size(), 1u);
    h.shard().sessions().front()->abort();
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(h.closes_of(client.fd, mark), 1u);
    EXPECT_EQ(h.backend(0).active, 0u);
    release_held(f);
    f.hold_cancels(false);
    h.run();
    EXPECT_EQ(h.closes_of(pool_fd_, mark), 0u) << "a healthy pooled socket was thrown away";
    EXPECT_EQ(pool().idle(), 1u);
    EXPECT_EQ(h.backend(0).counters.pool_idle.get(), 1u);
    EXPECT_NE(h.armed(OpType::kPoll, pool_fd_), nullptr) << "back in the pool but not watched";
}

// While the hand-over waits for the watch's cancel to complete, the watch may still report
// POLLRDHUP (the backend closed the pooled socket; io_uring may post it before the cancel takes
// effect). The socket is then discarded (pool_discarded), never handed out, and the client picks
// again from its own zero-delay timer and connects anew.
TEST_F(PoolTest, ASocketTheBackendClosesDuringTheHandOverIsNotHandedOut) {
    ShardHarness& h = *h_;
    engine::FakeEngine& f = h.fake();
    f.hold_cancels(true);
    ShardHarness::Client client = h.queue_client();
    h.run_one();
    Op* watch = h.armed(OpType::kPoll, pool_fd_);
    ASSERT_NE(watch, nullptr);
    ASSERT_TRUE(watch->cancelling());
    // The backend closes its end now; the watch reports it just before the cancel lands.
    ASSERT_EQ(::shutdown(backend_end_, SHUT_WR), 0);
    f.poll_ready(*watch, POLLIN | POLLRDHUP);
    release_held(f);
    f.hold_cancels(false);
    h.run();
    f.advance_clock(engine::Millis{0});  // the request's 0 ms resume timer
    h.run();
    EXPECT_EQ(h.recv_on(pool_fd_), nullptr)
        << "the session forwards on a socket the backend closed";
    EXPECT_EQ(h.backend(0).counters.pool_discarded.get(), 1u);
    EXPECT_EQ(h.cluster().counters.connects.get(), 1u) << "the client should connect anew";
    EXPECT_EQ(h.closes_of(client.fd), 0u);
    h.stop();
}

// ---- running out of fds --------------------------------------------------------------------

// Lowers RLIMIT_NOFILE's soft limit so that the next fd the process opens fails with EMFILE,
// and restores it when it goes.
class FdLimit {
  public:
    FdLimit() {
        ::getrlimit(RLIMIT_NOFILE, &saved_);
        int probe = ::dup(2);  // the lowest free fd: everything below it is in use
        if (probe < 0) return;
        ::close(probe);
        rlimit low = saved_;
        low.rlim_cur = static_cast<rlim_t>(probe);
        active_ = ::setrlimit(RLIMIT_NOFILE, &low) == 0;
    }
    ~FdLimit() { restore(); }
    FdLimit(const FdLimit&) = delete;
    FdLimit& operator=(const FdLimit&) = delete;
    void restore() {
        if (active_) ::setrlimit(RLIMIT_NOFILE, &saved_);
        active_ = false;
    }
    bool active() const { return active_; }

  private:
    rlimit saved_{};
    bool active_ = false;
};

// The connector's fd retry timer (50 ms), not the shard's accept pause timer (100 ms).
Op* fd_retry_timer(const engine::FakeEngine& fake) {
    for (Op* t : armed_timers(fake))
        if (fake.find(*t)->after == 50ms) return t;
    return nullptr;
}

TEST_F(ConnectorTest, OutOfFdsTheClientWaitsThenConnects) {
    ShardHarness& h = start(config_for({kPortBase}));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.queue_client();
    {
        FdLimit limit;
        ASSERT_TRUE(limit.active());
        h.run();
    }
    EXPECT_EQ(h.connect_op(), nullptr);
    EXPECT_EQ(h.shard().session_count(), 1u) << "the client must be kept, not dropped";
    EXPECT_EQ(h.shard().counters().emfile_pauses.get(), 1u);
    EXPECT_EQ(h.armed(OpType::kAccept, h.listener_fd()), nullptr) << "accepting goes on";
    EXPECT_EQ(failures_total(h.backend(0)), 0u);
    Op* retry = fd_retry_timer(f);
    ASSERT_NE(retry, nullptr);

    f.fire_timer(*retry);
    h.run();
    Op* connect = h.connect_op();
    ASSERT_NE(connect, nullptr) << "no connect once fds were free again";
    int up = h.fd_of(*connect);
    f.connect_ok(*connect);
    h.run();
    ASSERT_TRUE(f.recv_data(*h.recv_on(client.fd), "hi"));
    h.run();
    Op* send = h.send_on(up);
    ASSERT_NE(send, nullptr);
    f.send_ok(*send);
    h.run();
    EXPECT_EQ(f.wire(up), "hi");

    // The accept pause ends on its timer.
    std::vector<Op*> timers = armed_timers(f);
    ASSERT_EQ(timers.size(), 1u);
    f.fire_timer(*timers[0]);
    h.run();
    EXPECT_NE(h.armed(OpType::kAccept, h.listener_fd()), nullptr) << "accepting did not resume";

    end_in_one_iteration(Forwarding{client, up});
    h.run();
    EXPECT_EQ(h.shard().session_count(), 0u);
}

TEST_F(ConnectorTest, OutOfFdsForTooLongClosesTheClient) {
    ShardHarness& h = start(config_for({kPortBase}));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.queue_client();
    size_t mark = h.closes_so_far();
    int retries = 0;
    {
        FdLimit limit;
        ASSERT_TRUE(limit.active());
        h.run();
        while (Op* retry = fd_retry_timer(f)) {
            f.fire_timer(*retry);
            h.run();
            if (++retries > 100) break;
        }
    }
    EXPECT_EQ(retries, 40);
    EXPECT_EQ(h.shard().session_count(), 0u);
    EXPECT_EQ(h.closes_of(client.fd, mark), 1u);
    EXPECT_EQ(failure_count(h.backend(0), ConnectFailure::k_no_fd), 1u);
    EXPECT_EQ(h.cluster().counters.no_backend.get(), 1u);
    EXPECT_EQ(h.connect_op(), nullptr);
    // A closing session frees fds: accepting resumes at once.
    EXPECT_NE(h.armed(OpType::kAccept, h.listener_fd()), nullptr);
    EXPECT_TRUE(armed_timers(f).empty());
}

}  // namespace
}  // namespace ringlb::test
