#include "proxy/engine/epoll_engine.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <system_error>

#include "common/clock.hpp"
#include "common/socket.hpp"

namespace ringlb::engine {

namespace {

// epoll_event.data.u64 of the wake eventfd; fd keys are fd | generation << 32 with fd < 2^31,
// so they can never equal it.
constexpr uint64_t kWakeKey = ~uint64_t{0};

// Engine-private flag in Op::mask_ (poll masks use only the low 16 bits): the op's final result
// sits in pending_res_ and it is queued for delivery. Such an op is armed but no longer waiting.
constexpr uint32_t kFinalPending = 1u << 31;
constexpr uint32_t kPollBits = POLLIN | POLLOUT | POLLRDHUP;
// Engine-private flag in Op::mask_ of a receive: recv_once, ends with its first buffer.
constexpr uint32_t kRecvOnce = 1u << 30;
// With kFinalPending: the final completion carries a buffer whose id is parked in Op::done_.
constexpr uint32_t kFinalBuffer = 1u << 29;

constexpr uint32_t kNotInHeap = UINT32_MAX;

// Work bounds per wakeup: edge triggering will not re-notify, so an op that stops early is put on
// the ready list and resumed by the next run_once without waiting.
constexpr int kMaxAcceptsPerWakeup = 64;
constexpr int kMaxRecvsPerWakeup = 16;

// Completions queued by handlers while the FIFO drains are delivered in the same run_once, up to
// this many beyond those queued at the start, so a handler that re-arms forever cannot starve
// epoll.
constexpr size_t kExtraDrainBudget = 1024;

constexpr int64_t kMaxTimerMillis = int64_t{365} * 24 * 3600 * 1000;

uint64_t deadline_after(Millis after) {
    int64_t ms = std::clamp<int64_t>(after.count(), 0, kMaxTimerMillis);
    return common::monotonic_ns() + static_cast<uint64_t>(ms) * 1'000'000u;
}

uint32_t to_poll_mask(uint32_t events) {
    uint32_t mask = 0;
    if (events & EPOLLIN) mask |= POLLIN;
    if (events & EPOLLOUT) mask |= POLLOUT;
    if (events & EPOLLRDHUP) mask |= POLLRDHUP;
    if (events & EPOLLERR) mask |= POLLERR;
    if (events & EPOLLHUP) mask |= POLLHUP;
    return mask;
}

[[noreturn]] void fail(int err, const char* what) {
    throw std::system_error(err, std::system_category(), what);
}

}  // namespace

void EpollEngine::Unmap::operator()(char* p) const {
    ::munmap(p, bytes);
}

EpollEngine::EpollEngine(const EngineParams& params)
    : buffer_size_(params.buffer_size), buffer_count_(params.buffer_count) {
    if (buffer_size_ == 0 || buffer_count_ == 0 || buffer_count_ > 65536)
        fail(EINVAL, "epoll engine: buffer_count must be 1..65536 and buffer_size > 0");

    epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_fd_) fail(errno, "epoll_create1");
    wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_fd_) fail(errno, "eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: drained on every wakeup anyway
    ev.data.u64 = kWakeKey;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) != 0)
        fail(errno, "epoll_ctl(eventfd)");

    // Anonymous mapping: pages are touched only when a buffer is first used, so an idle shard
    // does not pay RSS for the whole pool.
    size_t bytes = static_cast<size_t>(buffer_size_) * buffer_count_;
    void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) fail(errno, "mmap receive buffers");
    pool_ = std::unique_ptr<char, Unmap>(static_cast<char*>(mem), Unmap{bytes});

    free_buffers_.reserve(buffer_count_);
    for (uint32_t i = buffer_count_; i-- > 0;) free_buffers_.push_back(static_cast<uint16_t>(i));
    buffer_in_use_.assign(buffer_count_, 0);

    fds_.resize(std::max(params.max_fds, 1u));
    timers_.reserve(64);
}

