#include "proxy/runtime/runtime.hpp"

#include <signal.h>

#include "proxy/runtime/control_plane.hpp"

namespace ringlb::runtime {

EngineDecision decide_engine(config::EngineKind requested) {
    EngineDecision d;
    if (requested == config::EngineKind::kEpoll) {
        d.reason = "configured";
        return d;
    }
    engine::UringSupport support = engine::probe_io_uring();
    if (support.usable) {
        d.choice = engine::EngineChoice::kIoUring;
        d.name = "io_uring";
        d.reason =
            requested == config::EngineKind::kIoUring ? "configured" : "auto: io_uring available";
        return d;
    }
    if (requested == config::EngineKind::kIoUring) {
        d.ok = false;
        d.name = "io_uring";
        d.reason = support.reason;
        return d;
    }
    d.reason = "auto: io_uring unavailable: " + support.reason;
    return d;
}

sigset_t control_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&set, signo);
    return set;
}

void block_control_signals() {
    sigset_t set = control_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int run(std::shared_ptr<const config::Config> config, std::optional<common::LogLevel> cli_level,
        bool upgrade) {
    ControlPlane control(std::move(config), cli_level, upgrade);
    return control.run();
}

}  // namespace ringlb::runtime
