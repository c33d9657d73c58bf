// render_toml(): the running configuration as TOML that loads back to the same Config.

#include "config/render.hpp"

#include <gtest/gtest.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace ringlb::config {
namespace {

// Every key, each with a value other than its default, so a key the renderer forgets or
// misspells comes back different (or fails to load). Three clusters: the Maglev-only keys need
// balance = "maglev", another shows the empty keepalive table, the third a tls table with its
// defaults but verify. TLS sits on listeners and clusters that no splicing listener reaches.
constexpr std::string_view kEveryKey = R"([runtime]
workers = 3
pin_cpus = true
engine = "epoll"
buffer_size = 32768
buffer_count = 512
pipe_size = 131072
pipe_pool = 17
drain_delay = "5s"
drain_timeout = "1500ms"
drain_spread = "0s"
upgrade_socket = "/run/ringlb/upgrade.sock"
dns_servers = ["127.0.0.1:5353", "[::1]:53"]

[admin]
bind = "127.0.0.1:9901"

[log]
format = "json"
level = "debug"
access = "/var/log/ringlb/access.log"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
mptcp = true
backlog = 128
forward = "splice"
idle_timeout = "90s"
client_idle_timeout = "1500ms"
half_closed_timeout = "30s"
max_duration = "24h"
max_duration_jitter = "1h"
tcp_keepalive = { idle = "60s", interval = "10s", count = 3 }
tcp_user_timeout = "45s"
proxy_protocol = "v2"
proxy_protocol_from = ["10.0.0.0/8", "::1/128"]
prelude_timeout = "750ms"

[[listener]]
name = "api"
bind = "[::1]:8081"
cluster = "maglev.pool-2"
forward = "buffered"
tcp_keepalive = { interval = "5s" }
routes = [ { sni = "api.example.com", cluster = "app" }, { sni = "*.example.com", cluster = "maglev.pool-2" } ]
allow = ["10.0.0.0/8", "::1/128"]
deny = ["10.9.0.0/16"]
max_connections = 1000
max_connections_per_source = 20
rate_per_source = "30/m"
burst = 5
reject = "reset"
[listener.tls]
min_version = "1.3"
ciphers = "ECDHE+AESGCM"
ciphersuites = "TLS_AES_256_GCM_SHA384"
alpn = ["h2", "http/1.1"]
client_ca = "/etc/ringlb/clients.pem"
verify_client = "require"
session_tickets = false
handshake_timeout = "2500ms"
[[listener.tls.certificates]]
cert = "/etc/ringlb/api.pem"
key = "/etc/ringlb/api.key"
[[listener.tls.certificates]]
cert = "/etc/ringlb/wild.pem"
key = "/etc/ringlb/wild.key"

[[listener]]
name = "local"
bind = "unix:/run/ringlb/web.sock"
cluster = "app"
mode = "0660"
owner = "root:0"
tls = { certificates = [ { cert = "/etc/ringlb/local.pem", key = "/etc/ringlb/local.key" } ] }

[[cluster]]
name = "app"
connect_timeout = "250ms"
balance = "least_conn"
retries = 5
pool = { warm = 4, max_idle = "5s" }
queue = { size = 100, timeout = "2s" }
server_idle_timeout = "10m"
tcp_keepalive = {}
tcp_user_timeout = "20s"
source_addresses = ["127.0.0.2", "::1"]
source_port_range = "40000-49999"
close = "reset"
health = { interval = "500ms", timeout = "250ms", rise = 3, fall = 4, jitter = "5%", port = 9100, send = "PING\r\n", expect = "+PONG" }
when_all_down = "fail"
eject_after = 4
eject_time = "10s"
eject_time_max = "2m"
max_ejected_percent = 34
slow_start = "45s"
dns_refresh = "30s"
dns_failure_grace = "1h"
send_proxy = "v1"
backends = [ { address = "127.0.0.1:9001", weight = 3, max_connections = 100 },
             { address = "[::1]:9002" },
             { address = "web.example.com:9004", weight = 2, max_connections = 7 } ]

[[cluster]]
name = "maglev.pool-2"
balance = "maglev"
hash_key = "source_ip_port"
maglev_table_size = 101
health = { send_hex = "00ff10", expect_hex = "0a0B" }
backends = [ { address = "127.0.0.1:9003", weight = 7 }, { address = "unix:/run/app.sock" } ]
tls = { sni = "pool.internal", ca = "/etc/ringlb/ca.pem", cert = "/etc/ringlb/client.pem", key = "/etc/ringlb/client.key", alpn = ["h2"], min_version = "1.3", ciphers = "ECDHE+CHACHA20", ciphersuites = "TLS_CHACHA20_POLY1305_SHA256", handshake_timeout = "3s" }

[[cluster]]
name = "unchecked"
backends = [ { address = "127.0.0.1:9005" } ]
tls = { verify = false }
)";

