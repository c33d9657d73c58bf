// Self-tests of the scripted fake engine: it must keep the engine contract (engine.hpp) exactly
// as the real engines do, or session tests written against it prove nothing.

#include "tests/unit/fake_engine.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace ringlb::engine {
namespace {

using namespace std::chrono_literals;

struct Event {
    uint8_t tag = 0;
    Completion c;
    bool armed_in_callback = false;
};

class Recorder final : public Handler {
  public:
    void on_complete(Op& op, const Completion& c) override {
        if (inside_call) ++violations;
        events.push_back({op.tag(), c, op.armed()});
        if (!c.more()) ++finals[op.tag()];
        if (hook) hook(op, c);
    }

    std::vector<Event> events;
    std::map<uint8_t, int> finals;
    std::function<void(Op&, const Completion&)> hook;
    bool inside_call = false;  // set while the test is inside an arming or cancel call
    int violations = 0;        // completions delivered from inside such a call
};

class FakeEngineTest : public ::testing::Test {
  protected:
    // Runs an arming or cancelling call while flagging that no completion may arrive.
    template <typename F>
    void call(F&& fn) {
        rec_.inside_call = true;
        fn();
        rec_.inside_call = false;
    }

    void TearDown() override {
        EXPECT_EQ(rec_.violations, 0) << "a completion was delivered inside an arming call";
    }

