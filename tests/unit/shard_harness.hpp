#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/shard/session.hpp"
#include "proxy/shard/shard.hpp"
#include "proxy/upstream/connector.hpp"
#include "tests/unit/fake_engine.hpp"

namespace ringlb::test {

// Entries of /proc/self/fd: a test compares it before and after to prove it leaked no fd.
size_t open_fd_count();

// A config with one listener ("web") and one cluster ("app") whose backends are 127.0.0.1 on
// `ports`; the extras are appended to the cluster's table, the listener's table and each
// backend's inline table (", max_connections = 1").
std::string config_for(const std::vector<uint16_t>& ports, const std::string& cluster_extra = "",
                       const std::string& listener_extra = "",
                       const std::string& backend_extra = "");

size_t close_count(const upstream::BackendState& b, upstream::CloseReason reason);
size_t failure_count(const upstream::BackendState& b, upstream::ConnectFailure failure);
size_t failures_total(const upstream::BackendState& b);

// Every arming of `type` on `fd` so far.
size_t armings(const engine::FakeEngine& fake, engine::OpType type, int fd);

// Ends every cancel the fake held back (hold_cancels) with its -ECANCELED.
void release_held(engine::FakeEngine& fake);

// A loopback listening socket standing in for a backend; *port is its port.
common::Fd backend_listener(uint16_t* port);

// What the test's end of a socket sees now: its pending bytes, "<eof>", "<eagain>" or
// "<error: ...>". Never blocks.
std::string peer_state(int fd);

struct HarnessOptions {
    uint32_t buffer_count = 16;
    uint32_t buffer_size = 4096;
    unsigned shards = 1;  // ShardOptions::shards: how many shards share max_connections
    // ShardOptions::report_outcome (passive health), called on the test's thread.
    std::function<void(const std::string&, const std::string&, bool)> report_outcome = nullptr;
};

// A Shard running on the calling thread over a FakeEngine, built from a TOML config with one
// listener (its socket is a real loopback listening socket nobody connects to). Clients are
// socketpairs: the shard gets one end through its accept op, the test keeps the other. The
// fake closes for real what the product closes through the engine (close_real_fds), so the
// sockets a session creates do not leak.
class ShardHarness {
  public:
    explicit ShardHarness(const std::string& toml, HarnessOptions options = {});
    ~ShardHarness();
    ShardHarness(const ShardHarness&) = delete;
    ShardHarness& operator=(const ShardHarness&) = delete;

    shard::Shard& shard() { return *shard_; }
    engine::FakeEngine& fake() { return *fake_; }
    upstream::ClusterState& cluster(size_t i = 0) { return *shard_->connector().clusters()[i]; }
    upstream::BackendState& backend(size_t i, size_t cluster_index = 0) {
        return cluster(cluster_index).backends[i];
    }
    int listener_fd() const { return listener_fd_; }

    struct Client {
        int fd = -1;    // the shard's end (the session's client fd)
        int peer = -1;  // the test's end, owned by the harness
    };
    // Queues an accepted client on the listener's accept op and runs until idle.
    Client accept_client();
    // Only queues it: the next run_once() delivers it.
    Client queue_client();

    // One shard loop iteration (delivers what is queued now).
    void run_one();
    // Shard loop iterations until the fake has nothing queued.
    void run();

    // The earliest armed op of a type (on fd when fd >= 0), or nullptr.
    engine::Op* armed(engine::OpType type, int fd = -1) const { return fake_->armed_op(type, fd); }
    engine::Op* recv_on(int fd) const { return armed(engine::OpType::kRecv, fd); }
    engine::Op* send_on(int fd) const { return armed(engine::OpType::kSend, fd); }
    engine::Op* connect_op() const { return armed(engine::OpType::kConnect); }
    // The fd an armed op works on.
    int fd_of(const engine::Op& op) const;
    // The port an armed connect dials.
    uint16_t port_of(const engine::Op& connect) const;
    // Armed ops other than the listener's accept.
    size_t session_ops_armed() const;
    // How often `fd` was closed through the engine, counting from closed_fds()[from].
    size_t closes_of(int fd, size_t from = 0) const;
    size_t closes_so_far() const { return fake_->closed_fds().size(); }

    // Really connects the socket behind an armed connect op to `listener` (a backend_listener)
    // and returns the backend's end of the connection (owned by the harness): the test can then
    // observe what the product does to its upstream socket (shutdown, close). The fake still
    // has to complete the op.
    int connect_for_real(const engine::Op& connect, int listener);

    // Keeps an fd the test opened, closed when the harness goes.
    int own(int fd);

    // The end-of-test checks. finish() = expect_idle() (unless stopped), stop(), expect_clean().
    // Before stopping: no session, nothing armed but the accept op, nothing queued, every buffer
    // back, no fd open but the listener's.
    void expect_idle();
    void stop();
    // After stopping: the fake's leftovers (the listener socket aside: the shard closes it
    // itself, not through the engine) and violations are empty.
    void expect_clean();
    void finish();
    bool stopped() const { return stopped_; }

  private:
    engine::FakeEngine* fake_ = nullptr;  // owned by shard_
    std::unique_ptr<shard::Shard> shard_;
    int listener_fd_ = -1;
    bool stopped_ = false;
    std::vector<common::Fd> owned_;
};

// Fixture: builds a harness on demand; every test ends with the harness's checks and with as
// many fds open in the process as before it started.
class ShardTest : public ::testing::Test {
  protected:
    void SetUp() override { fds_before_ = open_fd_count(); }
    void TearDown() override;

    ShardHarness& start(const std::string& toml, HarnessOptions options = {});

    std::unique_ptr<ShardHarness> h_;
    size_t fds_before_ = 0;
};

}  // namespace ringlb::test
