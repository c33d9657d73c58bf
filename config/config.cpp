#include "config/config.hpp"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <toml++/toml.h>

#include "common/fd.hpp"
#include "common/host_port.hpp"
#include "config/prescan.hpp"
#include "proxy/frontend/sni_router.hpp"

namespace ringlb::config {

const char* to_string(EngineKind kind) {
    switch (kind) {
        case EngineKind::kAuto:
            return "auto";
        case EngineKind::kIoUring:
            return "io_uring";
        case EngineKind::kEpoll:
            return "epoll";
    }
    return "?";
}

const char* to_string(ForwardMode mode) {
    switch (mode) {
        case ForwardMode::kAuto:
            return "auto";
        case ForwardMode::kSplice:
            return "splice";
        case ForwardMode::kBuffered:
            return "buffered";
    }
    return "?";
}

const char* to_string(Balance balance) {
    switch (balance) {
        case Balance::kRoundRobin:
            return "round_robin";
        case Balance::kLeastConn:
            return "least_conn";
        case Balance::kRandomTwo:
            return "random_two";
        case Balance::kLeastTime:
            return "least_time";
        case Balance::kMaglev:
            return "maglev";
    }
    return "?";
}

const char* to_string(HashKey key) {
    switch (key) {
        case HashKey::kSourceIp:
            return "source_ip";
        case HashKey::kSourceIpPort:
            return "source_ip_port";
    }
    return "?";
}

const char* to_string(WhenAllDown policy) {
    switch (policy) {
        case WhenAllDown::kTryAnyway:
            return "try_anyway";
        case WhenAllDown::kFail:
            return "fail";
    }
    return "?";
}

const char* to_string(ClosePolicy policy) {
    switch (policy) {
        case ClosePolicy::kGraceful:
            return "graceful";
        case ClosePolicy::kReset:
            return "reset";
    }
    return "?";
}

const char* to_string(ProxyProtocol version) {
    switch (version) {
        case ProxyProtocol::kNone:
            return "none";
        case ProxyProtocol::kV1:
            return "v1";
        case ProxyProtocol::kV2:
            return "v2";
        case ProxyProtocol::kAny:
            return "any";
    }
    return "?";
}

const char* to_string(SendProxy version) {
    switch (version) {
        case SendProxy::kNone:
            return "none";
        case SendProxy::kV1:
            return "v1";
        case SendProxy::kV2:
            return "v2";
    }
    return "?";
}

const char* to_string(TlsVersion version) {
    switch (version) {
        case TlsVersion::k1_2:
            return "1.2";
        case TlsVersion::k1_3:
            return "1.3";
    }
    return "?";
}

const char* to_string(VerifyClient mode) {
    switch (mode) {
        case VerifyClient::kNone:
            return "none";
        case VerifyClient::kOptional:
            return "optional";
        case VerifyClient::kRequire:
            return "require";
    }
    return "?";
}

Millis parse_duration(std::string_view text) {
    if (text.empty()) throw std::invalid_argument("empty duration");
    if (text.front() == '-') throw std::invalid_argument("negative durations are not allowed");
    const char* begin = text.data();
    const char* end = begin + text.size();
    uint64_t value = 0;
    auto [num_end, ec] = std::from_chars(begin, end, value);
    if (ec == std::errc::result_out_of_range) throw std::invalid_argument("value is too large");
    if (ec != std::errc() || num_end == begin)
        throw std::invalid_argument(
            "expected an integer followed by a unit (ms, s, m or h), e.g. \"2s\"");
    std::string_view unit(num_end, static_cast<size_t>(end - num_end));
    if (!unit.empty() && (unit.front() == '.' || unit.front() == ','))
        throw std::invalid_argument(
            "fractional values are not supported; use a smaller unit, e.g. \"1500ms\"");
    if (unit.empty())
        throw std::invalid_argument("missing unit (ms, s, m or h), e.g. \"" + std::string(text) +
                                    "s\"");
    uint64_t factor = 0;
    if (unit == "ms") {
        factor = 1;
    } else if (unit == "s") {
        factor = 1000;
    } else if (unit == "m") {
        factor = 60 * 1000;
    } else if (unit == "h") {
        factor = 60 * 60 * 1000;
    } else {
        throw std::invalid_argument("unknown unit \"" + std::string(unit) +
                                    "\" (expected ms, s, m or h)");
    }
    constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<Millis::rep>::max());
    if (value > kMax / factor) throw std::invalid_argument("value is too large");
    return Millis(static_cast<Millis::rep>(value * factor));
}

