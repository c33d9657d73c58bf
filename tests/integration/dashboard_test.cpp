// deploy/grafana/ringlb-dashboard.json against a real scrape: every metric its PromQL queries
// (panels, variables, annotations) is exported by a running ringlb after some traffic, histograms
// with samples; every label it groups or filters by is on that metric (Prometheus's own target
// labels job and instance aside); every panel queries the dashboard's Prometheus data-source
// variable; and the panels the deployment issue asks for are there.

#include <nlohmann/json.hpp>

#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

// Labels Prometheus attaches to every series of a target; not in ringlb's exposition.
const std::set<std::string> kTargetLabels{"job", "instance"};

struct Query {
    std::string where;  // "panel \"Title\" A", for failure messages
    std::string expr;
};

// Every PromQL text of the dashboard: panel targets (rows' nested panels too), query variables,
// annotations.
std::vector<Query> queries_of(const Json& dashboard) {
    std::vector<Query> out;
    auto add_panels = [&](const Json& panels, auto& self) -> void {
        for (const Json& panel : panels) {
            std::string title = panel.value("title", "?");
            for (const Json& target : panel.value("targets", Json::array()))
                out.push_back({"panel \"" + title + "\" " + target.value("refId", "?"),
                               target.value("expr", "")});
            if (panel.contains("panels")) self(panel["panels"], self);
        }
    };
    add_panels(dashboard.at("panels"), add_panels);
    for (const Json& var : dashboard.at("templating").at("list")) {
        if (var.value("type", "") != "query") continue;
        out.push_back({"variable $" + var.value("name", "?"), var.value("definition", "")});
    }
    for (const Json& annotation : dashboard.at("annotations").at("list"))
        if (annotation.contains("expr"))
            out.push_back({"annotation " + annotation.value("name", "?"), annotation["expr"]});
    return out;
}

// A PromQL token: an identifier (metric, label, function, keyword), a string, a Grafana variable
// ($x, ${x}), a number or duration, an operator or a bracket. Enough of the lexer to find what a
// query names; no std::regex (GCC 12 warns inside <regex> at -O2 with the sanitizers).
struct Token {
    enum Kind { kIdent, kString, kVariable, kNumber, kPunct } kind;
    std::string text;
};

bool ident_start(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool ident_char(char c) {
    return ident_start(c) || std::isdigit(static_cast<unsigned char>(c));
}

std::vector<Token> tokenize(const std::string& q) {
    std::vector<Token> out;
    size_t i = 0;
    while (i < q.size()) {
        char c = q[i];
        if (std::isspace(static_cast<unsigned char>(c))) {
            ++i;
        } else if (c == '"' || c == '\'' || c == '`') {
            size_t j = i + 1;
            while (j < q.size() && q[j] != c) j += (q[j] == '\\' && c != '`') ? 2 : 1;
            out.push_back({Token::kString, q.substr(i, j + 1 - i)});
            i = j + 1;
        } else if (c == '$') {
            size_t j = i + 1;
            if (j < q.size() && q[j] == '{') {
                while (j < q.size() && q[j] != '}') ++j;
                ++j;
            } else {
                while (j < q.size() && ident_char(q[j])) ++j;
            }
            out.push_back({Token::kVariable, q.substr(i, j - i)});
            i = j;
        } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
            size_t j = i;
            while (j < q.size() && (ident_char(q[j]) || q[j] == '.')) ++j;  // 1e-9, 5m, 0.99
            if (j < q.size() && (q[j] == '-' || q[j] == '+') && (q[j - 1] == 'e')) {
                ++j;
                while (j < q.size() && std::isdigit(static_cast<unsigned char>(q[j]))) ++j;
            }
            out.push_back({Token::kNumber, q.substr(i, j - i)});
            i = j;
        } else if (ident_start(c)) {
            size_t j = i;
            while (j < q.size() && ident_char(q[j])) ++j;
            out.push_back({Token::kIdent, q.substr(i, j - i)});
            i = j;
        } else {
            std::string two = q.substr(i, 2);
            bool pair = two == "=~" || two == "!~" || two == "!=" || two == "==" || two == ">=" ||
                        two == "<=";
            out.push_back({Token::kPunct, pair ? two : std::string(1, c)});
            i += pair ? 2 : 1;
        }
    }
    return out;
}

