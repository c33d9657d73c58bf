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

}  // namespace
}  // namespace ringlb::config
