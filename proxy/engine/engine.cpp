#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "proxy/engine/engine.hpp"
#include "proxy/engine/epoll_engine.hpp"
#include "proxy/engine/uring_engine.hpp"

namespace ringlb::engine {

namespace {

std::string setup_failure_reason(int err) {
    std::string reason = "io_uring_setup failed: " + std::string(std::strerror(err));
    if (err == EPERM) {
        int disabled = 0;
        std::ifstream knob("/proc/sys/kernel/io_uring_disabled");
        if (knob >> disabled && disabled != 0)
            reason += " (kernel.io_uring_disabled=" + std::to_string(disabled) + ")";
        else
            reason += " (blocked by a seccomp profile, e.g. Docker 25+ or containerd 2.0 defaults)";
    } else if (err == ENOSYS) {
        reason += " (kernel built without io_uring)";
    }
    return reason;
}

}  // namespace

UringSupport probe_io_uring() {
    UringSupport out;
    io_uring ring{};
    int ret = io_uring_queue_init(8, &ring, 0);
    if (ret < 0) {
        out.reason = setup_failure_reason(-ret);
        return out;
    }
    struct RingGuard {
        io_uring* r;
        ~RingGuard() { io_uring_queue_exit(r); }
    } guard{&ring};

    io_uring_probe* probe = io_uring_get_probe_ring(&ring);
    if (probe == nullptr) {
        out.reason = "IORING_REGISTER_PROBE failed (kernel too old)";
        return out;
    }
    struct Needed {
        int op;
        const char* name;
    };
    static constexpr Needed kNeeded[] = {
        {IORING_OP_ACCEPT, "ACCEPT"},
        {IORING_OP_CONNECT, "CONNECT"},
        {IORING_OP_POLL_ADD, "POLL_ADD"},
        {IORING_OP_RECV, "RECV"},
        {IORING_OP_SEND, "SEND"},
        {IORING_OP_TIMEOUT, "TIMEOUT"},
        {IORING_OP_LINK_TIMEOUT, "LINK_TIMEOUT"},
        {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        {IORING_OP_CLOSE, "CLOSE"},
    };
    for (const auto& need : kNeeded) {
        if (!io_uring_opcode_supported(probe, need.op)) {
            out.reason = std::string("io_uring lacks IORING_OP_") + need.name;
            io_uring_free_probe(probe);
            return out;
        }
    }
    io_uring_free_probe(probe);

    // Provided-buffer rings arrived with multishot accept/recv (5.19); one check covers both.
    alignas(4096) static thread_local io_uring_buf probe_ring[8];
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(probe_ring);
    reg.ring_entries = 8;
    reg.bgid = 0;
    ret = io_uring_register_buf_ring(&ring, &reg, 0);
    if (ret < 0) {
        out.reason = "io_uring provided-buffer rings unsupported (need Linux 5.19+): " +
                     std::string(std::strerror(-ret));
        return out;
    }
    out.usable = true;
    return out;
}

std::unique_ptr<Engine> make_engine(EngineChoice choice, const EngineParams& params) {
    switch (choice) {
        case EngineChoice::kEpoll:
            return std::make_unique<EpollEngine>(params);
        case EngineChoice::kIoUring: {
            UringSupport support = probe_io_uring();
            if (!support.usable)
                throw std::runtime_error("io_uring unavailable: " + support.reason);
            return std::make_unique<UringEngine>(params);
        }
        case EngineChoice::kAuto:
            break;
    }
    if (probe_io_uring().usable) {
        try {
            return std::make_unique<UringEngine>(params);
        } catch (const std::system_error&) {
            // Fall through to epoll: the caller logs the engine it got.
        }
    }
    return std::make_unique<EpollEngine>(params);
}

}  // namespace ringlb::engine
