#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/address.hpp"
#include "common/cidr.hpp"
#include "common/log.hpp"

namespace ringlb::config {

using Millis = std::chrono::milliseconds;

// A backend's `weight` (also what POST /backends/C/B/weight accepts).
inline constexpr uint32_t kMaxBackendWeight = 1000;

enum class EngineKind { kAuto, kIoUring, kEpoll };
enum class ForwardMode { kAuto, kSplice, kBuffered };
// How a cluster picks a backend for a new session (`balance`).
enum class Balance { kRoundRobin, kLeastConn, kRandomTwo, kLeastTime, kMaglev };
// What Maglev hashes (`hash_key`).
enum class HashKey { kSourceIp, kSourceIpPort };
// How a finished session's sockets close (`close`): FIN, or RST via SO_LINGER 0.
enum class ClosePolicy { kGraceful, kReset };
// The PROXY protocol header a listener requires before a client's bytes (`proxy_protocol`).
enum class ProxyProtocol : uint8_t { kNone, kV1, kV2, kAny };
// The PROXY protocol header ringlb writes before the client's bytes to a backend (`send_proxy`).
enum class SendProxy : uint8_t { kNone, kV1, kV2 };

const char* to_string(EngineKind kind);
const char* to_string(ForwardMode mode);
const char* to_string(Balance balance);
const char* to_string(HashKey key);
const char* to_string(ClosePolicy policy);
const char* to_string(ProxyProtocol version);
const char* to_string(SendProxy version);

// `tcp_keepalive = { idle = "60s", interval = "10s", count = 3 }`. Absent: the kernel default
// (no keepalive probes). A key left out of the table keeps the kernel's value for it.
struct TcpKeepalive {
    bool enabled = false;
    Millis idle{0};      // TCP_KEEPIDLE, whole seconds (0: kernel default)
    Millis interval{0};  // TCP_KEEPINTVL, whole seconds (0: kernel default)
    uint32_t count = 0;  // TCP_KEEPCNT (0: kernel default)

    bool operator==(const TcpKeepalive&) const = default;
};

struct RuntimeConfig {
    unsigned workers = 0;  // 0 = "auto": one per CPU the process may run on (affinity)
    bool pin_cpus = false;
    EngineKind engine = EngineKind::kAuto;
    // Per-shard forwarding resources.
    uint32_t buffer_size = 64 * 1024;  // bytes per buffer of the buffered pump
    uint32_t buffer_count = 256;       // buffers per shard (a power of two)
    uint32_t pipe_size = 64 * 1024;    // F_SETPIPE_SZ for pooled pipes
    uint32_t pipe_pool = 256;          // most pipes a shard holds (idle + lent)
    // Graceful drain on SIGTERM/SIGINT (proxy/runtime/drain.cpp): keep accepting for
    // drain_delay, stop accepting, wait up to drain_timeout for sessions to end, then close the
    // rest spread over drain_spread. 25 s + 5 s fit Kubernetes' default grace period of 30 s.
    Millis drain_delay{0};
    Millis drain_timeout{25000};
    Millis drain_spread{5000};
    // Binary upgrade (proxy/runtime/upgrade.cpp): the Unix socket on which this process hands its
    // listening sockets to a new one started with `ringlb run CONFIG --upgrade`. "": no upgrade.
    std::string upgrade_socket;
    // DNS servers for backends given by name; empty: the system's (resolv.conf).
    std::vector<common::Address> dns_servers;
    std::vector<std::string> dns_server_texts;

    bool operator==(const RuntimeConfig&) const = default;
};

struct BackendConfig {
    common::Address address;   // unset when `host` is given
    std::string address_text;  // as written: "IP:PORT" or "NAME:PORT"
    // A backend given by DNS name (address = "NAME:PORT"): resolved at run time by the control
    // plane (proxy/discovery), each address of the answer becoming a backend of its own.
    std::string host;
    uint16_t port = 0;  // with `host`
    bool is_name() const { return !host.empty(); }
    uint32_t weight = 1;
    uint32_t max_connections = 0;  // per backend, divided over shards; 0: unlimited