    Recorder rec_;
    FakeEngine fake_{FakeParams{64, 4, false}};
};

TEST_F(FakeEngineTest, NothingIsDeliveredInsideArmingOrCancelCalls) {
    Op accept_op(&rec_, 1), connect_op(&rec_, 2), poll_op(&rec_, 3), recv_op(&rec_, 4),
        once_op(&rec_, 5), send_op(&rec_, 6), timer_op(&rec_, 7);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    call([&] {
        fake_.accept(accept_op, 10);
        fake_.connect(connect_op, 11, reinterpret_cast<sockaddr*>(&sin), sizeof(sin), 100ms);
        fake_.poll(poll_op, 12, POLLIN);
        fake_.recv(recv_op, 13);
        fake_.recv_once(once_op, 14);
        fake_.send(send_op, 15, "x", 1);
        fake_.timer(timer_op, 5ms);
    });
    EXPECT_EQ(fake_.armed_count(), 7u);
    // Scripted results wait for run_once, even across further arming and cancel calls.
    fake_.accept_fd(accept_op, 20);
    fake_.connect_ok(connect_op);
    fake_.poll_ready(poll_op, POLLIN);
    ASSERT_TRUE(fake_.recv_data(recv_op, "abc"));
    fake_.send_ok(send_op);
    call([&] {
        for (Op* op : {&accept_op, &connect_op, &poll_op, &recv_op, &once_op, &send_op, &timer_op})
            fake_.cancel(*op);
    });
    EXPECT_TRUE(rec_.events.empty());
    // Five scripted, five cancels (connect and send already had their final queued).
    EXPECT_EQ(fake_.queued(), 10u);
    fake_.run_once(0ms);
    EXPECT_EQ(rec_.events.size(), 10u);
    for (uint8_t tag = 1; tag <= 7; ++tag) EXPECT_EQ(rec_.finals[tag], 1) << int(tag);
    EXPECT_EQ(fake_.armed_count(), 0u);
    fake_.release_buffer(rec_.events[3].c.buffer_id);
}

TEST_F(FakeEngineTest, CancelQueuesExactlyOneFinalEcanceled) {
    Op op(&rec_, 1);
    call([&] {
        fake_.cancel(op);  // not armed: no-op
        fake_.timer(op, 1s);
        fake_.cancel(op);
        fake_.cancel(op);  // already cancelling: no-op
    });
    EXPECT_TRUE(op.armed());
    EXPECT_TRUE(op.cancelling());
    EXPECT_EQ(fake_.queued(), 1u);
    fake_.run_until_idle();
    ASSERT_EQ(rec_.events.size(), 1u);
    EXPECT_EQ(rec_.events[0].c.res, -ECANCELED);
    EXPECT_FALSE(rec_.events[0].c.more());
    EXPECT_FALSE(rec_.events[0].armed_in_callback) << "armed() must be clear in the final";
    EXPECT_FALSE(op.armed());
    EXPECT_FALSE(op.cancelling());
    call([&] { fake_.cancel(op); });  // ended: no-op
    EXPECT_EQ(fake_.queued(), 0u);
}

TEST_F(FakeEngineTest, CancelAfterAFinalWasQueuedKeepsThatFinal) {
    Op op(&rec_, 1);
    call([&] { fake_.timer(op, 1s); });
    fake_.fire_timer(op);
    call([&] { fake_.cancel(op); });
    EXPECT_FALSE(op.cancelling());
    fake_.run_until_idle();
    ASSERT_EQ(rec_.events.size(), 1u);
    EXPECT_EQ(rec_.events[0].c.res, 0);
    EXPECT_EQ(rec_.finals[1], 1);
}

TEST_F(FakeEngineTest, DataQueuedBeforeCancelArrivesFirst) {
    Op op(&rec_, 1);
    call([&] { fake_.recv(op, 5); });
    ASSERT_TRUE(fake_.recv_data(op, "one"));
    ASSERT_TRUE(fake_.recv_data(op, "two"));
    call([&] { fake_.cancel(op); });
    fake_.run_once(0ms);
    ASSERT_EQ(rec_.events.size(), 3u);
    EXPECT_EQ(rec_.events[0].c.res, 3);
    EXPECT_TRUE(rec_.events[0].c.more());
    EXPECT_TRUE(rec_.events[0].c.has_buffer());
    EXPECT_TRUE(rec_.events[0].armed_in_callback);
    EXPECT_TRUE(rec_.events[1].c.more());
    EXPECT_EQ(rec_.events[2].c.res, -ECANCELED);
    EXPECT_EQ(rec_.finals[1], 1);
    EXPECT_EQ(std::string(fake_.buffer(rec_.events[1].c.buffer_id).data(), 3), "two");
    for (int i = 0; i < 2; ++i) fake_.release_buffer(rec_.events[i].c.buffer_id);
    EXPECT_EQ(fake_.buffers_free(), 4u);
}

TEST_F(FakeEngineTest, HeldCancelLetsDataArriveAfterTheCancelCall) {
    fake_.hold_cancels(true);
    Op op(&rec_, 1);
    call([&] { fake_.recv(op, 5); });
    call([&] { fake_.cancel(op); });
    EXPECT_TRUE(op.cancelling());
    EXPECT_EQ(fake_.queued(), 0u);
    // What io_uring may do: a CQE produced before the cancel took effect.
    ASSERT_TRUE(fake_.recv_data(op, "late"));
    fake_.release_cancel(op);
    fake_.run_until_idle();
    ASSERT_EQ(rec_.events.size(), 2u);
    EXPECT_TRUE(rec_.events[0].c.more());
    EXPECT_EQ(rec_.events[1].c.res, -ECANCELED);
    fake_.release_buffer(rec_.events[0].c.buffer_id);

    // The operation may also end on its own before the held cancel: that final wins.
    Op once(&rec_, 2);
    call([&] { fake_.recv_once(once, 6); });
    call([&] { fake_.cancel(once); });
    fake_.recv_eof(once);
    fake_.release_cancel(once);  // no-op now
    fake_.run_until_idle();
    EXPECT_EQ(rec_.finals[2], 1);
    EXPECT_EQ(rec_.events.back().c.res, 0);
}

TEST_F(FakeEngineTest, NothingMayFollowAFinal) {
    Op op(&rec_, 1);
    call([&] { fake_.recv(op, 5); });
    fake_.recv_eof(op);
    EXPECT_NONFATAL_FAILURE(fake_.recv_data(op, "x"), "after the op's final");
    EXPECT_NONFATAL_FAILURE(fake_.complete(op, -EIO), "after the op's final");
    fake_.run_until_idle();
    EXPECT_EQ(rec_.events.size(), 1u);
    EXPECT_NONFATAL_FAILURE(fake_.recv_eof(op), "not armed");
    EXPECT_EQ(fake_.buffers_free(), 4u);
}

TEST_F(FakeEngineTest, ScriptMustMatchTheOpType) {
    Op op(&rec_, 1);
    call([&] { fake_.send(op, 5, "abc", 3); });
    EXPECT_NONFATAL_FAILURE(fake_.fire_timer(op), "on a send op");
    EXPECT_NONFATAL_FAILURE(fake_.complete(op, 1, kMore), "single-shot");
    EXPECT_NONFATAL_FAILURE(fake_.short_send(op, 3), "short_send of 3 bytes of 3");
    fake_.send_ok(op);
    fake_.run_until_idle();
}

TEST_F(FakeEngineTest, HandlerMayRearmFromInsideTheFinal) {
    Op op(&rec_, 1);
    int rearms = 0;
    rec_.hook = [&](Op& o, const Completion& c) {
        EXPECT_FALSE(o.armed());
        if (!c.more() && rearms < 2) {
            ++rearms;
            fake_.timer(o, 10ms);
        }
    };
    call([&] { fake_.timer(op, 10ms); });
    const uint64_t first = fake_.find(op)->seq;
    fake_.fire_timer(op);
    fake_.run_once(0ms);
    ASSERT_NE(fake_.find(op), nullptr);
    EXPECT_NE(fake_.find(op)->seq, first) << "a new arming";
    fake_.fire_timer(op);
    fake_.run_once(0ms);
    fake_.fire_timer(op);
    fake_.run_once(0ms);
    EXPECT_EQ(rec_.finals[1], 3);
    EXPECT_FALSE(op.armed());
    EXPECT_EQ(fake_.history().size(), 3u);
}

TEST_F(FakeEngineTest, BufferAccounting) {
    Op once(&rec_, 1), multi(&rec_, 2);
    call([&] { fake_.recv_once(once, 5); });
    ASSERT_TRUE(fake_.recv_data(once, "hello"));
    EXPECT_EQ(fake_.buffers_free(), 3u) << "the buffer is taken when the data arrives";
    fake_.run_once(0ms);
    ASSERT_EQ(rec_.events.size(), 1u);
    const Completion first = rec_.events[0].c;
    EXPECT_FALSE(first.more()) << "recv_once: the data completion is the final";
    EXPECT_TRUE(first.has_buffer());
    EXPECT_EQ(first.res, 5);
    EXPECT_EQ(std::string(fake_.buffer(first.buffer_id).data(), 5), "hello");
    EXPECT_EQ(fake_.buffer(first.buffer_id).size(), 64u);

    // Exhaust the pool with a multishot receive: the fourth buffer is the last one.
    call([&] { fake_.recv(multi, 6); });
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(fake_.recv_data(multi, std::string(64, 'a' + i)));
    EXPECT_EQ(fake_.buffers_free(), 0u);
    EXPECT_FALSE(fake_.recv_data(multi, "no room"));  // queues the final -ENOBUFS
    EXPECT_NONFATAL_FAILURE(fake_.recv_data(multi, "z"), "after the op's final");
    fake_.run_until_idle();
    ASSERT_EQ(rec_.events.size(), 5u);
    EXPECT_EQ(rec_.events[4].c.res, -ENOBUFS);
    EXPECT_EQ(rec_.finals[2], 1);
    std::vector<uint16_t> ids = {first.buffer_id};
    for (int i = 1; i <= 3; ++i) ids.push_back(rec_.events[i].c.buffer_id);
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end()) << "four distinct buffers";
    for (uint16_t id : ids) fake_.release_buffer(id);
    EXPECT_EQ(fake_.buffers_free(), 4u);
    // Nothing armed, queued or held any more; the fds were never closed.
    EXPECT_EQ(fake_.leftovers(), (std::vector<std::string>{"fd 5 open", "fd 6 open"}));
    EXPECT_TRUE(fake_.violations().empty());
}

