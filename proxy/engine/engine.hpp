#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace ringlb::engine {

using Millis = std::chrono::milliseconds;

// The event-engine seam. A shard's session logic talks only to this interface; the io_uring and
// epoll engines implement it. The model is completion-based (like io_uring): the caller arms an
// Op, the engine later delivers one or more completions to the Op's handler, always from inside
// run_once() and never from inside the call that armed or cancelled it.
//
// Contract shared by every engine:
//  * An Op is owned by its caller (usually embedded in a session) and must stay alive and
//    unmoved while armed(). An Op can carry one operation at a time.
//  * Every armed operation ends with exactly one final completion (flags without kMore). The
//    engine clears armed before delivering it, so the handler may re-arm the same Op from inside
//    the callback. A multishot operation delivers zero or more kMore completions first.
//  * res >= 0 is a result, res < 0 is -errno. -ECANCELED means cancel() ended it.
//  * cancel() ends an armed operation early; its final completion (usually -ECANCELED) arrives
//    later. Data completions that the kernel produced before the cancel may still arrive first.
//  * An fd's readiness and data may be delivered spuriously; handlers use non-blocking syscalls
//    and treat EAGAIN as "wait for the next edge".

enum class OpType : uint8_t { kNone, kAccept, kConnect, kPoll, kRecv, kSend, kTimer };

inline constexpr uint32_t kMore = 1u << 0;    // the operation stays armed; more will follow
inline constexpr uint32_t kBuffer = 1u << 1;  // buffer_id names an engine buffer the handler owns

struct Completion {
    int32_t res = 0;
    uint32_t flags = 0;
    uint16_t buffer_id = 0;

    bool more() const { return (flags & kMore) != 0; }
    bool has_buffer() const { return (flags & kBuffer) != 0; }
};

class Op;

class Handler {
  public:
    virtual void on_complete(Op& op, const Completion& completion) = 0;

  protected:
    ~Handler() = default;
};

class Op {
  public:
    Op() = default;
    Op(Handler* handler, uint8_t tag) : handler_(handler), tag_(tag) {}
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;

    void bind(Handler* handler, uint8_t tag) {
        handler_ = handler;
        tag_ = tag;
    }
    Handler* handler() const { return handler_; }
    uint8_t tag() const { return tag_; }
    OpType type() const { return type_; }
    bool armed() const { return armed_; }
    bool cancelling() const { return cancelling_; }
    int fd() const { return fd_; }

  private:
    friend class Engine;
    friend class UringEngine;
    friend class EpollEngine;

    // Packed to 56 bytes (was 80): a session holds six (three per leg), so this is 144 bytes
    // of every idle connection's RSS.
    Handler* handler_ = nullptr;
    // Engine-private state (used by engines that complete operations in user space).
    Op* next_ = nullptr;
    union {
        const char* data_ = nullptr;  // a send's bytes
        uint64_t deadline_ns_;        // a timer's or a connect's deadline
    };
    int fd_ = -1;
    int32_t pending_res_ = 0;
    uint32_t len_ = 0;   // a send's length (at most INT32_MAX: the result must fit)
    uint32_t done_ = 0;  // a send's progress, a timer's heap index, a parked buffer id
    uint32_t mask_ = 0;
    uint8_t tag_ = 0;
    OpType type_ = OpType::kNone;
    bool armed_ = false;
    bool cancelling_ = false;
    bool queued_ = false;
};

struct EngineParams {
    uint32_t entries = 4096;           // submission queue entries (io_uring)
    uint32_t buffer_size = 64 * 1024;  // bytes per receive buffer
    uint32_t buffer_count = 256;       // receive buffers (a power of two)
    unsigned max_fds = 65536;          // highest fd + 1 the engine must track
};

class Engine {
  public:
    virtual ~Engine() = default;

    virtual const char* name() const = 0;

    // Multishot accept on a non-blocking listening socket. Each kMore completion carries a new
    // non-blocking, close-on-exec fd in res; an error (e.g. -EMFILE) ends the operation.
    virtual void accept(Op& op, int listen_fd) = 0;

    // Connects a non-blocking socket. One completion: 0, or -errno; -ETIMEDOUT when `timeout`
    // passes first.
    virtual void connect(Op& op, int fd, const sockaddr* addr, socklen_t len, Millis timeout) = 0;