// A file with only what is required: everything else is a default.
constexpr std::string_view kMinimal = R"([[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"
[[cluster]]
name = "app"
backends = [ { address = "127.0.0.1:9001" } ]
)";

void expect_same(const common::Address& a, const common::Address& b, const std::string& what) {
    EXPECT_EQ(a.length, b.length) << what;
    EXPECT_EQ(a.to_string(), b.to_string()) << what;
}

void expect_same(const TcpKeepalive& a, const TcpKeepalive& b, const std::string& what) {
    EXPECT_EQ(a.enabled, b.enabled) << what;
    EXPECT_EQ(a.idle, b.idle) << what;
    EXPECT_EQ(a.interval, b.interval) << what;
    EXPECT_EQ(a.count, b.count) << what;
}

// The lines a tls table records are where the text that was loaded has it: the rendering's
// differ.
ListenerTls without_lines(ListenerTls tls) {
    tls.line = 0;
    for (TlsCertificate& certificate : tls.certificates) certificate.line = 0;
    return tls;
}

ClusterTls without_lines(ClusterTls tls) {
    tls.line = 0;
    return tls;
}

// Field by field, every field of every struct in config.hpp but Config::source (and the lines
// above).
void expect_same(const Config& a, const Config& b) {
    EXPECT_EQ(a.runtime.workers, b.runtime.workers);
    EXPECT_EQ(a.runtime.pin_cpus, b.runtime.pin_cpus);
    EXPECT_EQ(a.runtime.engine, b.runtime.engine);
    EXPECT_EQ(a.runtime.buffer_size, b.runtime.buffer_size);
    EXPECT_EQ(a.runtime.buffer_count, b.runtime.buffer_count);
    EXPECT_EQ(a.runtime.pipe_size, b.runtime.pipe_size);
    EXPECT_EQ(a.runtime.pipe_pool, b.runtime.pipe_pool);
    EXPECT_EQ(a.runtime.drain_delay, b.runtime.drain_delay);
    EXPECT_EQ(a.runtime.drain_timeout, b.runtime.drain_timeout);
    EXPECT_EQ(a.runtime.drain_spread, b.runtime.drain_spread);
    EXPECT_EQ(a.runtime.upgrade_socket, b.runtime.upgrade_socket);
    EXPECT_EQ(a.runtime.dns_server_texts, b.runtime.dns_server_texts);
    EXPECT_EQ(a.runtime.dns_servers.size(), b.runtime.dns_servers.size());

    EXPECT_EQ(a.admin.enabled, b.admin.enabled);
    EXPECT_EQ(a.admin.bind_text, b.admin.bind_text);
    if (a.admin.enabled && b.admin.enabled) expect_same(a.admin.bind, b.admin.bind, "admin.bind");

    EXPECT_EQ(a.log.format, b.log.format);
    EXPECT_EQ(a.log.level, b.log.level);
    EXPECT_EQ(a.log.access, b.log.access);

    ASSERT_EQ(a.listeners.size(), b.listeners.size());
    for (size_t i = 0; i < a.listeners.size(); ++i) {
        const ListenerConfig& x = a.listeners[i];
        const ListenerConfig& y = b.listeners[i];
        std::string at = "listener[" + std::to_string(i) + "]";
        EXPECT_EQ(x.name, y.name) << at;
        expect_same(x.bind, y.bind, at);
        EXPECT_EQ(x.bind_text, y.bind_text) << at;
        EXPECT_EQ(x.cluster, y.cluster) << at;
        EXPECT_EQ(x.cluster_index, y.cluster_index) << at;
        EXPECT_EQ(x.backlog, y.backlog) << at;
        EXPECT_EQ(x.forward, y.forward) << at;
        EXPECT_EQ(x.idle_timeout, y.idle_timeout) << at;
        EXPECT_EQ(x.client_idle_timeout, y.client_idle_timeout) << at;
        EXPECT_EQ(x.half_closed_timeout, y.half_closed_timeout) << at;
        EXPECT_EQ(x.max_duration, y.max_duration) << at;
        EXPECT_EQ(x.max_duration_jitter, y.max_duration_jitter) << at;
        expect_same(x.tcp_keepalive, y.tcp_keepalive, at + ".tcp_keepalive");
        EXPECT_EQ(x.tcp_user_timeout, y.tcp_user_timeout) << at;
        EXPECT_EQ(x.mptcp, y.mptcp) << at;
        EXPECT_EQ(x.mode, y.mode) << at;
        EXPECT_EQ(x.owner, y.owner) << at;
        EXPECT_EQ(x.uid, y.uid) << at;
        EXPECT_EQ(x.gid, y.gid) << at;
        EXPECT_EQ(without_lines(x.tls), without_lines(y.tls)) << at;
    }

    ASSERT_EQ(a.clusters.size(), b.clusters.size());
    for (size_t i = 0; i < a.clusters.size(); ++i) {
        const ClusterConfig& x = a.clusters[i];
        const ClusterConfig& y = b.clusters[i];
        std::string at = "cluster[" + std::to_string(i) + "]";
        EXPECT_EQ(x.name, y.name) << at;
        ASSERT_EQ(x.backends.size(), y.backends.size()) << at;
        for (size_t j = 0; j < x.backends.size(); ++j) {
            std::string backend = at + ".backends[" + std::to_string(j) + "]";
            expect_same(x.backends[j].address, y.backends[j].address, backend);
            EXPECT_EQ(x.backends[j].address_text, y.backends[j].address_text) << backend;
            EXPECT_EQ(x.backends[j].weight, y.backends[j].weight) << backend;
            EXPECT_EQ(x.backends[j].max_connections, y.backends[j].max_connections) << backend;
            EXPECT_EQ(x.backends[j].host, y.backends[j].host) << backend;
            EXPECT_EQ(x.backends[j].port, y.backends[j].port) << backend;
        }
        EXPECT_EQ(x.connect_timeout, y.connect_timeout) << at;
        EXPECT_EQ(x.balance, y.balance) << at;
        EXPECT_EQ(x.hash_key, y.hash_key) << at;
        EXPECT_EQ(x.maglev_table_size, y.maglev_table_size) << at;
        EXPECT_EQ(x.retries, y.retries) << at;
        EXPECT_EQ(x.pool.warm, y.pool.warm) << at;
        EXPECT_EQ(x.pool.max_idle, y.pool.max_idle) << at;
        EXPECT_EQ(x.queue.size, y.queue.size) << at;
        EXPECT_EQ(x.queue.timeout, y.queue.timeout) << at;
        EXPECT_EQ(x.server_idle_timeout, y.server_idle_timeout) << at;
        expect_same(x.tcp_keepalive, y.tcp_keepalive, at + ".tcp_keepalive");
        EXPECT_EQ(x.tcp_user_timeout, y.tcp_user_timeout) << at;
        ASSERT_EQ(x.source_addresses.size(), y.source_addresses.size()) << at;
        for (size_t j = 0; j < x.source_addresses.size(); ++j)
            expect_same(x.source_addresses[j], y.source_addresses[j], at + ".source_addresses");
        EXPECT_EQ(x.source_address_texts, y.source_address_texts) << at;
        EXPECT_EQ(x.source_port_min, y.source_port_min) << at;
        EXPECT_EQ(x.source_port_max, y.source_port_max) << at;
        EXPECT_EQ(x.close, y.close) << at;
        EXPECT_EQ(x.health, y.health) << at;
        EXPECT_EQ(x.when_all_down, y.when_all_down) << at;
        EXPECT_EQ(x.eject_after, y.eject_after) << at;
        EXPECT_EQ(x.eject_time, y.eject_time) << at;
        EXPECT_EQ(x.eject_time_max, y.eject_time_max) << at;
        EXPECT_EQ(x.max_ejected_percent, y.max_ejected_percent) << at;
        EXPECT_EQ(x.slow_start, y.slow_start) << at;
        EXPECT_EQ(x.dns_refresh, y.dns_refresh) << at;
        EXPECT_EQ(x.dns_failure_grace, y.dns_failure_grace) << at;
        EXPECT_EQ(without_lines(x.tls), without_lines(y.tls)) << at;
    }
}

