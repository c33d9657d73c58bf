#include "proxy/admin/metrics.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "common/histogram.hpp"
#include "proxy/admin/process_stats.hpp"
#include "proxy/shard/access_log.hpp"
#include "proxy/shard/shard.hpp"

namespace ringlb::admin {

namespace {

constexpr auto counter = prometheus::MetricType::Counter;
constexpr auto gauge = prometheus::MetricType::Gauge;

// The admin endpoint's own figures (AdminServer::Stats), exported as ringlb_admin_<name> (a
// counter with _total). X(field, name, kind, help)
#define RINGLB_ADMIN_STATS(X)                                                       \
    X(active, active_connections, gauge, "Admin connections open now.")             \
    X(rejected, rejected_connections, counter,                                      \
      "Admin connections closed at once because max_connections were open.")        \
    X(accept_errors, accept_errors, counter, "Failed admin accepts (EMFILE, ...).") \
    X(spares_used, spare_fds_used, counter,                                         \
      "Spare fds the admin endpoint gave up to accept a connection while out of fds.")

using Labels = std::vector<prometheus::ClientMetric::Label>;

prometheus::MetricFamily make_family(const std::string& prefix, const char* name,
                                     prometheus::MetricType kind, const char* help) {
    return {prefix + name + (kind == counter ? "_total" : ""), help, kind, {}};
}

void add_sample(prometheus::MetricFamily& family, Labels labels, double value) {
    prometheus::ClientMetric metric;
    metric.label = std::move(labels);
    if (family.type == counter)
        metric.counter.value = value;
    else
        metric.gauge.value = value;
    family.metric.push_back(std::move(metric));
}

prometheus::MetricFamily info_family(const char* name, const char* help, const char* label,
                                     const std::string& value) {
    prometheus::MetricFamily family{name, help, gauge, {}};
    add_sample(family, {{label, value}}, 1);
    return family;
}

// Shards' buckets merged (common::HistogramTotals) as one Prometheus histogram sample.
void add_histogram(prometheus::MetricFamily& family, Labels labels,
                   const common::HistogramTotals& totals) {
    prometheus::ClientMetric metric;
    metric.label = std::move(labels);
    std::vector<uint64_t> cumulative = totals.cumulative();
    for (size_t i = 0; i < cumulative.size(); ++i) {
        prometheus::ClientMetric::Bucket bucket;
        bucket.cumulative_count = cumulative[i];
        bucket.upper_bound =
            i < totals.bounds.size() ? totals.bounds[i] : std::numeric_limits<double>::infinity();
        metric.histogram.bucket.push_back(bucket);
    }
    metric.histogram.sample_count = cumulative.back();
    metric.histogram.sample_sum = totals.sum_seconds();
    family.metric.push_back(std::move(metric));
}

// Every shard has the same listeners, clusters and backends in the same order (one snapshot),
// so the per-shard states line up by index.
template <typename Read>
double sum_shards(const std::vector<ShardView>& shards, Read read) {
    double total = 0;
    for (const auto& s : shards) total += static_cast<double>(read(s));
    return total;
}

void add_shard_families(const std::vector<ShardView>& shards,
                        std::vector<prometheus::MetricFamily>& families) {
#define RINGLB_EXPORT_SHARD(field, kind, help)                        \
    {                                                                 \
        auto family = make_family("ringlb_", #field, kind, help);     \
        for (const auto& s : shards)                                  \
            add_sample(family, {{"shard", std::to_string(s.id)}},     \
                       static_cast<double>(s.counters->field.get())); \
        families.push_back(std::move(family));                        \
    }
    RINGLB_SHARD_COUNTERS(RINGLB_EXPORT_SHARD)
#undef RINGLB_EXPORT_SHARD
}

// <prefix>tls_handshakes_total{<label>, result} and <prefix>tls_handshake_duration_seconds{<label>}
// for each of `count` listeners or clusters.
template <typename NameOf, typename CountersOf>
void add_handshake_families(const char* prefix, const char* label, size_t count, NameOf name_of,
                            CountersOf counters_of, const std::vector<ShardView>& shards,
                            std::vector<prometheus::MetricFamily>& families) {
    prometheus::MetricFamily results{
        std::string(prefix) + "tls_handshakes_total", tls::kHandshakesHelp, counter, {}};
    prometheus::MetricFamily duration{std::string(prefix) + "tls_handshake_duration_seconds",
                                      tls::kHandshakeDurationHelp,
                                      prometheus::MetricType::Histogram,
                                      {}};
    for (size_t i = 0; i < count; ++i) {
        for (size_t r = 0; r < tls::kHandshakeResultNames.size(); ++r)
            add_sample(results, {{label, name_of(i)}, {"result", tls::kHandshakeResultNames[r]}},
                       sum_shards(shards, [&](const ShardView& s) {
                           return counters_of(s, i).results[r].get();
                       }));
        common::HistogramTotals totals = tls::HandshakeHistogram::empty_totals();
        for (const auto& s : shards) counters_of(s, i).duration.add_to(totals);
        add_histogram(duration, {{label, name_of(i)}}, totals);
    }
    families.push_back(std::move(results));
    families.push_back(std::move(duration));
}

void add_listener_families(const std::vector<ShardView>& shards,
                           std::vector<prometheus::MetricFamily>& families) {
    if (shards.empty()) return;
    const auto& listeners = shards.front().layout->listeners;
    auto name_of = [&](size_t l) { return std::string(listeners[l].name); };
#define RINGLB_EXPORT_LISTENER(field, kind, help)                                            \
    {                                                                                        \
        auto family = make_family("ringlb_listener_", #field, kind, help);                   \
        for (size_t l = 0; l < listeners.size(); ++l)                                        \
            add_sample(family, {{"listener", name_of(l)}}, sum_shards(shards, [&](auto& s) { \
                           return s.layout->listeners[l].counters->field.get();              \
                       }));                                                                  \
        families.push_back(std::move(family));                                               \
    }
    RINGLB_LISTENER_COUNTERS(RINGLB_EXPORT_LISTENER)
#undef RINGLB_EXPORT_LISTENER

    prometheus::MetricFamily bytes{"ringlb_bytes_total", shard::kBytesHelp, counter, {}};
    for (size_t l = 0; l < listeners.size(); ++l) {
        for (size_t d = 0; d < shard::kByteDirectionNames.size(); ++d)
            add_sample(bytes,
                       {{"listener", name_of(l)}, {"direction", shard::kByteDirectionNames[d]}},
                       sum_shards(shards, [&](auto& s) {
                           return s.layout->listeners[l].counters->bytes[d].get();
                       }));
    }
    families.push_back(std::move(bytes));

    prometheus::MetricFamily prelude{
        "ringlb_listener_prelude_total", shard::kPreludeHelp, counter, {}};
    for (size_t l = 0; l < listeners.size(); ++l) {
        for (size_t r = 0; r < shard::kPreludeResultNames.size(); ++r)
            add_sample(prelude,
                       {{"listener", name_of(l)}, {"result", shard::kPreludeResultNames[r]}},
                       sum_shards(shards, [&](auto& s) {
                           return s.layout->listeners[l].counters->prelude[r].get();
                       }));
    }
    families.push_back(std::move(prelude));

    prometheus::MetricFamily rejected{
        "ringlb_listener_rejected_total", shard::kRejectedHelp, counter, {}};
    for (size_t l = 0; l < listeners.size(); ++l) {
        for (size_t r = 0; r < shard::kRejectReasonNames.size(); ++r)
            add_sample(rejected,
                       {{"listener", name_of(l)}, {"reason", shard::kRejectReasonNames[r]}},
                       sum_shards(shards, [&](auto& s) {
                           return s.layout->listeners[l].counters->rejected[r].get();
                       }));
    }
    families.push_back(std::move(rejected));

    add_handshake_families(
        "ringlb_listener_", "listener", listeners.size(), name_of,
        [&](const ShardView& s, size_t l) -> const tls::HandshakeCounters& {
            return s.layout->listeners[l].counters->tls;
        },
        shards, families);

    prometheus::MetricFamily duration{"ringlb_session_duration_seconds",
                                      shard::kSessionDurationHelp,
                                      prometheus::MetricType::Histogram,
                                      {}};
    for (size_t l = 0; l < listeners.size(); ++l) {
        common::HistogramTotals totals = shard::SessionHistogram::empty_totals();
        for (const auto& s : shards)
            s.layout->listeners[l].counters->session_duration.add_to(totals);
        add_histogram(duration, {{"listener", name_of(l)}}, totals);
    }
    families.push_back(std::move(duration));
}

void add_upstream_families(const std::vector<ShardView>& shards,
                           std::vector<prometheus::MetricFamily>& families) {
    if (shards.empty()) return;
    const auto& clusters = shards.front().layout->clusters;
    auto cluster_of = [](const ShardView& s, size_t c) -> const shard::ShardLayout::Cluster& {
        return s.layout->clusters[c];
    };

#define RINGLB_EXPORT_CLUSTER(field, kind, help)                          \
    {                                                                     \
        auto family = make_family("ringlb_cluster_", #field, kind, help); \
        for (size_t c = 0; c < clusters.size(); ++c)                      \
            add_sample(family, {{"cluster", clusters[c].name}},           \
                       sum_shards(shards, [&](const ShardView& s) {       \
                           return cluster_of(s, c).counters->field.get(); \
                       }));                                               \
        families.push_back(std::move(family));                            \
    }
    RINGLB_CLUSTER_COUNTERS(RINGLB_EXPORT_CLUSTER)
#undef RINGLB_EXPORT_CLUSTER

    {
        prometheus::MetricFamily family{"ringlb_connect_duration_seconds",
                                        upstream::kConnectDurationHelp,
                                        prometheus::MetricType::Histogram,
                                        {}};
        for (size_t c = 0; c < clusters.size(); ++c) {
            common::HistogramTotals totals = upstream::ConnectHistogram::empty_totals();
            for (const auto& s : shards) cluster_of(s, c).counters->connect_duration.add_to(totals);
            add_histogram(family, {{"cluster", clusters[c].name}}, totals);
        }
        families.push_back(std::move(family));
    }

    add_handshake_families(
        "ringlb_cluster_", "cluster", clusters.size(),
        [&](size_t c) { return std::string(clusters[c].name); },
        [&](const ShardView& s, size_t c) -> const tls::HandshakeCounters& {
            return cluster_of(s, c).counters->tls;
        },
        shards, families);

#define RINGLB_EXPORT_BACKEND(field, kind, help)                                                \
    {                                                                                           \
        auto family = make_family("ringlb_backend_", #field, kind, help);                       \
        for (size_t c = 0; c < clusters.size(); ++c) {                                          \
            for (size_t b = 0; b < clusters[c].backends.size(); ++b) {                          \
                add_sample(                                                                     \
                    family,                                                                     \
                    {{"cluster", clusters[c].name}, {"backend", clusters[c].backends[b].name}}, \
                    sum_shards(shards, [&](const ShardView& s) {                                \
                        return cluster_of(s, c).backends[b].counters->field.get();              \
                    }));                                                                        \
            }                                                                                   \
        }                                                                                       \
        families.push_back(std::move(family));                                                  \
    }
    RINGLB_BACKEND_COUNTERS(RINGLB_EXPORT_BACKEND)
#undef RINGLB_EXPORT_BACKEND

    // Counters with a `reason` label, one sample per declared reason (zeros included, so a
    // dashboard sees every series from the first scrape).
    auto by_reason = [&](const char* name, const char* help, size_t count, auto reason_name,
                         auto read, auto applies) {
        prometheus::MetricFamily family{name, help, counter, {}};
        for (size_t c = 0; c < clusters.size(); ++c) {
            for (size_t b = 0; b < clusters[c].backends.size(); ++b) {
                for (size_t r = 0; r < count; ++r) {
                    if (!applies(r)) continue;
                    add_sample(family,
                               {{"cluster", clusters[c].name},
                                {"backend", clusters[c].backends[b].name},
                                {"reason", reason_name(r)}},
                               sum_shards(shards, [&](const ShardView& s) {
                                   return read(*cluster_of(s, c).backends[b].counters, r);
                               }));
                }
            }
        }
        families.push_back(std::move(family));
    };
    by_reason(
        "ringlb_backend_connect_failures_total", "Failed connect attempts by reason.",
        static_cast<size_t>(upstream::ConnectFailure::kCount),
        [](size_t r) { return upstream::to_string(static_cast<upstream::ConnectFailure>(r)); },
        [](const upstream::BackendCounters& k, size_t r) { return k.connect_failures[r].get(); },
        [](size_t) { return true; });
    by_reason(
        "ringlb_backend_closes_total", "Sessions to this backend that ended, by reason.",
        static_cast<size_t>(upstream::CloseReason::kCount),
        [](size_t r) { return upstream::to_string(static_cast<upstream::CloseReason>(r)); },
        [](const upstream::BackendCounters& k, size_t r) { return k.closes[r].get(); },
        // Sessions that never got a backend (no_backend, queue_full, queue_timeout) are counted
        // per cluster instead.
        [](size_t r) {
            return upstream::close_reason_has_backend(static_cast<upstream::CloseReason>(r));
        });
}

// What the active health checks say (proxy/health): ringlb_backend_up for every backend, the
// rest for checked backends only.
void add_health_families(const std::vector<ShardView>& shards, const health::Monitor* health,
                         std::vector<prometheus::MetricFamily>& families) {
    if (shards.empty()) return;
    const auto& clusters = shards.front().layout->clusters;
    prometheus::MetricFamily up{"ringlb_backend_up",
                                "1 when the backend takes new sessions as far as health checks "
                                "and passive ejection tell (always 1 without them), 0 while "
                                "they hold it down.",
                                gauge,
                                {}};
    prometheus::MetricFamily ratio{
        "ringlb_backend_slow_start_ratio",
        "Share of its full share of new sessions the backend takes now: ramps from 0 to 1 over "
        "slow_start after it came back; 1 otherwise.",
        gauge,
        {}};
    prometheus::MetricFamily ejected{
        "ringlb_backend_ejected",
        "1 while passive health (eject_after) holds the backend out of rotation, else 0.",
        gauge,
        {}};
    prometheus::MetricFamily ejections{
        "ringlb_backend_ejections_total",
        "Times passive health ejected the backend after eject_after failures in a row.",
        counter,
        {}};
    prometheus::MetricFamily refused{
        "ringlb_cluster_ejections_refused_total",
        "Ejections not made because max_ejected_percent of the cluster was ejected already.",
        counter,
        {}};
    prometheus::MetricFamily checks{
        "ringlb_health_checks_total",
        "Active health checks by result: ok, refused, timeout, reset, unreachable, wrong_reply, "
        "closed, local_error (ringlb could not run the check; it does not count against the "
        "backend).",
        counter,
        {}};
    prometheus::MetricFamily changes{
        "ringlb_health_changes_total",
        "Times health checks took the backend down (to=\"down\") or brought it back (to=\"up\").",
        counter,
        {}};
    prometheus::MetricFamily duration{
        "ringlb_health_check_duration_seconds",
        "Time an active health check took (connect, send and reply), of every backend of the "
        "cluster.",
        prometheus::MetricType::Histogram,
        {}};
    for (const auto& cluster : clusters) {
        common::HistogramTotals totals = health::CheckHistogram::empty_totals();
        bool checked = false;
        for (const auto& backend : cluster.backends) {
            const health::BackendHealth* h =
                health ? health->checker().find(cluster.name, backend.name) : nullptr;
            const health::EjectionState* e =
                health ? health->ejector().find(cluster.name, backend.name) : nullptr;
            Labels labels{{"cluster", cluster.name}, {"backend", backend.name}};
            add_sample(up, labels, (h && !h->up) || (e && e->ejected) ? 0 : 1);
            add_sample(ratio, labels,
                       health ? health->slow_start_ratio(cluster.name, backend.name) : 1);
            if (e) {
                add_sample(ejected, labels, e->ejected ? 1 : 0);
                add_sample(ejections, labels, static_cast<double>(e->ejections));
            }
            if (!h) continue;
            checked = true;
            for (size_t r = 0; r < health::kResultCount; ++r) {
                Labels with = labels;
                with.push_back({"result", health::to_string(static_cast<health::Result>(r))});
                add_sample(checks, std::move(with), static_cast<double>(h->results[r]));
            }
            Labels to_down = labels;
            to_down.push_back({"to", "down"});
            add_sample(changes, std::move(to_down), static_cast<double>(h->went_down));
            Labels to_up = labels;
            to_up.push_back({"to", "up"});
            add_sample(changes, std::move(to_up), static_cast<double>(h->went_up));
            h->durations.add_to(totals);
        }
        if (checked) add_histogram(duration, {{"cluster", cluster.name}}, totals);
        if (health &&
            std::any_of(cluster.backends.begin(), cluster.backends.end(), [&](const auto& b) {
                return health->ejector().find(cluster.name, b.name) != nullptr;
            }))
            add_sample(refused, {{"cluster", cluster.name}},
                       static_cast<double>(health->ejector().refused(cluster.name)));
    }
    families.push_back(std::move(up));
    families.push_back(std::move(ratio));
    families.push_back(std::move(ejected));
    families.push_back(std::move(ejections));
    families.push_back(std::move(refused));
    families.push_back(std::move(checks));
    families.push_back(std::move(changes));
    families.push_back(std::move(duration));
}

// Backends per cluster (after names became addresses), and what DNS answered per name.
void add_discovery_families(const std::vector<ShardView>& shards,
                            const discovery::Discovery* discovery,
                            std::vector<prometheus::MetricFamily>& families) {
    if (shards.empty()) return;
    prometheus::MetricFamily backends{
        "ringlb_cluster_backends",
        "Backends of the cluster in the running configuration, each address of a name counted.",
        gauge,
        {}};
    for (const auto& cluster : shards.front().layout->clusters)
        add_sample(backends, {{"cluster", cluster.name}},
                   static_cast<double>(cluster.backends.size()));
    families.push_back(std::move(backends));
    prometheus::MetricFamily lookups{
        "ringlb_dns_lookups_total",
        "DNS lookups of a backend given by name, by result: ok, nxdomain, server_failure, "
        "timeout, no_data, other.",
        counter,
        {}};
    prometheus::MetricFamily addresses{
        "ringlb_dns_addresses", "Addresses of the name in use as backends.", gauge, {}};
    prometheus::MetricFamily stale{
        "ringlb_dns_stale",
        "1 while the name's lookups fail and its last good addresses are kept, else 0.",
        gauge,
        {}};
    if (discovery) {
        discovery->for_each([&](const discovery::NameState& s) {
            Labels labels{{"cluster", s.cluster}, {"name", s.name}};
            for (size_t r = 0; r < discovery::kLookupErrorCount; ++r) {
                Labels with = labels;
                with.push_back({"result", std::string(discovery::to_string(
                                              static_cast<discovery::LookupError>(r)))});
                add_sample(lookups, std::move(with), static_cast<double>(s.lookups[r]));
            }
            add_sample(addresses, labels, s.expired ? 0 : static_cast<double>(s.addresses.size()));
            add_sample(stale, labels, s.stale ? 1 : 0);
        });
    }
    families.push_back(std::move(lookups));
    families.push_back(std::move(addresses));
    families.push_back(std::move(stale));
}

void add_port_forecast(const std::vector<ShardView>& shards, const std::vector<double>& forecast,
                       std::vector<prometheus::MetricFamily>& families) {
    if (shards.empty()) return;
    const auto& clusters = shards.front().layout->clusters;
    if (forecast.size() != clusters.size()) return;
    prometheus::MetricFamily family{
        "ringlb_cluster_port_forecast_connections_per_second",
        "New connections per second the cluster's source ports sustain while closed ones sit "
        "in TIME_WAIT for 60 s (usable ports x source addresses x backends / 60).",
        gauge,
        {}};
    for (size_t c = 0; c < clusters.size(); ++c)
        add_sample(family, {{"cluster", clusters[c].name}}, forecast[c]);
    families.push_back(std::move(family));
}

void add_control_families(const ControlStats& control,
                          std::vector<prometheus::MetricFamily>& families) {
    prometheus::MetricFamily reloads{
        "ringlb_config_reloads_total", "Configuration reloads, by result.", counter, {}};
    add_sample(reloads, {{"result", "success"}}, static_cast<double>(control.reloads_succeeded));
    add_sample(reloads, {{"result", "failure"}}, static_cast<double>(control.reloads_failed));
    families.push_back(std::move(reloads));
    prometheus::MetricFamily successful{
        "ringlb_config_last_reload_successful",
        "1 when the last configuration reload succeeded (or none was tried), else 0.",
        gauge,
        {}};
    add_sample(successful, {}, control.last_reload_successful ? 1 : 0);
    families.push_back(std::move(successful));
    prometheus::MetricFamily last{"ringlb_config_last_reload_success_timestamp_seconds",
                                  "Unix time of the last configuration loaded successfully, the "
                                  "one loaded at start included.",
                                  gauge,
                                  {}};
    add_sample(last, {}, control.last_success_seconds);
    families.push_back(std::move(last));
}

void add_process_families(std::vector<prometheus::MetricFamily>& families) {
    ProcessStats stats = read_process_stats();
#define RINGLB_EXPORT_PROCESS(name, kind, help)                          \
    if (stats.name) {                                                    \
        auto family = make_family("ringlb_process_", #name, kind, help); \
        add_sample(family, {}, *stats.name);                             \
        families.push_back(std::move(family));                           \
    }
    RINGLB_PROCESS_METRICS(RINGLB_EXPORT_PROCESS)
#undef RINGLB_EXPORT_PROCESS
}

void add_admin_families(const AdminServer::Stats& stats,
                        std::vector<prometheus::MetricFamily>& families) {
#define RINGLB_EXPORT_ADMIN(field, name, kind, help)                   \
    {                                                                  \
        auto family = make_family("ringlb_admin_", #name, kind, help); \
        add_sample(family, {}, static_cast<double>(stats.field));      \
        families.push_back(std::move(family));                         \
    }
    RINGLB_ADMIN_STATS(RINGLB_EXPORT_ADMIN)
#undef RINGLB_EXPORT_ADMIN
}

// One family for the whole process (exported at 0 when the access log is off): a dashboard sees
// the series from the first scrape, and drops are a process-wide fact, not a shard's.
void add_access_log_family(const std::vector<ShardView>& shards,
                           std::vector<prometheus::MetricFamily>& families) {
    prometheus::MetricFamily family{
        "ringlb_access_log_dropped_total",
        "Access-log lines dropped: the writer fell behind (a shard's pending lines over 4 MiB) or "
        "a write failed.",
        counter,
        {}};
    add_sample(family, {}, sum_shards(shards, [](const ShardView& s) {
                   return s.access_log ? s.access_log->dropped() : 0;
               }));
    families.push_back(std::move(family));
}

// Exported as a gauge of the expiry time rather than a countdown, as Prometheus's blackbox
// exporter does (probe_ssl_earliest_cert_expiry): an alert is `... - time() < 14 * 86400`.
void add_certificate_family(const std::vector<MetricsSources::Certificate>& certificates,
                            std::vector<prometheus::MetricFamily>& families) {
    prometheus::MetricFamily family{
        "ringlb_tls_certificate_expiry_timestamp_seconds",
        "When a certificate a TLS listener serves expires (its notAfter), in Unix time.",
        gauge,
        {}};
    for (const auto& c : certificates)
        add_sample(family, {{"listener", c.listener}, {"cert", c.path}},
                   static_cast<double>(c.not_after));
    families.push_back(std::move(family));
}

}  // namespace

void ControlStats::loaded() {
    last_success_seconds =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

ShardView view_of(const shard::Shard& shard, std::shared_ptr<const shard::ShardLayout> layout) {
    return ShardView{shard.id(), &shard.counters(), std::move(layout), shard.access_log()};
}

std::string render_metrics(const MetricsSources& sources) {
    std::vector<prometheus::MetricFamily> families;
    families.push_back(
        info_family("ringlb_build_info", "ringlb version.", "version", RINGLB_VERSION));
    families.push_back(info_family("ringlb_engine_info", "Event engine the shards run on.",
                                   "engine", sources.engine));
    if (sources.process) add_process_families(families);
    add_control_families(sources.control, families);
    if (sources.admin) add_admin_families(*sources.admin, families);
    add_shard_families(sources.shards, families);
    add_listener_families(sources.shards, families);
    add_upstream_families(sources.shards, families);
    add_health_families(sources.shards, sources.health, families);
    add_discovery_families(sources.shards, sources.discovery, families);
    add_port_forecast(sources.shards, sources.port_forecast, families);
    add_access_log_family(sources.shards, families);
    add_certificate_family(sources.certificates, families);
    return prometheus::TextSerializer().Serialize(families);
}

}  // namespace ringlb::admin