std::string format_duration(Millis value) {
    auto ms = value.count();
    if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
    if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

namespace {

// Limits of the schema. Kept together so the reference documentation has one place to match.
constexpr int64_t kMaxWorkers = 1024;
constexpr int64_t kMinBufferSize = 4096;
constexpr int64_t kMaxBufferSize = 1024 * 1024;
constexpr int64_t kMinBufferCount = 16;
constexpr int64_t kMaxBufferCount = 32768;
constexpr int64_t kMinPipeSize = 4096;
constexpr int64_t kMaxPipeSize = 1024 * 1024;
constexpr int64_t kMaxPipePool = 65536;
constexpr int64_t kMaxBacklog = 65535;
constexpr int64_t kMaxWeight = kMaxBackendWeight;
constexpr int64_t kMaxBackendConnections = 1000000;
// A listener's max_connections, max_connections_per_source, rate_per_source and burst.
constexpr int64_t kMaxListenerLimit = 1000000;
constexpr Millis kMaxConnectTimeout = std::chrono::hours(1);
// Session timeouts that "0s" turns off: long enough for any sensible idle or lifetime limit,
// short enough that a unit slip ("720h" meant as minutes) is caught.
constexpr Millis kMaxSessionTimeout = std::chrono::hours(168);
// TCP_USER_TIMEOUT takes an unsigned int of milliseconds; a day is far beyond any useful value.
constexpr Millis kMaxUserTimeout = std::chrono::hours(24);
constexpr std::string_view kKernelDefault = "keeps the kernel default";
// Each drain phase: far beyond any grace period an orchestrator gives (Kubernetes' default is
// 30 s), short enough that a unit slip ("30m" meant as seconds) is caught.
constexpr Millis kMaxDrainPhase = std::chrono::hours(1);
// TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds up to MAX_TCP_KEEPIDLE/MAX_TCP_KEEPINTVL
// (32767); TCP_KEEPCNT up to MAX_TCP_KEEPCNT (127).
constexpr int64_t kMaxKeepaliveSeconds = 32767;
constexpr int64_t kMaxKeepaliveCount = 127;
constexpr int64_t kMaxRetries = 16;
// Active health checks: an interval under 100 ms is load, not health; rise and fall past 100
// would take minutes to react.
constexpr Millis kMinHealthInterval{100};
constexpr Millis kMaxHealthInterval{std::chrono::hours(1)};
constexpr int64_t kMaxRiseFall = 100;
constexpr int64_t kMaxHealthJitterPercent = 50;
constexpr size_t kMaxHealthBytes = 4096;  // send and expect
constexpr Millis kMaxEjectTime{std::chrono::hours(24)};
constexpr Millis kMaxSlowStart{std::chrono::hours(1)};
constexpr Millis kMinDnsRefresh{100};
constexpr Millis kMaxDnsRefresh{std::chrono::hours(1)};
constexpr int64_t kMinMaglevTableSize = 101;
constexpr int64_t kMaxMaglevTableSize = 1000003;  // a prime
constexpr int64_t kMaxPoolWarm = 1024;
constexpr int64_t kMaxQueueSize = 65536;
// A file's path (the access log, TLS certificates and keys); PATH_MAX counts the terminating NUL.
constexpr size_t kMaxPath = 4095;
// An ALPN protocol name has a one-byte length on the wire (RFC 7301), and no empty name.
constexpr size_t kMaxAlpnName = 255;

static_assert(kMaxConfigBytes % (1024 * 1024) == 0);
// kMaxConfigBytes as messages write it.
std::string size_limit() {
    return std::to_string(kMaxConfigBytes / (1024 * 1024)) + " MiB (" +
           std::to_string(kMaxConfigBytes) + " bytes) for a configuration file";
}

// Every key of [runtime] and [log], declared once: check_keys() accepts exactly these, and the
// top level hints "it belongs in [runtime]" for them.
constexpr std::string_view kRuntimeKeys[] = {
    "workers",   "pin_cpus",    "engine",        "buffer_size",  "buffer_count",   "pipe_size",
    "pipe_pool", "drain_delay", "drain_timeout", "drain_spread", "upgrade_socket", "dns_servers"};
constexpr std::string_view kLogKeys[] = {"format", "level", "access"};
// Every key of a [[listener]] and of a [[cluster]] table, declared once: check_keys() accepts
// exactly these, and a key of one found in the other gets a "belongs in" hint.
constexpr std::string_view kListenerKeys[] = {"name",
                                              "bind",
                                              "mptcp",
                                              "mode",
                                              "owner",
                                              "cluster",
                                              "backlog",
                                              "forward",
                                              "idle_timeout",
                                              "client_idle_timeout",
                                              "half_closed_timeout",
                                              "max_duration",
                                              "max_duration_jitter",
                                              "tcp_keepalive",
                                              "tcp_user_timeout",
                                              "proxy_protocol",
                                              "proxy_protocol_from",
                                              "prelude_timeout",
                                              "routes",
                                              "allow",
                                              "deny",
                                              "max_connections",
                                              "max_connections_per_source",
                                              "rate_per_source",
                                              "burst",
                                              "reject",
                                              "tls"};
constexpr std::string_view kClusterKeys[] = {"name",
                                             "connect_timeout",
                                             "backends",
                                             "balance",
                                             "hash_key",
                                             "maglev_table_size",
                                             "retries",
                                             "pool",
                                             "queue",
                                             "server_idle_timeout",
                                             "tcp_keepalive",
                                             "tcp_user_timeout",
                                             "source_addresses",
                                             "source_port_range",
                                             "close",
                                             "health",
                                             "when_all_down",
                                             "eject_after",
                                             "eject_time",
                                             "eject_time_max",
                                             "max_ejected_percent",
                                             "slow_start",
                                             "dns_refresh",
                                             "dns_failure_grace",
                                             "send_proxy",
                                             "tls"};
constexpr std::string_view kBackendKeys[] = {"address", "weight", "max_connections"};
// The keys of a listener's `tls` table (ringlb terminates TLS), of each of its certificates, and
// of a cluster's `tls` table (ringlb speaks TLS to the backends), declared once as above.
constexpr std::string_view kListenerTlsKeys[] = {
    "certificates", "min_version",   "ciphers",         "ciphersuites",     "alpn",
    "client_ca",    "verify_client", "session_tickets", "handshake_timeout"};
constexpr std::string_view kCertificateKeys[] = {"cert", "key"};
constexpr std::string_view kClusterTlsKeys[] = {
    "sni",  "verify",      "ca",      "cert",         "key",
    "alpn", "min_version", "ciphers", "ciphersuites", "handshake_timeout"};

// Keys that are valid elsewhere in the file, with where they belong.
struct Misplaced {
    std::span<const std::string_view> keys;
    std::string_view hint;
};

bool is_prime(int64_t n) {
    if (n < 2) return false;
    for (int64_t d = 2; d * d <= n; ++d)
        if (n % d == 0) return false;
    return true;
}

// Whether an address is 0.0.0.0 or ::, which binds nothing in particular.
bool is_unspecified(const common::Address& address) {
    if (address.family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr.s_addr ==
               htonl(INADDR_ANY);
    if (address.family() == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(
            &reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr);
    return false;
}

// Which local addresses a listening socket takes connections for.
enum class BindScope {
    kOneIpv4,  // one IPv4 address, written plain or IPv4-mapped ("[::ffff:127.0.0.1]:80")
    kOneIpv6,
    kAllIpv4,  // 0.0.0.0 (or [::ffff:0.0.0.0])
    kAllIp,    // [::]: every IPv6 address and, as listen_tcp leaves IPV6_V6ONLY off, every IPv4
};

// A listener's address as the kernel matches it: an IPv4 address in its IPv4-mapped IPv6 form,
// so "127.0.0.1:80" and "[::ffff:127.0.0.1]:80" have one key.
struct BindKey {
    std::array<unsigned char, 16> ip{};
    uint16_t port = 0;
    bool operator==(const BindKey&) const = default;
};

struct BindKeyHash {
    size_t operator()(const BindKey& key) const {
        std::string_view bytes(reinterpret_cast<const char*>(key.ip.data()), key.ip.size());
        return std::hash<std::string_view>()(bytes) * 31 + key.port;
    }
};

struct Bind {
    BindKey key;
    BindScope scope = BindScope::kOneIpv4;
};

Bind bind_of(const common::Address& address) {
    Bind bind;
    bind.key.port = address.port();
    if (address.family() == AF_INET) {
        const in_addr& v4 = reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr;
        bind.key.ip[10] = bind.key.ip[11] = 0xff;
        std::memcpy(&bind.key.ip[12], &v4, sizeof(v4));
        bind.scope = v4.s_addr == htonl(INADDR_ANY) ? BindScope::kAllIpv4 : BindScope::kOneIpv4;
        return bind;
    }
    const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr;
    std::memcpy(bind.key.ip.data(), &v6, sizeof(v6));
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
        bool any = std::all_of(bind.key.ip.begin() + 12, bind.key.ip.end(),
                               [](unsigned char b) { return b == 0; });
        bind.scope = any ? BindScope::kAllIpv4 : BindScope::kOneIpv4;
    } else {
        bind.scope = IN6_IS_ADDR_UNSPECIFIED(&v6) ? BindScope::kAllIp : BindScope::kOneIpv6;
    }
    return bind;
}

// The listeners' binds so far, to find in O(1) an earlier one that takes connections a new one
// would also take. Two such sockets both bind (SO_REUSEPORT, one user), and the kernel then hands
// each connection to only one of them: a listener silently loses some or all of its clients.
class BindTable {
  public:
    static constexpr size_t kNone = std::numeric_limits<size_t>::max();

    struct Collision {
        size_t index = kNone;  // the earlier listener
        bool same = false;     // the same address (possibly spelled differently), not an overlap
    };

    Collision find(const Bind& bind) const {
        if (auto it = exact_.find(bind.key); it != exact_.end()) return {it->second, true};
        auto it = ports_.find(bind.key.port);
        if (it == ports_.end()) return {};
        const PortUse& use = it->second;
        size_t earliest = kNone;
        auto consider = [&](size_t index) { earliest = std::min(earliest, index); };
        switch (bind.scope) {
            case BindScope::kOneIpv4:
                consider(use.all_ipv4);
                consider(use.all_ip);
                break;
            case BindScope::kOneIpv6:
                consider(use.all_ip);
                break;
            case BindScope::kAllIpv4:
                consider(use.one_ipv4);
                consider(use.all_ip);
                break;
            case BindScope::kAllIp:
                consider(use.one_ipv4);
                consider(use.one_ipv6);
                consider(use.all_ipv4);
                break;
        }
        return {earliest, false};
    }

    void add(const Bind& bind, size_t index) {
        exact_.emplace(bind.key, index);
        PortUse& use = ports_[bind.key.port];
        size_t* first = nullptr;
        switch (bind.scope) {
            case BindScope::kOneIpv4:
                first = &use.one_ipv4;
                break;
            case BindScope::kOneIpv6:
                first = &use.one_ipv6;
                break;
            case BindScope::kAllIpv4:
                first = &use.all_ipv4;
                break;
            case BindScope::kAllIp:
                first = &use.all_ip;
                break;
        }
        *first = std::min(*first, index);
    }

  private:
    // The first listener of each scope on one port.
    struct PortUse {
        size_t one_ipv4 = kNone;
        size_t one_ipv6 = kNone;
        size_t all_ipv4 = kNone;
        size_t all_ip = kNone;
    };
    std::unordered_map<BindKey, size_t, BindKeyHash> exact_;
    std::unordered_map<uint16_t, PortUse> ports_;
};

// Why two binds of one port overlap, said of the wider one.
std::string_view overlap_reason(BindScope a, BindScope b) {
    if (a == BindScope::kAllIp || b == BindScope::kAllIp)
        return "[::] takes connections for every IPv6 address and, as ringlb leaves IPV6_V6ONLY "
               "off, for every IPv4 address";
    return "0.0.0.0 takes connections for every IPv4 address";
}

// An IP address as bytes, with its family, for duplicate checks through a hash set.
std::string ip_bytes(const common::Address& address) {
    std::string bytes(1, static_cast<char>(address.family()));
    if (address.family() == AF_INET) {
        const in_addr& v4 = reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr;
        bytes.append(reinterpret_cast<const char*>(&v4), sizeof(v4));
    } else {
        const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr;
        bytes.append(reinterpret_cast<const char*>(&v6), sizeof(v6));
    }
    return bytes;
}

// "user:group", "user" or ":group", each a name (looked up now) or a numeric id.
bool owner_ids(const std::string& text, uid_t* uid, gid_t* gid, std::string* error) {
    size_t colon = text.find(':');
    std::string user_text = text.substr(0, colon);
    std::string group_text = colon == std::string::npos ? "" : text.substr(colon + 1);
    if (user_text.empty() && group_text.empty()) {
        *error = "expected \"user:group\", \"user\" or \":group\"";
        return false;
    }
    auto number = [](const std::string& s, unsigned* out) {
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
        return ec == std::errc() && end == s.data() + s.size();
    };
    unsigned id = 0;
    std::vector<char> buffer(16384);
    if (!user_text.empty()) {
        passwd pw{};
        passwd* found = nullptr;
        if (number(user_text, &id)) {
            *uid = id;
        } else if (::getpwnam_r(user_text.c_str(), &pw, buffer.data(), buffer.size(), &found) ==
                       0 &&
                   found) {
            *uid = found->pw_uid;
        } else {
            *error = "no user \"" + user_text + "\" on this host";
            return false;
        }
    }
    if (!group_text.empty()) {
        struct group gr {};
        struct group* found = nullptr;
        if (number(group_text, &id)) {
            *gid = id;
        } else if (::getgrnam_r(group_text.c_str(), &gr, buffer.data(), buffer.size(), &found) ==
                       0 &&
                   found) {
            *gid = found->gr_gid;
        } else {
            *error = "no group \"" + group_text + "\" on this host";
            return false;
        }
    }
    return true;
}

const char* family_name(int family) {
    return family == AF_INET6 ? "IPv6" : "IPv4";
}

// Levenshtein distance, with a swap of two adjacent letters counted as one edit ("wram" is one
// slip from "warm", not two). Words longer than kMaxHintLength are never typos worth a hint, and
// are "far" from everything: the table has (a + 1) * (b + 1) entries, and a key or name may be
// megabytes long.
constexpr size_t kMaxHintLength = 64;
size_t edit_distance(std::string_view a, std::string_view b) {
    if (a.size() > kMaxHintLength || b.size() > kMaxHintLength)
        return std::numeric_limits<size_t>::max() / 2;
    const size_t width = b.size() + 1;
    std::vector<size_t> d((a.size() + 1) * width);
    auto at = [&](size_t i, size_t j) -> size_t& { return d[i * width + j]; };
    for (size_t i = 0; i <= a.size(); ++i) at(i, 0) = i;
    for (size_t j = 0; j <= b.size(); ++j) at(0, j) = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t substitute = at(i - 1, j - 1) + (a[i - 1] == b[j - 1] ? 0 : 1);
            at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, substitute});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
        }
    }
    return at(a.size(), b.size());
}

// The closest candidate if it is close enough to be a plausible typo, else empty.
std::string_view suggest(std::string_view word, std::span<const std::string_view> candidates) {
    std::string_view best;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (std::string_view candidate : candidates) {
        size_t d = edit_distance(word, candidate);
        if (d < best_distance) {
            best = candidate;
            best_distance = d;
        }
    }
    size_t allowed = word.size() <= 4 ? 1 : 2;
    return best_distance <= allowed ? best : std::string_view();
}

// A string as TOML would spell it, so messages show exactly what the user wrote.
std::string quote(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            char escaped[8];
            std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned char>(c));
            out += escaped;
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

// Errors are logged as one line; toml++ descriptions may quote a raw newline it saw.
std::string one_line(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
            out += '?';
        } else {
            out += c;
        }
    }
    return out;
}

bool is_bare_key(std::string_view key) {
    return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

bool is_valid_name(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
    });
}

std::string join(std::string_view prefix, std::string_view key) {
    std::string part = is_bare_key(key) ? std::string(key) : quote(key);
    if (prefix.empty()) return part;
    return std::string(prefix) + "." + part;
}

std::string indexed(std::string_view prefix, size_t index) {
    return std::string(prefix) + "[" + std::to_string(index) + "]";
}

const char* type_name(const toml::node& node) {
    switch (node.type()) {
        case toml::node_type::table:
            return "table";
        case toml::node_type::array:
            return "array";
        case toml::node_type::string:
            return "string";
        case toml::node_type::integer:
            return "integer";
        case toml::node_type::floating_point:
            return "float";
        case toml::node_type::boolean:
            return "boolean";
        case toml::node_type::date:
            return "date";
        case toml::node_type::time:
            return "time";
        case toml::node_type::date_time:
            return "date-time";
        case toml::node_type::none:
            break;
    }
    return "nothing";
}

// What the user wrote, for "got ..." in messages: "\"x\"", "integer 5", "table".
std::string describe(const toml::node& node) {
    if (auto s = node.as_string()) return quote(s->get());
    if (auto i = node.as_integer()) return "integer " + std::to_string(i->get());
    if (auto b = node.as_boolean()) return std::string("boolean ") + (b->get() ? "true" : "false");
    if (auto f = node.as_floating_point()) {
        char text[64];
        std::snprintf(text, sizeof(text), "float %g", f->get());
        return text;
    }
    return type_name(node);
}

class Loader {
  public:
    Loader(std::string_view text, const std::string& source) : text_(text), source_(source) {}

    Config load() {
        toml::table root = parse();
        Config config;
        config.source = source_;
        check_keys(root, "", {"runtime", "admin", "log", "listener", "cluster"});
        if (const toml::node* runtime = root.get("runtime"))
            config.runtime = load_runtime(table_of(*runtime, "runtime", "[runtime]"));
        if (const toml::node* admin = root.get("admin"))
            config.admin = load_admin(table_of(*admin, "admin", "[admin]"));
        if (const toml::node* log = root.get("log"))
            config.log = load_log(table_of(*log, "log", "[log]"));
        config.listeners = load_listeners(root);
        config.clusters = load_clusters(root);
        resolve_clusters(root, config);
        return config;
    }

