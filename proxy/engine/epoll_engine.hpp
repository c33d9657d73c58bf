#pragma once

#include <sys/epoll.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/fd.hpp"
#include "proxy/engine/engine.hpp"

namespace ringlb::engine {

// Readiness-based implementation of the seam for hosts where io_uring is blocked (container
// seccomp profiles, kernel.io_uring_disabled) or missing. One edge-triggered epoll instance; each
// fd is registered once, the first time an operation has to wait on it, and the syscall is then
// retried in user space on every edge. Completions are delivered only from run_once(): results
// known at arming time wait in a FIFO, so the caller sees the same ordering rules as io_uring.
//
// Multishot recv assumes stream sockets: a short read on an edge without RDHUP/HUP/ERR is taken
// to mean the socket is drained (saves the trailing EAGAIN syscall).
//
// Fds used with the engine should be closed with close_fd(). Accepted, adopted and connecting
// sockets tolerate a plain close() (their fd number is treated as new), other fds do not.
class EpollEngine final : public Engine {
  public:
    // Throws std::system_error when epoll, the eventfd or the buffer pool cannot be created.
    explicit EpollEngine(const EngineParams& params);
    ~EpollEngine() override = default;

    const char* name() const override { return "epoll"; }
    void accept(Op& op, int listen_fd) override;
    void connect(Op& op, int fd, const sockaddr* addr, socklen_t len, Millis timeout) override;
    void poll(Op& op, int fd, uint32_t mask) override;
    void recv(Op& op, int fd) override;
    void recv_once(Op& op, int fd) override;
    void send(Op& op, int fd, const void* data, size_t len) override;
    void timer(Op& op, Millis after) override;
    void cancel(Op& op) override;
    void close_fd(int fd) override;
    void adopt_fd(int fd) override { forget_registration(fd); }
    std::span<char> buffer(uint16_t buffer_id) override;
    void release_buffer(uint16_t buffer_id) override;
    uint32_t buffers_free() const override { return static_cast<uint32_t>(free_buffers_.size()); }
    void run_once(Millis max_wait) override;
    void wake() override;

  private:
    // One slot per fd-bound operation type; at most one op of each type per fd.
    enum Slot : int { kAcceptSlot, kConnectSlot, kPollSlot, kRecvSlot, kSendSlot, kSlotCount };

    struct FdRecord {
        std::array<Op*, kSlotCount> ops{};  // armed ops waiting for readiness on this fd
        uint32_t generation = 0;            // high half of epoll_event.data.u64
        bool registered = false;
    };

    struct OpList {
        Op* head = nullptr;
        Op* tail = nullptr;
        size_t size = 0;
    };

    struct Unmap {
        size_t bytes;
        void operator()(char* p) const;
    };

    static int slot_of(OpType type);

    // Registration and fd bookkeeping.
    int ensure_registered(int fd);
    void forget_registration(int fd);
    enum class Attach { kFailed, kKnownFd, kNewFd };
    Attach attach(Op& op, int slot);
    void detach(Op& op);
    bool waiting(const Op* op, int slot, int fd, uint32_t generation) const;

    // Completion plumbing.
    void push(OpList& list, Op& op);
    Op* pop(OpList& list);
    void finish(Op& op, int32_t res);
    void kick(Op& op);
    void kick_later(Op& op);
    void service(Op& op);
    void deliver_more(Op& op, const Completion& completion);
    void deliver_final(Op& op);

    // Per-type work on readiness.
    void dispatch(int fd, uint32_t generation, uint32_t events);
    void complete_connect(Op& op, uint32_t events);
    bool progress_send(Op& op);
    void service_accept(Op& op, uint32_t generation);
    void service_recv(Op& op, uint32_t generation, uint32_t events);

    // Timers (and connect deadlines): a binary min-heap; an op's heap index lives in Op::done_.
    void heap_push(Op& op);
    void heap_remove(Op& op);
    void heap_sift_up(size_t i);
    void heap_sift_down(size_t i);
    void fire_timers();
    int wait_timeout(Millis max_wait) const;

    common::Fd epoll_fd_;
    common::Fd wake_fd_;
    std::vector<FdRecord> fds_;

    uint32_t buffer_size_ = 0;
    uint32_t buffer_count_ = 0;
    std::unique_ptr<char, Unmap> pool_;
    std::vector<uint16_t> free_buffers_;
    std::vector<uint8_t> buffer_in_use_;

    std::vector<Op*> timers_;
    OpList deferred_;  // final results and first-look work queued outside run_once
    OpList ready_;     // ops that hit their per-wakeup work bound; resumed next run_once
    std::array<epoll_event, 256> events_{};
};

}  // namespace ringlb::engine
