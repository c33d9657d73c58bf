#pragma once

// A directory tree of small text files in a temporary directory, removed with the object: a fake
// /proc or /sys/fs/cgroup for the readers that take a root path.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace ringlb::unit {

class FakeTree {
  public:
    FakeTree() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "ringlb-fake-XXXXXX").string();
        root_ = ::mkdtemp(pattern.data()) ? pattern : std::string();
    }
    ~FakeTree() {
        std::error_code ec;
        if (!root_.empty()) std::filesystem::remove_all(root_, ec);
    }
    FakeTree(const FakeTree&) = delete;
    FakeTree& operator=(const FakeTree&) = delete;

    const std::string& root() const { return root_; }
    // Writes `content` to ROOT/relative, creating the directories on the way.
    void write(const std::string& relative, const std::string& content) {
        std::filesystem::path path = std::filesystem::path(root_) / relative;
        std::filesystem::create_directories(path.parent_path());
        std::ofstream(path) << content;
    }

  private:
    std::string root_;
};

}  // namespace ringlb::unit