bool is_ringlb(const Token& t) {
    return t.kind == Token::kIdent && t.text.rfind("ringlb_", 0) == 0;
}
bool is_punct(const std::vector<Token>& t, size_t i, const char* text) {
    return i < t.size() && t[i].kind == Token::kPunct && t[i].text == text;
}
bool is_matcher_op(const std::vector<Token>& t, size_t i) {
    return is_punct(t, i, "=") || is_punct(t, i, "=~") || is_punct(t, i, "!=") ||
           is_punct(t, i, "!~");
}

// What one query names.
struct QueryNames {
    std::set<std::string> metrics;
    std::vector<std::string> not_ringlb;                        // selectors of other metrics
    std::vector<std::pair<std::string, std::string>> matchers;  // metric, label filtered on
    std::vector<std::string> grouping;                          // labels of by (...)/without (...)
    std::vector<std::pair<std::string, std::string>> label_values;  // label_values(metric, label)
};

QueryNames names_of(const std::string& expr) {
    QueryNames out;
    std::vector<Token> t = tokenize(expr);
    for (size_t i = 0; i < t.size(); ++i) {
        if (t[i].kind != Token::kIdent) continue;
        const std::string& word = t[i].text;
        if (is_ringlb(t[i])) {
            out.metrics.insert(word);
            if (is_punct(t, i + 1, "{")) {
                for (size_t j = i + 2; j < t.size() && !is_punct(t, j, "}"); ++j)
                    if (t[j].kind == Token::kIdent && is_matcher_op(t, j + 1))
                        out.matchers.emplace_back(word, t[j].text);
            }
        } else if ((word == "by" || word == "without") && is_punct(t, i + 1, "(")) {
            for (size_t j = i + 2; j < t.size() && !is_punct(t, j, ")"); ++j)
                if (t[j].kind == Token::kIdent) out.grouping.push_back(t[j].text);
        } else if (word == "label_values" && is_punct(t, i + 1, "(")) {
            std::string metric, last_ident;
            int depth = 0;
            for (size_t j = i + 1; j < t.size(); ++j) {
                if (is_punct(t, j, "(") || is_punct(t, j, "{")) ++depth;
                if (is_punct(t, j, ")") || is_punct(t, j, "}")) {
                    if (--depth == 0) break;
                }
                if (depth == 1 && t[j].kind == Token::kIdent) {
                    if (metric.empty() && is_ringlb(t[j])) metric = t[j].text;
                    last_ident = t[j].text;
                }
            }
            out.label_values.emplace_back(metric, last_ident);
        } else if (is_punct(t, i + 1, "{") || is_punct(t, i + 1, "[")) {
            out.not_ringlb.push_back(word);
        }
    }
    return out;
}

bool has_label(const Metrics& metrics, const std::string& name, const std::string& label) {
    for (const MetricSample* s : metrics.find(name))
        if (s->labels.count(label)) return true;
    return false;
}

