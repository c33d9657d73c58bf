#include "proxy/admin/metrics.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <limits>

namespace ringlb::admin {

namespace {

prometheus::MetricFamily info_family(const char* name, const char* help, const char* label,
                                     const std::string& value) {
    prometheus::MetricFamily family{name, help, prometheus::MetricType::Gauge, {}};
    prometheus::ClientMetric metric;
    metric.label.push_back({label, value});
    metric.gauge.value = 1;
    family.metric.push_back(std::move(metric));
    return family;
}

void add_shard_value(prometheus::MetricFamily& family, unsigned shard, uint64_t value) {
    prometheus::ClientMetric metric;
    metric.label.push_back({"shard", std::to_string(shard)});
    if (family.type == prometheus::MetricType::Counter)
        metric.counter.value = static_cast<double>(value);
    else
        metric.gauge.value = static_cast<double>(value);
    family.metric.push_back(std::move(metric));
}

prometheus::ClientMetric labelled(std::initializer_list<prometheus::ClientMetric::Label> labels) {
    prometheus::ClientMetric metric;
    metric.label.assign(labels.begin(), labels.end());
    return metric;
}

void set_value(prometheus::MetricFamily& family, prometheus::ClientMetric& metric, double value) {
    if (family.type == prometheus::MetricType::Counter)
        metric.counter.value = value;
    else
        metric.gauge.value = value;
}

// Every shard has the same clusters and backends in the same order (one snapshot), so the
// per-shard states line up by index.
template <typename Read>
double sum_shards(const std::vector<ShardView>& shards, Read read) {
    double total = 0;
    for (const auto& s : shards) total += static_cast<double>(read(*s.connector));
    return total;
}

void add_upstream_families(const std::vector<ShardView>& shards,
                           std::vector<prometheus::MetricFamily>& families) {
    if (shards.empty() || shards.front().connector == nullptr) return;
    const auto& clusters = shards.front().connector->clusters();
    constexpr auto counter = prometheus::MetricType::Counter;
    constexpr auto gauge = prometheus::MetricType::Gauge;
    (void)counter;
    (void)gauge;

#define RINGLB_EXPORT_CLUSTER(field, kind, help)                                             \
    {                                                                                        \
        prometheus::MetricFamily family{                                                     \
            kind == counter ? "ringlb_cluster_" #field "_total" : "ringlb_cluster_" #field,  \
            help,                                                                            \
            kind,                                                                            \
            {}};                                                                             \
        for (size_t c = 0; c < clusters.size(); ++c) {                                       \
            auto metric = labelled({{"cluster", clusters[c]->cluster->name}});               \
            set_value(family, metric, sum_shards(shards, [&](const upstream::Connector& k) { \
                          return k.clusters()[c]->counters.field.get();                      \
                      }));                                                                   \
            family.metric.push_back(std::move(metric));                                      \
        }                                                                                    \
        families.push_back(std::move(family));                                               \
    }
    RINGLB_CLUSTER_COUNTERS(RINGLB_EXPORT_CLUSTER)
#undef RINGLB_EXPORT_CLUSTER

    // Connect duration: per-shard non-cumulative buckets, summed and made cumulative here.
    {
        prometheus::MetricFamily family{"ringlb_connect_duration_seconds",
                                        "Time from connect() to an established upstream socket.",
                                        prometheus::MetricType::Histogram,
                                        {}};
        for (size_t c = 0; c < clusters.size(); ++c) {
            auto metric = labelled({{"cluster", clusters[c]->cluster->name}});
            uint64_t cumulative = 0;
            for (size_t i = 0; i <= upstream::kConnectBuckets.size(); ++i) {
                for (const auto& s : shards)
                    cumulative +=
                        s.connector->clusters()[c]->counters.connect_duration.buckets[i].get();
                prometheus::ClientMetric::Bucket bucket;
                bucket.cumulative_count = cumulative;
                bucket.upper_bound = i < upstream::kConnectBuckets.size()
                                         ? upstream::kConnectBuckets[i]
                                         : std::numeric_limits<double>::infinity();
                metric.histogram.bucket.push_back(bucket);
            }
            metric.histogram.sample_count = cumulative;
            metric.histogram.sample_sum =
                1e-9 * sum_shards(shards, [&](const upstream::Connector& k) {
                    return k.clusters()[c]->counters.connect_duration.sum_ns.get();
                });
            family.metric.push_back(std::move(metric));
        }
        families.push_back(std::move(family));
    }

#define RINGLB_EXPORT_BACKEND(field, kind, help)                                                 \
    {                                                                                            \
        prometheus::MetricFamily family{                                                         \
            kind == counter ? "ringlb_backend_" #field "_total" : "ringlb_backend_" #field,      \
            help,                                                                                \
            kind,                                                                                \
            {}};                                                                                 \
        for (size_t c = 0; c < clusters.size(); ++c) {                                           \
            for (size_t b = 0; b < clusters[c]->backends.size(); ++b) {                          \
                auto metric = labelled({{"cluster", clusters[c]->cluster->name},                 \
                                        {"backend", clusters[c]->backends[b].backend->name}});   \
                set_value(family, metric, sum_shards(shards, [&](const upstream::Connector& k) { \
                              return k.clusters()[c]->backends[b].counters.field.get();          \
                          }));                                                                   \
                family.metric.push_back(std::move(metric));                                      \
            }                                                                                    \
        }                                                                                        \
        families.push_back(std::move(family));                                                   \
    }
    RINGLB_BACKEND_COUNTERS(RINGLB_EXPORT_BACKEND)
#undef RINGLB_EXPORT_BACKEND

    // Counters with a `reason` label, one sample per declared reason (zeros included, so a
    // dashboard sees every series from the first scrape).
    auto by_reason = [&](const char* name, const char* help, size_t count, auto reason_name,
                         auto read, auto applies) {
        prometheus::MetricFamily family{name, help, counter, {}};
        for (size_t c = 0; c < clusters.size(); ++c) {
            for (size_t b = 0; b < clusters[c]->backends.size(); ++b) {
                for (size_t r = 0; r < count; ++r) {
                    if (!applies(r)) continue;
                    auto metric = labelled({{"cluster", clusters[c]->cluster->name},
                                            {"backend", clusters[c]->backends[b].backend->name},
                                            {"reason", reason_name(r)}});
                    metric.counter.value = sum_shards(shards, [&](const upstream::Connector& k) {
                        return read(k.clusters()[c]->backends[b].counters, r);
                    });
                    family.metric.push_back(std::move(metric));
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

}  // namespace

std::string render_metrics(const std::vector<ShardView>& shards, const std::string& engine,
                           const std::vector<double>& port_forecast) {
    std::vector<prometheus::MetricFamily> families;
    families.push_back(
        info_family("ringlb_build_info", "ringlb version.", "version", RINGLB_VERSION));
    families.push_back(
        info_family("ringlb_engine_info", "Event engine the shards run on.", "engine", engine));

    constexpr auto counter = prometheus::MetricType::Counter;
    constexpr auto gauge = prometheus::MetricType::Gauge;
    (void)counter;
    (void)gauge;
#define RINGLB_EXPORT_COUNTER(name, kind, help)                                             \
    {                                                                                       \
        prometheus::MetricFamily family{                                                    \
            kind == counter ? "ringlb_" #name "_total" : "ringlb_" #name, help, kind, {}};  \
        for (const auto& s : shards) add_shard_value(family, s.id, s.counters->name.get()); \
        families.push_back(std::move(family));                                              \
    }
    RINGLB_SHARD_COUNTERS(RINGLB_EXPORT_COUNTER)
#undef RINGLB_EXPORT_COUNTER
    add_upstream_families(shards, families);
    if (!shards.empty() && shards.front().connector &&
        port_forecast.size() == shards.front().connector->clusters().size()) {
        const auto& clusters = shards.front().connector->clusters();
        prometheus::MetricFamily family{
            "ringlb_cluster_port_forecast_connections_per_second",
            "New connections per second the cluster's source ports sustain while closed ones sit "
            "in TIME_WAIT for 60 s (usable ports x source addresses x backends / 60).",
            prometheus::MetricType::Gauge,
            {}};
        for (size_t c = 0; c < clusters.size(); ++c) {
            auto metric = labelled({{"cluster", clusters[c]->cluster->name}});
            metric.gauge.value = port_forecast[c];
            family.metric.push_back(std::move(metric));
        }
        families.push_back(std::move(family));
    }

    return prometheus::TextSerializer().Serialize(families);
}

}  // namespace ringlb::admin