// Loads `text`, renders it, loads the rendering: the two Configs must be equal, and rendering the
// second gives the same text (a fixed point).
void expect_round_trip(std::string_view text) {
    Config first = load_string(text, "first.toml");
    std::string rendered = render_toml(first);
    Config second;
    try {
        second = load_string(rendered, "first.toml");
    } catch (const ConfigError& error) {
        FAIL() << "the rendering does not load: " << error.what() << "\n" << rendered;
    }
    SCOPED_TRACE(rendered);
    expect_same(first, second);
    EXPECT_EQ(render_toml(second), rendered);
}

TEST(ConfigRenderTest, EveryKeyRoundTrips) {
    expect_round_trip(kEveryKey);
}

TEST(ConfigRenderTest, DefaultsRoundTrip) {
    expect_round_trip(kMinimal);
}

TEST(ConfigRenderTest, DefaultsAreWrittenOut) {
    std::string rendered = render_toml(load_string(kMinimal, "min.toml"));
    // One line per default, as the reference in the README states it.
    for (const char* line :
         {"workers = \"auto\"",
          "pin_cpus = false",
          "engine = \"auto\"",
          "buffer_size = 65536",
          "buffer_count = 256",
          "pipe_size = 65536",
          "pipe_pool = 256",
          "drain_delay = \"0s\"",
          "drain_timeout = \"25s\"",
          "drain_spread = \"5s\"",
          "format = \"text\"",
          "level = \"info\"",
          "backlog = 4096",
          "forward = \"auto\"",
          "idle_timeout = \"1h\"",
          "client_idle_timeout = \"0s\"",
          "half_closed_timeout = \"0s\"",
          "max_duration = \"0s\"",
          "max_duration_jitter = \"0s\"",
          "tcp_user_timeout = \"0s\"",
          "max_connections = 0",
          "max_connections_per_source = 0",
          "reject = \"graceful\"",
          "connect_timeout = \"2s\"",
          "balance = \"round_robin\"",
          "retries = 2",
          "pool = { max_idle = \"30s\", warm = 0 }",
          "queue = { size = 0, timeout = \"1s\" }",
          "server_idle_timeout = \"0s\"",
          "source_addresses = []",
          "close = \"graceful\"",
          "backends = [ { address = \"127.0.0.1:9001\", max_connections = 0, weight = 1 } ]"})
        EXPECT_NE(rendered.find(std::string("\n") + line + "\n"), std::string::npos)
            << line << " in:\n"
            << rendered;
    // No spelling for "unset": left out (see render.hpp).
    for (const char* key :
         {"[admin]", "access", "tcp_keepalive", "source_port_range", "hash_key",
          "maglev_table_size", "allow", "deny", "rate_per_source", "burst", "tls"})
        EXPECT_EQ(rendered.find(key), std::string::npos) << key << " in:\n" << rendered;
    EXPECT_TRUE(rendered.starts_with(
        "# effective configuration loaded from min.toml, defaults included\n\n"))
        << rendered;
}

