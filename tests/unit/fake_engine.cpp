#include "tests/unit/fake_engine.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace ringlb::engine {

namespace {

const char* type_name(OpType type) {
    switch (type) {
        case OpType::kNone:
            return "none";
        case OpType::kAccept:
            return "accept";
        case OpType::kConnect:
            return "connect";
        case OpType::kPoll:
            return "poll";
        case OpType::kRecv:
            return "recv";
        case OpType::kSend:
            return "send";
        case OpType::kTimer:
            return "timer";
    }
    return "?";
}

}  // namespace

FakeEngine::FakeEngine(FakeParams params)
    : params_(params),
      pool_(static_cast<size_t>(params.buffer_size) * params.buffer_count),
      in_use_(params.buffer_count, false) {
    // Handed out from the back: buffer 0 first, which makes ids in tests predictable.
    for (uint32_t i = params.buffer_count; i-- > 0;) free_.push_back(static_cast<uint16_t>(i));
}

FakeEngine::~FakeEngine() = default;

void FakeEngine::violation(std::string what) {
    if (fail_on_violation_) ADD_FAILURE() << "FakeEngine: contract violation: " << what;
    violations_.push_back(std::move(what));
}

void FakeEngine::seen_fd(int fd) {
    if (fd >= 0) open_.insert(fd);
}

void FakeEngine::note_fd(int fd) {
    seen_fd(fd);
}

// ---- arming ------------------------------------------------------------------------------

ArmedOp* FakeEngine::arm(Op& op, OpType type, int fd) {
    // A refused arming changes nothing: an armed op keeps its arming (which still owes its
    // final completion), and an op with no handler could never be told anything.
    if (op.armed()) {
        violation(std::string("armed a ") + type_name(type) + " on an op still armed (" +
                  type_name(op.type()) + ")");
        return nullptr;
    }
    if (op.handler() == nullptr) {
        violation(std::string("armed a ") + type_name(type) + " on an op with no handler");
        return nullptr;
    }
    set_armed(op, type, fd);
    seen_fd(fd);
    ArmedOp rec;
    rec.op = &op;
    rec.type = type;
    rec.fd = fd;
    rec.seq = next_seq_++;
    return &armed_.insert_or_assign(&op, rec).first->second;
}

void FakeEngine::accept(Op& op, int listen_fd) {
    ArmedOp* armed = arm(op, OpType::kAccept, listen_fd);
    if (armed == nullptr) return;
    ArmedOp& rec = *armed;
    rec.multishot = true;
    history_.push_back(rec);
}

void FakeEngine::connect(Op& op, int fd, const sockaddr* addr, socklen_t len, Millis timeout) {
    ArmedOp* armed = arm(op, OpType::kConnect, fd);
    if (armed == nullptr) return;
    ArmedOp& rec = *armed;
    rec.addr_len = std::min<socklen_t>(len, sizeof(rec.addr));
    if (addr != nullptr) std::memcpy(&rec.addr, addr, rec.addr_len);
    rec.timeout = timeout;
    rec.deadline = now_ + std::max(timeout, Millis{0});
    history_.push_back(rec);
}

void FakeEngine::poll(Op& op, int fd, uint32_t mask) {
    ArmedOp* armed = arm(op, OpType::kPoll, fd);
    if (armed == nullptr) return;
    ArmedOp& rec = *armed;
    rec.multishot = true;
    rec.mask = mask;
    history_.push_back(rec);
}

void FakeEngine::recv(Op& op, int fd) {
    ArmedOp* armed = arm(op, OpType::kRecv, fd);
    if (armed == nullptr) return;
    ArmedOp& rec = *armed;
    rec.multishot = true;
    history_.push_back(rec);
}

void FakeEngine::recv_once(Op& op, int fd) {
    ArmedOp* armed = arm(op, OpType::kRecv, fd);
    if (armed == nullptr) return;
    ArmedOp& rec = *armed;
    rec.multishot = false;
    history_.push_back(rec);
}

void FakeEngine::send(Op& op, int fd, const void* data, size_t len) {
    for (const auto& [other, rec] : armed_) {
        if (other != &op && rec.type == OpType::kSend && rec.fd == fd && fd >= 0) {
            violation("two sends armed on fd " + std::to_string(fd) +
                      " (their bytes would interleave)");
            break;
        }
    }
    ArmedOp* armed = arm(op, OpType::kSend, fd);
    if (armed == nullptr) return;
    ArmedOp& rec = *armed;
    rec.data = static_cast<const char*>(data);
    rec.len = len;
    history_.push_back(rec);
}

