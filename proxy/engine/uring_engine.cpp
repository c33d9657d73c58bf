#include "proxy/engine/uring_engine.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace ringlb::engine {

namespace {

// user_data carries an Op pointer (8-byte aligned) or one of these tags in its low bits.
constexpr uint64_t kTagMask = 7;
constexpr uint64_t kTagIgnore = 1;  // link timeouts and cancel requests: results not needed
constexpr uint64_t kTagWake = 2;    // the eventfd poll used by wake()
constexpr uint16_t kBufferGroup = 0;

[[noreturn]] void fail(int err, const char* what) {
    throw std::system_error(err, std::system_category(), what);
}

}  // namespace

UringEngine::UringEngine(const EngineParams& params)
    : buffer_size_(params.buffer_size), buffer_count_(params.buffer_count) {
    if (buffer_count_ == 0 || (buffer_count_ & (buffer_count_ - 1)) != 0 || buffer_count_ > 32768)
        fail(EINVAL, "io_uring buffer count must be a power of two <= 32768");

    io_uring_params p{};
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
              IORING_SETUP_CQSIZE;
    p.cq_entries = params.entries * 4;
    int ret = io_uring_queue_init_params(params.entries, &ring_, &p);
    if (ret == -EINVAL) {
        // Kernels before 6.1 lack DEFER_TASKRUN; COOP_TASKRUN (5.19) still avoids IPIs.
        p = io_uring_params{};
        p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
        p.cq_entries = params.entries * 4;
        ret = io_uring_queue_init_params(params.entries, &ring_, &p);
    }
    if (ret < 0) fail(-ret, "io_uring_queue_init");
    ring_ready_ = true;

    // Provided-buffer ring: the kernel picks a buffer only when data arrives, so an idle
    // connection holds no receive memory.
    long page = sysconf(_SC_PAGESIZE);
    buf_ring_bytes_ = (buffer_count_ * sizeof(io_uring_buf) + page - 1) / page * page;
    void* ring_mem =
        mmap(nullptr, buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring_mem == MAP_FAILED) fail(errno, "mmap buffer ring");
    buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
    buffers_bytes_ = static_cast<size_t>(buffer_count_) * buffer_size_;
    void* buf_mem =
        mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf_mem == MAP_FAILED) fail(errno, "mmap buffers");
    buffers_ = static_cast<char*>(buf_mem);

    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
    reg.ring_entries = buffer_count_;
    reg.bgid = kBufferGroup;
    ret = io_uring_register_buf_ring(&ring_, &reg, 0);
    if (ret < 0) fail(-ret, "io_uring_register_buf_ring");
    io_uring_buf_ring_init(buf_ring_);
    buf_ring_mask_ = io_uring_buf_ring_mask(buffer_count_);
    // Lowest ids on top, so a shard at rest touches the start of the pool first.
    spare_.reserve(buffer_count_);
    for (uint32_t i = buffer_count_; i-- > 0;) spare_.push_back(static_cast<uint16_t>(i));
    buffers_free_ = buffer_count_;
    refill_ring();
    buffer_lent_.assign(buffer_count_, 0);

    wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_fd_) fail(errno, "eventfd");
    arm_wake();
}

UringEngine::~UringEngine() {
    if (ring_ready_) {
        // Closes prepared in the last loop turn must still happen.
        io_uring_submit(&ring_);
        io_uring_queue_exit(&ring_);
    }
    if (buffers_) munmap(buffers_, buffers_bytes_);
    if (buf_ring_) munmap(buf_ring_, buf_ring_bytes_);
}

io_uring_sqe* UringEngine::get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
        // The submission queue is full: flush it. The timespecs it referenced were read at
        // submission, so they can go too.
        refill_ring();
        io_uring_submit(&ring_);
        timespecs_.clear();
        sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;  // never null after a flush: the SQ was just emptied
}

__kernel_timespec* UringEngine::stash_timespec(Millis duration) {
    auto ms = duration.count() < 0 ? 0 : duration.count();
    timespecs_.push_back(__kernel_timespec{ms / 1000, (ms % 1000) * 1000000});
    return &timespecs_.back();
}

void UringEngine::arm_wake() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_multishot(sqe, wake_fd_.get(), POLLIN);
    io_uring_sqe_set_data64(sqe, kTagWake);
}

void UringEngine::accept(Op& op, int listen_fd) {
    set_armed(op, OpType::kAccept, listen_fd);
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &op);
}

void UringEngine::connect(Op& op, int fd, const sockaddr* addr, socklen_t len, Millis timeout) {
    set_armed(op, OpType::kConnect, fd);
    // The connect and its link timeout must go out in the same submission.
    if (io_uring_sq_space_left(&ring_) < 2) {
        refill_ring();
        io_uring_submit(&ring_);
        timespecs_.clear();
    }
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_connect(sqe, fd, addr, len);
    io_uring_sqe_set_data(sqe, &op);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe* to = get_sqe();
    io_uring_prep_link_timeout(to, stash_timespec(timeout), 0);
    io_uring_sqe_set_data64(to, kTagIgnore);
}

void UringEngine::poll(Op& op, int fd, uint32_t mask) {
    set_armed(op, OpType::kPoll, fd);
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_multishot(sqe, fd, mask);
    io_uring_sqe_set_data(sqe, &op);
}

