#include "proxy/admin/metrics.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

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

}  // namespace

std::string render_metrics(const std::vector<ShardView>& shards, const std::string& engine) {
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

    return prometheus::TextSerializer().Serialize(families);
}

}  // namespace ringlb::admin