void FakeEngine::timer(Op& op, Millis after) {
    ArmedOp* armed = arm(op, OpType::kTimer, -1);
    if (armed == nullptr) return;
    ArmedOp& rec = *armed;
    rec.after = after;
    rec.deadline = now_ + std::max(after, Millis{0});
    history_.push_back(rec);
}

void FakeEngine::cancel(Op& op) {
    auto it = armed_.find(&op);
    if (!op.armed() || it == armed_.end()) return;
    ArmedOp& rec = it->second;
    // Already cancelling: no-op. A final already queued ends the operation: cancel is a no-op.
    if (rec.cancelled || rec.final_queued) return;
    rec.cancelled = true;
    set_cancelling(op);
    if (hold_cancels_) {
        rec.cancel_held = true;
        return;
    }
    enqueue(rec, Completion{-ECANCELED, 0, 0});
}

void FakeEngine::release_cancel(Op& op) {
    auto it = armed_.find(&op);
    if (it == armed_.end() || !op.armed()) {
        ADD_FAILURE() << "FakeEngine script: release_cancel on an op that is not armed";
        return;
    }
    ArmedOp& rec = it->second;
    if (rec.final_queued) return;  // another final won the race
    if (!rec.cancel_held) {
        ADD_FAILURE() << "FakeEngine script: release_cancel on an op with no held cancel";
        return;
    }
    enqueue(rec, Completion{-ECANCELED, 0, 0});
}

void FakeEngine::close_fd(int fd) {
    if (fd < 0) return;
    for (auto& [op, rec] : armed_) {
        if (rec.fd != fd) continue;
        violation("close_fd(" + std::to_string(fd) + ") with a " + type_name(rec.type) +
                  " op still armed on it");
        // Like the real engines: end it rather than strand it without a final completion.
        if (!rec.final_queued) {
            rec.cancelled = true;
            set_cancelling(*rec.op);
            enqueue(rec, Completion{-ECANCELED, 0, 0});
        }
    }
    if (open_.erase(fd) == 0 && std::find(closed_.begin(), closed_.end(), fd) != closed_.end()) {
        violation("close_fd(" + std::to_string(fd) + ") on an fd already closed");
    }
    closed_.push_back(fd);
    if (params_.close_real_fds) ::close(fd);
}

// ---- buffers -----------------------------------------------------------------------------

std::span<char> FakeEngine::buffer(uint16_t buffer_id) {
    if (buffer_id >= params_.buffer_count) {
        violation("buffer(" + std::to_string(buffer_id) + "): no such buffer");
        return {};
    }
    if (!in_use_[buffer_id])
        violation("buffer(" + std::to_string(buffer_id) + ") read while not handed out");
    return {pool_.data() + static_cast<size_t>(buffer_id) * params_.buffer_size,
            params_.buffer_size};
}

void FakeEngine::release_buffer(uint16_t buffer_id) {
    if (buffer_id >= params_.buffer_count) {
        violation("release_buffer(" + std::to_string(buffer_id) + "): no such buffer");
        return;
    }
    if (!in_use_[buffer_id]) {
        violation("release_buffer(" + std::to_string(buffer_id) +
                  "): released twice or never handed out");
        return;
    }
    in_use_[buffer_id] = false;
    free_.push_back(buffer_id);
}

// ---- scripting ---------------------------------------------------------------------------

ArmedOp* FakeEngine::scripted(Op& op, OpType type, const char* what) {
    auto it = armed_.find(&op);
    if (it == armed_.end() || !op.armed()) {
        ADD_FAILURE() << "FakeEngine script: " << what << " on an op that is not armed";
        return nullptr;
    }
    ArmedOp& rec = it->second;
    if (type != OpType::kNone && rec.type != type) {
        ADD_FAILURE() << "FakeEngine script: " << what << " on a " << type_name(rec.type) << " op";
        return nullptr;
    }
    if (rec.final_queued) {
        ADD_FAILURE() << "FakeEngine script: " << what << " after the op's final completion";
        return nullptr;
    }
    return &rec;
}

void FakeEngine::enqueue(ArmedOp& rec, const Completion& completion) {
    if (rec.type == OpType::kSend && completion.res > 0) {
        size_t n = std::min(static_cast<size_t>(completion.res), rec.len);
        wires_[rec.fd].append(rec.data, n);
    }
    if (!completion.more()) {
        rec.final_queued = true;
        rec.cancel_held = false;
    }
    queue_.push_back(Pending{rec.op, rec.seq, completion});
}

void FakeEngine::complete(Op& op, int32_t res, uint32_t flags, uint16_t buffer_id) {
    ArmedOp* rec = scripted(op, OpType::kNone, "complete");
    if (rec == nullptr) return;
    if ((flags & kMore) && !rec->multishot) {
        ADD_FAILURE() << "FakeEngine script: kMore on a single-shot " << type_name(rec->type);
        return;
    }
    if ((flags & kBuffer) && (buffer_id >= params_.buffer_count || !in_use_[buffer_id])) {
        ADD_FAILURE() << "FakeEngine script: kBuffer with buffer " << buffer_id
                      << " that the fake did not hand out";
        return;
    }
    enqueue(*rec, Completion{res, flags, buffer_id});
}