void UringEngine::recv(Op& op, int fd) {
    set_armed(op, OpType::kRecv, fd);
    op.mask_ = 1;  // multishot, for a re-submission after a dry ring
    ++armed_recvs_;
    prep_recv_multishot(op, fd);
}

void UringEngine::prep_recv_multishot(Op& op, int fd) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data(sqe, &op);
}

void UringEngine::recv_once(Op& op, int fd) {
    set_armed(op, OpType::kRecv, fd);
    op.mask_ = 0;
    ++armed_recvs_;
    prep_recv_once(op, fd);
}

void UringEngine::prep_recv_once(Op& op, int fd) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv(sqe, fd, nullptr, buffer_size_, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data(sqe, &op);
}

void UringEngine::send(Op& op, int fd, const void* data, size_t len) {
    set_armed(op, OpType::kSend, fd);
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_send(sqe, fd, data, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &op);
}

void UringEngine::timer(Op& op, Millis after) {
    set_armed(op, OpType::kTimer, -1);
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_timeout(sqe, stash_timespec(after), 0, 0);
    io_uring_sqe_set_data(sqe, &op);
}

void UringEngine::cancel(Op& op) {
    if (!op.armed_ || op.cancelling_) return;
    op.cancelling_ = true;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel(sqe, &op, 0);
    io_uring_sqe_set_data64(sqe, kTagIgnore);
}

void UringEngine::close_fd(int fd) {
    // Batched with the other submissions of this loop turn instead of a syscall per fd. The fd
    // number stays taken until the submission, so it cannot be reused before then.
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, kTagIgnore);
}

std::span<char> UringEngine::buffer(uint16_t buffer_id) {
    return {buffers_ + static_cast<size_t>(buffer_id) * buffer_size_, buffer_size_};
}

void UringEngine::release_buffer(uint16_t buffer_id) {
    // A double release would put one buffer in the ring twice and let two receives share it.
    if (buffer_id >= buffer_count_ || !buffer_lent_[buffer_id]) return;
    buffer_lent_[buffer_id] = 0;
    spare_.push_back(buffer_id);  // back into the ring at the next submission (refill_ring)
    ++buffers_free_;
}

void UringEngine::refill_ring() {
    // Our count can only overstate what the ring holds (the kernel may have taken buffers whose
    // completions are not read yet), so the ring never receives more than it has room for.
    uint32_t target = std::min(buffer_count_, armed_recvs_ + kRingSlack);
    int added = 0;
    while (in_ring_ < target && !spare_.empty()) {
        uint16_t id = spare_.back();
        spare_.pop_back();
        io_uring_buf_ring_add(buf_ring_, buffers_ + static_cast<size_t>(id) * buffer_size_,
                              buffer_size_, id, buf_ring_mask_, added++);
        ++in_ring_;
    }
    if (added) io_uring_buf_ring_advance(buf_ring_, added);
}

void UringEngine::wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
}

void UringEngine::handle(const io_uring_cqe* cqe) {
    uint64_t ud = cqe->user_data;
    uint64_t tag = ud & kTagMask;
    if (tag == kTagIgnore) return;
    if (tag == kTagWake) {
        [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &wake_value_, sizeof(wake_value_));
        if (!(cqe->flags & IORING_CQE_F_MORE)) arm_wake();
        return;
    }
    Op& op = *reinterpret_cast<Op*>(ud);
    Completion c;
    c.res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        c.flags |= kBuffer;
        c.buffer_id = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        buffer_lent_[c.buffer_id] = 1;
        --buffers_free_;
        --in_ring_;
    }
    if (cqe->flags & IORING_CQE_F_MORE) {
        c.flags |= kMore;
    } else {
        if (op.type_ == OpType::kRecv) {
            // The ring ran dry but spare buffers remain: receive again (the next submission
            // refills the ring first) instead of reporting an exhaustion that did not happen.
            if (c.res == -ENOBUFS && !spare_.empty() && !op.cancelling_) {
                if (op.mask_)
                    prep_recv_multishot(op, op.fd_);
                else
                    prep_recv_once(op, op.fd_);
                return;
            }
            --armed_recvs_;
        }
        op.armed_ = false;
        switch (op.type_) {
            case OpType::kConnect:
                // The linked timeout cancels the connect: report that as a timeout.
                if (c.res == -ECANCELED && !op.cancelling_) c.res = -ETIMEDOUT;
                break;
            case OpType::kTimer:
                if (c.res == -ETIME) c.res = 0;
                break;
            default:
                break;
        }
    }
    op.handler_->on_complete(op, c);
}

void UringEngine::run_once(Millis max_wait) {
    refill_ring();
    io_uring_cqe* cqe = nullptr;
    int ret;
    if (max_wait.count() <= 0) {
        ret = io_uring_submit_and_get_events(&ring_);
    } else {
        __kernel_timespec ts{max_wait.count() / 1000, (max_wait.count() % 1000) * 1000000};
        ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    }
    timespecs_.clear();
    (void)ret;  // -ETIME / -EINTR just mean "nothing yet"; completions are read below either way

    // Handlers may submit new SQEs while we iterate; they go out with the next run_once.
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
        handle(cqe);
        ++seen;
    }
    if (seen) io_uring_cq_advance(&ring_, seen);
}

}  // namespace ringlb::engine
