// The fds kept for the control plane (common/fd_reserve.hpp) and what the data path does when
// it reaches them: a shard keeps a client whose fd landed in the reserve's lower half and stops
// accepting until an fd below the reserve is free; a client or upstream socket in the upper half
// is closed at once; the pipe pool never opens a pipe in the reserve.

#include "common/fd_reserve.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>

#include <chrono>
#include <vector>

#include "common/fd.hpp"
#include "common/socket.hpp"

#include "proxy/shard/pipe_pool.hpp"
#include "tests/unit/shard_harness.hpp"

namespace ringlb::test {
namespace {

using engine::Op;
using engine::OpType;
using namespace std::chrono_literals;

// Reserves fds as for the limit `limit`, and nothing again on destruction, so that other tests
// in this process run without a reserve.
class Reserve {
  public:
    explicit Reserve(long limit) { common::reserve_fds(limit); }
    ~Reserve() { common::reserve_fds(0); }
    Reserve(const Reserve&) = delete;
    Reserve& operator=(const Reserve&) = delete;
};

// A limit whose reserve starts at or below `in_reserve` and whose admin spare slots start above
// `free_below` (the fd the upstream socket will get); -1 if there is none.
long limit_for(int in_reserve, int free_below) {
    for (long limit = 1; limit < free_below + 1000; ++limit) {
        long reserve = common::fd_reserve_for(limit);
        long spares = std::min<long>(common::kControlSpareFds, reserve / 2);
        if (limit - reserve <= in_reserve && limit - spares > free_below) return limit;
    }
    return -1;
}

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

TEST(FdReserveTest, TheReserveIsTheTopOfTheTable) {
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
        Reserve reserve(next + 1);
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
        Reserve reserve(next + 1);
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

// Shard tests: the client's fd is the lowest free one, so filler fds put it high enough (>= 40)
// for a reserve of several fds to lie below it.
class ShardFdReserveTest : public ShardTest {
  protected:
    void SetUp() override {
        ShardTest::SetUp();
        while (lowest_free_fd() >= 0 && lowest_free_fd() < 40)
            fillers_.emplace_back(::eventfd(0, EFD_CLOEXEC));
    }
    void TearDown() override {
        fillers_.clear();
        ShardTest::TearDown();
    }

  private:
    std::vector<common::Fd> fillers_;
};

TEST_F(ShardFdReserveTest, ClientInTheReserveIsKeptAndAcceptingWaitsForAFreeFd) {
    ShardHarness& h = start(config_for({20001}));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.queue_client();
    // The client in the lower half, its upstream socket (the next free fd) too.
    long limit = limit_for(client.fd, lowest_free_fd());
    ASSERT_GT(limit, 0);
    Reserve reserve(limit);
    h.run();

    EXPECT_EQ(h.shard().session_count(), 1u) << "the client must be kept, not dropped";
    EXPECT_NE(h.connect_op(), nullptr) << "its upstream socket may use the lower half";
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

TEST_F(ShardFdReserveTest, ClientAtTheTopOfTheTableIsKeptAndWaitsForItsUpstreamFd) {
    ShardHarness& h = start(config_for({20001}));
    engine::FakeEngine& f = h.fake();
    ShardHarness::Client client = h.queue_client();
    // The client takes the last fd the data path may use; its upstream socket (the next free
    // fd) is in the reserve, which a client's own upstream socket may take.
    long limit = limit_for(client.fd, lowest_free_fd());
    ASSERT_GT(limit, 0);
    Reserve reserve(limit);
    h.run();
    EXPECT_EQ(h.shard().session_count(), 1u) << "the client must be kept, not dropped";
    EXPECT_NE(h.connect_op(), nullptr) << "its upstream socket may use the reserve";
    EXPECT_EQ(h.armed(OpType::kAccept, h.listener_fd()), nullptr) << "accepting should pause";
    (void)f;
    h.stop();
    h.expect_clean();
}

// A listener that closes (graceful drain) accepts its queue itself, under the same rule: the
// client whose fd lands in the reserve is kept, no further one is taken, and accepting pauses.
TEST_F(ShardFdReserveTest, ClosingListenerTakesItsQueueUpToTheReserve) {
    ShardHarness& h = start(config_for({20001}));
    uint16_t port = common::local_address(h.listener_fd()).port();
    std::vector<common::Fd> clients;
    for (int i = 0; i < 3; ++i) {
        common::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
        clients.push_back(std::move(fd));
    }
    // Taken in order: client 1 at `next`, its upstream socket at next + 1, client 2 at next + 2
    // (the first fd of the reserve), its upstream socket at next + 3 (below the admin spares).
    int next = lowest_free_fd();
    long limit = -1;
    for (long l = 1; l < next + 1000 && limit < 0; ++l) {
        long reserve = common::fd_reserve_for(l);
        long spares = std::min<long>(common::kControlSpareFds, reserve / 2);
        if (l - reserve == next + 2 && l - spares > next + 3) limit = l;
    }
    ASSERT_GT(limit, 0);
    Reserve reserve(limit);
    size_t taken = 0;
    h.shard().close_listener(0, [&](size_t n) { taken = n; });
    h.run();

    EXPECT_EQ(taken, 2u);
    EXPECT_EQ(h.shard().session_count(), 2u) << "the client in the reserve must be kept";
    EXPECT_EQ(h.shard().counters().emfile_pauses.get(), 1u);
    EXPECT_FALSE(h.shard().listener_open(0));
    EXPECT_EQ(peer_state(clients[0].get()), "<eagain>");
    EXPECT_EQ(peer_state(clients[1].get()), "<eagain>");
    EXPECT_EQ(peer_state(clients[2].get()), "<error: Connection reset by peer>")
        << "the third client should have stayed in the queue, reset at the close";
    h.stop();
    h.expect_clean();
}

}  // namespace
}  // namespace ringlb::test
