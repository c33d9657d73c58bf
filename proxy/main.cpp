#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/log.hpp"
#include "config/config.hpp"
#include "proxy/runtime/host_check.hpp"
#include "proxy/runtime/runtime.hpp"
#include "proxy/shard/snapshot.hpp"
#include "proxy/tls/tls.hpp"

namespace {

constexpr const char* kUsage =
    "usage: ringlb run CONFIG.toml [--log-level debug|info|warn|error] [--upgrade]\n"
    "       ringlb check CONFIG.toml\n"
    "       ringlb version\n";

int usage_error() {
    std::fputs(kUsage, stderr);
    return 2;
}

// What `ringlb check` prints after its first line: each listener (name, address, cluster) and
// each cluster (name, balance, backends), names padded to line up.
std::string check_summary(const ringlb::config::Config& cfg) {
    size_t listener_width = 0, bind_width = 0, cluster_width = 0, balance_width = 0;
    for (const auto& l : cfg.listeners) {
        listener_width = std::max(listener_width, l.name.size());
        bind_width = std::max(bind_width, l.bind_text.size());
    }
    for (const auto& c : cfg.clusters) {
        cluster_width = std::max(cluster_width, c.name.size());
        balance_width = std::max(balance_width, std::strlen(ringlb::config::to_string(c.balance)));
    }
    auto pad = [](const std::string& text, size_t width) {
        return text + std::string(width - text.size(), ' ');
    };
    std::string out;
    for (const auto& l : cfg.listeners)
        out += "  listener " + pad(l.name, listener_width) + "  " + pad(l.bind_text, bind_width) +
               "  -> cluster " + l.cluster + "\n";
    for (const auto& c : cfg.clusters) {
        size_t names = 0;
        for (const auto& b : c.backends) names += b.is_name() ? 1 : 0;
        out += "  cluster " + pad(c.name, cluster_width) + "  " +
               pad(ringlb::config::to_string(c.balance), balance_width) + "  " +
               std::to_string(c.backends.size()) + " backend(s)" +
               (names ? ", " + std::to_string(names) +
                            " by name, resolved at run time (each address a backend)"
                      : "") +
               "\n";
    }
    return out;
}

int cmd_check(const std::string& path) {
    try {
        ringlb::config::Config cfg = ringlb::config::load_file(path);
        // Certificates and keys are loaded as at start (a snapshot of the configuration), so
        // that a deploy's check catches a file that would keep ringlb from starting.
        ringlb::shard::Snapshot snapshot(std::make_shared<const ringlb::config::Config>(cfg));
        auto engine = ringlb::runtime::decide_engine(cfg.runtime.engine);
        size_t backends = 0;
        for (const auto& c : cfg.clusters) backends += c.backends.size();
        std::printf(
            "config OK: %s: %zu listener(s), %zu cluster(s), %zu backend(s); engine on this host: "
            "%s (%s)\n%s",
            path.c_str(), cfg.listeners.size(), cfg.clusters.size(), backends, engine.name,
            engine.reason.c_str(), check_summary(cfg).c_str());
        int cpus =
            ringlb::runtime::cpu_budget(static_cast<int>(ringlb::runtime::usable_cpus().size()),
                                        ringlb::runtime::read_cgroup_limits());
        std::string warning = ringlb::runtime::workers_warning(
            cfg, ringlb::runtime::resolve_workers(cfg.runtime, cpus), cpus);
        if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
        if (!engine.ok) {
            std::fprintf(stderr, "%s: runtime.engine: io_uring is unavailable here: %s\n",
                         path.c_str(), engine.reason.c_str());
            return 1;
        }
        return 0;
    } catch (const ringlb::config::ConfigError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    } catch (const ringlb::tls::TlsError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}

int cmd_version() {
    auto engine = ringlb::runtime::decide_engine(ringlb::config::EngineKind::kAuto);
    std::printf("ringlb %s\nengine (auto) on this host: %s (%s)\n", RINGLB_VERSION, engine.name,
                engine.reason.c_str());
    return 0;
}

// `cli_level`: --log-level, which replaces the file's [log] level (and is what GET /config then
// shows, as the level in effect).
// `upgrade`: take the listening sockets of the ringlb serving runtime.upgrade_socket.
int cmd_run(const std::string& path, std::optional<ringlb::common::LogLevel> cli_level,
            bool upgrade) {
    // A stop signal during the configuration load waits for run()'s handlers.
    ringlb::runtime::block_control_signals();
    std::shared_ptr<const ringlb::config::Config> cfg;
    try {
        ringlb::config::Config loaded = ringlb::config::load_file(path);
        if (cli_level) loaded.log.level = *cli_level;
        cfg = std::make_shared<const ringlb::config::Config>(std::move(loaded));
    } catch (const ringlb::config::ConfigError& e) {
        // Still text: the file that would say otherwise did not load.
        LOG_ERROR("%s", e.what());
        return 1;
    }
    // Before the first line that follows the load: every line from here on is in the file's format.
    ringlb::common::set_log_format(cfg->log.format);
    ringlb::common::set_log_level(cfg->log.level);
    return ringlb::runtime::run(std::move(cfg), cli_level, upgrade);
}

}  // namespace

int main(int argc, char** argv) {
    // Writing to a peer that has gone raises SIGPIPE from splice(2); the error code is enough.
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) return usage_error();
    std::string_view cmd = argv[1];
    if (cmd == "version" || cmd == "--version") return cmd_version();
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if ((cmd != "run" && cmd != "check") || argc < 3) return usage_error();
    std::string path = argv[2];
    std::optional<ringlb::common::LogLevel> cli_level;
    bool upgrade = false;
    for (int i = 3; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--upgrade" && cmd == "run") {
            upgrade = true;
        } else if (arg == "--log-level" && i + 1 < argc) {
            ringlb::common::LogLevel level;
            if (!ringlb::common::parse_log_level(argv[++i], level)) return usage_error();
            // Already for the lines written while the configuration loads.
            ringlb::common::set_log_level(level);
            cli_level = level;
        } else {
            return usage_error();
        }
    }
    try {
        return cmd == "check" ? cmd_check(path) : cmd_run(path, cli_level, upgrade);
    } catch (const std::exception& e) {
        LOG_ERROR("fatal: %s", e.what());
        return 1;
    }
}