TEST_F(FakeEngineTest, DoubleReleaseIsDetected) {
    Op op(&rec_, 1);
    call([&] { fake_.recv_once(op, 5); });
    ASSERT_TRUE(fake_.recv_data(op, "x"));
    fake_.run_once(0ms);
    const uint16_t id = rec_.events.at(0).c.buffer_id;
    fake_.release_buffer(id);
    EXPECT_NONFATAL_FAILURE(fake_.release_buffer(id), "released twice");
    EXPECT_EQ(fake_.violations().size(), 1u);
    EXPECT_EQ(fake_.buffers_free(), 4u) << "a double release must not grow the pool";
    EXPECT_NONFATAL_FAILURE(fake_.buffer(id), "read while not handed out");

    // Counting instead of failing, for tests that provoke violations on purpose.
    fake_.set_fail_on_violation(false);
    fake_.release_buffer(id);
    fake_.release_buffer(999);
    EXPECT_EQ(fake_.violations().size(), 4u);
}

TEST_F(FakeEngineTest, ShortSendsCaptureBytesInWireOrder) {
    const std::string message = "hello, wire";
    size_t sent = 0;
    Op op(&rec_, 1);
    // A pump: on a short send, send the rest.
    rec_.hook = [&](Op& o, const Completion& c) {
        ASSERT_GT(c.res, 0);
        sent += static_cast<size_t>(c.res);
        if (sent < message.size()) fake_.send(o, 7, message.data() + sent, message.size() - sent);
    };
    call([&] { fake_.send(op, 7, message.data(), message.size()); });
    EXPECT_EQ(fake_.find(op)->len, message.size());
    EXPECT_EQ(fake_.find(op)->data, message.data());
    fake_.short_send(op, 5);
    fake_.run_once(0ms);
    EXPECT_EQ(fake_.wire(7), "hello");
    EXPECT_EQ(fake_.find(op)->len, message.size() - 5);
    fake_.short_send(op, 1);
    fake_.run_once(0ms);
    fake_.send_ok(op);
    fake_.run_once(0ms);
    EXPECT_EQ(fake_.wire(7), message);
    EXPECT_FALSE(op.armed());
    EXPECT_EQ(fake_.wire(8), "");

    // A failed send puts nothing on the wire.
    rec_.hook = nullptr;
    Op other(&rec_, 2);
    call([&] { fake_.send(other, 8, "zz", 2); });
    fake_.send_error(other, -EPIPE);
    fake_.run_once(0ms);
    EXPECT_EQ(fake_.wire(8), "");
    EXPECT_EQ(fake_.take_wire(7), message);
    EXPECT_EQ(fake_.wire(7), "");
}

