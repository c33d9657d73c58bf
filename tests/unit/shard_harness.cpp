#include "tests/unit/shard_harness.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "config/config.hpp"
#include "proxy/shard/snapshot.hpp"

namespace ringlb::test {

size_t open_fd_count() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return 0;
    size_t n = 0;
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] != '.') ++n;
    }
    ::closedir(dir);
    return n;
}

std::string config_for(const std::vector<uint16_t>& ports, const std::string& cluster_extra,
                       const std::string& listener_extra, const std::string& backend_extra) {
    std::string text =
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\ncluster = \"app\"\n" +
        listener_extra + "\n[[cluster]]\nname = \"app\"\nbackends = [";
    for (size_t i = 0; i < ports.size(); ++i) {
        text += (i ? ", " : " ") + std::string("{ address = \"127.0.0.1:") +
                std::to_string(ports[i]) + "\"" + backend_extra + " }";
    }
    return text + " ]\n" + cluster_extra + "\n";
}

size_t close_count(const upstream::BackendState& b, upstream::CloseReason reason) {
    return b.counters.closes[static_cast<size_t>(reason)].get();
}

size_t failure_count(const upstream::BackendState& b, upstream::ConnectFailure failure) {
    return b.counters.connect_failures[static_cast<size_t>(failure)].get();
}

size_t failures_total(const upstream::BackendState& b) {
    size_t n = 0;
    for (const auto& c : b.counters.connect_failures) n += c.get();
    return n;
}

size_t armings(const engine::FakeEngine& fake, engine::OpType type, int fd) {
    return static_cast<size_t>(
        std::count_if(fake.history().begin(), fake.history().end(),
                      [&](const engine::ArmedOp& a) { return a.type == type && a.fd == fd; }));
}

void release_held(engine::FakeEngine& fake) {
    std::vector<engine::Op*> held;
    for (const engine::ArmedOp* rec : fake.armed_ops())
        if (rec->cancel_held) held.push_back(rec->op);
    for (engine::Op* op : held) fake.release_cancel(*op);
}

common::Fd backend_listener(uint16_t* port) {
    std::error_code ec;
    common::Fd fd = common::listen_tcp(*common::parse_address("127.0.0.1:0"), 16, ec);
    EXPECT_TRUE(fd) << ec.message();
    *port = fd ? common::local_address(fd.get()).port() : 0;
    return fd;
}

std::string peer_state(int fd) {
    char buf[4096];
    std::string data;
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            data.append(buf, static_cast<size_t>(n));
            continue;
        }
        if (!data.empty()) return data;
        if (n == 0) return "<eof>";
        if (errno == EAGAIN || errno == EWOULDBLOCK) return "<eagain>";
        return std::string("<error: ") + std::strerror(errno) + ">";
    }
}

ShardHarness::ShardHarness(const std::string& toml, HarnessOptions options) {
    auto config =
        std::make_shared<const config::Config>(config::load_string(toml, "unit-test.toml"));
    auto snapshot = std::make_shared<const shard::Snapshot>(config);

    std::vector<common::Fd> listeners;
    for (size_t i = 0; i < config->listeners.size(); ++i) {
        std::error_code ec;
        common::Fd fd = common::listen_tcp(*common::parse_address("127.0.0.1:0"), 16, ec);
        EXPECT_TRUE(fd) << ec.message();
        if (i == 0) listener_fd_ = fd.get();
        listeners.push_back(std::move(fd));
    }

    shard::ShardOptions shard_options;
    shard_options.engine_params.buffer_count = options.buffer_count;
    shard_options.engine_params.buffer_size = options.buffer_size;
    shard_options.pipe_pool = 0;
    shard_options.shards = options.shards;
    shard_options.report_outcome = options.report_outcome;
    shard_ = std::make_unique<shard::Shard>(shard_options, snapshot, std::move(listeners));

    engine::FakeParams params;
    params.buffer_count = options.buffer_count;
    params.buffer_size = options.buffer_size;
    params.close_real_fds = true;
    auto fake = std::make_unique<engine::FakeEngine>(params);
    fake_ = fake.get();
    shard_->start_on(std::move(fake));
}

ShardHarness::~ShardHarness() {
    // A test that failed half-way still must not leave sessions (and their sockets) behind.
    if (!stopped_) stop();
    shard_.reset();
}

ShardHarness::Client ShardHarness::accept_client() {
    Client client = queue_client();
    run();
    return client;
}

ShardHarness::Client ShardHarness::queue_client() {
    int pair[2] = {-1, -1};
    int rc = ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair);
    EXPECT_EQ(rc, 0) << std::strerror(errno);
    if (rc != 0) return {};
    own(pair[1]);
    engine::Op* accept = armed(engine::OpType::kAccept, listener_fd_);
    EXPECT_NE(accept, nullptr) << "the listener's accept op is not armed";
    if (accept == nullptr) {
        ::close(pair[0]);
        return {};
    }
    fake_->accept_fd(*accept, pair[0]);
    return Client{pair[0], pair[1]};
}