    bool operator==(const BackendConfig&) const = default;
};

// `pool = { warm = N, max_idle = "30s" }`: N pre-connected sockets per backend per shard.
struct PoolConfig {
    uint32_t warm = 0;  // 0: no pool
    Millis max_idle{30000};

    bool operator==(const PoolConfig&) const = default;
};

// `queue = { size = N, timeout = "1s" }`: clients that wait for a backend slot.
struct QueueConfig {
    uint32_t size = 0;  // 0: no queue (a client finding every backend full is closed)
    Millis timeout{1000};

    bool operator==(const QueueConfig&) const = default;
};

// `health = { interval = "2s", timeout = "1s", rise = 2, fall = 3, jitter = "10%", port = N,
// send = "...", expect = "..." }`: active checks of every backend, run by the control thread
// (proxy/health). Without `send` and `expect` a check is a TCP connect.
struct HealthCheckConfig {
    bool enabled = false;  // only when `health` is present
    Millis interval{2000};
    Millis timeout{1000};
    uint32_t rise = 2;             // consecutive passes that bring a backend up
    uint32_t fall = 3;             // consecutive failures that take it down
    uint32_t jitter_percent = 10;  // each interval varies by up to this much either way
    uint16_t port = 0;             // 0: the backend's own port
    std::string send;              // bytes written once connected ("" = none)
    std::string expect;            // bytes the reply must start with ("" = none)
    bool send_hex = false;         // written as send_hex / expect_hex (for rendering)
    bool expect_hex = false;

    bool operator==(const HealthCheckConfig&) const = default;
};

// TLS (proxy/tls): the versions a `tls` table's min_version names.
enum class TlsVersion : uint8_t { k1_2, k1_3 };
// Whether a TLS listener asks its clients for a certificate (`verify_client`).
enum class VerifyClient : uint8_t { kNone, kOptional, kRequire };
const char* to_string(TlsVersion version);
const char* to_string(VerifyClient mode);

// One entry of a listener's tls.certificates: PEM files, loaded and checked when a configuration
// is applied (start, reload), never on a shard.
struct TlsCertificate {
    std::string cert;  // the certificate, then its chain
    std::string key;   // its private key
    int line = 0;      // the entry's line in the file, for errors found loading it

    bool operator==(const TlsCertificate&) const = default;
};

// A listener's `tls = { certificates = [...], ... }`: ringlb terminates TLS. The certificate is
// picked by the ClientHello's server name: exact, then the longest wildcard, then the first.
struct ListenerTls {
    bool enabled = false;  // only when `tls` is present
    std::vector<TlsCertificate> certificates;
    TlsVersion min_version = TlsVersion::k1_2;
    std::string ciphers;            // TLS 1.2 cipher list; "": OpenSSL's default
    std::string ciphersuites;       // TLS 1.3 suites; "": OpenSSL's default
    std::vector<std::string> alpn;  // offered in this order of preference; empty: no ALPN
    std::string client_ca;          // PEM file of the CAs client certificates must chain to
    VerifyClient verify_client = VerifyClient::kNone;
    bool session_tickets = true;
    Millis handshake_timeout{10000};  // from the accept (prelude included) to a finished handshake
    int line = 0;                     // the `tls` key's line, for errors found loading it

    bool operator==(const ListenerTls&) const = default;
};

// A cluster's `tls = { sni = "...", verify = true, ... }`: ringlb speaks TLS to its backends.
struct ClusterTls {
    bool enabled = false;  // only when `tls` is present
    std::string sni;       // server name sent, and checked against the certificate; "": none
    bool verify = true;    // the backend's certificate must chain to `ca`
    std::string ca;        // PEM file; "": the system's default trust store
    std::string cert;      // client certificate (PEM), with `key`; "": none
    std::string key;
    std::vector<std::string> alpn;
    TlsVersion min_version = TlsVersion::k1_2;
    std::string ciphers;
    std::string ciphersuites;
    Millis handshake_timeout{10000};  // from the connect to a finished handshake
    int line = 0;