TEST_F(FakeEngineTest, TwoSendsOnOneFdAreAViolation) {
    Op a(&rec_, 1), b(&rec_, 2);
    call([&] { fake_.send(a, 7, "a", 1); });
    EXPECT_NONFATAL_FAILURE(fake_.send(b, 7, "b", 1), "two sends armed on fd 7");
    fake_.send_ok(a);
    fake_.send_ok(b);
    fake_.run_until_idle();
}

TEST_F(FakeEngineTest, ArmingAnArmedOpIsAViolationAndChangesNothing) {
    Op op(&rec_, 1);
    call([&] { fake_.recv(op, 5); });
    EXPECT_NONFATAL_FAILURE(fake_.timer(op, 1s), "on an op still armed");
    EXPECT_EQ(fake_.find(op)->type, OpType::kRecv);
    EXPECT_EQ(op.type(), OpType::kRecv);
    Op unbound;
    EXPECT_NONFATAL_FAILURE(fake_.timer(unbound, 1s), "no handler");
    EXPECT_FALSE(unbound.armed());
    fake_.recv_eof(op);
    fake_.run_until_idle();
}

TEST_F(FakeEngineTest, ClosingAnFdWithAnArmedOpIsAViolation) {
    Op op(&rec_, 1);
    call([&] { fake_.poll(op, 9, POLLIN); });
    EXPECT_NONFATAL_FAILURE(fake_.close_fd(9), "still armed on it");
    // Like the real engines, the op still gets its one final.
    fake_.run_until_idle();
    EXPECT_EQ(rec_.finals[1], 1);
    EXPECT_EQ(rec_.events.back().c.res, -ECANCELED);
    EXPECT_EQ(fake_.closed_fds(), std::vector<int>{9});
}