// A tls table with only what is required comes back with every default written out, and nothing
// that is unset (the lines are whole: no cipher list, client_ca, sni, ca or client certificate).
// The lines the rendering's load records point at its own tls lines.
TEST(ConfigRenderTest, TlsDefaultsAreWrittenOut) {
    std::string text = std::string(kMinimal) +
                       "tls = { verify = false }\n[[listener]]\nname = \"tls\"\nbind = "
                       "\"127.0.0.1:8443\"\ncluster = \"app\"\ntls = { certificates = [{ cert = "
                       "\"/etc/a.pem\", key = \"/etc/a.key\" }] }\n";
    std::string rendered = render_toml(load_string(text, "tls.toml"));
    for (const char* line :
         {"tls = { alpn = [], certificates = [ { cert = \"/etc/a.pem\", key = \"/etc/a.key\" } "
          "], handshake_timeout = \"10s\", min_version = \"1.2\", session_tickets = true, "
          "verify_client = \"none\" }",
          "tls = { alpn = [], handshake_timeout = \"10s\", min_version = \"1.2\", verify = false "
          "}"})
        EXPECT_NE(rendered.find(std::string("\n") + line + "\n"), std::string::npos)
            << line << " in:\n"
            << rendered;

    Config again = load_string(rendered, "again.toml");
    std::vector<std::string> lines;
    std::istringstream in(rendered);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    auto line_at = [&](int number) {
        return number >= 1 && static_cast<size_t>(number) <= lines.size() ? lines[number - 1]
                                                                          : std::string();
    };
    const ListenerTls& tls = again.listeners[1].tls;
    EXPECT_TRUE(line_at(tls.line).starts_with("tls = { ")) << tls.line << ":\n" << rendered;
    ASSERT_EQ(tls.certificates.size(), 1u);
    EXPECT_EQ(tls.certificates[0].line, tls.line);
    EXPECT_TRUE(line_at(again.clusters[0].tls.line).starts_with("tls = { "))
        << again.clusters[0].tls.line << ":\n"
        << rendered;
}