    bool operator==(const ClusterTls&) const = default;
};

// What a cluster does when every backend that is not drained is down (`when_all_down`).
enum class WhenAllDown { kTryAnyway, kFail };
const char* to_string(WhenAllDown policy);

struct ClusterConfig {
    std::string name;
    std::vector<BackendConfig> backends;
    Millis connect_timeout{2000};
    Balance balance = Balance::kRoundRobin;
    HashKey hash_key = HashKey::kSourceIp;
    uint32_t maglev_table_size = 65537;  // a prime
    uint32_t retries = 2;                // further backends tried after a failed connect
    PoolConfig pool;
    QueueConfig queue;
    Millis server_idle_timeout{0};  // nothing received from the backend; 0: off
    TcpKeepalive tcp_keepalive;
    Millis tcp_user_timeout{0};  // TCP_USER_TIMEOUT; 0: kernel default
    std::vector<common::Address> source_addresses;
    std::vector<std::string> source_address_texts;
    uint16_t source_port_min = 0;  // IP_LOCAL_PORT_RANGE; 0/0: the system range
    uint16_t source_port_max = 0;
    ClosePolicy close = ClosePolicy::kGraceful;
    HealthCheckConfig health;
    WhenAllDown when_all_down = WhenAllDown::kTryAnyway;
    // Passive health (proxy/health/ejector): `eject_after` failures in a row (0: off) eject a
    // backend for eject_time, doubled on each repeat up to eject_time_max; at most
    // max_ejected_percent of the cluster's backends at once.
    uint32_t eject_after = 0;
    Millis eject_time{30000};
    Millis eject_time_max{300000};
    uint32_t max_ejected_percent = 50;
    // A backend that comes back takes a share of new sessions growing from 0 to its full share
    // over this window; 0: off.
    Millis slow_start{0};
    // Backends given by name: looked up again every dns_refresh (sooner when the answer's TTL
    // is shorter); a failed or empty lookup keeps the last good addresses for
    // dns_failure_grace.
    Millis dns_refresh{5000};
    Millis dns_failure_grace{300000};
    SendProxy send_proxy = SendProxy::kNone;
    ClusterTls tls;
    bool has_names() const {
        for (const auto& b : backends)
            if (b.is_name()) return true;
        return false;
    }

    bool operator==(const ClusterConfig&) const = default;
};

// One entry of a listener's `routes`: TLS clients whose ClientHello names `sni` go to `cluster`.
struct SniRoute {
    std::string sni;  // lowercase; "*.example.com" for every name below example.com
    std::string cluster;
    size_t cluster_index = 0;  // resolved index into Config::clusters