int EpollEngine::slot_of(OpType type) {
    switch (type) {
        case OpType::kAccept:
            return kAcceptSlot;
        case OpType::kConnect:
            return kConnectSlot;
        case OpType::kPoll:
            return kPollSlot;
        case OpType::kRecv:
            return kRecvSlot;
        case OpType::kSend:
            return kSendSlot;
        default:
            return -1;
    }
}

// ---- registration ------------------------------------------------------------------------------

int EpollEngine::ensure_registered(int fd) {
    if (fd < 0) return EBADF;
    if (static_cast<size_t>(fd) >= fds_.size())
        fds_.resize(std::max(static_cast<size_t>(fd) + 1, fds_.size() * 2));
    FdRecord& rec = fds_[fd];
    if (rec.registered) return 0;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = static_cast<uint64_t>(fd) | (static_cast<uint64_t>(rec.generation) << 32);
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        // Still registered under an old generation (the fd was closed behind our back while a
        // duplicate kept the file alive): take it over with the current key.
        if (errno != EEXIST || ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0)
            return errno;
    }
    rec.registered = true;
    return 0;
}

void EpollEngine::forget_registration(int fd) {
    // The caller knows `fd` names a new file: any registration on record belongs to a file that
    // was closed without close_fd(), and its pending events must not reach the new one.
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    FdRecord& rec = fds_[fd];
    if (!rec.registered) return;
    ++rec.generation;
    rec.registered = false;
}

EpollEngine::Attach EpollEngine::attach(Op& op, int slot) {
    bool was_registered =
        op.fd_ >= 0 && static_cast<size_t>(op.fd_) < fds_.size() && fds_[op.fd_].registered;
    int err = ensure_registered(op.fd_);
    if (err != 0) {
        finish(op, -err);
        return Attach::kFailed;
    }
    Op*& holder = fds_[op.fd_].ops[slot];
    if (holder != nullptr && holder != &op) {
        finish(op, -EBUSY);
        return Attach::kFailed;
    }
    holder = &op;
    return was_registered ? Attach::kKnownFd : Attach::kNewFd;
}

void EpollEngine::detach(Op& op) {
    int slot = slot_of(op.type_);
    if (slot >= 0 && op.fd_ >= 0 && static_cast<size_t>(op.fd_) < fds_.size()) {
        Op*& holder = fds_[op.fd_].ops[slot];
        if (holder == &op) holder = nullptr;
    }
    if ((op.type_ == OpType::kTimer || op.type_ == OpType::kConnect) && op.done_ != kNotInHeap)
        heap_remove(op);
}

bool EpollEngine::waiting(const Op* op, int slot, int fd, uint32_t generation) const {
    // The fd record is checked first: an op that left it may already be gone.
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return false;
    const FdRecord& rec = fds_[fd];
    return rec.generation == generation && rec.ops[slot] == op && op->armed_ && !op->cancelling_ &&
           (op->mask_ & kFinalPending) == 0;
}

// ---- completion plumbing -----------------------------------------------------------------------

void EpollEngine::push(OpList& list, Op& op) {
    op.next_ = nullptr;
    op.queued_ = true;
    if (list.tail != nullptr)
        list.tail->next_ = &op;
    else
        list.head = &op;
    list.tail = &op;
    ++list.size;
}

Op* EpollEngine::pop(OpList& list) {
    Op* op = list.head;
    if (op == nullptr) return nullptr;
    list.head = op->next_;
    if (list.head == nullptr) list.tail = nullptr;
    --list.size;
    op->next_ = nullptr;
    op->queued_ = false;
    return op;
}

void EpollEngine::finish(Op& op, int32_t res) {
    // Final results always travel through the FIFO: an op already queued (for a first look or on
    // the ready list) keeps its single queue entry, so it is never delivered twice and never
    // touched after its final completion.
    detach(op);
    op.pending_res_ = res;
    op.mask_ |= kFinalPending;
    if (!op.queued_) push(deferred_, op);
}

void EpollEngine::kick(Op& op) {
    if (!op.queued_) push(deferred_, op);
}