TEST(ConfigRenderTest, ControlCharactersInTheSourceNameStayInTheComment) {
    Config config = load_string(kMinimal, "evil\nname.toml");
    std::string rendered = render_toml(config);
    EXPECT_TRUE(rendered.starts_with("# effective configuration loaded from evil?name.toml,"))
        << rendered;
    EXPECT_NO_THROW(load_string(rendered, "again.toml")) << rendered;
}

bool is_word(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
}

// "listener" from "### `[[listener]]`: ...", "runtime" from "### `[runtime]`: ..."; else "".
// (No std::regex: GCC 12 warns inside <regex> under -O2 with the sanitizers.)
std::string heading_section(std::string_view line) {
    if (!line.starts_with("### `[")) return {};
    line.remove_prefix(6);
    if (line.starts_with("[")) line.remove_prefix(1);
    std::string_view name = line.substr(0, line.find(']'));
    return is_word(name) ? std::string(name) : std::string();
}

// "workers" from "**workers** ..."; else "".
std::string entry_key(std::string_view line) {
    if (!line.starts_with("**")) return {};
    line.remove_prefix(2);
    size_t end = line.find("** ");
    if (end == std::string_view::npos) return {};
    std::string_view key = line.substr(0, end);
    return is_word(key) ? std::string(key) : std::string();
}

// Every key the README's configuration reference documents (a "**key**" entry under a section
// heading) appears in that section of kEveryKey's rendering: a key added to the loader and the
// reference but not to the renderer fails here.
TEST(ConfigRenderTest, EveryDocumentedKeyIsRendered) {
    std::ifstream file(std::string(RINGLB_SOURCE_DIR) + "/README.md");
    ASSERT_TRUE(file) << "cannot read README.md";
    std::stringstream readme;
    readme << file.rdbuf();
    std::string text = readme.str();
    size_t begin = text.find("\n## Configuration reference");
    size_t end = text.find("\n### Complete example");
    ASSERT_NE(begin, std::string::npos);
    ASSERT_NE(end, std::string::npos);
    text = text.substr(begin, end - begin);

    toml::table rendered = toml::parse(render_toml(load_string(kEveryKey, "every.toml")));
    // The tables of the current section: [[listener]] and [[cluster]] have several, and a key
    // counts as rendered when one of them has it (hash_key is only written for Maglev).
    std::vector<const toml::table*> tables;
    std::string section;
    size_t checked = 0;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (std::string name = heading_section(line); !name.empty()) {
            section = name;
            tables.clear();
            const toml::node* node = rendered.get(section);
            ASSERT_NE(node, nullptr) << "no [" << section << "] in the rendering";
            if (const toml::array* array = node->as_array()) {
                for (const toml::node& element : *array) tables.push_back(element.as_table());
            } else {
                tables.push_back(node->as_table());
            }
        } else if (std::string key = entry_key(line); !key.empty() && !tables.empty()) {
            bool found = false;
            for (const toml::table* table : tables) found = found || table->contains(key);
            EXPECT_TRUE(found) << key << " (documented in " << section << ") is not rendered";
            ++checked;
        }
    }
    // The reference has 48 keys; a broken pattern would check none.
    EXPECT_GE(checked, 48u);
}

}  // namespace
}  // namespace ringlb::config
