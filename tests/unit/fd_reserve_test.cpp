// The fds kept for the control plane (common/fd_reserve.hpp) and what the data path does when
// it reaches them: a shard keeps the client whose fd landed there and stops accepting until an
// fd below the reserve is free; the pipe pool never opens a pipe there.

#include "common/fd_reserve.hpp"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>

#include "proxy/shard/pipe_pool.hpp"
#include "tests/unit/shard_harness.hpp"

namespace ringlb::test {
namespace {

using engine::Op;
using engine::OpType;
using namespace std::chrono_literals;

// Sets the reserve's threshold to at most `fd` (the limit is fd + 1, at least one fd of it
// reserved) and lifts it again on
// destruction, so that other tests in this process run without a reserve.
class ReserveFrom {
  public:
    explicit ReserveFrom(int fd) { common::reserve_fds(fd + 1); }
    ~ReserveFrom() { common::reserve_fds(0); }
    ReserveFrom(const ReserveFrom&) = delete;
    ReserveFrom& operator=(const ReserveFrom&) = delete;
};

int lowest_free_fd() {
    int fd = ::eventfd(0, EFD_CLOEXEC);
    if (fd >= 0) ::close(fd);
    return fd;
}

TEST(FdReserveTest, AnEighthOfASmallLimitAtMost64) {
    EXPECT_EQ(common::fd_reserve_for(64), 8);
    EXPECT_EQ(common::fd_reserve_for(256), 32);
    EXPECT_EQ(common::fd_reserve_for(512), 64);
    EXPECT_EQ(common::fd_reserve_for(20000), 64);
    EXPECT_EQ(common::fd_reserve_for(4), 1);
    EXPECT_EQ(common::fd_reserve_for(0), 0);
    EXPECT_EQ(common::fd_reserve_for(-1), 0);
}

TEST(FdReserveTest, ThresholdIsTheLimitMinusTheReserve) {
    common::reserve_fds(256);
    EXPECT_EQ(common::fd_reserve_threshold(), 224);
    EXPECT_FALSE(common::fd_in_reserve(223));
    EXPECT_TRUE(common::fd_in_reserve(224));
    common::reserve_fds(0);  // unknown limit: nothing reserved
    EXPECT_FALSE(common::fd_in_reserve(1 << 30));
}

TEST(FdReserveTest, ProbeSeesWhetherTheNextFdLandsInTheReserve) {
    int next = lowest_free_fd();
    ASSERT_GE(next, 0);
    {
        ReserveFrom reserve(next);
        EXPECT_FALSE(common::fd_below_reserve_free());
    }
    common::reserve_fds(next + 1000);
    EXPECT_TRUE(common::fd_below_reserve_free());
    common::reserve_fds(0);
    EXPECT_EQ(lowest_free_fd(), next) << "the probe leaked its fd";
}

TEST(FdReserveTest, PipePoolOpensNoPipeInTheReserve) {
    shard::PipePool pool(4, 65536);
    int next = lowest_free_fd();
    {
        ReserveFrom reserve(next);
        EXPECT_EQ(pool.acquire(), nullptr);
        EXPECT_EQ(pool.lent(), 0u);
    }
    EXPECT_EQ(lowest_free_fd(), next) << "the refused pipe was not closed";
    shard::Pipe* pipe = pool.acquire();
    ASSERT_NE(pipe, nullptr) << "below the reserve a pipe opens";
    pool.release(pipe, true);
}

// Armed timers (no fd), oldest arming first.
std::vector<Op*> armed_timers(const engine::FakeEngine& fake) {
    std::vector<Op*> out;
    for (const engine::ArmedOp* rec : fake.armed_ops())
        if (rec->type == OpType::kTimer) out.push_back(rec->op);
    return out;
}

using ShardFdReserveTest = ShardTest;

TEST_F(ShardFdReserveTest, ClientInTheReserveIsKeptAndAcceptingWaitsForAFreeFd) {
    ShardHarness& h = start(config_for({20001}));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.queue_client();
    ReserveFrom reserve(client.fd);
    h.run();

    EXPECT_EQ(h.shard().session_count(), 1u) << "the client must be kept, not dropped";
    EXPECT_NE(h.connect_op(), nullptr) << "its upstream socket may use the reserve";
    EXPECT_EQ(h.shard().counters().emfile_pauses.get(), 1u);
    EXPECT_EQ(h.armed(OpType::kAccept, h.listener_fd()), nullptr) << "accepting should pause";

    // While every fd below the reserve is taken, the pause timer keeps the pause going.
    for (int i = 0; i < 3; ++i) {
        std::vector<Op*> timers = armed_timers(f);
        ASSERT_EQ(timers.size(), 1u);
        EXPECT_EQ(f.find(*timers[0])->after, 100ms);
        f.fire_timer(*timers[0]);
        h.run();
        EXPECT_EQ(h.armed(OpType::kAccept, h.listener_fd()), nullptr) << "resumed at " << i;
    }
    EXPECT_EQ(h.shard().counters().emfile_pauses.get(), 1u) << "one pause, not one per check";

    // Once an fd below the reserve is free, the next check resumes accepting.
    common::reserve_fds(0);
    std::vector<Op*> timers = armed_timers(f);
    ASSERT_EQ(timers.size(), 1u);
    f.fire_timer(*timers[0]);
    h.run();
    EXPECT_NE(h.armed(OpType::kAccept, h.listener_fd()), nullptr) << "accepting did not resume";
    h.stop();
    h.expect_clean();
}

}  // namespace
}  // namespace ringlb::test
