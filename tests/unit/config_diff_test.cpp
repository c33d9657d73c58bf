#include "config/diff.hpp"

#include <gtest/gtest.h>

#include <string>

namespace ringlb::config {
namespace {

Config load(const std::string& text) {
    return load_string(text, "t.toml");
}

const char* kBase = R"([runtime]
workers = 2

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
cluster = "app"

[[listener]]
name = "db"
bind = "127.0.0.1:5432"
cluster = "pg"

[[cluster]]
name = "app"
backends = [{ address = "127.0.0.1:9000" }]

[[cluster]]
name = "pg"
backends = [{ address = "127.0.0.1:9001" }]
)";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
    text.replace(text.find(from), from.size(), to);
    return text;
}

TEST(ConfigDiffTest, SameConfigurationIsNoChange) {
    ConfigDiff d = diff(load(kBase), load(kBase));
    EXPECT_TRUE(d.empty());
    EXPECT_EQ(d.summary(), "no change");
}

TEST(ConfigDiffTest, NamesWhatWasAddedRemovedAndChanged) {
    std::string next = replaced(kBase, "127.0.0.1:9000\" }",
                                "127.0.0.1:9000\" }, { address = \"127.0.0.1:9002\" }");
    next = replaced(next, "name = \"db\"\nbind = \"127.0.0.1:5432\"\ncluster = \"pg\"",
                    "name = \"api\"\nbind = \"127.0.0.1:8081\"\ncluster = \"pg\"");
    next += "\n[[cluster]]\nname = \"extra\"\nbackends = [{ address = \"127.0.0.1:9003\" }]\n";
    ConfigDiff d = diff(load(kBase), load(next));
    EXPECT_EQ(d.listeners_added, std::vector<std::string>{"api"});
    EXPECT_EQ(d.listeners_removed, std::vector<std::string>{"db"});
    EXPECT_TRUE(d.listeners_changed.empty());
    EXPECT_EQ(d.clusters_added, std::vector<std::string>{"extra"});
    EXPECT_EQ(d.clusters_changed, std::vector<std::string>{"app"});
    EXPECT_TRUE(d.restart_only.empty());
    EXPECT_EQ(d.summary(), "listeners +api -db; clusters +extra ~app");
}

TEST(ConfigDiffTest, AClusterAddedBeforeOthersDoesNotChangeTheListeners) {
    std::string next =
        replaced(kBase, "[[cluster]]\nname = \"app\"",
                 "[[cluster]]\nname = \"first\"\nbackends = [{ address = \"127.0.0.1:9004\" }]\n\n"
                 "[[cluster]]\nname = \"app\"");
    ConfigDiff d = diff(load(kBase), load(next));
    EXPECT_TRUE(d.listeners_changed.empty());
    EXPECT_EQ(d.clusters_added, std::vector<std::string>{"first"});
}

TEST(ConfigDiffTest, KeysThatNeedARestartAreListed) {
    std::string next = replaced(kBase, "workers = 2", "workers = 3\nengine = \"epoll\"");
    ConfigDiff d = diff(load(kBase), load(next));
    EXPECT_EQ(d.restart_only, (std::vector<std::string>{"runtime.workers", "runtime.engine"}));
    ConfigDiff admin =
        diff(load(kBase), load(std::string(kBase) + "\n[admin]\nbind = \"127.0.0.1:9900\"\n"));
    EXPECT_EQ(admin.restart_only, std::vector<std::string>{"admin"});
}

TEST(ConfigDiffTest, AListenerKeyChangeMarksItChanged) {
    std::string next =
        replaced(kBase, "cluster = \"app\"\n", "cluster = \"app\"\nidle_timeout = \"5m\"\n");
    ConfigDiff d = diff(load(kBase), load(next));
    EXPECT_EQ(d.listeners_changed, std::vector<std::string>{"web"});
    EXPECT_TRUE(d.clusters_changed.empty());
}

// TLS settings apply to new connections on reload: a change is an ordinary change, never one
// that needs a restart. The lines a tls table records are not settings: a line added above it
// changes nothing.
TEST(ConfigDiffTest, TlsChangesAreReloadableAndItsLinesAreNoChange) {
    const std::string listener_tls =
        "cluster = \"app\"\ntls = { certificates = [{ cert = \"/etc/a.pem\", key = "
        "\"/etc/a.key\" }] }\n";
    const std::string cluster_tls =
        "backends = [{ address = \"127.0.0.1:9001\" }]\ntls = { sni = \"pg.internal\" }\n";
    std::string with_tls = replaced(replaced(kBase, "cluster = \"app\"\n", listener_tls),
                                    "backends = [{ address = \"127.0.0.1:9001\" }]\n", cluster_tls);

    ConfigDiff added = diff(load(kBase), load(with_tls));
    EXPECT_EQ(added.listeners_changed, std::vector<std::string>{"web"});
    EXPECT_EQ(added.clusters_changed, std::vector<std::string>{"pg"});
    EXPECT_TRUE(added.restart_only.empty());

    std::string rotated = replaced(with_tls, "/etc/a.pem", "/etc/b.pem");
    rotated = replaced(rotated, "\"pg.internal\" }", "\"pg.internal\", min_version = \"1.3\" }");
    ConfigDiff changed = diff(load(with_tls), load(rotated));
    EXPECT_EQ(changed.listeners_changed, std::vector<std::string>{"web"});
    EXPECT_EQ(changed.clusters_changed, std::vector<std::string>{"pg"});
    EXPECT_TRUE(changed.restart_only.empty());
    EXPECT_EQ(changed.summary(), "listeners ~web; clusters ~pg");

    Config moved = load("# a comment\n\n" + with_tls);
    ASSERT_NE(moved.listeners[0].tls.line, load(with_tls).listeners[0].tls.line);
    EXPECT_TRUE(diff(load(with_tls), moved).empty()) << diff(load(with_tls), moved).summary();
}

}  // namespace
}  // namespace ringlb::config