bool FakeEngine::recv_data(Op& op, std::string_view bytes) {
    ArmedOp* rec = scripted(op, OpType::kRecv, "recv_data");
    if (rec == nullptr) return false;
    if (bytes.empty() || bytes.size() > params_.buffer_size) {
        ADD_FAILURE() << "FakeEngine script: recv_data of " << bytes.size() << " bytes (1.."
                      << params_.buffer_size << ")";
        return false;
    }
    if (free_.empty()) {
        enqueue(*rec, Completion{-ENOBUFS, 0, 0});
        return false;
    }
    uint16_t id = free_.back();
    free_.pop_back();
    in_use_[id] = true;
    std::memcpy(pool_.data() + static_cast<size_t>(id) * params_.buffer_size, bytes.data(),
                bytes.size());
    uint32_t flags = kBuffer | (rec->multishot ? kMore : 0);
    enqueue(*rec, Completion{static_cast<int32_t>(bytes.size()), flags, id});
    return true;
}

void FakeEngine::recv_eof(Op& op) {
    if (ArmedOp* rec = scripted(op, OpType::kRecv, "recv_eof")) enqueue(*rec, Completion{0, 0, 0});
}

void FakeEngine::recv_error(Op& op, int32_t neg_errno) {
    ArmedOp* rec = scripted(op, OpType::kRecv, "recv_error");
    if (rec == nullptr) return;
    if (neg_errno >= 0) {
        ADD_FAILURE() << "FakeEngine script: recv_error takes -errno, got " << neg_errno;
        return;
    }
    enqueue(*rec, Completion{neg_errno, 0, 0});
}

void FakeEngine::enobufs(Op& op) {
    if (ArmedOp* rec = scripted(op, OpType::kRecv, "enobufs"))
        enqueue(*rec, Completion{-ENOBUFS, 0, 0});
}

void FakeEngine::send_ok(Op& op) {
    if (ArmedOp* rec = scripted(op, OpType::kSend, "send_ok"))
        enqueue(*rec, Completion{static_cast<int32_t>(rec->len), 0, 0});
}

void FakeEngine::short_send(Op& op, size_t n) {
    ArmedOp* rec = scripted(op, OpType::kSend, "short_send");
    if (rec == nullptr) return;
    if (n == 0 || n >= rec->len) {
        ADD_FAILURE() << "FakeEngine script: short_send of " << n << " bytes of " << rec->len;
        return;
    }
    enqueue(*rec, Completion{static_cast<int32_t>(n), 0, 0});
}

void FakeEngine::send_error(Op& op, int32_t neg_errno) {
    ArmedOp* rec = scripted(op, OpType::kSend, "send_error");
    if (rec == nullptr) return;
    if (neg_errno >= 0) {
        ADD_FAILURE() << "FakeEngine script: send_error takes -errno, got " << neg_errno;
        return;
    }
    enqueue(*rec, Completion{neg_errno, 0, 0});
}

void FakeEngine::connect_ok(Op& op) {
    if (ArmedOp* rec = scripted(op, OpType::kConnect, "connect_ok"))
        enqueue(*rec, Completion{0, 0, 0});
}

void FakeEngine::connect_error(Op& op, int32_t neg_errno) {
    ArmedOp* rec = scripted(op, OpType::kConnect, "connect_error");
    if (rec == nullptr) return;
    if (neg_errno >= 0) {
        ADD_FAILURE() << "FakeEngine script: connect_error takes -errno, got " << neg_errno;
        return;
    }
    enqueue(*rec, Completion{neg_errno, 0, 0});
}

void FakeEngine::fire_timer(Op& op) {
    if (ArmedOp* rec = scripted(op, OpType::kTimer, "fire_timer"))
        enqueue(*rec, Completion{0, 0, 0});
}

void FakeEngine::accept_fd(Op& op, int fd) {
    ArmedOp* rec = scripted(op, OpType::kAccept, "accept_fd");
    if (rec == nullptr) return;
    if (fd < 0) {
        ADD_FAILURE() << "FakeEngine script: accept_fd of fd " << fd;
        return;
    }
    seen_fd(fd);
    enqueue(*rec, Completion{fd, kMore, 0});
}

