#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/address.hpp"

namespace ringlb::config {

using Millis = std::chrono::milliseconds;

enum class EngineKind { kAuto, kIoUring, kEpoll };
enum class ForwardMode { kAuto, kSplice, kBuffered };

const char* to_string(EngineKind kind);
const char* to_string(ForwardMode mode);

struct RuntimeConfig {
    unsigned workers = 0;  // 0 = "auto": one per online CPU
    bool pin_cpus = false;
    EngineKind engine = EngineKind::kAuto;
    // Per-shard forwarding resources.
    uint32_t buffer_size = 64 * 1024;  // bytes per buffer of the buffered pump
    uint32_t buffer_count = 256;       // buffers per shard (a power of two)
    uint32_t pipe_size = 64 * 1024;    // F_SETPIPE_SZ for pooled pipes
    uint32_t pipe_pool = 256;          // most pipes a shard holds (idle + lent)
};

struct BackendConfig {
    common::Address address;
    std::string address_text;
    uint32_t weight = 1;
};

struct ClusterConfig {
    std::string name;
    std::vector<BackendConfig> backends;
    Millis connect_timeout{2000};
};

struct ListenerConfig {
    std::string name;
    common::Address bind;
    std::string bind_text;
    std::string cluster;       // name of the cluster
    size_t cluster_index = 0;  // resolved index into Config::clusters
    int backlog = 4096;
    ForwardMode forward = ForwardMode::kAuto;
};

// The admin HTTP endpoint (/metrics, /healthz, /ready), served by the control thread.
struct AdminConfig {
    bool enabled = false;  // only when [admin] is present
    common::Address bind;
    std::string bind_text;
};

// A whole validated configuration. Immutable once loaded: shards read it through a shared_ptr
// snapshot.
struct Config {
    std::string source;  // the file it came from
    RuntimeConfig runtime;
    AdminConfig admin;
    std::vector<ListenerConfig> listeners;
    std::vector<ClusterConfig> clusters;
};

// A configuration error. what() is "<file>:<line>:<column>: <key>: <reason>" so a user can jump
// straight to the problem.
class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Loads and validates a TOML file. Throws ConfigError on any syntax error, unknown key, bad value
// or broken reference.
Config load_file(const std::string& path);
// Same, from text (the file name is only used in messages).
Config load_string(std::string_view text, const std::string& source_name);

// Parses "250ms", "5s", "1m", "1h"; throws std::invalid_argument with a reason.
Millis parse_duration(std::string_view text);

}  // namespace ringlb::config
