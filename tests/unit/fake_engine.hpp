#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/engine/engine.hpp"

namespace ringlb::engine {

struct FakeParams {
    uint32_t buffer_size = 4096;  // bytes per receive buffer
    uint32_t buffer_count = 16;   // receive buffers in the pool
    // close_fd() also calls close(2). Off by default: a test that hands out made-up fd numbers
    // must not close the process's real fds. Turn it on when the code under test owns real
    // sockets (e.g. a session's upstream socket from socket(2)) so they do not leak.
    bool close_real_fds = false;
};

// What the fake knows about one arming of an Op.
struct ArmedOp {
    Op* op = nullptr;
    OpType type = OpType::kNone;
    int fd = -1;
    bool multishot = false;  // accept, poll, recv (not recv_once)
    uint64_t seq = 0;        // arming number: 1, 2, ... in the order ops were armed
    // send: the caller's bytes (alive until the final completion)
    const char* data = nullptr;
    size_t len = 0;
    // connect
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    Millis timeout{0};
    // poll
    uint32_t mask = 0;
    // timer
    Millis after{0};
    // timer and connect: when they expire on the fake clock (advance_clock())
    Millis deadline{0};
    bool cancelled = false;     // cancel() was called
    bool cancel_held = false;   // cancelled while hold_cancels(true): release_cancel() ends it
    bool final_queued = false;  // its final completion waits for run_once()
};

// A scripted engine for unit tests of session logic: no I/O at all. Arming calls only record;
// the test inspects what is armed and queues what happens (data, EOF, errors, short sends,
// timer fires, accepted fds). run_once() delivers the queue in order.
//
// It keeps the engine contract (engine.hpp): nothing is delivered from inside an arming or
// cancel call; every arming ends with exactly one final completion, and nothing of that arming
// follows it; armed() is cleared before the final is delivered, so the handler can re-arm;
// cancel() queues a final -ECANCELED unless a final is already queued (then it is a no-op), and
// completions queued before the cancel arrive first.
//
// Mistakes of the code under test (arming an armed op, releasing a buffer twice, closing an fd
// with an op still armed on it, ...) are violations: recorded in violations() and, unless
// set_fail_on_violation(false), reported as a gtest failure. Mistakes of the test script
// (completing an op that is not armed, data after a final, ...) always fail the test.
class FakeEngine final : public Engine {
  public:
    explicit FakeEngine(FakeParams params = {});
    ~FakeEngine() override;
    FakeEngine(const FakeEngine&) = delete;
    FakeEngine& operator=(const FakeEngine&) = delete;

    // ---- Engine ---------------------------------------------------------------------------
    const char* name() const override { return "fake"; }
    void accept(Op& op, int listen_fd) override;
    void connect(Op& op, int fd, const sockaddr* addr, socklen_t len, Millis timeout) override;
    void poll(Op& op, int fd, uint32_t mask) override;
    void recv(Op& op, int fd) override;
    void recv_once(Op& op, int fd) override;
    void send(Op& op, int fd, const void* data, size_t len) override;
    void timer(Op& op, Millis after) override;
    void cancel(Op& op) override;
    void close_fd(int fd) override;
    // Counts as handed out, as note_fd().
    void adopt_fd(int fd) override { note_fd(fd); }
    std::span<char> buffer(uint16_t buffer_id) override;
    void release_buffer(uint16_t buffer_id) override;
    uint32_t buffers_free() const override { return static_cast<uint32_t>(free_.size()); }
    // Delivers every completion queued when it was called, in order (ones queued by handlers
    // meanwhile wait for the next call). Never waits; records max_wait.
    void run_once(Millis max_wait) override;
    void wake() override { ++wakes_; }

    // ---- inspection -----------------------------------------------------------------------
    // The current arming of `op`, or nullptr when it is not armed.
    const ArmedOp* find(const Op& op) const;
    // The earliest-armed op of `type` (on `fd` when fd >= 0) whose final is not queued yet, or
    // nullptr.
    Op* armed_op(OpType type, int fd = -1) const;
    // Every armed op, in arming order.
    std::vector<const ArmedOp*> armed_ops() const;
    size_t armed_count() const { return armed_.size(); }
    // Every arming so far, in order, as recorded when armed (op pointers may be stale).
    const std::vector<ArmedOp>& history() const { return history_; }
    size_t queued() const { return queue_.size(); }