    bool operator==(const SniRoute&) const = default;
};

struct ListenerConfig {
    std::string name;
    common::Address bind;
    std::string bind_text;
    std::string cluster;       // name of the cluster
    size_t cluster_index = 0;  // resolved index into Config::clusters
    int backlog = 4096;
    ForwardMode forward = ForwardMode::kAuto;
    // Timeouts; 0 turns one off.
    Millis idle_timeout{std::chrono::hours(1)};  // no byte in either direction
    Millis client_idle_timeout{0};               // nothing received from the client
    Millis half_closed_timeout{0};               // inactivity once one side has sent FIN
    Millis max_duration{0};                      // whole session
    Millis max_duration_jitter{0};               // random extra in [0, jitter]
    TcpKeepalive tcp_keepalive;
    Millis tcp_user_timeout{0};
    // The prelude (proxy/frontend): what is read from the client before a cluster is picked.
    ProxyProtocol proxy_protocol = ProxyProtocol::kNone;
    std::vector<common::Cidr> proxy_protocol_from;  // empty: any peer
    Millis prelude_timeout{5000};
    std::vector<SniRoute> routes;  // empty: every client goes to `cluster`
    bool mptcp = false;            // IPPROTO_MPTCP where the kernel allows it, else TCP
    // A unix listener's socket file (bind = "unix:/path"): permission bits, and the owner as
    // written ("user:group", "user", ":group"; names or ids) with its ids; -1 keeps bind()'s.
    int mode = -1;
    std::string owner;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    // Whether the session reads the client before connecting: a PROXY header, a ClientHello
    // for routes, or a TLS handshake to terminate.
    bool has_prelude() const {
        return proxy_protocol != ProxyProtocol::kNone || !routes.empty() || tls.enabled;
    }
    // Access control and limits (proxy/shard/admission.hpp): which clients may connect, and how
    // many at once or how often. Checked at accept, or once the PROXY header is read.
    std::vector<common::Cidr> allow;  // empty: any client not denied
    std::vector<common::Cidr> deny;
    uint32_t max_connections = 0;             // sessions open at once; 0: unlimited
    uint32_t max_connections_per_source = 0;  // per client address; 0: unlimited
    uint32_t rate_count = 0;                  // rate_per_source "N/s": N, 0: unlimited
    Millis rate_period{1000};                 // its "/s" (1000) or "/m" (60000)
    uint32_t burst = 0;                       // the token bucket's size, with rate_count
    ClosePolicy reject = ClosePolicy::kGraceful;
    ListenerTls tls;
    bool has_acl() const { return !allow.empty() || !deny.empty(); }
    bool limits_sources() const { return max_connections_per_source != 0 || rate_count != 0; }

    bool operator==(const ListenerConfig&) const = default;
};

// The admin HTTP endpoint (proxy/admin: /metrics, /ready, /backends, ...), served by the control
// thread.
struct AdminConfig {
    bool enabled = false;  // only when [admin] is present
    common::Address bind;
    std::string bind_text;

    bool operator==(const AdminConfig&) const = default;
};

// [log]: how ringlb writes its log lines, and the optional access log (one line per finished
// session).
struct LogConfig {
    common::LogFormat format = common::LogFormat::kText;
    // The command line's --log-level, when given, replaces the file's value (proxy/main.cpp).
    common::LogLevel level = common::LogLevel::kInfo;
    std::string access;  // "" = off; "stderr"; else an absolute file path
    bool access_enabled() const { return !access.empty(); }
};

// A whole validated configuration. Immutable once loaded: shards read it through a shared_ptr
// snapshot.
struct Config {
    std::string source;  // the file it came from
    RuntimeConfig runtime;
    AdminConfig admin;
    LogConfig log;
    std::vector<ListenerConfig> listeners;
    std::vector<ClusterConfig> clusters;
};

// A configuration error. what() is "<file>:<line>:<column>: <key>: <reason>" so a user can jump
// straight to the problem.
class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Limits on what reaches the TOML parser, so that every input gets a message rather than a crash
// or an exhausted memory. The file size: 100,000 four-line listeners take about 7 MiB.
constexpr size_t kMaxConfigBytes = 16 * 1024 * 1024;
// Parts of one dotted key or table name (`[a.b.c]` has 3); ringlb's deepest key has 3.
constexpr size_t kMaxKeyParts = 32;
// Arrays and inline tables open at once; ringlb's deepest value
// (`tls = { certificates = [ { } ] }`) has 3.
// Each level may carry a dotted key of its own, so the tree stays under ~2,200 levels.
constexpr size_t kMaxNesting = 64;

// Loads and validates a TOML file. Throws ConfigError on any syntax error, unknown key, bad value
// or broken reference, and on a path that is not a regular file or holds more than
// kMaxConfigBytes.
Config load_file(const std::string& path);
// Same, from text (the file name is only used in messages).
Config load_string(std::string_view text, const std::string& source_name);

// Parses "250ms", "5s", "1m", "1h" (and "0s"); throws std::invalid_argument with a reason. Range
// checks belong to each key.
Millis parse_duration(std::string_view text);
// The other way: "1h", "168h", "1500ms", "0s", in the largest unit that writes `value` exactly,
// so parse_duration(format_duration(v)) == v.
std::string format_duration(Millis value);

}  // namespace ringlb::config
