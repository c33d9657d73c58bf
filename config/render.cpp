#include "config/render.hpp"

#include <sys/socket.h>

#include <cstdio>
#include <sstream>
#include <string_view>
#include <utility>

#include <toml++/toml.h>

namespace ringlb::config {

namespace {

// The key spellings here repeat the loader's (config.cpp). tests/unit/config_render_test.cpp holds
// them together: a misspelt key fails to load back, a changed value comes back different, and a
// key documented in the README's reference but not written here is reported.

toml::table inline_table() {
    toml::table table;
    table.is_inline(true);
    return table;
}

std::string format(const toml::table& table) {
    std::ostringstream out;
    out << toml::toml_formatter(table, toml::format_flags::indent_array_elements);
    return out.str();
}

// Only the sub-keys that are set: a zero keeps the kernel's value and has no spelling of its own
// (the loader takes 1..32767 s and 1..127).
toml::table keepalive_table(const TcpKeepalive& keepalive) {
    toml::table table = inline_table();
    if (keepalive.idle.count() != 0) table.insert("idle", format_duration(keepalive.idle));
    if (keepalive.interval.count() != 0)
        table.insert("interval", format_duration(keepalive.interval));
    if (keepalive.count != 0) table.insert("count", static_cast<int64_t>(keepalive.count));
    return table;
}

toml::array string_array(const std::vector<std::string>& strings) {
    toml::array array;
    for (const std::string& s : strings) array.push_back(s);
    return array;
}

// The keys a listener's and a cluster's `tls` share. The cipher lists are left out when empty:
// "" is OpenSSL's default, which the file spells by leaving the key out.
template <typename Tls>
void insert_tls_common(toml::table& table, const Tls& tls) {
    table.insert("min_version", to_string(tls.min_version));
    if (!tls.ciphers.empty()) table.insert("ciphers", tls.ciphers);
    if (!tls.ciphersuites.empty()) table.insert("ciphersuites", tls.ciphersuites);
    table.insert("alpn", string_array(tls.alpn));
    table.insert("handshake_timeout", format_duration(tls.handshake_timeout));
}

toml::table listener_tls_table(const ListenerTls& tls) {
    toml::table table = inline_table();
    toml::array certificates;
    for (const TlsCertificate& certificate : tls.certificates) {
        toml::table entry = inline_table();
        entry.insert("cert", certificate.cert);
        entry.insert("key", certificate.key);
        certificates.push_back(std::move(entry));
    }
    table.insert("certificates", std::move(certificates));
    insert_tls_common(table, tls);
    if (!tls.client_ca.empty()) table.insert("client_ca", tls.client_ca);
    table.insert("verify_client", to_string(tls.verify_client));
    table.insert("session_tickets", tls.session_tickets);
    return table;
}

// ca, cert and key only when set: the loader takes no empty path.
toml::table cluster_tls_table(const ClusterTls& tls) {
    toml::table table = inline_table();
    if (!tls.sni.empty()) table.insert("sni", tls.sni);
    table.insert("verify", tls.verify);
    if (!tls.ca.empty()) table.insert("ca", tls.ca);
    if (!tls.cert.empty()) {
        table.insert("cert", tls.cert);
        table.insert("key", tls.key);
    }
    insert_tls_common(table, tls);
    return table;
}

toml::table runtime_table(const RuntimeConfig& runtime) {
    toml::table table;
    if (runtime.workers == 0)
        table.insert("workers", "auto");
    else
        table.insert("workers", static_cast<int64_t>(runtime.workers));
    table.insert("pin_cpus", runtime.pin_cpus);
    table.insert("engine", to_string(runtime.engine));
    table.insert("buffer_size", static_cast<int64_t>(runtime.buffer_size));
    table.insert("buffer_count", static_cast<int64_t>(runtime.buffer_count));
    table.insert("pipe_size", static_cast<int64_t>(runtime.pipe_size));
    table.insert("pipe_pool", static_cast<int64_t>(runtime.pipe_pool));
    table.insert("drain_delay", format_duration(runtime.drain_delay));
    table.insert("drain_timeout", format_duration(runtime.drain_timeout));
    table.insert("drain_spread", format_duration(runtime.drain_spread));
    if (!runtime.upgrade_socket.empty()) table.insert("upgrade_socket", runtime.upgrade_socket);
    toml::array servers;
    for (const std::string& text : runtime.dns_server_texts) servers.push_back(text);
    table.insert("dns_servers", std::move(servers));
    return table;
}

toml::table listener_table(const ListenerConfig& listener) {
    toml::table table;
    table.insert("name", listener.name);
    table.insert("bind", listener.bind_text);
    table.insert("cluster", listener.cluster);
    if (listener.bind.family() != AF_UNIX) table.insert("mptcp", listener.mptcp);
    if (listener.mode >= 0) {
        char mode[16];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(listener.mode) & 07777u);
        table.insert("mode", std::string(mode));
    }
    if (!listener.owner.empty()) table.insert("owner", listener.owner);
    table.insert("backlog", static_cast<int64_t>(listener.backlog));
    table.insert("forward", to_string(listener.forward));
    table.insert("idle_timeout", format_duration(listener.idle_timeout));
    table.insert("client_idle_timeout", format_duration(listener.client_idle_timeout));
    table.insert("half_closed_timeout", format_duration(listener.half_closed_timeout));
    table.insert("max_duration", format_duration(listener.max_duration));
    table.insert("max_duration_jitter", format_duration(listener.max_duration_jitter));
    if (listener.tcp_keepalive.enabled)
        table.insert("tcp_keepalive", keepalive_table(listener.tcp_keepalive));
    table.insert("tcp_user_timeout", format_duration(listener.tcp_user_timeout));
    table.insert("proxy_protocol", to_string(listener.proxy_protocol));
    if (!listener.proxy_protocol_from.empty()) {
        toml::array from;
        for (const common::Cidr& cidr : listener.proxy_protocol_from)
            from.push_back(cidr.to_string());
        table.insert("proxy_protocol_from", std::move(from));
    }
    table.insert("prelude_timeout", format_duration(listener.prelude_timeout));
    if (!listener.routes.empty()) {
        toml::array routes;
        for (const SniRoute& route : listener.routes) {
            toml::table entry = inline_table();
            entry.insert("sni", route.sni);
            entry.insert("cluster", route.cluster);
            routes.push_back(std::move(entry));
        }
        table.insert("routes", std::move(routes));
    }
    auto cidrs = [](const std::vector<common::Cidr>& list) {
        toml::array out;
        for (const common::Cidr& cidr : list) out.push_back(cidr.to_string());
        return out;
    };
    if (!listener.allow.empty()) table.insert("allow", cidrs(listener.allow));
    if (!listener.deny.empty()) table.insert("deny", cidrs(listener.deny));
    table.insert("max_connections", static_cast<int64_t>(listener.max_connections));
    table.insert("max_connections_per_source",
                 static_cast<int64_t>(listener.max_connections_per_source));
    if (listener.rate_count != 0) {
        table.insert("rate_per_source", std::to_string(listener.rate_count) +
                                            (listener.rate_period.count() == 1000 ? "/s" : "/m"));
        table.insert("burst", static_cast<int64_t>(listener.burst));
    }
    table.insert("reject", to_string(listener.reject));
    if (listener.tls.enabled) table.insert("tls", listener_tls_table(listener.tls));
    return table;
}

std::string hex_of(const std::string& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += kDigits[c >> 4];
        out += kDigits[c & 15];
    }
    return out;
}

