#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "proxy/engine/engine.hpp"
#include "proxy/engine/epoll_engine.hpp"
#include "proxy/engine/uring_engine.hpp"

namespace ringlb::engine {

namespace {

int read_int(const std::string& path) {
    std::ifstream in(path);
    int value = 0;
    return in >> value ? value : -1;
}

}  // namespace

int read_seccomp_mode(const std::string& status_path) {
    std::ifstream in(status_path);
    std::string line;
    while (std::getline(in, line)) {
        // "Seccomp:\t2"; "Seccomp_filters:" (the number of filters) is another field.
        if (line.rfind("Seccomp:", 0) != 0) continue;
        try {
            return std::stoi(line.substr(8));
        } catch (const std::exception&) {
            return -1;
        }
    }
    return -1;
}

std::string explain_setup_failure(int err, int seccomp_mode, int io_uring_disabled) {
    std::string reason = "io_uring_setup failed: " + std::string(std::strerror(err));
    constexpr std::string_view kSeccomp =
        " (io_uring blocked by a seccomp filter: /proc/self/status shows Seccomp: 2; ";
    constexpr std::string_view kAllow = "; to use io_uring, run with deploy/seccomp/ringlb.json)";
    if (err == EPERM) {
        if (io_uring_disabled > 0) {
            reason += " (kernel.io_uring_disabled=" + std::to_string(io_uring_disabled) + ")";
        } else if (seccomp_mode == 2) {
            reason.append(kSeccomp)
                .append("containerd 2.0's and Docker 25+'s default profiles answer EPERM")
                .append(kAllow);
        } else if (seccomp_mode == 0) {
            reason +=
                " (neither a seccomp filter nor kernel.io_uring_disabled: a security module "
                "such as SELinux denies io_uring)";
        } else {
            reason += " (blocked by a seccomp profile, e.g. Docker 25+ or containerd 2.0 defaults)";
        }
    } else if (err == ENOSYS) {
        if (seccomp_mode == 2) {
            reason.append(kSeccomp)
                .append("podman's default profile answers ENOSYS for the syscalls it does not list")
                .append(kAllow);
        } else {
            reason += " (kernel built without io_uring)";
        }
    }
    return reason;
}

UringSupport probe_io_uring() {
    UringSupport out;
    io_uring ring{};
    int ret = io_uring_queue_init(8, &ring, 0);
    if (ret < 0) {
        out.reason = explain_setup_failure(-ret, read_seccomp_mode(),
                                           read_int("/proc/sys/kernel/io_uring_disabled"));
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