void EpollEngine::kick_later(Op& op) {
    if (!op.queued_) push(ready_, op);
}

void EpollEngine::deliver_more(Op& op, const Completion& completion) {
    op.handler_->on_complete(op, completion);
}

void EpollEngine::deliver_final(Op& op) {
    Completion completion;
    completion.res = op.pending_res_;
    if (op.mask_ & kFinalBuffer) {
        completion.flags = kBuffer;
        completion.buffer_id = static_cast<uint16_t>(op.done_);
    }
    op.mask_ &= ~(kFinalPending | kFinalBuffer);
    op.armed_ = false;  // before the callback, so the handler may re-arm this op
    op.cancelling_ = false;
    op.handler_->on_complete(op, completion);
}

void EpollEngine::service(Op& op) {
    if (op.mask_ & kFinalPending) {
        deliver_final(op);
        return;
    }
    int slot = slot_of(op.type_);
    int fd = op.fd_;
    if (slot < 0 || fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    uint32_t generation = fds_[fd].generation;
    if (!waiting(&op, slot, fd, generation)) return;
    switch (op.type_) {
        case OpType::kAccept:
            service_accept(op, generation);
            break;
        case OpType::kRecv:
            service_recv(op, generation, 0);
            break;
        case OpType::kPoll: {
            // Readiness that existed before arming produced no edge we could see.
            uint32_t mask = (POLLIN | POLLOUT) & op.mask_;
            if (mask != 0) deliver_more(op, Completion{static_cast<int32_t>(mask), kMore, 0});
            break;
        }
        case OpType::kSend:
            progress_send(op);
            break;
        default:
            break;
    }
}

// ---- operations --------------------------------------------------------------------------------

void EpollEngine::accept(Op& op, int listen_fd) {
    assert(!op.armed_);
    set_armed(op, OpType::kAccept, listen_fd);
    op.mask_ = 0;
    // Connections may already be queued (e.g. re-armed after EMFILE) with their edge consumed:
    // look once without waiting. A new registration needs no look: EPOLL_CTL_ADD reports the
    // current state as an edge.
    if (attach(op, kAcceptSlot) == Attach::kKnownFd) kick(op);
}

void EpollEngine::connect(Op& op, int fd, const sockaddr* addr, socklen_t len, Millis timeout) {
    assert(!op.armed_);
    set_armed(op, OpType::kConnect, fd);
    op.mask_ = 0;
    op.done_ = kNotInHeap;
    if (::connect(fd, addr, len) == 0) {
        finish(op, 0);
        return;
    }
    int err = errno;
    // A non-blocking connect interrupted by a signal still proceeds in the background.
    if (err != EINPROGRESS && err != EINTR) {
        finish(op, -err);
        return;
    }
    // Only fresh sockets are connected, so a registration on record is stale.
    forget_registration(fd);
    if (attach(op, kConnectSlot) == Attach::kFailed) return;
    op.deadline_ns_ = deadline_after(timeout);
    heap_push(op);
}

void EpollEngine::poll(Op& op, int fd, uint32_t mask) {
    assert(!op.armed_);
    set_armed(op, OpType::kPoll, fd);
    op.mask_ = mask & kPollBits;
    if (attach(op, kPollSlot) == Attach::kKnownFd) kick(op);
}

void EpollEngine::recv(Op& op, int fd) {
    assert(!op.armed_);
    set_armed(op, OpType::kRecv, fd);
    op.mask_ = 0;
    // Data may have arrived before arming, with its edge already consumed.
    if (attach(op, kRecvSlot) == Attach::kKnownFd) kick(op);
}

void EpollEngine::recv_once(Op& op, int fd) {
    assert(!op.armed_);
    set_armed(op, OpType::kRecv, fd);
    op.mask_ = kRecvOnce;
    if (attach(op, kRecvSlot) == Attach::kKnownFd) kick(op);
}

void EpollEngine::send(Op& op, int fd, const void* data, size_t len) {
    assert(!op.armed_);
    set_armed(op, OpType::kSend, fd);
    op.mask_ = 0;
    op.data_ = static_cast<const char*>(data);
    op.len_ = static_cast<uint32_t>(
        std::min<size_t>(len, INT32_MAX));  // res must fit; a short send is allowed
    op.done_ = 0;
    if (fd >= 0 && static_cast<size_t>(fd) < fds_.size() && fds_[fd].ops[kSendSlot] != nullptr) {
        finish(op, -EBUSY);  // two sends on one fd would interleave their bytes
        return;
    }
    if (progress_send(op)) return;
    int err = ensure_registered(fd);
    if (err != 0) {
        finish(op, op.done_ > 0 ? static_cast<int32_t>(op.done_) : -err);
        return;
    }
    fds_[fd].ops[kSendSlot] = &op;
}

void EpollEngine::timer(Op& op, Millis after) {
    assert(!op.armed_);
    set_armed(op, OpType::kTimer, -1);
    op.mask_ = 0;
    op.done_ = kNotInHeap;
    op.deadline_ns_ = deadline_after(after);
    heap_push(op);
}

void EpollEngine::cancel(Op& op) {
    // An op whose final result is already queued keeps it: that result ends the operation.
    if (!op.armed_ || op.cancelling_ || (op.mask_ & kFinalPending)) return;
    op.cancelling_ = true;
    finish(op, -ECANCELED);
}

void EpollEngine::close_fd(int fd) {
    if (fd < 0) return;
    if (static_cast<size_t>(fd) < fds_.size()) {
        FdRecord& rec = fds_[fd];
        // The contract says every op has finished; if not, end them rather than strand them.
        for (Op* op : rec.ops) {
            if (op == nullptr) continue;
            op->cancelling_ = true;
            finish(*op, -ECANCELED);
        }
        // Events already fetched for this fd number carry the old generation and are dropped.
        ++rec.generation;
        rec.registered = false;
    }
    ::close(fd);
}

std::span<char> EpollEngine::buffer(uint16_t buffer_id) {
    if (buffer_id >= buffer_count_) return {};
    return {pool_.get() + static_cast<size_t>(buffer_id) * buffer_size_, buffer_size_};
}

void EpollEngine::release_buffer(uint16_t buffer_id) {
    if (buffer_id >= buffer_count_ || !buffer_in_use_[buffer_id]) return;  // double release
    buffer_in_use_[buffer_id] = 0;
    free_buffers_.push_back(buffer_id);
}

void EpollEngine::wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
}