    // Multishot edge-triggered readiness for `mask` (POLLIN, POLLOUT, POLLRDHUP). res is the
    // ready mask (may include POLLERR/POLLHUP). The first completion may be spurious. A final
    // completion with res >= 0 means the engine stopped watching: re-arm if still needed.
    virtual void poll(Op& op, int fd, uint32_t mask) = 0;

    // Multishot receive into engine buffers. Each data completion has res > 0, kBuffer and
    // buffer_id; the handler owns the buffer until release_buffer(). res == 0 is EOF (final).
    // -ENOBUFS (final) means every buffer is in use: re-arm after releasing some.
    virtual void recv(Op& op, int fd) = 0;

    // Single-shot receive into one engine buffer: exactly one completion, res > 0 with kBuffer,
    // 0 at EOF, or -errno (-ENOBUFS as for recv). Bounds the buffers a bulk stream can take to
    // what its handler asked for: a multishot receive may take many buffers in one kernel pass
    // before a pause takes effect.
    virtual void recv_once(Op& op, int fd) = 0;

    // Sends bytes from memory the caller keeps alive until completion. res is the number of
    // bytes sent (possibly fewer than len) or -errno. Never raises SIGPIPE.
    virtual void send(Op& op, int fd, const void* data, size_t len) = 0;

    // One-shot timer. res == 0 when it fires.
    virtual void timer(Op& op, Millis after) = 0;

    // Ends an armed operation early (no-op when not armed or already cancelling).
    virtual void cancel(Op& op) = 0;

    // Closes an fd the caller owned. Every Op on it must have completed finally.
    virtual void close_fd(int fd) = 0;

    // Tells the engine that `fd` names a new socket the caller opened itself (e.g. accepted with
    // accept4() while closing a listener): what the engine kept about an earlier file with that
    // number is forgotten. Engines that keep nothing per fd do nothing.
    virtual void adopt_fd(int fd) { (void)fd; }

    virtual std::span<char> buffer(uint16_t buffer_id) = 0;
    virtual void release_buffer(uint16_t buffer_id) = 0;
    virtual uint32_t buffers_free() const = 0;

    // Waits up to `max_wait` (or until wake()) for completions and delivers all that are ready.
    virtual void run_once(Millis max_wait) = 0;

    // Interrupts run_once() from any thread; thread-safe, cheap.
    virtual void wake() = 0;

  protected:
    // Accessors for implementations (Op's private state is shared with engines only).
    static void set_armed(Op& op, OpType type, int fd) {
        op.type_ = type;
        op.armed_ = true;
        op.cancelling_ = false;
        op.fd_ = fd;
    }
    // Ends an operation: called just before its final completion is delivered.
    static void clear_armed(Op& op) {
        op.armed_ = false;
        op.cancelling_ = false;
    }
    static void set_cancelling(Op& op) { op.cancelling_ = true; }
};

enum class EngineChoice { kAuto, kIoUring, kEpoll };

// Result of probing io_uring on this host.
struct UringSupport {
    bool usable = false;
    std::string reason;  // why not, when !usable
};
UringSupport probe_io_uring();

// Why io_uring_setup failed with `err`, for the log. Each of ENOSYS and EPERM has two causes that
// need different fixes: ENOSYS is a kernel built without io_uring or a seccomp filter that answers
// ENOSYS (podman's default profile does, for every syscall it does not list); EPERM is
// kernel.io_uring_disabled, a seccomp filter (containerd 2.0, Docker 25+) or a security module.
// `seccomp_mode` is the Seccomp field of /proc/self/status (2: a filter is installed; -1:
// unknown), `io_uring_disabled` the sysctl (-1: unknown, e.g. before Linux 6.6).
std::string explain_setup_failure(int err, int seccomp_mode, int io_uring_disabled);

// The Seccomp field of a /proc/PID/status file: 0 none, 1 strict, 2 filter; -1 when absent.
int read_seccomp_mode(const std::string& status_path = "/proc/self/status");

// Creates the engine for one shard. With kAuto: io_uring when the probe passes, else epoll.
// Throws std::runtime_error when io_uring is forced but unusable (with the probe's reason).
std::unique_ptr<Engine> make_engine(EngineChoice choice, const EngineParams& params);

}  // namespace ringlb::engine