toml::table health_table(const HealthCheckConfig& health) {
    toml::table table = inline_table();
    table.insert("interval", format_duration(health.interval));
    table.insert("timeout", format_duration(health.timeout));
    table.insert("rise", static_cast<int64_t>(health.rise));
    table.insert("fall", static_cast<int64_t>(health.fall));
    table.insert("jitter", std::to_string(health.jitter_percent) + "%");
    if (health.port != 0) table.insert("port", static_cast<int64_t>(health.port));
    if (!health.send.empty()) {
        if (health.send_hex)
            table.insert("send_hex", hex_of(health.send));
        else
            table.insert("send", health.send);
    }
    if (!health.expect.empty()) {
        if (health.expect_hex)
            table.insert("expect_hex", hex_of(health.expect));
        else
            table.insert("expect", health.expect);
    }
    return table;
}

toml::table cluster_table(const ClusterConfig& cluster) {
    toml::table table;
    table.insert("name", cluster.name);
    toml::array backends;
    for (const BackendConfig& backend : cluster.backends) {
        toml::table entry = inline_table();
        entry.insert("address", backend.address_text);
        entry.insert("weight", static_cast<int64_t>(backend.weight));
        entry.insert("max_connections", static_cast<int64_t>(backend.max_connections));
        backends.push_back(std::move(entry));
    }
    table.insert("backends", std::move(backends));
    table.insert("connect_timeout", format_duration(cluster.connect_timeout));
    table.insert("balance", to_string(cluster.balance));
    if (cluster.balance == Balance::kMaglev) {
        table.insert("hash_key", to_string(cluster.hash_key));
        table.insert("maglev_table_size", static_cast<int64_t>(cluster.maglev_table_size));
    }
    table.insert("retries", static_cast<int64_t>(cluster.retries));
    toml::table pool = inline_table();
    pool.insert("warm", static_cast<int64_t>(cluster.pool.warm));
    pool.insert("max_idle", format_duration(cluster.pool.max_idle));
    table.insert("pool", std::move(pool));
    toml::table queue = inline_table();
    queue.insert("size", static_cast<int64_t>(cluster.queue.size));
    queue.insert("timeout", format_duration(cluster.queue.timeout));
    table.insert("queue", std::move(queue));
    table.insert("server_idle_timeout", format_duration(cluster.server_idle_timeout));
    if (cluster.tcp_keepalive.enabled)
        table.insert("tcp_keepalive", keepalive_table(cluster.tcp_keepalive));
    table.insert("tcp_user_timeout", format_duration(cluster.tcp_user_timeout));
    toml::array sources;
    for (const std::string& text : cluster.source_address_texts) sources.push_back(text);
    table.insert("source_addresses", std::move(sources));
    if (cluster.source_port_min != 0 || cluster.source_port_max != 0)
        table.insert("source_port_range", std::to_string(cluster.source_port_min) + "-" +
                                              std::to_string(cluster.source_port_max));
    table.insert("close", to_string(cluster.close));
    if (cluster.health.enabled) table.insert("health", health_table(cluster.health));
    table.insert("when_all_down", to_string(cluster.when_all_down));
    table.insert("eject_after", static_cast<int64_t>(cluster.eject_after));
    if (cluster.eject_after != 0) {
        table.insert("eject_time", format_duration(cluster.eject_time));
        table.insert("eject_time_max", format_duration(cluster.eject_time_max));
        table.insert("max_ejected_percent", static_cast<int64_t>(cluster.max_ejected_percent));
    }
    table.insert("slow_start", format_duration(cluster.slow_start));
    table.insert("send_proxy", to_string(cluster.send_proxy));
    if (cluster.has_names()) {
        table.insert("dns_refresh", format_duration(cluster.dns_refresh));
        table.insert("dns_failure_grace", format_duration(cluster.dns_failure_grace));
    }
    if (cluster.tls.enabled) table.insert("tls", cluster_tls_table(cluster.tls));
    return table;
}

}  // namespace