TEST(DashboardTest, EveryQueriedMetricAndLabelIsExported) {
    std::string path = std::string(RINGLB_SOURCE_DIR) + "/deploy/grafana/ringlb-dashboard.json";
    Json dashboard = Json::parse(read_file(path));

    // Grafana 9+ (schemaVersion 36+), a Prometheus data-source variable used by every query.
    EXPECT_GE(dashboard.at("schemaVersion").get<int>(), 36);
    std::string datasource_var;
    for (const Json& var : dashboard.at("templating").at("list"))
        if (var.value("type", "") == "datasource" && var.value("query", "") == "prometheus")
            datasource_var = "${" + var.at("name").get<std::string>() + "}";
    ASSERT_FALSE(datasource_var.empty()) << "no Prometheus data-source variable";
    for (const Json& panel : dashboard.at("panels")) {
        if (panel.value("type", "") == "row") continue;
        EXPECT_EQ(panel.at("datasource").value("uid", ""), datasource_var) << panel.at("title");
        for (const Json& target : panel.value("targets", Json::array()))
            EXPECT_EQ(target.at("datasource").value("uid", ""), datasource_var)
                << panel.at("title");
    }

    std::vector<Query> queries = queries_of(dashboard);
    ASSERT_GE(queries.size(), 30u);

    // A ringlb with two listeners, a cluster with a warm pool and health checks (their series
    // exist only for checked clusters), and traffic through both listeners.
    BackendProcess backend;
    ASSERT_TRUE(backend.start(EchoMode::kHash));
    ProxyConfigSpec spec;
    spec.backends = {backend.address()};
    spec.cluster_extra =
        "pool = { warm = 1 }\nhealth = { interval = \"200ms\", timeout = \"100ms\" }\n";
    std::string config = make_config(spec);
    uint16_t api_port = free_port();
    config += "\n[[listener]]\nname = \"api\"\nbind = \"127.0.0.1:" + std::to_string(api_port) +
              "\"\ncluster = \"app\"\n";
    ProxyProcess proxy;
    RINGLB_START_PROXY(proxy, config, "auto");
    for (uint16_t port : {spec.listen_port, api_port}) {
        RunSummary summary =
            run_concurrent(port, 4, ExchangeSpec{ExchangeKind::kHash, 3000, 5000, 1, false});
        ASSERT_TRUE(summary.ok()) << summary.describe();
    }
    std::string last;
    ASSERT_TRUE(wait_for_metric(
        spec.admin_port, "ringlb_session_duration_seconds_count", {},
        [](double v) { return v == 8; }, 5s, &last))
        << last;
    // A health check has completed, so the check duration histogram has a sample.
    ASSERT_TRUE(wait_for_metric(spec.admin_port, "ringlb_health_check_duration_seconds_count", {},
                                1, 5s, &last))
        << last;
    std::string error;
    auto metrics = scrape_metrics(spec.admin_port, &error);
    ASSERT_TRUE(metrics) << error;

    std::set<std::string> referenced;
    for (const Query& q : queries) {
        SCOPED_TRACE(q.where + ": " + q.expr);
        QueryNames n = names_of(q.expr);
        EXPECT_FALSE(n.metrics.empty()) << "queries no ringlb metric";
        for (const std::string& word : n.not_ringlb)
            ADD_FAILURE() << word << " is not a ringlb metric";
        for (const std::string& name : n.metrics) {
            referenced.insert(name);
            EXPECT_TRUE(metrics->has(name)) << name << " is not in the scrape";
        }
        // Labels the query filters on exist on the metric filtered.
        for (const auto& [name, label] : n.matchers) {
            if (kTargetLabels.count(label)) continue;
            EXPECT_TRUE(has_label(*metrics, name, label)) << name << " has no label " << label;
        }
        // Labels it groups by exist on every metric of the query.
        for (const std::string& label : n.grouping) {
            if (kTargetLabels.count(label)) continue;
            for (const std::string& name : n.metrics) {
                EXPECT_TRUE(has_label(*metrics, name, label))
                    << "grouped by " << label << ", which " << name << " does not have";
            }
        }
        for (const auto& [name, label] : n.label_values) {
            EXPECT_FALSE(name.empty()) << "label_values of no ringlb metric";
            if (kTargetLabels.count(label)) continue;
            EXPECT_TRUE(has_label(*metrics, name, label)) << name << " has no label " << label;
        }
    }

    // Histograms the dashboard takes quantiles of have samples after the traffic.
    for (const std::string& name : referenced) {
        const std::string suffix = "_bucket";
        if (name.size() <= suffix.size() ||
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
            continue;
        std::string count = name.substr(0, name.size() - suffix.size()) + "_count";
        EXPECT_GT(metrics->sum(count), 0)
            << count << " has no samples: " << metrics->describe(count);
    }

    // What the dashboard must show (the deployment issue's list): connections and conn/s per
    // listener, bytes, backend state and health (the checks' verdict, failed checks by result),
    // connect failures by reason, both duration histograms, pool and pipe use, per-shard balance,
    // reloads.
    for (const char* name :
         {"ringlb_listener_active_connections", "ringlb_listener_connections_total",
          "ringlb_bytes_total", "ringlb_backend_active_connections", "ringlb_backend_up",
          "ringlb_health_checks_total", "ringlb_health_check_duration_seconds_bucket",
          "ringlb_backend_connect_failures_total", "ringlb_connect_duration_seconds_bucket",
          "ringlb_session_duration_seconds_bucket", "ringlb_backend_pool_idle",
          "ringlb_pipe_pool_exhausted_total", "ringlb_splice_directions_total",
          "ringlb_accepted_total", "ringlb_active", "ringlb_config_reloads_total"})
        EXPECT_TRUE(referenced.count(name)) << "the dashboard does not show " << name;

    EXPECT_EQ(proxy.stop(), 0) << proxy.log_tail();
}

}  // namespace
}  // namespace ringlb::testkit