TEST_F(FakeEngineTest, FdLiveness) {
    Op listener(&rec_, 1), conn(&rec_, 2);
    call([&] { fake_.accept(listener, 3); });
    fake_.accept_fd(listener, 100);
    fake_.accept_fd(listener, 101);
    fake_.run_once(0ms);
    ASSERT_EQ(rec_.events.size(), 2u);
    EXPECT_EQ(rec_.events[0].c.res, 100);
    EXPECT_TRUE(rec_.events[0].c.more());
    EXPECT_TRUE(listener.armed());
    EXPECT_EQ(fake_.open_fds(), (std::vector<int>{3, 100, 101}));

    // A socket the code under test made itself shows up once used.
    call([&] { fake_.connect(conn, 102, nullptr, 0, 1s); });
    fake_.connect_error(conn, -ECONNREFUSED);
    fake_.run_once(0ms);
    fake_.close_fd(102);
    fake_.close_fd(100);
    EXPECT_EQ(fake_.open_fds(), (std::vector<int>{3, 101}));
    EXPECT_EQ(fake_.closed_fds(), (std::vector<int>{102, 100}));
    EXPECT_NONFATAL_FAILURE(fake_.close_fd(100), "already closed");
    // The number may be reused by a new socket: closing it again is then fine.
    fake_.note_fd(100);
    fake_.close_fd(100);
    EXPECT_EQ(fake_.violations().size(), 1u);
    call([&] { fake_.cancel(listener); });
    fake_.run_until_idle();
}