// ---- readiness ---------------------------------------------------------------------------------

void EpollEngine::dispatch(int fd, uint32_t generation, uint32_t events) {
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    if (fds_[fd].generation != generation || !fds_[fd].registered) return;
    // Handlers run inline for kMore completions and may arm, cancel or close anything, so each
    // op is re-validated against the record (which may even be reallocated) before use.
    const std::array<Op*, kSlotCount> ops = fds_[fd].ops;

    constexpr uint32_t kErr = EPOLLERR | EPOLLHUP;
    if (ops[kConnectSlot] && (events & (EPOLLOUT | kErr)) &&
        waiting(ops[kConnectSlot], kConnectSlot, fd, generation))
        complete_connect(*ops[kConnectSlot], events);
    if (ops[kSendSlot] && (events & (EPOLLOUT | kErr)) &&
        waiting(ops[kSendSlot], kSendSlot, fd, generation))
        progress_send(*ops[kSendSlot]);
    if (ops[kPollSlot] && waiting(ops[kPollSlot], kPollSlot, fd, generation)) {
        Op& op = *ops[kPollSlot];
        uint32_t mask = to_poll_mask(events) & ((op.mask_ & kPollBits) | POLLERR | POLLHUP);
        if (mask != 0) deliver_more(op, Completion{static_cast<int32_t>(mask), kMore, 0});
    }
    if (ops[kRecvSlot] && (events & (EPOLLIN | EPOLLRDHUP | kErr)) &&
        waiting(ops[kRecvSlot], kRecvSlot, fd, generation))
        service_recv(*ops[kRecvSlot], generation, events);
    if (ops[kAcceptSlot] && (events & (EPOLLIN | kErr)) &&
        waiting(ops[kAcceptSlot], kAcceptSlot, fd, generation))
        service_accept(*ops[kAcceptSlot], generation);
}

