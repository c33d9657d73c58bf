#include "config/config.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <utility>

#include <toml++/toml.h>

#include "common/fd.hpp"

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

const char* to_string(ClosePolicy policy) {
    switch (policy) {
        case ClosePolicy::kGraceful:
            return "graceful";
        case ClosePolicy::kReset:
            return "reset";
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
constexpr int64_t kMaxWeight = 1000;
constexpr Millis kMaxConnectTimeout = std::chrono::hours(1);

// Keys a user may have put at the wrong level; used for "it belongs in [runtime]" hints.
constexpr std::string_view kRuntimeKeys[] = {"workers",      "pin_cpus",  "engine",   "buffer_size",
                                             "buffer_count", "pipe_size", "pipe_pool"};

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t above = row[j];
            size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
            row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// The closest candidate if it is close enough to be a plausible typo, else empty.
std::string_view suggest(std::string_view word,
                         std::initializer_list<std::string_view> candidates) {
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
        check_keys(root, "", {"runtime", "admin", "listener", "cluster"});
        if (const toml::node* runtime = root.get("runtime"))
            config.runtime = load_runtime(table_of(*runtime, "runtime", "[runtime]"));
        if (const toml::node* admin = root.get("admin"))
            config.admin = load_admin(table_of(*admin, "admin", "[admin]"));
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

    toml::table parse() const {
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

    // Rejects any key not in `allowed`. Reports the earliest one in the file, since std::map order
    // would otherwise pick an arbitrary typo out of several.
    void check_keys(const toml::table& table, std::string_view prefix,
                    std::initializer_list<std::string_view> allowed) const {
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
        } else if (name == "log_level") {
            reason += " (the log level is set on the command line with --log-level)";
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

    common::Address address_of(const toml::node& node, std::string_view key,
                               std::string* text) const {
        *text = string_of(node, key);
        std::string error;
        std::optional<common::Address> address = common::parse_address(*text, &error);
        if (!address) fail(node, key, "invalid address " + quote(*text) + ": " + error);
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

    RuntimeConfig load_runtime(const toml::table& table) const {
        constexpr std::string_view kPrefix = "runtime";
        check_keys(table, kPrefix,
                   {"workers", "pin_cpus", "engine", "buffer_size", "buffer_count", "pipe_size",
                    "pipe_pool"});
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

    std::vector<ListenerConfig> load_listeners(const toml::table& root) const {
        const toml::array* array = array_of_tables(root, "listener");
        std::vector<ListenerConfig> listeners;
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::table& table = *array->get(i)->as_table();
            std::string prefix = indexed("listener", i);
            check_keys(table, prefix, {"name", "bind", "cluster", "backlog", "forward"});
            ListenerConfig listener;
            listener.name = name_of(table, prefix);
            for (size_t j = 0; j < listeners.size(); ++j)
                if (listeners[j].name == listener.name)
                    fail(*table.get("name"), join(prefix, "name"),
                         "duplicate listener name " + quote(listener.name) + " (also used by " +
                             indexed("listener", j) + ")");

            std::string bind_key = join(prefix, "bind");
            const toml::node& bind = require(table, prefix, "bind");
            listener.bind = address_of(bind, bind_key, &listener.bind_text);
            for (size_t j = 0; j < listeners.size(); ++j)
                if (listeners[j].bind.to_string() == listener.bind.to_string())
                    fail(bind, bind_key,
                         "address " + quote(listener.bind_text) + " is already bound by " +
                             indexed("listener", j) + " (" + quote(listeners[j].name) + ")");

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
            listeners.push_back(std::move(listener));
        }
        return listeners;
    }

    std::vector<ClusterConfig> load_clusters(const toml::table& root) const {
        const toml::array* array = array_of_tables(root, "cluster");
        std::vector<ClusterConfig> clusters;
        for (size_t i = 0; i < array->size(); ++i) {
            const toml::table& table = *array->get(i)->as_table();
            std::string prefix = indexed("cluster", i);
            check_keys(table, prefix, {"name", "connect_timeout", "backends"});
            ClusterConfig cluster;
            cluster.name = name_of(table, prefix);
            for (size_t j = 0; j < clusters.size(); ++j)
                if (clusters[j].name == cluster.name)
                    fail(*table.get("name"), join(prefix, "name"),
                         "duplicate cluster name " + quote(cluster.name) + " (also used by " +
                             indexed("cluster", j) + ")");

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
            clusters.push_back(std::move(cluster));
        }
        return clusters;
    }

    Millis timeout_of(const toml::node& node, std::string_view key) const {
        auto s = node.as_string();
        if (!s)
            fail(node, key,
                 "expected a duration string like \"2s\" or \"250ms\", got " + describe(node));
        Millis value;
        try {
            value = parse_duration(s->get());
        } catch (const std::invalid_argument& error) {
            fail(node, key, "invalid duration " + quote(s->get()) + ": " + error.what());
        }
        if (value.count() <= 0) fail(node, key, "must be greater than 0, got " + quote(s->get()));
        if (value > kMaxConnectTimeout)
            fail(node, key, "must be at most 1h, got " + quote(s->get()));
        return value;
    }

    BackendConfig load_backend(const toml::node& node, const std::string& prefix) const {
        const toml::table* table = node.as_table();
        if (!table)
            fail(node, prefix,
                 "expected a table like { address = \"127.0.0.1:9001\" }, got " + describe(node));
        check_keys(*table, prefix, {"address", "weight"});
        BackendConfig backend;
        backend.address = address_of(require(*table, prefix, "address"), join(prefix, "address"),
                                     &backend.address_text);
        if (const toml::node* weight = table->get("weight"))
            backend.weight =
                static_cast<uint32_t>(integer_of(*weight, join(prefix, "weight"), 1, kMaxWeight));
        return backend;
    }

    void resolve_clusters(const toml::table& root, Config& config) const {
        const toml::array& listeners = *root.get("listener")->as_array();
        for (size_t i = 0; i < config.listeners.size(); ++i) {
            ListenerConfig& listener = config.listeners[i];
            auto found =
                std::find_if(config.clusters.begin(), config.clusters.end(),
                             [&](const ClusterConfig& c) { return c.name == listener.cluster; });
            if (found == config.clusters.end()) {
                std::string prefix = indexed("listener", i);
                const toml::node& node = *listeners.get(i)->as_table()->get("cluster");
                std::string reason = "cluster " + quote(listener.cluster) + " is not defined";
                // The nearest defined name, if the reference looks like a typo of one.
                std::string_view best;
                size_t best_distance = 3;
                for (const ClusterConfig& cluster : config.clusters) {
                    size_t d = edit_distance(listener.cluster, cluster.name);
                    if (d < best_distance) {
                        best = cluster.name;
                        best_distance = d;
                    }
                }
                if (!best.empty()) reason += " (did you mean " + quote(best) + "?)";
                fail(node, join(prefix, "cluster"), reason);
            }
            listener.cluster_index = static_cast<size_t>(found - config.clusters.begin());
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
    auto cannot_read = [&](int error) {
        return ConfigError(path + ": cannot read: " + std::strerror(error));
    };
    common::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw cannot_read(errno);
    std::string text;
    char chunk[16384];
    for (;;) {
        ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw cannot_read(errno);
        }
        if (n == 0) break;
        text.append(chunk, static_cast<size_t>(n));
    }
    return load_string(text, path);
}

}  // namespace ringlb::config