TEST_F(FakeEngineTest, InspectionOfArmedOps) {
    Op c(&rec_, 1), t(&rec_, 2), p(&rec_, 3), r(&rec_, 4);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(8080);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    call([&] {
        fake_.connect(c, 11, reinterpret_cast<sockaddr*>(&sin), sizeof(sin), 250ms);
        fake_.timer(t, 3s);
        fake_.poll(p, 11, POLLIN | POLLOUT);
        fake_.recv_once(r, 12);
    });
    EXPECT_EQ(fake_.armed_op(OpType::kConnect), &c);
    EXPECT_EQ(fake_.armed_op(OpType::kConnect, 12), nullptr);
    EXPECT_EQ(fake_.armed_op(OpType::kPoll, 11), &p);
    EXPECT_EQ(fake_.armed_op(OpType::kTimer), &t);
    EXPECT_EQ(fake_.armed_op(OpType::kSend), nullptr);
    const ArmedOp* rc = fake_.find(c);
    ASSERT_NE(rc, nullptr);
    ASSERT_EQ(rc->addr_len, sizeof(sin));
    const auto* got = reinterpret_cast<const sockaddr_in*>(&rc->addr);
    EXPECT_EQ(ntohs(got->sin_port), 8080);
    EXPECT_EQ(got->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    EXPECT_EQ(rc->timeout, 250ms);
    EXPECT_EQ(fake_.find(t)->after, 3s);
    EXPECT_EQ(fake_.find(p)->mask, uint32_t{POLLIN | POLLOUT});
    EXPECT_TRUE(fake_.find(p)->multishot);
    EXPECT_FALSE(fake_.find(r)->multishot);
    auto ops = fake_.armed_ops();
    ASSERT_EQ(ops.size(), 4u);
    EXPECT_EQ(ops[0]->op, &c);
    EXPECT_EQ(ops[3]->op, &r);
    // A queued final takes an op out of armed_op(): it is no longer waiting for the script.
    fake_.fire_timer(t);
    EXPECT_EQ(fake_.armed_op(OpType::kTimer), nullptr);
    EXPECT_NE(fake_.find(t), nullptr);
    for (Op* op : {&c, &p, &r}) call([&] { fake_.cancel(*op); });
    fake_.run_until_idle();
    EXPECT_EQ(fake_.armed_count(), 0u);
}

TEST_F(FakeEngineTest, FakeClockExpiresTimersAndConnectsInDeadlineOrder) {
    Op t1(&rec_, 1), t2(&rec_, 2), conn(&rec_, 3);
    call([&] {
        fake_.timer(t1, 100ms);
        fake_.connect(conn, 11, nullptr, 0, 50ms);
        fake_.timer(t2, 30ms);
    });
    fake_.advance_clock(20ms);
    EXPECT_EQ(fake_.queued(), 0u);
    fake_.advance_clock(40ms);
    fake_.run_once(0ms);
    ASSERT_EQ(rec_.events.size(), 2u);
    EXPECT_EQ(rec_.events[0].tag, 2);
    EXPECT_EQ(rec_.events[0].c.res, 0);
    EXPECT_EQ(rec_.events[1].tag, 3);
    EXPECT_EQ(rec_.events[1].c.res, -ETIMEDOUT);
    fake_.advance_clock(40ms);
    fake_.run_once(0ms);
    ASSERT_EQ(rec_.events.size(), 3u);
    EXPECT_EQ(rec_.events[2].tag, 1);
    EXPECT_EQ(fake_.now(), 100ms);
}

TEST_F(FakeEngineTest, RunOnceDeliversWhatWasQueuedWhenCalled) {
    Op a(&rec_, 1), b(&rec_, 2);
    call([&] {
        fake_.timer(a, 1s);
        fake_.timer(b, 1s);
    });
    rec_.hook = [&](Op& op, const Completion&) {
        if (op.tag() == 1) fake_.cancel(b);  // queued behind: next run_once
    };
    fake_.fire_timer(a);
    fake_.run_once(7ms);
    EXPECT_EQ(rec_.events.size(), 1u);
    EXPECT_EQ(fake_.last_max_wait(), 7ms);
    EXPECT_EQ(fake_.queued(), 1u);
    EXPECT_EQ(fake_.run_until_idle(), 1u);
    EXPECT_EQ(rec_.events.back().c.res, -ECANCELED);
    EXPECT_EQ(fake_.run_once_calls(), 2u);
    fake_.wake();
    EXPECT_EQ(fake_.wakes(), 1u);
}

TEST_F(FakeEngineTest, HandlerMayDestroyItsOpInTheFinal) {
    auto op = std::make_unique<Op>(&rec_, 1);
    Op other(&rec_, 2);
    rec_.hook = [&](Op& o, const Completion& c) {
        if (o.tag() == 1 && !c.more()) op.reset();
    };
    call([&] {
        fake_.recv_once(*op, 5);
        fake_.timer(other, 1s);
    });
    fake_.recv_error(*op, -ECONNRESET);
    fake_.fire_timer(other);
    fake_.run_until_idle();  // ASan: the fake must not touch the freed op
    EXPECT_EQ(op, nullptr);
    EXPECT_EQ(rec_.finals[2], 1);
}

TEST_F(FakeEngineTest, RandomScriptsKeepExactlyOneFinalPerArming) {
    // Random arming, scripting, cancelling (some held) and re-arming from callbacks: every arming
    // ends with one final and nothing of it after, and buffers balance.
    std::mt19937 rng(12345);
    constexpr int kOps = 8;
    std::vector<std::unique_ptr<Op>> ops;
    for (int i = 0; i < kOps; ++i)
        ops.push_back(std::make_unique<Op>(&rec_, static_cast<uint8_t>(i)));
    std::map<uint8_t, int> armings;
    std::map<uint8_t, bool> ended;  // the current arming's final was delivered
    auto arm = [&](Op& op) {
        int fd = 20 + op.tag();
        switch (rng() % 4) {
            case 0:
                fake_.recv(op, fd);
                break;
            case 1:
                fake_.recv_once(op, fd);
                break;
            case 2:
                fake_.timer(op, std::chrono::milliseconds(rng() % 50));
                break;
            default:
                fake_.poll(op, fd, POLLIN);
                break;
        }
        ++armings[op.tag()];
        ended[op.tag()] = false;
    };
    rec_.hook = [&](Op& op, const Completion& c) {
        if (c.has_buffer()) fake_.release_buffer(c.buffer_id);
        if (c.more()) {
            EXPECT_TRUE(op.armed());
            EXPECT_FALSE(ended[op.tag()]) << "kMore after the final";
            return;
        }
        EXPECT_FALSE(op.armed());
        EXPECT_FALSE(ended[op.tag()]) << "second final for one arming";
        ended[op.tag()] = true;
        if (rng() % 2) arm(op);
    };
    call([&] {
        for (auto& op : ops) arm(*op);
    });
    for (int step = 0; step < 3000; ++step) {
        fake_.hold_cancels(rng() % 3 == 0);
        Op& op = *ops[rng() % kOps];
        const ArmedOp* rec = fake_.find(op);
        if (rec == nullptr) {
            call([&] { arm(op); });
            continue;
        }
        if (rec->final_queued) {
            fake_.run_once(0ms);
            continue;
        }
        switch (rng() % 6) {
            case 0:
                call([&] { fake_.cancel(op); });
                break;
            case 1:
                if (rec->cancel_held) fake_.release_cancel(op);
                break;
            case 2:
                if (rec->type == OpType::kRecv) fake_.recv_data(op, "d");
                if (rec->type == OpType::kPoll) fake_.poll_ready(op, POLLIN);
                break;
            case 3:
                if (rec->type == OpType::kRecv) fake_.recv_eof(op);
                if (rec->type == OpType::kTimer) fake_.fire_timer(op);
                if (rec->type == OpType::kPoll) fake_.complete(op, -EIO);
                break;
            case 4:
                fake_.advance_clock(std::chrono::milliseconds(rng() % 20));
                break;
            default:
                fake_.run_once(0ms);
                break;
        }
    }
    fake_.hold_cancels(false);
    rec_.hook = [&](Op& op, const Completion& c) {
        if (c.has_buffer()) fake_.release_buffer(c.buffer_id);
        if (!c.more()) ended[op.tag()] = true;
    };
    for (auto& op : ops) {
        if (const ArmedOp* rec = fake_.find(*op); rec && rec->cancel_held)
            fake_.release_cancel(*op);
        call([&] { fake_.cancel(*op); });
    }
    fake_.run_until_idle();
    int total_armings = 0, total_finals = 0;
    for (auto& [tag, n] : armings) total_armings += n;
    for (auto& [tag, n] : rec_.finals) total_finals += n;
    EXPECT_EQ(total_finals, total_armings);
    EXPECT_GT(total_armings, 100);
    EXPECT_EQ(fake_.armed_count(), 0u);
    EXPECT_EQ(fake_.buffers_free(), fake_.buffer_count());
    EXPECT_TRUE(fake_.violations().empty());
}

}  // namespace
}  // namespace ringlb::engine