std::string render_toml(const Config& config) {
    // The sections in the README's order, `name` first in each: toml++ keeps a table's keys
    // sorted, so each section is formatted on its own.
    std::string out;
    auto write = [&out](std::string_view header, toml::table table) {
        out += "\n";
        out += header;
        out += "\n";
        if (const toml::node* name = table.get("name")) {
            toml::table first;
            first.insert("name", name->value_or(std::string()));
            table.erase("name");
            out += format(first) + "\n";
        }
        out += format(table) + "\n";
    };
    // The source is a path the user chose: a control character in it would end the comment or
    // make it invalid TOML.
    std::string source = config.source;
    for (char& c : source)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) c = '?';
    out += "# effective configuration loaded from " + source + ", defaults included\n";
    write("[runtime]", runtime_table(config.runtime));
    if (config.admin.enabled) {
        toml::table admin;
        admin.insert("bind", config.admin.bind_text);
        write("[admin]", std::move(admin));
    }
    {
        toml::table log;
        log.insert("format", common::to_string(config.log.format));
        log.insert("level", common::to_string(config.log.level));
        if (config.log.access_enabled()) log.insert("access", config.log.access);
        write("[log]", std::move(log));
    }
    for (const ListenerConfig& listener : config.listeners)
        write("[[listener]]", listener_table(listener));
    for (const ClusterConfig& cluster : config.clusters)
        write("[[cluster]]", cluster_table(cluster));
    return out;
}

}  // namespace ringlb::config