  private:
    [[noreturn]] void fail(const toml::source_region& where, std::string_view key,
                           std::string_view reason) const {
        // Nodes built implicitly (e.g. by dotted keys) may carry no position.
        uint32_t line = where.begin.line ? where.begin.line : 1;
        uint32_t column = where.begin.column ? where.begin.column : 1;
        std::string message = source_ + ":" + std::to_string(line) + ":" + std::to_string(column) +
                              ": " + std::string(key) + ": " + std::string(reason);
        throw ConfigError(one_line(message));
    }

    [[noreturn]] void fail(const toml::node& node, std::string_view key,
                           std::string_view reason) const {
        fail(node.source(), key, reason);
    }

    [[noreturn]] void fail(TextPosition where, std::string_view key,
                           std::string_view reason) const {
        toml::source_position position{where.line, where.column};
        fail(toml::source_region{position, position, nullptr}, key, reason);
    }

    // Refuses what toml++ cannot take safely (see prescan.hpp), then parses.
    toml::table parse() const {
        if (text_.size() > kMaxConfigBytes)
            throw ConfigError(source_ + ": " + std::to_string(text_.size()) +
                              " bytes is above the limit of " + size_limit());
        TextShape shape = measure_shape(text_);
        if (shape.key_parts > kMaxKeyParts)
            fail(shape.key_at, "syntax",
                 "a dotted key or table name with more than " + std::to_string(kMaxKeyParts) +
                     " parts; ringlb's configuration never nests that deep");
        if (shape.nesting > kMaxNesting)
            fail(shape.nesting_at, "syntax",
                 "arrays or inline tables nested more than " + std::to_string(kMaxNesting) +
                     " deep; ringlb's configuration never nests that deep");
        if (shape.non_ascii == TextShape::NonAscii::kOutsideStrings)
            fail(shape.non_ascii_at, "syntax",
                 "a non-ASCII character outside a string or comment (TOML keys and values other "
                 "than strings are ASCII)");
        if (shape.non_ascii == TextShape::NonAscii::kInString)
            fail(shape.non_ascii_at, "syntax",
                 "a non-ASCII character in a string: outside comments ringlb's configuration is "
                 "ASCII (the TOML parser, toml++ 3.3, misbehaves on some non-ASCII input); write "
                 "it as a \\u escape");
#if TOML_EXCEPTIONS
        try {
            return toml::parse(text_, std::string_view(source_));
        } catch (const toml::parse_error& error) {
            fail(error.source(), "syntax", error.description());
        }
#else
        toml::parse_result result = toml::parse(text_, std::string_view(source_));
        if (!result) fail(result.error().source(), "syntax", result.error().description());
        return std::move(result).table();
#endif
    }

    void check_keys(const toml::table& table, std::string_view prefix,
                    std::initializer_list<std::string_view> allowed,
                    std::initializer_list<Misplaced> misplaced = {}) const {
        check_keys(table, prefix,
                   std::span<const std::string_view>(allowed.begin(), allowed.size()), misplaced);
    }

    // Rejects any key not in `allowed`. Reports the earliest one in the file, since std::map order
    // would otherwise pick an arbitrary typo out of several.
    void check_keys(const toml::table& table, std::string_view prefix,
                    std::span<const std::string_view> allowed,
                    std::initializer_list<Misplaced> misplaced = {}) const {
        const toml::key* first = nullptr;
        for (auto&& [key, value] : table) {
            (void)value;
            if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
            if (!first || key.source().begin < first->source().begin) first = &key;
        }
        if (!first) return;
        std::string_view name = first->str();
        std::string reason = "unknown key " + quote(name);
        std::string_view near = suggest(name, allowed);
        if (!near.empty()) {
            reason += " (did you mean " + quote(near) + "?)";
        } else if (prefix.empty() && std::find(std::begin(kRuntimeKeys), std::end(kRuntimeKeys),
                                               name) != std::end(kRuntimeKeys)) {
            reason += " (it belongs in the [runtime] table)";
        } else if (prefix.empty() && std::find(std::begin(kLogKeys), std::end(kLogKeys), name) !=
                                         std::end(kLogKeys)) {
            reason += " (it belongs in the [log] table)";
        } else if (name == "log_level") {
            reason += " (the log level is set as level in the [log] table)";
        } else {
            for (const Misplaced& elsewhere : misplaced) {
                if (std::find(elsewhere.keys.begin(), elsewhere.keys.end(), name) !=
                    elsewhere.keys.end()) {
                    reason += " (" + std::string(elsewhere.hint) + ")";
                    break;
                }
            }
        }
        fail(first->source(), join(prefix, name), reason);
    }

    const toml::table& table_of(const toml::node& node, std::string_view key,
                                std::string_view spelling) const {
        if (auto table = node.as_table()) return *table;
        fail(node, key, "expected a table " + std::string(spelling) + ", got " + type_name(node));
    }

    // A required key; a missing one is reported at the table that should hold it.
    const toml::node& require(const toml::table& table, std::string_view prefix,
                              std::string_view key) const {
        if (const toml::node* node = table.get(key)) return *node;
        fail(table, join(prefix, key), "missing required key " + quote(key));
    }

    const std::string& string_of(const toml::node& node, std::string_view key) const {
        if (auto s = node.as_string()) return s->get();
        fail(node, key, "expected a string, got " + describe(node));
    }

    int64_t integer_of(const toml::node& node, std::string_view key, int64_t min,
                       int64_t max) const {
        auto i = node.as_integer();
        if (!i) fail(node, key, "expected an integer, got " + describe(node));
        int64_t value = i->get();
        if (value < min || value > max)
            fail(node, key,
                 "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                     ", got " + std::to_string(value));
        return value;
    }

    bool boolean_of(const toml::node& node, std::string_view key) const {
        if (auto b = node.as_boolean()) return b->get();
        fail(node, key, "expected true or false, got " + describe(node));
    }

    template <typename Enum>
    Enum enum_of(const toml::node& node, std::string_view key,
                 std::initializer_list<std::pair<std::string_view, Enum>> choices) const {
        std::string expected = "expected one of ";
        for (auto it = choices.begin(); it != choices.end(); ++it) {
            if (it != choices.begin()) expected += ", ";
            expected += quote(it->first);
        }
        auto s = node.as_string();
        if (!s) fail(node, key, expected + ", got " + describe(node));
        for (const auto& [name, value] : choices)
            if (s->get() == name) return value;
        std::string reason = expected + ", got " + quote(s->get());
        std::string lower = s->get();
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        for (const auto& [name, value] : choices) {
            (void)value;
            // A case slip, or two edits at most but never a suggestion as long as the word.
            if (lower == name ||
                edit_distance(s->get(), name) <= std::min<size_t>(2, name.size() / 2)) {
                reason += " (did you mean " + quote(name) + "?)";
                break;
            }
        }
        fail(node, key, reason);
    }

    std::string name_of(const toml::table& table, std::string_view prefix) const {
        std::string key = join(prefix, "name");
        const toml::node& node = require(table, prefix, "name");
        const std::string& name = string_of(node, key);
        if (!is_valid_name(name))
            fail(node, key,
                 "invalid name " + quote(name) +
                     " (use letters, digits, '_', '.' and '-'; at least one character)");
        return name;
    }

    // `unix`: "unix:/path" is allowed too (a listener's bind, a backend's address).
    common::Address address_of(const toml::node& node, std::string_view key, std::string* text,
                               bool unix = false) const {
        *text = string_of(node, key);
        std::string error;
        std::optional<common::Address> address = unix ? common::parse_socket_address(*text, &error)
                                                      : common::parse_address(*text, &error);
        if (!address) fail(node, key, "invalid address " + quote(*text) + ": " + error);
        if (address->family() == AF_UNIX) return *address;
        // Port 0 would let every shard's SO_REUSEPORT socket pick a different port, and nothing
        // can connect to it.
        if (address->port() == 0) fail(node, key, "port 0 is not allowed in " + quote(*text));
        return *address;
    }

    // The array behind `[[name]]`, or a clear message when the user wrote something else.
    const toml::array* array_of_tables(const toml::table& root, std::string_view name) const {
        const toml::node* node = root.get(name);
        if (!node)
            fail(root.source(), name,
                 "at least one [[" + std::string(name) + "]] section is required");
        const toml::array* array = node->as_array();
        if (!array)
            fail(*node, name,
                 "expected [[" + std::string(name) + "]] sections (an array of tables), got " +
                     type_name(*node));
        if (array->empty())
            fail(*node, name, "at least one [[" + std::string(name) + "]] section is required");
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::node& element = *array->get(i);
            if (!element.is_table())
                fail(element, indexed(name, i),
                     std::string("expected a table, got ") + type_name(element));
        }
        return array;
    }