    // ---- scripting: each queues one completion for the next run_once() ---------------------
    // Raw: any type, any result. flags without kMore make it the final. With kBuffer,
    // buffer_id must be a buffer taken by the fake (see recv_data()).
    void complete(Op& op, int32_t res, uint32_t flags = 0, uint16_t buffer_id = 0);
    // recv / recv_once: takes a buffer, copies `bytes` in (1..buffer_size bytes) and queues a
    // kBuffer completion (with kMore for a multishot recv; final for recv_once). When no buffer
    // is free it queues a final -ENOBUFS instead, like a real engine, and returns false.
    bool recv_data(Op& op, std::string_view bytes);
    void recv_eof(Op& op);                       // final 0
    void recv_error(Op& op, int32_t neg_errno);  // final -errno
    void enobufs(Op& op);                        // final -ENOBUFS
    // send: completes with all bytes / the first n (0 < n < len) and appends them to wire(fd).
    void send_ok(Op& op);
    void short_send(Op& op, size_t n);
    void send_error(Op& op, int32_t neg_errno);
    void connect_ok(Op& op);
    void connect_error(Op& op, int32_t neg_errno);
    void fire_timer(Op& op);
    // accept: a kMore completion carrying `fd`, which counts as handed out (open_fds()).
    void accept_fd(Op& op, int fd);
    void accept_error(Op& op, int32_t neg_errno);  // final
    void poll_ready(Op& op, uint32_t mask);        // kMore with the ready mask

    // The cancel race: while held, cancel() marks the op cancelling but queues nothing, so the
    // test can still queue data (as io_uring may deliver CQEs produced before the cancel took
    // effect) and then end it with release_cancel() (final -ECANCELED, unless another final
    // was queued meanwhile, which then is the final).
    void hold_cancels(bool hold) { hold_cancels_ = hold; }
    void release_cancel(Op& op);

    // Fake clock for timers and connect timeouts; starts at 0. advance_clock() queues the
    // final of every armed timer (0) and connect (-ETIMEDOUT) now due, in deadline order.
    Millis now() const { return now_; }
    void advance_clock(Millis by);

    // run_once() until nothing is queued (at most max_rounds calls); returns completions
    // delivered.
    size_t run_until_idle(int max_rounds = 100);

    // ---- observations ---------------------------------------------------------------------
    // Bytes sent on fd, in completion order.
    const std::string& wire(int fd) const;
    std::string take_wire(int fd);
    const std::vector<int>& closed_fds() const { return closed_; }
    // Fds handed out (accept_fd, note_fd) or used by an arming, and not closed since.
    std::vector<int> open_fds() const;
    // Registers an fd the code under test was given directly (e.g. a session's client fd).
    void note_fd(int fd);
    uint32_t buffer_count() const { return params_.buffer_count; }
    uint32_t buffer_size() const { return params_.buffer_size; }
    size_t run_once_calls() const { return run_once_calls_; }
    Millis last_max_wait() const { return last_max_wait_; }
    size_t wakes() const { return wakes_; }
    size_t delivered() const { return delivered_; }

    const std::vector<std::string>& violations() const { return violations_; }
    void set_fail_on_violation(bool fail) { fail_on_violation_ = fail; }
    // Everything left over: armed ops, queued completions, buffers not released, open fds.
    std::vector<std::string> leftovers() const;

  private:
    struct Pending {
        Op* op;
        uint64_t seq;
        Completion completion;
    };

    ArmedOp* arm(Op& op, OpType type, int fd);  // nullptr when refused (a violation)
    // The arming a script call acts on, or nullptr (after failing the test) when it may not.
    ArmedOp* scripted(Op& op, OpType type, const char* what);
    void enqueue(ArmedOp& rec, const Completion& completion);
    void violation(std::string what);
    void seen_fd(int fd);

    FakeParams params_;
    std::vector<char> pool_;
    std::vector<uint16_t> free_;
    std::vector<bool> in_use_;
    std::unordered_map<const Op*, ArmedOp> armed_;
    std::vector<ArmedOp> history_;
    std::deque<Pending> queue_;
    uint64_t next_seq_ = 1;
    Millis now_{0};
    bool hold_cancels_ = false;
    std::map<int, std::string> wires_;
    std::vector<int> closed_;
    std::set<int> open_;
    std::vector<std::string> violations_;
    bool fail_on_violation_ = true;
    size_t run_once_calls_ = 0;
    Millis last_max_wait_{0};
    size_t wakes_ = 0;
    size_t delivered_ = 0;
};

}  // namespace ringlb::engine