void EpollEngine::complete_connect(Op& op, uint32_t events) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(op.fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0 && !(events & EPOLLOUT)) {
        if (!(events & EPOLLHUP)) return;  // not connected yet and no error: keep waiting
        err = ECONNRESET;
    }
    finish(op, -err);
}

bool EpollEngine::progress_send(Op& op) {
    while (op.done_ < op.len_) {
        size_t want = op.len_ - op.done_;
        ssize_t n = ::send(op.fd_, op.data_ + op.done_, want, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            op.done_ += static_cast<uint32_t>(n);
            // A short send means the socket buffer is full (and SOCK_NOSPACE is set, so freed
            // space will raise an edge): skip the syscall that would only say EAGAIN.
            if (static_cast<size_t>(n) < want) return false;
            continue;
        }
        int err = n < 0 ? errno : EIO;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return false;
        finish(op, op.done_ > 0 ? static_cast<int32_t>(op.done_) : -err);
        return true;
    }
    finish(op, static_cast<int32_t>(op.done_));
    return true;
}

void EpollEngine::service_accept(Op& op, uint32_t generation) {
    const int fd = op.fd_;
    for (int i = 0; i < kMaxAcceptsPerWakeup; ++i) {
        int conn = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn >= 0) {
            forget_registration(conn);
            deliver_more(op, Completion{conn, kMore, 0});
            if (!waiting(&op, kAcceptSlot, fd, generation)) return;
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        if (common::accept_error_is_transient(err)) continue;
        // EMFILE, ENFILE, ENOBUFS, ENOMEM and real errors end the operation; the caller pauses
        // and re-arms.
        finish(op, -err);
        return;
    }
    kick_later(op);
}

void EpollEngine::service_recv(Op& op, uint32_t generation, uint32_t events) {
    const int fd = op.fd_;
    // With an edge in hand (events != 0) and no hangup pending, a short read drained the socket:
    // any byte arriving later raises a new edge.
    const bool short_read_drains =
        events != 0 && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0;
    for (int i = 0; i < kMaxRecvsPerWakeup; ++i) {
        if (free_buffers_.empty()) {
            finish(op, -ENOBUFS);
            return;
        }
        uint16_t id = free_buffers_.back();
        free_buffers_.pop_back();
        buffer_in_use_[id] = 1;
        char* buf = pool_.get() + static_cast<size_t>(id) * buffer_size_;
        ssize_t n = ::recv(fd, buf, buffer_size_, MSG_DONTWAIT);
        if (n > 0 && (op.mask_ & kRecvOnce)) {
            // The data completion is the final one: leave the fd record, then deliver directly
            // (we are inside run_once, never inside the call that armed it).
            detach(op);
            if (op.queued_) {
                // Its first look is still queued: deliver through that entry, which would
                // otherwise touch the op after a handler freed it.
                op.pending_res_ = static_cast<int32_t>(n);
                op.done_ = id;
                op.mask_ |= kFinalPending | kFinalBuffer;
                return;
            }
            op.armed_ = false;
            op.cancelling_ = false;
            op.handler_->on_complete(op, Completion{static_cast<int32_t>(n), kBuffer, id});
            return;
        }
        if (n > 0) {
            deliver_more(op, Completion{static_cast<int32_t>(n), kMore | kBuffer, id});
            if (!waiting(&op, kRecvSlot, fd, generation)) return;
            if (short_read_drains && static_cast<size_t>(n) < buffer_size_) return;
            continue;
        }
        int err = n == 0 ? 0 : errno;
        buffer_in_use_[id] = 0;
        free_buffers_.push_back(id);
        if (n == 0) {
            finish(op, 0);
            return;
        }
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        finish(op, -err);
        return;
    }
    kick_later(op);
}