    // A file's path must be absolute: a relative one would depend on the directory ringlb
    // happens to start in (under systemd, /), not on where the configuration file lies; a
    // trailing slash names a directory. `expected` says what a wrong one should look like.
    void check_file_path(const toml::node& node, std::string_view key, const std::string& text,
                         std::string_view expected) const {
        if (!text.starts_with('/') || text.ends_with('/'))
            fail(node, key, std::string(expected) + ", got " + quote(text));
        if (text.size() > kMaxPath)
            fail(node, key,
                 "a path of at most " + std::to_string(kMaxPath) + " bytes, got " +
                     std::to_string(text.size()));
        if (std::any_of(text.begin(), text.end(),
                        [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
            fail(node, key, "a control character in the path " + quote(text));
    }

    RuntimeConfig load_runtime(const toml::table& table) const {
        constexpr std::string_view kPrefix = "runtime";
        check_keys(table, kPrefix, kRuntimeKeys, {{kLogKeys, "it belongs in the [log] table"}});
        RuntimeConfig runtime;
        if (const toml::node* node = table.get("workers")) {
            std::string key = join(kPrefix, "workers");
            auto s = node->as_string();
            auto i = node->as_integer();
            std::string expected =
                "expected \"auto\" or an integer 1.." + std::to_string(kMaxWorkers);
            if (s && s->get() == "auto") {
                runtime.workers = 0;
            } else if (i && i->get() >= 1 && i->get() <= kMaxWorkers) {
                runtime.workers = static_cast<unsigned>(i->get());
            } else {
                fail(*node, key, expected + ", got " + describe(*node));
            }
        }
        if (const toml::node* node = table.get("pin_cpus"))
            runtime.pin_cpus = boolean_of(*node, join(kPrefix, "pin_cpus"));
        if (const toml::node* node = table.get("engine"))
            runtime.engine = enum_of<EngineKind>(*node, join(kPrefix, "engine"),
                                                 {{"auto", EngineKind::kAuto},
                                                  {"io_uring", EngineKind::kIoUring},
                                                  {"epoll", EngineKind::kEpoll}});
        if (const toml::node* node = table.get("buffer_size"))
            runtime.buffer_size = static_cast<uint32_t>(
                integer_of(*node, join(kPrefix, "buffer_size"), kMinBufferSize, kMaxBufferSize));
        if (const toml::node* node = table.get("buffer_count")) {
            std::string key = join(kPrefix, "buffer_count");
            int64_t count = integer_of(*node, key, kMinBufferCount, kMaxBufferCount);
            // io_uring provided-buffer rings must have a power-of-two number of entries.
            if ((count & (count - 1)) != 0)
                fail(*node, key, "must be a power of two, got " + std::to_string(count));
            runtime.buffer_count = static_cast<uint32_t>(count);
        }
        if (const toml::node* node = table.get("pipe_size"))
            runtime.pipe_size = static_cast<uint32_t>(
                integer_of(*node, join(kPrefix, "pipe_size"), kMinPipeSize, kMaxPipeSize));
        if (const toml::node* node = table.get("pipe_pool"))
            runtime.pipe_pool = static_cast<uint32_t>(
                integer_of(*node, join(kPrefix, "pipe_pool"), 0, kMaxPipePool));
        if (const toml::node* node = table.get("drain_delay"))
            runtime.drain_delay = optional_duration_of(*node, join(kPrefix, "drain_delay"),
                                                       kMaxDrainPhase, "stops accepting at once");
        if (const toml::node* node = table.get("drain_timeout"))
            runtime.drain_timeout = optional_duration_of(*node, join(kPrefix, "drain_timeout"),
                                                         kMaxDrainPhase, "waits for no session");
        if (const toml::node* node = table.get("drain_spread"))
            runtime.drain_spread = optional_duration_of(*node, join(kPrefix, "drain_spread"),
                                                        kMaxDrainPhase, "closes them all at once");
        if (const toml::node* node = table.get("dns_servers")) load_dns_servers(*node, runtime);
        if (const toml::node* node = table.get("upgrade_socket")) {
            std::string key = join(kPrefix, "upgrade_socket");
            const std::string& text = string_of(*node, key);
            // sockaddr_un holds 108 bytes with the terminating NUL.
            if (!text.starts_with('/') || text.ends_with('/') || text.size() > 107)
                fail(*node, key,
                     "expected an absolute path of at most 107 bytes such as "
                     "\"/run/ringlb/upgrade.sock\", got " +
                         quote(text));
            if (std::any_of(text.begin(), text.end(), [](char c) {
                    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
                }))
                fail(*node, key, "a control character in the path " + quote(text));
            runtime.upgrade_socket = text;
        }
        return runtime;
    }

    AdminConfig load_admin(const toml::table& table) const {
        constexpr std::string_view kPrefix = "admin";
        check_keys(table, kPrefix, {"bind"});
        AdminConfig admin;
        admin.enabled = true;
        admin.bind =
            address_of(require(table, kPrefix, "bind"), join(kPrefix, "bind"), &admin.bind_text);
        return admin;
    }

    LogConfig load_log(const toml::table& table) const {
        constexpr std::string_view kPrefix = "log";
        check_keys(table, kPrefix, kLogKeys, {{kRuntimeKeys, "it belongs in the [runtime] table"}});
        LogConfig log;
        if (const toml::node* node = table.get("format"))
            log.format = enum_of<common::LogFormat>(*node, join(kPrefix, "format"),
                                                    {{"text", common::LogFormat::kText},
                                                     {"logfmt", common::LogFormat::kLogfmt},
                                                     {"json", common::LogFormat::kJson}});
        if (const toml::node* node = table.get("level"))
            log.level = enum_of<common::LogLevel>(*node, join(kPrefix, "level"),
                                                  {{"debug", common::LogLevel::kDebug},
                                                   {"info", common::LogLevel::kInfo},
                                                   {"warn", common::LogLevel::kWarn},
                                                   {"error", common::LogLevel::kError}});
        if (const toml::node* node = table.get("access")) {
            std::string key = join(kPrefix, "access");
            const std::string& text = string_of(*node, key);
            if (text != "stderr")
                check_file_path(*node, key, text,
                                "expected \"stderr\" or an absolute file path such as "
                                "\"/var/log/ringlb/access.log\"");
            log.access = text;
        }
        return log;
    }

    std::vector<ListenerConfig> load_listeners(const toml::table& root) const {
        const toml::array* array = array_of_tables(root, "listener");
        std::vector<ListenerConfig> listeners;
        std::unordered_map<std::string, size_t> names;
        BindTable binds;
        std::unordered_map<std::string, size_t> unix_binds;  // socket file path -> listener
        std::vector<uint32_t> bind_lines;
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::table& table = *array->get(i)->as_table();
            std::string prefix = indexed("listener", i);
            check_keys(table, prefix, kListenerKeys,
                       {{kClusterKeys, "it belongs in a [[cluster]] section"},
                        {kBackendKeys, "it is set on each entry of a cluster's backends"}});
            ListenerConfig listener;
            listener.name = name_of(table, prefix);
            if (auto [it, added] = names.emplace(listener.name, i); !added)
                fail(*table.get("name"), join(prefix, "name"),
                     "duplicate listener name " + quote(listener.name) + " (also used by " +
                         indexed("listener", it->second) + ")");

            std::string bind_key = join(prefix, "bind");
            const toml::node& bind_node = require(table, prefix, "bind");
            listener.bind = address_of(bind_node, bind_key, &listener.bind_text, true);
            const bool unix = listener.bind.family() == AF_UNIX;
            Bind bind = unix ? Bind{} : bind_of(listener.bind);
            BindTable::Collision earlier;
            if (!unix) {
                earlier = binds.find(bind);
            } else if (auto [it, added] = unix_binds.emplace(common::unix_path(listener.bind), i);
                       !added) {
                earlier = {it->second, true};
            }
            if (earlier.index != BindTable::kNone) {
                const ListenerConfig& other = listeners[earlier.index];
                std::string who = indexed("listener", earlier.index) + " (" + quote(other.name) +
                                  ", " + quote(other.bind_text) + " at line " +
                                  std::to_string(bind_lines[earlier.index]) + ")";
                if (earlier.same)
                    fail(bind_node, bind_key,
                         "address " + quote(listener.bind_text) + " is already bound by " + who);
                fail(bind_node, bind_key,
                     "address " + quote(listener.bind_text) + " overlaps " + who + ": " +
                         std::string(overlap_reason(bind.scope, bind_of(other.bind).scope)) +
                         " of its port; both would bind, and the kernel would hand each "
                         "connection to only one of them");
            }
            if (!unix) binds.add(bind, i);
            bind_lines.push_back(bind_node.source().begin.line);

            // Must be a string here; whether the cluster exists is checked once all are loaded.
            std::string cluster_key = join(prefix, "cluster");
            listener.cluster = string_of(require(table, prefix, "cluster"), cluster_key);

            if (const toml::node* node = table.get("backlog"))
                listener.backlog =
                    static_cast<int>(integer_of(*node, join(prefix, "backlog"), 1, kMaxBacklog));
            if (const toml::node* node = table.get("forward"))
                listener.forward = enum_of<ForwardMode>(*node, join(prefix, "forward"),
                                                        {{"auto", ForwardMode::kAuto},
                                                         {"splice", ForwardMode::kSplice},
                                                         {"buffered", ForwardMode::kBuffered}});
            load_session_timeouts(table, prefix, listener);
            if (const toml::node* node = table.get("tcp_keepalive"))
                listener.tcp_keepalive = keepalive_of(*node, join(prefix, "tcp_keepalive"));
            if (const toml::node* node = table.get("tcp_user_timeout"))
                listener.tcp_user_timeout = optional_duration_of(
                    *node, join(prefix, "tcp_user_timeout"), kMaxUserTimeout, kKernelDefault);
            load_prelude(table, prefix, listener);
            load_admission(table, prefix, listener);
            load_socket_kind(table, prefix, listener);
            if (table.get("tls")) {
                listener.tls = listener_tls_of(table, prefix);
                // The cluster side is checked with the clusters (resolve_clusters).
                if (listener.forward == ForwardMode::kSplice)
                    fail(*table.get("forward"), join(prefix, "forward"),
                         splice_refused("this listener terminates TLS (its tls at line " +
                                        std::to_string(listener.tls.line) + ")"));
            }
            listeners.push_back(std::move(listener));
        }
        return listeners;
    }

    // mptcp for an IP listener; mode and owner for a unix one's socket file.
    void load_socket_kind(const toml::table& table, const std::string& prefix,
                          ListenerConfig& listener) const {
        const bool unix = listener.bind.family() == AF_UNIX;
        for (std::string_view name : {"mptcp", "mode", "owner"}) {
            const toml::node* node = table.get(name);
            if (node && unix == (name == "mptcp"))
                fail(*node, join(prefix, name),
                     unix ? "a unix listener (bind = " + quote(listener.bind_text) + ") is no TCP"
                          : "only a unix listener (bind = \"unix:/path\") has a socket file");
        }
        if (const toml::node* node = table.get("mptcp"))
            listener.mptcp = boolean_of(*node, join(prefix, "mptcp"));
        if (const toml::node* node = table.get("mode")) {
            std::string key = join(prefix, "mode");
            const std::string& text = string_of(*node, key);
            unsigned value = 0;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 8);
            if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
                value > 07777)
                fail(*node, key,
                     "expected octal permission bits like \"0660\", got " + quote(text));
            listener.mode = static_cast<int>(value);
        }
        if (const toml::node* node = table.get("owner")) {
            std::string key = join(prefix, "owner");
            listener.owner = string_of(*node, key);
            std::string error;
            if (!owner_ids(listener.owner, &listener.uid, &listener.gid, &error))
                fail(*node, key, "invalid owner " + quote(listener.owner) + ": " + error);
        }
    }

    void load_prelude(const toml::table& table, const std::string& prefix,
                      ListenerConfig& listener) const {
        if (const toml::node* node = table.get("proxy_protocol"))
            listener.proxy_protocol = enum_of<ProxyProtocol>(*node, join(prefix, "proxy_protocol"),
                                                             {{"none", ProxyProtocol::kNone},
                                                              {"v1", ProxyProtocol::kV1},
                                                              {"v2", ProxyProtocol::kV2},
                                                              {"any", ProxyProtocol::kAny}});
        if (const toml::node* node = table.get("proxy_protocol_from")) {
            std::string key = join(prefix, "proxy_protocol_from");
            if (listener.proxy_protocol == ProxyProtocol::kNone)
                fail(*node, key,
                     "has no effect without proxy_protocol (set proxy_protocol, or remove "
                     "proxy_protocol_from)");
            listener.proxy_protocol_from = cidr_list_of(*node, key);
            if (listener.proxy_protocol_from.empty())
                fail(*node, key,
                     "an empty list would refuse every client; leave proxy_protocol_from out to "
                     "accept a header from any peer");
        }
        if (const toml::node* node = table.get("prelude_timeout"))
            listener.prelude_timeout = timeout_of(*node, join(prefix, "prelude_timeout"));
        if (const toml::node* node = table.get("routes")) load_routes(*node, prefix, listener);
    }

    std::vector<common::Cidr> cidr_list_of(const toml::node& node, const std::string& key) const {
        const toml::array* array = node.as_array();
        if (!array)
            fail(node, key,
                 "expected an array of address ranges like [\"10.0.0.0/8\", \"::1\"], got " +
                     describe(node));
        std::vector<common::Cidr> list;
        for (size_t i = 0; i < array->size(); ++i) {
            std::string element_key = indexed(key, i);
            const std::string& text = string_of(*array->get(i), element_key);
            common::Cidr cidr;
            std::string error;
            if (!common::Cidr::parse(text, &cidr, &error))
                fail(*array->get(i), element_key,
                     "invalid address range " + quote(text) + ": " + error);
            list.push_back(cidr);
        }
        return list;
    }

