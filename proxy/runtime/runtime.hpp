#pragma once

#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/engine/engine.hpp"

namespace ringlb::runtime {

// Which engine a configuration gets on this host, and why.
struct EngineDecision {
    engine::EngineChoice choice = engine::EngineChoice::kEpoll;
    const char* name = "epoll";
    std::string reason;  // why epoll was chosen under "auto", or why io_uring cannot be forced
    bool ok = true;      // false when io_uring was forced but is unavailable
};
EngineDecision decide_engine(config::EngineKind requested);

// Blocks, in the calling thread, the signals run() handles (SIGINT, SIGTERM, SIGHUP, SIGUSR1),
// so one that arrives before run() (while the configuration loads) stays pending instead of
// meeting its default action; run() unblocks them once its handlers are installed.
void block_control_signals();
// The set of those signals.
sigset_t control_signals();

// Process lifecycle: installs the signal handlers, opens listeners, starts shards, runs the
// control thread (Boost.Asio: signals) until SIGTERM/SIGINT, then stops shards. A stop requested
// while shards start stops those already started and returns 0. Returns the process exit code.
// `cli_level`: --log-level, which replaces [log] level at every reload too.
// `upgrade`: --upgrade, take the running ringlb's sockets (proxy/runtime/upgrade.hpp).
int run(std::shared_ptr<const config::Config> config,
        std::optional<common::LogLevel> cli_level = std::nullopt, bool upgrade = false);

}  // namespace ringlb::runtime