// ---- timers ------------------------------------------------------------------------------------

void EpollEngine::heap_push(Op& op) {
    op.done_ = static_cast<uint32_t>(timers_.size());
    timers_.push_back(&op);
    heap_sift_up(op.done_);
}

void EpollEngine::heap_remove(Op& op) {
    size_t i = op.done_;
    op.done_ = kNotInHeap;
    Op* last = timers_.back();
    timers_.pop_back();
    if (i >= timers_.size()) return;  // it was the last element
    timers_[i] = last;
    last->done_ = static_cast<uint32_t>(i);
    if (i > 0 && last->deadline_ns_ < timers_[(i - 1) / 2]->deadline_ns_)
        heap_sift_up(i);
    else
        heap_sift_down(i);
}

void EpollEngine::heap_sift_up(size_t i) {
    Op* op = timers_[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (timers_[parent]->deadline_ns_ <= op->deadline_ns_) break;
        timers_[i] = timers_[parent];
        timers_[i]->done_ = static_cast<uint32_t>(i);
        i = parent;
    }
    timers_[i] = op;
    op->done_ = static_cast<uint32_t>(i);
}

void EpollEngine::heap_sift_down(size_t i) {
    Op* op = timers_[i];
    const size_t n = timers_.size();
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && timers_[child + 1]->deadline_ns_ < timers_[child]->deadline_ns_)
            ++child;
        if (op->deadline_ns_ <= timers_[child]->deadline_ns_) break;
        timers_[i] = timers_[child];
        timers_[i]->done_ = static_cast<uint32_t>(i);
        i = child;
    }
    timers_[i] = op;
    op->done_ = static_cast<uint32_t>(i);
}

void EpollEngine::fire_timers() {
    const uint64_t now = common::monotonic_ns();
    while (!timers_.empty() && timers_.front()->deadline_ns_ <= now) {
        Op& op = *timers_.front();
        // finish() takes it off the heap (and a connect off its fd record).
        finish(op, op.type_ == OpType::kConnect ? -ETIMEDOUT : 0);
    }
}

int EpollEngine::wait_timeout(Millis max_wait) const {
    if (deferred_.head != nullptr || ready_.head != nullptr || max_wait.count() <= 0) return 0;
    int64_t timeout = std::min<int64_t>(max_wait.count(), INT_MAX);
    if (!timers_.empty()) {
        uint64_t now = common::monotonic_ns();
        uint64_t deadline = timers_.front()->deadline_ns_;
        // Round up: waking before the deadline would only spin through another wait.
        int64_t until =
            deadline <= now ? 0 : static_cast<int64_t>((deadline - now + 999'999) / 1'000'000);
        timeout = std::min(timeout, until);
    }
    return static_cast<int>(timeout);
}

// ---- the loop ----------------------------------------------------------------------------------

void EpollEngine::run_once(Millis max_wait) {
    int n = ::epoll_wait(epoll_fd_.get(), events_.data(), static_cast<int>(events_.size()),
                         wait_timeout(max_wait));
    for (int i = 0; i < n; ++i) {
        uint64_t key = events_[i].data.u64;
        if (key == kWakeKey) {
            uint64_t value = 0;
            [[maybe_unused]] ssize_t r = ::read(wake_fd_.get(), &value, sizeof(value));
            continue;
        }
        dispatch(static_cast<int>(key & 0xffffffffu), static_cast<uint32_t>(key >> 32),
                 events_[i].events);
    }
    if (!timers_.empty()) fire_timers();

    // Ops that stopped at their work bound last time; whatever stops again waits for the next
    // run_once, so a firehose cannot keep this one from returning.
    OpList resumed = ready_;
    ready_ = OpList{};
    while (Op* op = pop(resumed)) service(*op);

    size_t budget = deferred_.size + kExtraDrainBudget;
    while (budget-- > 0) {
        Op* op = pop(deferred_);
        if (op == nullptr) break;
        service(*op);
    }
}

}  // namespace ringlb::engine