    // allow, deny, max_connections, max_connections_per_source, rate_per_source, burst, reject.
    void load_admission(const toml::table& table, const std::string& prefix,
                        ListenerConfig& listener) const {
        if (const toml::node* node = table.get("allow")) {
            std::string key = join(prefix, "allow");
            listener.allow = cidr_list_of(*node, key);
            if (listener.allow.empty())
                fail(*node, key,
                     "an empty list would refuse every client; leave allow out to accept every "
                     "client that deny does not refuse");
        }
        if (const toml::node* node = table.get("deny"))
            listener.deny = cidr_list_of(*node, join(prefix, "deny"));
        if (const toml::node* node = table.get("max_connections"))
            listener.max_connections = static_cast<uint32_t>(
                integer_of(*node, join(prefix, "max_connections"), 0, kMaxListenerLimit));
        if (const toml::node* node = table.get("max_connections_per_source"))
            listener.max_connections_per_source = static_cast<uint32_t>(integer_of(
                *node, join(prefix, "max_connections_per_source"), 0, kMaxListenerLimit));
        if (const toml::node* node = table.get("rate_per_source")) {
            std::string key = join(prefix, "rate_per_source");
            const std::string& text = string_of(*node, key);
            // "N/s" or "N/m": N from 1 to kMaxListenerLimit, no sign, no leading zero.
            size_t slash = text.find('/');
            std::string_view count(text.data(), slash == std::string::npos ? 0 : slash);
            std::string_view unit = slash == std::string::npos
                                        ? std::string_view()
                                        : std::string_view(text).substr(slash + 1);
            uint64_t n = 0;
            bool digits = !count.empty() && count.size() <= 7 && count[0] != '0' &&
                          std::all_of(count.begin(), count.end(),
                                      [](char c) { return c >= '0' && c <= '9'; });
            if (digits)
                for (char c : count) n = n * 10 + static_cast<uint64_t>(c - '0');
            if (!digits || n > kMaxListenerLimit || (unit != "s" && unit != "m"))
                fail(*node, key,
                     "expected new connections per second or per minute like \"20/s\" or "
                     "\"100/m\" (1 to " +
                         std::to_string(kMaxListenerLimit) + "), got " + quote(text));
            listener.rate_count = static_cast<uint32_t>(n);
            listener.rate_period = unit == "s" ? Millis(1000) : Millis(60000);
            listener.burst = listener.rate_count;
        }
        if (const toml::node* node = table.get("burst")) {
            std::string key = join(prefix, "burst");
            if (listener.rate_count == 0)
                fail(*node, key,
                     "has no effect without rate_per_source (set rate_per_source, or remove "
                     "burst)");
            listener.burst = static_cast<uint32_t>(integer_of(*node, key, 1, kMaxListenerLimit));
        }
        if (const toml::node* node = table.get("reject"))
            listener.reject = enum_of<ClosePolicy>(
                *node, join(prefix, "reject"),
                {{"graceful", ClosePolicy::kGraceful}, {"reset", ClosePolicy::kReset}});
    }

    // routes = [{ sni = "api.example.com", cluster = "api" }, { sni = "*.example.com", ... }]
    void load_routes(const toml::node& node, const std::string& prefix,
                     ListenerConfig& listener) const {
        std::string key = join(prefix, "routes");
        const toml::array* array = node.as_array();
        if (!array)
            fail(node, key,
                 "expected an array like [{ sni = \"api.example.com\", cluster = \"api\" }], "
                 "got " +
                     describe(node));
        std::unordered_map<std::string, size_t> seen;
        for (size_t i = 0; i < array->size(); ++i) {
            std::string entry_key = indexed(key, i);
            const toml::table& entry = inline_table_of(
                *array->get(i), entry_key, "{ sni = \"api.example.com\", cluster = \"api\" }");
            check_keys(entry, entry_key, {"sni", "cluster"});
            SniRoute route;
            const toml::node& sni_node = require(entry, entry_key, "sni");
            std::string sni_key = join(entry_key, "sni");
            route.sni = server_name_of(sni_node, sni_key, true);
            if (auto [it, added] = seen.emplace(route.sni, i); !added)
                fail(sni_node, sni_key,
                     "duplicate route for " + quote(route.sni) + " (also " +
                         indexed(key, it->second) + ")");
            route.cluster =
                string_of(require(entry, entry_key, "cluster"), join(entry_key, "cluster"));
            listener.routes.push_back(std::move(route));
        }
    }

    // A host name as a ClientHello carries it, lowercased; with `wildcard`, "*." and one too
    // (SniRouter's rule for routes).
    std::string server_name_of(const toml::node& node, const std::string& key,
                               bool wildcard) const {
        const std::string& text = string_of(node, key);
        if (!wildcard && text.find('*') != std::string::npos)
            fail(node, key,
                 "a wildcard names no server: " + quote(text) +
                     " is sent as the one name the backends' certificates must hold (expected a "
                     "host name like \"api.internal\")");
        std::string error;
        if (!frontend::SniRouter::valid_pattern(text, &error))
            fail(node, key,
                 "invalid server name " + quote(text) + ": " + error +
                     (wildcard
                          ? " (expected a host name like \"api.example.com\" or \"*.example.com\")"
                          : " (expected a host name like \"api.internal\")"));
        // RFC 6066: the server name is a host name, never an IP address. An IPv6 address has
        // ':' and fails above.
        if (!wildcard && common::parse_ip(text))
            fail(node, key,
                 quote(text) +
                     " is an IP address, and TLS's server name (SNI) is a host name only; leave "
                     "sni out to send none");
        std::string name = text;
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return name;
    }

    // Why forward = "splice" cannot serve a listener: `why` names the TLS leg.
    static std::string splice_refused(const std::string& why) {
        return "\"splice\" cannot carry TLS: " + why +
               ", and TLS bytes must pass through ringlb's buffers to be encrypted or "
               "decrypted; use \"auto\" or \"buffered\"";
    }

    // The line of `name`'s key in `parent`: a table given by a header ([listener.tls]) or only
    // implied by a deeper one ([[listener.tls.certificates]]) has its position there, if at all.
    int line_of(const toml::table& parent, std::string_view name) const {
        for (auto&& [key, value] : parent) {
            if (key.str() != name) continue;
            if (key.source().begin.line) return static_cast<int>(key.source().begin.line);
            return static_cast<int>(value.source().begin.line);
        }
        return 0;
    }

    // An absolute path to a PEM file. Not opened here: the control plane loads the files with
    // OpenSSL when it applies the configuration, and names this key's line in its errors.
    std::string pem_path_of(const toml::node& node, const std::string& key,
                            std::string_view example) const {
        const std::string& text = string_of(node, key);
        check_file_path(node, key, text,
                        "expected the absolute path of a PEM file such as " + quote(example));
        return text;
    }

    // A cipher list or suite list, checked by OpenSSL when the configuration is applied.
    std::string cipher_list_of(const toml::node& node, const std::string& key) const {
        const std::string& text = string_of(node, key);
        if (text.empty())
            fail(node, key, "must not be empty (leave the key out for OpenSSL's default)");
        return text;
    }