void FakeEngine::accept_error(Op& op, int32_t neg_errno) {
    ArmedOp* rec = scripted(op, OpType::kAccept, "accept_error");
    if (rec == nullptr) return;
    if (neg_errno >= 0) {
        ADD_FAILURE() << "FakeEngine script: accept_error takes -errno, got " << neg_errno;
        return;
    }
    enqueue(*rec, Completion{neg_errno, 0, 0});
}

void FakeEngine::poll_ready(Op& op, uint32_t mask) {
    if (ArmedOp* rec = scripted(op, OpType::kPoll, "poll_ready"))
        enqueue(*rec, Completion{static_cast<int32_t>(mask), kMore, 0});
}

void FakeEngine::advance_clock(Millis by) {
    now_ += std::max(by, Millis{0});
    std::vector<ArmedOp*> due;
    for (auto& [op, rec] : armed_) {
        if ((rec.type == OpType::kTimer || rec.type == OpType::kConnect) && !rec.final_queued &&
            rec.deadline <= now_)
            due.push_back(&rec);
    }
    std::sort(due.begin(), due.end(), [](const ArmedOp* a, const ArmedOp* b) {
        return a->deadline != b->deadline ? a->deadline < b->deadline : a->seq < b->seq;
    });
    for (ArmedOp* rec : due)
        enqueue(*rec, Completion{rec->type == OpType::kConnect ? -ETIMEDOUT : 0, 0, 0});
}

// ---- delivery ----------------------------------------------------------------------------

void FakeEngine::run_once(Millis max_wait) {
    ++run_once_calls_;
    last_max_wait_ = max_wait;
    // Only what is queued now: a handler that keeps queueing cannot keep this call running.
    for (size_t n = queue_.size(); n > 0 && !queue_.empty(); --n) {
        Pending p = queue_.front();
        queue_.pop_front();
        auto it = armed_.find(p.op);
        if (it == armed_.end() || it->second.seq != p.seq) {
            ADD_FAILURE() << "FakeEngine: internal error: a completion outlived its arming";
            continue;
        }
        if (!p.completion.more()) {
            // Gone before the callback: the handler may re-arm the op (a new record).
            armed_.erase(it);
            clear_armed(*p.op);
        }
        ++delivered_;
        p.op->handler()->on_complete(*p.op, p.completion);  // may free *p.op: not touched again
    }
}

size_t FakeEngine::run_until_idle(int max_rounds) {
    size_t before = delivered_;
    for (int i = 0; i < max_rounds && !queue_.empty(); ++i) run_once(Millis{0});
    if (!queue_.empty())
        ADD_FAILURE() << "FakeEngine: still " << queue_.size() << " completions queued after "
                      << max_rounds << " rounds";
    return delivered_ - before;
}

// ---- observations ------------------------------------------------------------------------

const ArmedOp* FakeEngine::find(const Op& op) const {
    auto it = armed_.find(&op);
    return it == armed_.end() ? nullptr : &it->second;
}

Op* FakeEngine::armed_op(OpType type, int fd) const {
    const ArmedOp* best = nullptr;
    for (const auto& [op, rec] : armed_) {
        if (rec.type != type || rec.final_queued || (fd >= 0 && rec.fd != fd)) continue;
        if (best == nullptr || rec.seq < best->seq) best = &rec;
    }
    return best == nullptr ? nullptr : best->op;
}

std::vector<const ArmedOp*> FakeEngine::armed_ops() const {
    std::vector<const ArmedOp*> out;
    for (const auto& [op, rec] : armed_) out.push_back(&rec);
    std::sort(out.begin(), out.end(),
              [](const ArmedOp* a, const ArmedOp* b) { return a->seq < b->seq; });
    return out;
}

const std::string& FakeEngine::wire(int fd) const {
    static const std::string kEmpty;
    auto it = wires_.find(fd);
    return it == wires_.end() ? kEmpty : it->second;
}

std::string FakeEngine::take_wire(int fd) {
    auto it = wires_.find(fd);
    if (it == wires_.end()) return {};
    return std::exchange(it->second, std::string());
}

std::vector<int> FakeEngine::open_fds() const {
    return {open_.begin(), open_.end()};
}

std::vector<std::string> FakeEngine::leftovers() const {
    std::vector<std::string> out;
    for (const ArmedOp* rec : armed_ops()) {
        out.push_back(std::string("armed ") + type_name(rec->type) + " on fd " +
                      std::to_string(rec->fd) + " (arming " + std::to_string(rec->seq) + ")");
    }
    if (!queue_.empty()) out.push_back(std::to_string(queue_.size()) + " completions queued");
    uint32_t taken = params_.buffer_count - buffers_free();
    if (taken > 0) out.push_back(std::to_string(taken) + " buffers not released");
    for (int fd : open_) out.push_back("fd " + std::to_string(fd) + " open");
    return out;
}

}  // namespace ringlb::engine