void ShardHarness::run_one() {
    shard_->run_once(engine::Millis{0});
}

void ShardHarness::run() {
    for (int i = 0; i < 100 && fake_->queued() > 0; ++i) run_one();
    EXPECT_EQ(fake_->queued(), 0u) << "completions still queued after 100 loop iterations";
}

int ShardHarness::fd_of(const engine::Op& op) const {
    const engine::ArmedOp* rec = fake_->find(op);
    return rec == nullptr ? -1 : rec->fd;
}

uint16_t ShardHarness::port_of(const engine::Op& connect) const {
    const engine::ArmedOp* rec = fake_->find(connect);
    if (rec == nullptr || rec->type != engine::OpType::kConnect) return 0;
    if (rec->addr.ss_family == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in&>(rec->addr).sin_port);
    if (rec->addr.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6&>(rec->addr).sin6_port);
    return 0;
}

size_t ShardHarness::session_ops_armed() const {
    size_t n = 0;
    for (const engine::ArmedOp* rec : fake_->armed_ops())
        if (!(rec->type == engine::OpType::kAccept && rec->fd == listener_fd_)) ++n;
    return n;
}

size_t ShardHarness::closes_of(int fd, size_t from) const {
    const std::vector<int>& closed = fake_->closed_fds();
    if (from >= closed.size()) return 0;
    return static_cast<size_t>(
        std::count(closed.begin() + static_cast<ptrdiff_t>(from), closed.end(), fd));
}

int ShardHarness::own(int fd) {
    owned_.emplace_back(fd);
    return fd;
}

int ShardHarness::connect_for_real(const engine::Op& connect, int listener) {
    const engine::ArmedOp* rec = fake_->find(connect);
    EXPECT_TRUE(rec != nullptr && rec->type == engine::OpType::kConnect);
    if (rec == nullptr) return -1;
    int rc = ::connect(rec->fd, reinterpret_cast<const sockaddr*>(&rec->addr), rec->addr_len);
    EXPECT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
    pollfd pfd{rec->fd, POLLOUT, 0};
    EXPECT_EQ(::poll(&pfd, 1, 2000), 1);
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(rec->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    EXPECT_EQ(err, 0) << std::strerror(err);
    pollfd lfd{listener, POLLIN, 0};
    EXPECT_EQ(::poll(&lfd, 1, 2000), 1);
    int accepted = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    EXPECT_GE(accepted, 0) << std::strerror(errno);
    return accepted < 0 ? -1 : own(accepted);
}

void ShardHarness::expect_idle() {
    EXPECT_EQ(shard_->session_count(), 0u);
    EXPECT_EQ(session_ops_armed(), 0u) << "ops still armed with no session left";
    EXPECT_EQ(fake_->queued(), 0u);
    EXPECT_EQ(fake_->buffers_free(), fake_->buffer_count()) << "buffers not released";
    std::vector<int> open = fake_->open_fds();
    open.erase(std::remove(open.begin(), open.end(), listener_fd_), open.end());
    EXPECT_TRUE(open.empty()) << open.size() << " fds handed to the shard are still open, e.g. "
                              << open.front();
    for (const auto& cs : shard_->connector().clusters()) {
        EXPECT_EQ(cs->queue_length, 0u);
        EXPECT_EQ(cs->counters.queue_length.get(), 0u);
        for (const upstream::BackendState& b : cs->backends) {
            EXPECT_EQ(b.active, 0u) << "backend " << b.backend->name;
            EXPECT_EQ(b.counters.active_connections.get(), 0u) << "backend " << b.backend->name;
        }
    }
}

void ShardHarness::stop() {
    stopped_ = true;
    shard_->stop_here();
}

void ShardHarness::expect_clean() {
    EXPECT_EQ(shard_->session_count(), 0u);
    EXPECT_EQ(fake_->buffers_free(), fake_->buffer_count());
    std::vector<std::string> left = fake_->leftovers();
    // The shard closes its listening socket itself (RAII), not through the engine.
    std::string listener = "fd " + std::to_string(listener_fd_) + " open";
    left.erase(std::remove(left.begin(), left.end(), listener), left.end());
    for (const std::string& l : left) ADD_FAILURE() << "leftover: " << l;
    for (const std::string& v : fake_->violations()) ADD_FAILURE() << "violation: " << v;
}

void ShardHarness::finish() {
    if (!stopped_) {
        expect_idle();
        stop();
    }
    expect_clean();
}

void ShardTest::TearDown() {
    if (h_) {
        h_->finish();
        h_.reset();
    }
    EXPECT_EQ(open_fd_count(), fds_before_) << "the test leaked fds";
}

ShardHarness& ShardTest::start(const std::string& toml, HarnessOptions options) {
    h_ = std::make_unique<ShardHarness>(toml, options);
    return *h_;
}

}  // namespace ringlb::test