    // ["h2", "http/1.1"]: ALPN protocol names in order of preference.
    std::vector<std::string> alpn_of(const toml::node& node, const std::string& key) const {
        const toml::array* array = node.as_array();
        if (!array)
            fail(node, key,
                 "expected an array of protocol names like [\"h2\", \"http/1.1\"], got " +
                     describe(node));
        std::vector<std::string> names;
        std::unordered_map<std::string, size_t> seen;
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::node& element = *array->get(i);
            std::string element_key = indexed(key, i);
            const std::string& name = string_of(element, element_key);
            if (name.empty() || name.size() > kMaxAlpnName)
                fail(element, element_key,
                     "a protocol name has 1 to " + std::to_string(kMaxAlpnName) + " bytes, got " +
                         std::to_string(name.size()));
            if (auto [it, added] = seen.emplace(name, i); !added)
                fail(element, element_key,
                     "duplicate protocol " + quote(name) + " (also " + indexed(key, it->second) +
                         ")");
            names.push_back(name);
        }
        return names;
    }

    // The keys a listener's and a cluster's `tls` share: min_version, ciphers, ciphersuites,
    // alpn and handshake_timeout.
    template <typename Tls>
    void load_tls_common(const toml::table& table, const std::string& key, Tls& tls) const {
        if (const toml::node* n = table.get("min_version"))
            tls.min_version =
                enum_of<TlsVersion>(*n, join(key, "min_version"),
                                    {{"1.2", TlsVersion::k1_2}, {"1.3", TlsVersion::k1_3}});
        if (const toml::node* n = table.get("ciphers"))
            tls.ciphers = cipher_list_of(*n, join(key, "ciphers"));
        if (const toml::node* n = table.get("ciphersuites"))
            tls.ciphersuites = cipher_list_of(*n, join(key, "ciphersuites"));
        if (const toml::node* n = table.get("alpn")) tls.alpn = alpn_of(*n, join(key, "alpn"));
        if (const toml::node* n = table.get("handshake_timeout"))
            tls.handshake_timeout = timeout_of(*n, join(key, "handshake_timeout"));
    }

    // A listener's tls = { certificates = [{ cert = "...", key = "..." }], ... }, in `parent`.
    ListenerTls listener_tls_of(const toml::table& parent, const std::string& prefix) const {
        std::string key = join(prefix, "tls");
        const toml::table& table = inline_table_of(
            *parent.get("tls"), key,
            "{ certificates = [{ cert = \"/etc/ringlb/web.pem\", key = \"/etc/ringlb/web.key\" "
            "}] }");
        check_keys(table, key, kListenerTlsKeys,
                   {{kCertificateKeys, "it is set on each entry of certificates"},
                    {kClusterTlsKeys, "it belongs in a cluster's tls table"}});
        ListenerTls tls;
        tls.enabled = true;
        tls.line = line_of(parent, "tls");

        std::string certs_key = join(key, "certificates");
        const toml::node& certs_node = require(table, key, "certificates");
        const toml::array* certs = certs_node.as_array();
        constexpr std::string_view kExample =
            "{ cert = \"/etc/ringlb/web.pem\", key = \"/etc/ringlb/web.key\" }";
        if (!certs)
            fail(certs_node, certs_key,
                 "expected an array of certificates like [" + std::string(kExample) + "], got " +
                     describe(certs_node));
        if (certs->empty()) fail(certs_node, certs_key, "at least one certificate is required");
        std::unordered_map<std::string, size_t> seen;
        for (size_t i = 0; i < certs->size(); ++i) {
            std::string entry_key = indexed(certs_key, i);
            const toml::table& entry = inline_table_of(*certs->get(i), entry_key, kExample);
            check_keys(entry, entry_key, kCertificateKeys);
            TlsCertificate cert;
            const toml::node& cert_node = require(entry, entry_key, "cert");
            cert.cert = pem_path_of(cert_node, join(entry_key, "cert"), "/etc/ringlb/web.pem");
            cert.key = pem_path_of(require(entry, entry_key, "key"), join(entry_key, "key"),
                                   "/etc/ringlb/web.key");
            cert.line = static_cast<int>(entry.source().begin.line);
            if (cert.line == 0) cert.line = static_cast<int>(cert_node.source().begin.line);
            if (auto [it, added] = seen.emplace(cert.cert, i); !added)
                fail(cert_node, join(entry_key, "cert"),
                     "duplicate certificate " + quote(cert.cert) + " (also " +
                         indexed(certs_key, it->second) + ")");
            tls.certificates.push_back(std::move(cert));
        }

        load_tls_common(table, key, tls);
        const toml::node* client_ca = table.get("client_ca");
        if (client_ca)
            tls.client_ca =
                pem_path_of(*client_ca, join(key, "client_ca"), "/etc/ringlb/clients.pem");
        if (const toml::node* n = table.get("verify_client")) {
            std::string k = join(key, "verify_client");
            tls.verify_client = enum_of<VerifyClient>(*n, k,
                                                      {{"none", VerifyClient::kNone},
                                                       {"optional", VerifyClient::kOptional},
                                                       {"require", VerifyClient::kRequire}});
            if (tls.verify_client != VerifyClient::kNone && !client_ca)
                fail(*n, k,
                     quote(to_string(tls.verify_client)) +
                         " needs client_ca, the PEM file of the CAs that client certificates must "
                         "chain to");
        }
        if (client_ca && tls.verify_client == VerifyClient::kNone)
            fail(*client_ca, join(key, "client_ca"),
                 "has no effect without verify_client = \"optional\" or \"require\" (set "
                 "verify_client, or remove client_ca)");
        if (const toml::node* n = table.get("session_tickets"))
            tls.session_tickets = boolean_of(*n, join(key, "session_tickets"));
        return tls;
    }

    // A cluster's tls = { sni = "...", ... }, in `parent`.
    ClusterTls cluster_tls_of(const toml::table& parent, const std::string& prefix) const {
        std::string key = join(prefix, "tls");
        const toml::table& table = inline_table_of(
            *parent.get("tls"), key, "{ sni = \"api.internal\", ca = \"/etc/ringlb/ca.pem\" }");
        check_keys(table, key, kClusterTlsKeys,
                   {{kListenerTlsKeys, "it belongs in a listener's tls table"}});
        ClusterTls tls;
        tls.enabled = true;
        tls.line = line_of(parent, "tls");
        if (const toml::node* n = table.get("sni"))
            tls.sni = server_name_of(*n, join(key, "sni"), false);
        if (const toml::node* n = table.get("verify"))
            tls.verify = boolean_of(*n, join(key, "verify"));
        if (const toml::node* n = table.get("ca")) {
            std::string k = join(key, "ca");
            if (!tls.verify)
                fail(*n, k, "has no effect with verify = false (set verify = true, or remove ca)");
            tls.ca = pem_path_of(*n, k, "/etc/ringlb/ca.pem");
        }
        const toml::node* cert = table.get("cert");
        const toml::node* private_key = table.get("key");
        if (cert && !private_key)
            fail(*cert, join(key, "cert"), "needs key, the client certificate's private key");
        if (private_key && !cert)
            fail(*private_key, join(key, "key"),
                 "needs cert, the client certificate it belongs to");
        if (cert) {
            tls.cert = pem_path_of(*cert, join(key, "cert"), "/etc/ringlb/client.pem");
            tls.key = pem_path_of(*private_key, join(key, "key"), "/etc/ringlb/client.key");
        }
        load_tls_common(table, key, tls);
        return tls;
    }

    void load_session_timeouts(const toml::table& table, const std::string& prefix,
                               ListenerConfig& listener) const {
        std::pair<std::string_view, Millis*> timeouts[] = {
            {"idle_timeout", &listener.idle_timeout},
            {"client_idle_timeout", &listener.client_idle_timeout},
            {"half_closed_timeout", &listener.half_closed_timeout},
            {"max_duration", &listener.max_duration},
            {"max_duration_jitter", &listener.max_duration_jitter},
        };
        for (auto [name, field] : timeouts)
            if (const toml::node* node = table.get(name))
                *field = optional_duration_of(*node, join(prefix, name), kMaxSessionTimeout);

        // Jitter stretches max_duration; alone it would silently do nothing, and wider than
        // max_duration it would more than double some sessions' lifetime.
        const toml::node* jitter = table.get("max_duration_jitter");
        if (!jitter || listener.max_duration_jitter.count() == 0) return;
        std::string key = join(prefix, "max_duration_jitter");
        if (listener.max_duration.count() == 0)
            fail(*jitter, key,
                 "has no effect without max_duration (set max_duration, or remove "
                 "max_duration_jitter)");
        if (listener.max_duration_jitter > listener.max_duration)
            fail(*jitter, key,
                 "must not exceed max_duration (" +
                     quote(table.get("max_duration")->as_string()->get()) + "), got " +
                     quote(jitter->as_string()->get()));
    }

    std::vector<ClusterConfig> load_clusters(const toml::table& root) const {
        const toml::array* array = array_of_tables(root, "cluster");
        std::vector<ClusterConfig> clusters;
        std::unordered_map<std::string, size_t> names;
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::table& table = *array->get(i)->as_table();
            std::string prefix = indexed("cluster", i);
            // Backends first: max_connections is a listener's key too, and in a cluster it is
            // far more likely meant for its backends.
            check_keys(table, prefix, kClusterKeys,
                       {{kBackendKeys, "it is set on each entry of backends"},
                        {kListenerKeys, "it belongs in a [[listener]] section"}});
            ClusterConfig cluster;
            cluster.name = name_of(table, prefix);
            if (auto [it, added] = names.emplace(cluster.name, i); !added)
                fail(*table.get("name"), join(prefix, "name"),
                     "duplicate cluster name " + quote(cluster.name) + " (also used by " +
                         indexed("cluster", it->second) + ")");

            if (const toml::node* node = table.get("connect_timeout"))
                cluster.connect_timeout = timeout_of(*node, join(prefix, "connect_timeout"));

            std::string backends_key = join(prefix, "backends");
            const toml::node& backends_node = require(table, prefix, "backends");
            const toml::array* backends = backends_node.as_array();
            if (!backends)
                fail(backends_node, backends_key,
                     "expected an array of backends like [ { address = \"127.0.0.1:9001\" } ], "
                     "got " +
                         describe(backends_node));
            if (backends->empty())
                fail(backends_node, backends_key, "at least one backend is required");
            for (size_t j = 0; j < backends->size(); ++j)
                cluster.backends.push_back(
                    load_backend(*backends->get(j), indexed(backends_key, j)));

            load_balancing(table, prefix, cluster);
            if (const toml::node* node = table.get("retries"))
                cluster.retries = static_cast<uint32_t>(
                    integer_of(*node, join(prefix, "retries"), 0, kMaxRetries));
            if (const toml::node* node = table.get("pool"))
                cluster.pool = pool_of(*node, join(prefix, "pool"));
            if (const toml::node* node = table.get("queue"))
                cluster.queue = queue_of(*node, join(prefix, "queue"));
            if (const toml::node* node = table.get("server_idle_timeout"))
                cluster.server_idle_timeout = optional_duration_of(
                    *node, join(prefix, "server_idle_timeout"), kMaxSessionTimeout);
            if (const toml::node* node = table.get("tcp_keepalive"))
                cluster.tcp_keepalive = keepalive_of(*node, join(prefix, "tcp_keepalive"));
            if (const toml::node* node = table.get("tcp_user_timeout"))
                cluster.tcp_user_timeout = optional_duration_of(
                    *node, join(prefix, "tcp_user_timeout"), kMaxUserTimeout, kKernelDefault);
            if (const toml::node* node = table.get("source_addresses"))
                load_source_addresses(*node, prefix, cluster);
            if (const toml::node* node = table.get("source_port_range"))
                load_source_port_range(*node, join(prefix, "source_port_range"), cluster);
            if (const toml::node* node = table.get("close"))
                cluster.close = enum_of<ClosePolicy>(
                    *node, join(prefix, "close"),
                    {{"graceful", ClosePolicy::kGraceful}, {"reset", ClosePolicy::kReset}});
            if (const toml::node* node = table.get("health"))
                cluster.health = health_of(*node, join(prefix, "health"));
            if (const toml::node* node = table.get("send_proxy"))
                cluster.send_proxy = enum_of<SendProxy>(
                    *node, join(prefix, "send_proxy"),
                    {{"none", SendProxy::kNone}, {"v1", SendProxy::kV1}, {"v2", SendProxy::kV2}});
            if (const toml::node* node = table.get("when_all_down"))
                cluster.when_all_down = enum_of<WhenAllDown>(
                    *node, join(prefix, "when_all_down"),
                    {{"try_anyway", WhenAllDown::kTryAnyway}, {"fail", WhenAllDown::kFail}});
            load_passive_health(table, prefix, cluster);
            load_dns(table, prefix, cluster);
            if (table.get("tls")) cluster.tls = cluster_tls_of(table, prefix);
            clusters.push_back(std::move(cluster));
        }
        return clusters;
    }

    // `balance`, and the keys that only Maglev reads. Needs the backends already loaded.
    void load_balancing(const toml::table& table, const std::string& prefix,
                        ClusterConfig& cluster) const {
        const toml::node* balance = table.get("balance");
        if (balance)
            cluster.balance = enum_of<Balance>(*balance, join(prefix, "balance"),
                                               {{"round_robin", Balance::kRoundRobin},
                                                {"least_conn", Balance::kLeastConn},
                                                {"random_two", Balance::kRandomTwo},
                                                {"least_time", Balance::kLeastTime},
                                                {"maglev", Balance::kMaglev}});
        bool maglev = cluster.balance == Balance::kMaglev;
        std::string uses = std::string("this cluster uses ") + (balance ? "" : "the default ") +
                           quote(to_string(cluster.balance));

        if (const toml::node* node = table.get("hash_key")) {
            std::string key = join(prefix, "hash_key");
            if (!maglev) fail(*node, key, "applies only with balance = \"maglev\" (" + uses + ")");
            cluster.hash_key = enum_of<HashKey>(
                *node, key,
                {{"source_ip", HashKey::kSourceIp}, {"source_ip_port", HashKey::kSourceIpPort}});
        }

        std::string size_key = join(prefix, "maglev_table_size");
        const toml::node* size = table.get("maglev_table_size");
        if (size) {
            if (!maglev)
                fail(*size, size_key, "applies only with balance = \"maglev\" (" + uses + ")");
            int64_t value = integer_of(*size, size_key, kMinMaglevTableSize, kMaxMaglevTableSize);
            if (!is_prime(value)) {
                // Both bounds of the range are prime, so both neighbours exist inside it.
                int64_t below = value - 1;
                while (!is_prime(below)) --below;
                int64_t above = value + 1;
                while (!is_prime(above)) ++above;
                fail(*size, size_key,
                     "must be a prime, got " + std::to_string(value) + " (nearest primes: " +
                         std::to_string(below) + " and " + std::to_string(above) + ")");
            }
            cluster.maglev_table_size = static_cast<uint32_t>(value);
        }
        // Every backend needs at least one slot of the lookup table.
        if (maglev && cluster.maglev_table_size <= cluster.backends.size())
            fail(size ? *size : *balance, size_key,
                 std::string(size ? "" : "the default ") +
                     std::to_string(cluster.maglev_table_size) +
                     " must be greater than the number of backends (" +
                     std::to_string(cluster.backends.size()) + "); use a larger prime");
    }

    // An inline table such as `pool = { ... }`, or `[cluster.pool]`.
    const toml::table& inline_table_of(const toml::node& node, std::string_view key,
                                       std::string_view example) const {
        if (auto table = node.as_table()) return *table;
        fail(node, key,
             "expected a table like " + std::string(example) + ", got " + describe(node));
    }

    PoolConfig pool_of(const toml::node& node, const std::string& key) const {
        const toml::table& table = inline_table_of(node, key, "{ warm = 4, max_idle = \"30s\" }");
        check_keys(table, key, {"warm", "max_idle"});
        PoolConfig pool;
        if (const toml::node* warm = table.get("warm"))
            pool.warm =
                static_cast<uint32_t>(integer_of(*warm, join(key, "warm"), 0, kMaxPoolWarm));
        if (const toml::node* max_idle = table.get("max_idle"))
            pool.max_idle = timeout_of(*max_idle, join(key, "max_idle"));
        return pool;
    }

    // dns_refresh and dns_failure_grace: only for a cluster with a backend given by name.
    void load_dns(const toml::table& table, const std::string& prefix,
                  ClusterConfig& cluster) const {
        for (const char* key : {"dns_refresh", "dns_failure_grace"}) {
            const toml::node* n = table.get(key);
            if (!n) continue;
            std::string k = join(prefix, key);
            if (!cluster.has_names())
                fail(*n, k,
                     "has no effect: no backend of this cluster is given by name (address = "
                     "\"NAME:PORT\")");
            Millis value = duration_of(*n, k);
            const std::string& text = n->as_string()->get();
            bool refresh = std::string_view(key) == "dns_refresh";
            Millis min = refresh ? kMinDnsRefresh : Millis(0);
            Millis max = refresh ? kMaxDnsRefresh : kMaxEjectTime;
            if (value < min || value > max)
                fail(*n, k,
                     "must be between " + format_duration(min) + " and " + format_duration(max) +
                         ", got " + quote(text));
            (refresh ? cluster.dns_refresh : cluster.dns_failure_grace) = value;
        }
    }

    // eject_after, eject_time, eject_time_max, max_ejected_percent and slow_start.
    void load_passive_health(const toml::table& table, const std::string& prefix,
                             ClusterConfig& cluster) const {
        if (const toml::node* n = table.get("eject_after"))
            cluster.eject_after =
                static_cast<uint32_t>(integer_of(*n, join(prefix, "eject_after"), 0, kMaxRiseFall));
        if (const toml::node* n = table.get("eject_time"))
            cluster.eject_time = long_duration_of(*n, join(prefix, "eject_time"));
        if (const toml::node* n = table.get("eject_time_max"))
            cluster.eject_time_max = long_duration_of(*n, join(prefix, "eject_time_max"));
        if (const toml::node* n = table.get("max_ejected_percent"))
            cluster.max_ejected_percent =
                static_cast<uint32_t>(integer_of(*n, join(prefix, "max_ejected_percent"), 0, 100));
        if (cluster.eject_time_max < cluster.eject_time) {
            const toml::node* n =
                table.get("eject_time_max") ? table.get("eject_time_max") : table.get("eject_time");
            fail(*n,
                 join(prefix, n == table.get("eject_time_max") ? "eject_time_max" : "eject_time"),
                 "eject_time_max (" + format_duration(cluster.eject_time_max) +
                     ") must not be below eject_time (" + format_duration(cluster.eject_time) +
                     ")");
        }
        if (cluster.eject_after == 0) {
            for (const char* key : {"eject_time", "eject_time_max", "max_ejected_percent"})
                if (const toml::node* n = table.get(key))
                    fail(*n, join(prefix, key),
                         "has no effect without eject_after (set eject_after = N to eject a "
                         "backend after N failures in a row)");
        }
        if (const toml::node* n = table.get("slow_start"))
            cluster.slow_start =
                optional_duration_of(*n, join(prefix, "slow_start"), kMaxSlowStart);
    }

    // A duration greater than 0 and at most a day (ejection times).
    Millis long_duration_of(const toml::node& node, std::string_view key) const {
        Millis value = duration_of(node, key);
        const std::string& text = node.as_string()->get();
        if (value.count() <= 0) fail(node, key, "must be greater than 0, got " + quote(text));
        if (value > kMaxEjectTime)
            fail(node, key,
                 "must be at most " + format_duration(kMaxEjectTime) + ", got " + quote(text));
        return value;
    }

    HealthCheckConfig health_of(const toml::node& node, const std::string& key) const {
        const toml::table& table = inline_table_of(
            node, key, "{ interval = \"2s\", timeout = \"1s\", rise = 2, fall = 3 }");
        check_keys(table, key,
                   {"interval", "timeout", "rise", "fall", "jitter", "port", "send", "send_hex",
                    "expect", "expect_hex"});
        HealthCheckConfig health;
        health.enabled = true;
        if (const toml::node* n = table.get("interval")) {
            std::string k = join(key, "interval");
            health.interval = duration_of(*n, k);
            if (health.interval < kMinHealthInterval || health.interval > kMaxHealthInterval)
                fail(*n, k,
                     "must be between " + format_duration(kMinHealthInterval) + " and " +
                         format_duration(kMaxHealthInterval) + ", got " +
                         quote(n->as_string()->get()));
        }
        if (const toml::node* n = table.get("timeout"))
            health.timeout = timeout_of(*n, join(key, "timeout"));
        // One check at a time per backend: a check must end before the next one starts.
        if (health.timeout > health.interval) {
            const toml::node* n =
                table.get("timeout") ? table.get("timeout") : table.get("interval");
            fail(*n, join(key, n == table.get("timeout") ? "timeout" : "interval"),
                 "the timeout (" + format_duration(health.timeout) +
                     ") must not exceed the interval (" + format_duration(health.interval) + ")");
        }
        if (const toml::node* n = table.get("rise"))
            health.rise = static_cast<uint32_t>(integer_of(*n, join(key, "rise"), 1, kMaxRiseFall));
        if (const toml::node* n = table.get("fall"))
            health.fall = static_cast<uint32_t>(integer_of(*n, join(key, "fall"), 1, kMaxRiseFall));
        if (const toml::node* n = table.get("jitter"))
            health.jitter_percent = percent_of(*n, join(key, "jitter"), kMaxHealthJitterPercent);
        if (const toml::node* n = table.get("port"))
            health.port = static_cast<uint16_t>(integer_of(*n, join(key, "port"), 1, 65535));
        health_bytes(table, key, "send", health.send, health.send_hex);
        health_bytes(table, key, "expect", health.expect, health.expect_hex);
        return health;
    }

    // `name` (text) or `name_hex` (hex digits), at most one of them.
    void health_bytes(const toml::table& table, const std::string& key, const std::string& name,
                      std::string& bytes, bool& hex) const {
        const toml::node* text = table.get(name);
        const toml::node* digits = table.get(name + "_hex");
        if (text && digits)
            fail(*digits, join(key, name + "_hex"),
                 "give either " + name + " or " + name + "_hex, not both");
        if (text) bytes = string_of(*text, join(key, name));
        if (digits) {
            std::string k = join(key, name + "_hex");
            const std::string& value = string_of(*digits, k);
            if (value.size() % 2 != 0)
                fail(*digits, k, "expected an even number of hex digits, got " + quote(value));
            for (size_t i = 0; i < value.size(); i += 2) {
                int hi = hex_digit(value[i]);
                int lo = hex_digit(value[i + 1]);
                if (hi < 0 || lo < 0)
                    fail(*digits, k, "expected hex digits (0-9, a-f), got " + quote(value));
                bytes += static_cast<char>(hi * 16 + lo);
            }
            hex = true;
        }
        const toml::node* given = text ? text : digits;
        if (given && bytes.empty())
            fail(*given, join(key, text ? name : name + "_hex"),
                 "must not be empty (leave the key out instead)");
        if (bytes.size() > kMaxHealthBytes)
            fail(*given, join(key, text ? name : name + "_hex"),
                 "must be at most " + std::to_string(kMaxHealthBytes) + " bytes, got " +
                     std::to_string(bytes.size()));
    }

    static int hex_digit(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    // "10%": a whole percentage from 0 to `max`.
    uint32_t percent_of(const toml::node& node, std::string_view key, int64_t max) const {
        auto s = node.as_string();
        std::string expected = "expected a percentage like \"10%\"";
        if (!s) fail(node, key, expected + ", got " + describe(node));
        const std::string& text = s->get();
        if (text.size() < 2 || text.size() > 4 || text.back() != '%')
            fail(node, key, expected + ", got " + quote(text));
        int64_t value = 0;
        for (size_t i = 0; i + 1 < text.size(); ++i) {
            if (text[i] < '0' || text[i] > '9') fail(node, key, expected + ", got " + quote(text));
            value = value * 10 + (text[i] - '0');
        }
        if (value > max)
            fail(node, key,
                 "must be between 0% and " + std::to_string(max) + "%, got " + quote(text));
        return static_cast<uint32_t>(value);
    }

    QueueConfig queue_of(const toml::node& node, const std::string& key) const {
        const toml::table& table = inline_table_of(node, key, "{ size = 100, timeout = \"1s\" }");
        check_keys(table, key, {"size", "timeout"});
        QueueConfig queue;
        if (const toml::node* size = table.get("size"))
            queue.size =
                static_cast<uint32_t>(integer_of(*size, join(key, "size"), 0, kMaxQueueSize));
        if (const toml::node* timeout = table.get("timeout"))
            queue.timeout = timeout_of(*timeout, join(key, "timeout"));
        return queue;
    }

    TcpKeepalive keepalive_of(const toml::node& node, const std::string& key) const {
        const toml::table& table =
            inline_table_of(node, key, "{ idle = \"60s\", interval = \"10s\", count = 3 }");
        check_keys(table, key, {"idle", "interval", "count"});
        TcpKeepalive keepalive;
        keepalive.enabled = true;
        if (const toml::node* idle = table.get("idle"))
            keepalive.idle = keepalive_seconds_of(*idle, join(key, "idle"));
        if (const toml::node* interval = table.get("interval"))
            keepalive.interval = keepalive_seconds_of(*interval, join(key, "interval"));
        if (const toml::node* count = table.get("count"))
            keepalive.count = static_cast<uint32_t>(
                integer_of(*count, join(key, "count"), 1, kMaxKeepaliveCount));
        return keepalive;
    }

    Millis keepalive_seconds_of(const toml::node& node, const std::string& key) const {
        Millis value = duration_of(node, key);
        const std::string& text = node.as_string()->get();
        if (value.count() % 1000 != 0)
            fail(node, key, "must be a whole number of seconds, got " + quote(text));
        if (value < std::chrono::seconds(1) || value > std::chrono::seconds(kMaxKeepaliveSeconds))
            fail(node, key,
                 "must be between 1s and " + std::to_string(kMaxKeepaliveSeconds) + "s, got " +
                     quote(text));
        return value;
    }

    // ["IP:PORT", ...]: the DNS servers for backends given by name, asked in order.
    void load_dns_servers(const toml::node& node, RuntimeConfig& runtime) const {
        std::string key = "runtime.dns_servers";
        const toml::array* array = node.as_array();
        if (!array)
            fail(node, key,
                 "expected an array of server addresses like [\"127.0.0.1:53\"], got " +
                     describe(node));
        for (size_t i = 0; i < array->size(); ++i) {
            std::string text;
            runtime.dns_servers.push_back(address_of(*array->get(i), indexed(key, i), &text));
            runtime.dns_server_texts.push_back(std::move(text));
        }
    }

    void load_source_addresses(const toml::node& node, const std::string& prefix,
                               ClusterConfig& cluster) const {
        std::string key = join(prefix, "source_addresses");
        const toml::array* array = node.as_array();
        if (!array)
            fail(node, key,
                 "expected an array of IP addresses like [\"127.0.0.2\", \"::1\"], got " +
                     describe(node));
        std::unordered_map<std::string, size_t> seen;
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::node& element = *array->get(i);
            std::string element_key = indexed(key, i);
            const std::string& text = string_of(element, element_key);
            std::string error;
            std::optional<common::Address> address = common::parse_ip(text, &error);
            if (!address)
                fail(element, element_key, "invalid source address " + quote(text) + ": " + error);
            if (is_unspecified(*address))
                fail(element, element_key,
                     quote(text) +
                         " is the unspecified address; leave source_addresses out to let the "
                         "kernel choose");
            if (auto [it, added] = seen.emplace(ip_bytes(*address), i); !added)
                fail(element, element_key,
                     "duplicate source address " + quote(text) + " (same as " +
                         indexed(key, it->second) + ", " +
                         quote(cluster.source_address_texts[it->second]) + ")");
            cluster.source_addresses.push_back(*address);
            cluster.source_address_texts.push_back(text);
        }
        if (cluster.source_addresses.empty()) return;
        // A connect from an address of the other family fails, so every backend needs at
        // least one source address it can be reached from.
        auto has_family = [&](int family) {
            return std::any_of(cluster.source_addresses.begin(), cluster.source_addresses.end(),
                               [&](const common::Address& a) { return a.family() == family; });
        };
        const bool covers[2] = {has_family(AF_INET), has_family(AF_INET6)};
        for (size_t j = 0; j < cluster.backends.size(); ++j) {
            const BackendConfig& backend = cluster.backends[j];
            if (backend.address.family() == AF_UNIX) continue;  // no source address to bind
            if (!covers[backend.address.family() == AF_INET6 ? 1 : 0])
                fail(node, key,
                     std::string("no ") + family_name(backend.address.family()) +
                         " address for backend " + indexed(join(prefix, "backends"), j) + " (" +
                         quote(backend.address_text) +
                         "); each backend needs a source address of its own family");
        }
    }

    void load_source_port_range(const toml::node& node, const std::string& key,
                                ClusterConfig& cluster) const {
        constexpr std::string_view kExpected =
            "expected \"LOW-HIGH\" with ports 1..65535, e.g. \"20000-29999\"";
        auto s = node.as_string();
        if (!s) fail(node, key, std::string(kExpected) + ", got " + describe(node));
        std::string_view text = s->get();
        size_t dash = text.find('-');
        unsigned long bounds[2] = {0, 0};
        std::string_view parts[2] = {text.substr(0, dash), dash == std::string_view::npos
                                                               ? std::string_view()
                                                               : text.substr(dash + 1)};
        for (int k = 0; k < 2; ++k) {
            const char* begin = parts[k].data();
            const char* end = begin + parts[k].size();
            auto [stop, ec] = std::from_chars(begin, end, bounds[k]);
            if (dash == std::string_view::npos || parts[k].empty() || stop != end ||
                (ec != std::errc() && ec != std::errc::result_out_of_range))
                fail(node, key, std::string(kExpected) + ", got " + quote(text));
            if (ec == std::errc::result_out_of_range) bounds[k] = 65536;
        }
        for (unsigned long bound : bounds)
            if (bound < 1 || bound > 65535)
                fail(node, key,
                     "ports must be between 1 and 65535, got " + std::to_string(bound) + " in " +
                         quote(text));
        if (bounds[0] > bounds[1])
            fail(node, key,
                 "the low port " + std::to_string(bounds[0]) + " is above the high port " +
                     std::to_string(bounds[1]) + " in " + quote(text));
        cluster.source_port_min = static_cast<uint16_t>(bounds[0]);
        cluster.source_port_max = static_cast<uint16_t>(bounds[1]);
    }

    // Any well-formed duration, 0 included; range checks are the caller's.
    Millis duration_of(const toml::node& node, std::string_view key) const {
        auto s = node.as_string();
        if (!s)
            fail(node, key,
                 "expected a duration string like \"2s\" or \"250ms\", got " + describe(node));
        try {
            return parse_duration(s->get());
        } catch (const std::invalid_argument& error) {
            fail(node, key, "invalid duration " + quote(s->get()) + ": " + error.what());
        }
    }

    // A timeout that must fire: greater than 0, at most an hour.
    Millis timeout_of(const toml::node& node, std::string_view key) const {
        Millis value = duration_of(node, key);
        const std::string& text = node.as_string()->get();
        if (value.count() <= 0) fail(node, key, "must be greater than 0, got " + quote(text));
        if (value > kMaxConnectTimeout)
            fail(node, key,
                 "must be at most " + format_duration(kMaxConnectTimeout) + ", got " + quote(text));
        return value;
    }

    // A duration where "0s" has a meaning of its own (`zero_means`), else at most `max`.
    Millis optional_duration_of(const toml::node& node, std::string_view key, Millis max,
                                std::string_view zero_means = "turns it off") const {
        Millis value = duration_of(node, key);
        if (value > max)
            fail(node, key,
                 "must be at most " + format_duration(max) + " (\"0s\" " + std::string(zero_means) +
                     "), got " + quote(node.as_string()->get()));
        return value;
    }

    // "IP:PORT", or "NAME:PORT" for a backend resolved at run time.
    void backend_address(const toml::node& node, const std::string& key,
                         BackendConfig& backend) const {
        const std::string& text = string_of(node, key);
        if (common::parse_address(text) || text.starts_with("unix:")) {
            backend.address = address_of(node, key, &backend.address_text, true);
            return;
        }
        std::string name_error;
        std::optional<common::HostPort> name = common::parse_host_port(text, &name_error);
        if (!name) {
            // Say what is wrong with the form the text was most likely meant as.
            bool looks_like_name = text.find('[') == std::string::npos &&
                                   std::any_of(text.begin(), text.end(), [](char c) {
                                       return std::isalpha(static_cast<unsigned char>(c)) &&
                                              !std::isxdigit(static_cast<unsigned char>(c));
                                   });
            std::string address_error;
            common::parse_address(text, &address_error);
            // parse_address speaks for addresses that must be numeric; a backend may be a name.
            if (size_t at = address_error.find(" (host names are not resolved)");
                at != std::string::npos)
                address_error.erase(at);
            fail(node, key,
                 "invalid address " + quote(text) + ": " +
                     (looks_like_name ? name_error : address_error) +
                     " (a backend is IP:PORT or NAME:PORT)");
        }
        backend.address_text = text;
        backend.host = name->host;
        backend.port = name->port;
    }

    BackendConfig load_backend(const toml::node& node, const std::string& prefix) const {
        const toml::table* table = node.as_table();
        if (!table)
            fail(node, prefix,
                 "expected a table like { address = \"127.0.0.1:9001\" }, got " + describe(node));
        check_keys(*table, prefix, kBackendKeys,
                   {{kClusterKeys, "it is set on the cluster, not on one backend"}});
        BackendConfig backend;
        backend_address(require(*table, prefix, "address"), join(prefix, "address"), backend);
        if (const toml::node* weight = table->get("weight"))
            backend.weight =
                static_cast<uint32_t>(integer_of(*weight, join(prefix, "weight"), 1, kMaxWeight));
        if (const toml::node* max = table->get("max_connections"))
            backend.max_connections = static_cast<uint32_t>(
                integer_of(*max, join(prefix, "max_connections"), 0, kMaxBackendConnections));
        return backend;
    }

    void resolve_clusters(const toml::table& root, Config& config) const {
        const toml::array& listeners = *root.get("listener")->as_array();
        std::unordered_map<std::string_view, size_t> by_name;
        for (size_t j = 0; j < config.clusters.size(); ++j)
            by_name.emplace(config.clusters[j].name, j);
        // The index of the cluster `name`, which the key at `node` names.
        auto resolve = [&](const std::string& name, const toml::node& node,
                           const std::string& key) -> size_t {
            auto found = by_name.find(name);
            if (found != by_name.end()) return found->second;
            std::string reason = "cluster " + quote(name) + " is not defined";
            // The nearest defined name, if the reference looks like a typo of one.
            std::string_view best;
            size_t best_distance = 3;
            for (const ClusterConfig& cluster : config.clusters) {
                size_t d = edit_distance(name, cluster.name);
                if (d < best_distance) {
                    best = cluster.name;
                    best_distance = d;
                }
            }
            if (!best.empty()) reason += " (did you mean " + quote(best) + "?)";
            fail(node, key, reason);
        };
        for (size_t i = 0; i < config.listeners.size(); ++i) {
            ListenerConfig& listener = config.listeners[i];
            std::string prefix = indexed("listener", i);
            const toml::table& table = *listeners.get(i)->as_table();
            listener.cluster_index =
                resolve(listener.cluster, *table.get("cluster"), join(prefix, "cluster"));
            for (size_t r = 0; r < listener.routes.size(); ++r) {
                std::string key = indexed(join(prefix, "routes"), r);
                const toml::node& node =
                    *table.get("routes")->as_array()->get(r)->as_table()->get("cluster");
                listener.routes[r].cluster_index =
                    resolve(listener.routes[r].cluster, node, join(key, "cluster"));
            }
            if (listener.forward != ForwardMode::kSplice) continue;
            // Every cluster a client of this listener may reach, and the key that names it.
            std::vector<std::pair<size_t, std::string>> reached = {{listener.cluster_index, ""}};
            for (size_t r = 0; r < listener.routes.size(); ++r)
                reached.emplace_back(listener.routes[r].cluster_index,
                                     " (" + indexed("routes", r) + ")");
            for (const auto& [index, via] : reached) {
                const ClusterConfig& cluster = config.clusters[index];
                if (cluster.tls.enabled)
                    fail(*table.get("forward"), join(prefix, "forward"),
                         splice_refused("cluster " + quote(cluster.name) + via +
                                        " speaks TLS to its backends (its tls at line " +
                                        std::to_string(cluster.tls.line) + ")"));
            }
        }
    }

    std::string_view text_;
    const std::string& source_;
};

}  // namespace

