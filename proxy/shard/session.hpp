#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/fd.hpp"
#include "config/config.hpp"
#include "proxy/engine/engine.hpp"
#include "proxy/shard/pipe_pool.hpp"

namespace ringlb::upstream {
struct Cluster;
}

namespace ringlb::shard {

class Shard;

// One proxied connection: a client socket, an upstream socket and one pump per direction. The
// whole state machine lives here once, above the engine seam, for every engine.
//
// Lifecycle: connect (retrying other backends while no byte has moved) -> forward both
// directions (EOF on one side becomes shutdown(SHUT_WR) on the other) -> close. Teardown cancels
// every armed op and the session deletes itself only when the last one has completed, so no
// completion can ever reach freed memory.
class Session final : public engine::Handler {
  public:
    Session(Shard& shard, common::Fd client, const config::ListenerConfig& listener,
            const upstream::Cluster& cluster, size_t cluster_index);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void start();
    void on_complete(engine::Op& op, const engine::Completion& c) override;

    // Called by the shard when buffers were released after this session starved for them.
    void resume_receive();
    // Called by the shard at shutdown.
    void abort();

    // Intrusive list of the shard's sessions.
    Session* prev = nullptr;
    Session* next = nullptr;
    bool starved_listed = false;

  private:
    enum Tag : uint8_t {
        kConnect,
        kClientPoll,
        kUpstreamPoll,
        kRecvC2U,
        kRecvU2C,
        kSendC2U,
        kSendU2C,
        kFdRetry,
    };
    enum class Mode : uint8_t { kSplice, kBuffered };

    // Bytes received but not yet sent, in order. Holds engine buffer ids.
    struct Queued {
        uint16_t id;
        uint32_t len;
    };
    // Buffers a direction may hold before receiving pauses. With single-shot receives in bulk
    // mode this bounds a stalled reader's share of the shard's buffer pool.
    static constexpr size_t kHighWater = 2;
    static constexpr uint8_t kInteractiveStreak = 2;

    struct Direction {
        int src = -1;
        int dst = -1;
        Mode mode = Mode::kBuffered;
        bool src_eof = false;
        bool done = false;  // EOF forwarded as shutdown(SHUT_WR), nothing left
        // splice
        Pipe* pipe = nullptr;
        size_t in_pipe = 0;
        bool waiting_dst = false;
        bool src_fin_seen = false;  // POLLRDHUP: the source's FIN arrived, EOF follows the data
        // buffered
        engine::Op recv_op;
        engine::Op send_op;
        // A multishot receive can deliver several buffers before a pause takes effect, so the
        // queue grows on demand; it allocates nothing until data first waits.
        std::vector<Queued> queue;
        size_t q_head = 0;
        size_t head_sent = 0;
        bool starved = false;
        // Bulk streams (full buffers) receive one buffer at a time; interactive ones keep a
        // multishot receive armed, which saves a submission per message. A direction starts
        // single-shot and turns multishot only after kInteractiveStreak small messages in a
        // row (a stream that opens with a short greeting and then turns bulk would otherwise
        // take a burst of buffers from the shared pool), and back on the first full buffer.
        uint8_t small_streak = 0;
        bool c2u = true;
    };

    void connect_next();
    void on_connected();
    void on_connect_failed(int err);
    void start_direction(Direction& d, bool splice);

    // splice pump; returns false after tearing down on error
    bool pump_splice(Direction& d);
    void on_readiness(int fd, uint32_t mask);

    // buffered pump
    void on_recv(Direction& d, const engine::Completion& c);
    void on_sent(Direction& d, const engine::Completion& c);
    void send_head(Direction& d);
    void maybe_receive(Direction& d);
    void finish_direction(Direction& d);

    void count_bytes(const Direction& d, size_t n);
    void fail(int err);
    void teardown();
    bool any_armed() const;
    void maybe_destroy();
    void release_direction(Direction& d);

    Shard& shard_;
    engine::Engine& engine_;
    const config::ListenerConfig& listener_;
    const upstream::Cluster& cluster_;
    size_t cluster_index_;
    common::Fd client_;
    common::Fd upstream_;
    engine::Op connect_op_;
    engine::Op fd_retry_timer_;  // out of fds for the upstream socket: try again shortly
    engine::Op client_poll_;
    engine::Op upstream_poll_;
    Direction c2u_;
    Direction u2c_;
    uint64_t tried_ = 0;
    unsigned attempts_ = 0;
    unsigned fd_retries_ = 0;
    bool forwarding_ = false;
    bool closing_ = false;
    bool destroyed_ = false;
};

}  // namespace ringlb::shard