Config load_string(std::string_view text, const std::string& source_name) {
    return Loader(text, source_name).load();
}

Config load_file(const std::string& path) {
    auto refuse = [&](const std::string& reason) { return ConfigError(path + ": " + reason); };
    auto cannot_read = [&](int error) {
        return refuse(std::string("cannot read: ") + std::strerror(error));
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    common::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd) throw cannot_read(errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw cannot_read(errno);
    if (!S_ISREG(st.st_mode)) {
        const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                           : S_ISCHR(st.st_mode)  ? "a character device"
                           : S_ISBLK(st.st_mode)  ? "a block device"
                           : S_ISFIFO(st.st_mode) ? "a FIFO"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                                                  : "of an unknown type";
        throw refuse(std::string("not a regular file (it is ") + kind +
                     "); give the path of a TOML file");
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes)
        throw refuse(std::to_string(st.st_size) + " bytes is above the limit of " + size_limit());
    // The file may grow while it is read: one byte more than fstat saw shows it, and reading
    // stops one byte past the limit.
    std::string text(static_cast<size_t>(st.st_size) + 1, '\0');
    size_t size = 0;
    for (;;) {
        if (size == text.size()) {
            if (size > kMaxConfigBytes)
                throw refuse("the file grew above the limit of " + size_limit() +
                             " while it was read");
            text.resize(std::min(text.size() * 2, kMaxConfigBytes + 1));
        }
        ssize_t n = ::read(fd.get(), text.data() + size, text.size() - size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw cannot_read(errno);
        }
        if (n == 0) break;
        size += static_cast<size_t>(n);
    }
    text.resize(size);
    return load_string(text, path);
}

}  // namespace ringlb::config
