#include "proxy/runtime/cgroup.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace ringlb::runtime {

namespace {

// v1 memory.limit_in_bytes reports "no limit" as the largest page-aligned value (about 2^63);
// anything this large is no limit in practice either.
constexpr uint64_t kUnlimitedMemory = uint64_t{1} << 62;

std::vector<std::string> split(const std::string& text, char sep) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream in(text);
    while (std::getline(in, part, sep)) parts.push_back(part);
    return parts;
}

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
std::string unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            int value = 0;
            bool octal = true;
            for (size_t k = 1; k <= 3; ++k) {
                if (s[i + k] < '0' || s[i + k] > '7') octal = false;
                value = value * 8 + (s[i + k] - '0');
            }
            if (octal) {
                out.push_back(static_cast<char>(value));
                i += 3;
                continue;
            }
        }
        out.push_back(s[i]);
    }
    return out;
}

struct Mount {
    std::string root;                  // the hierarchy's cgroup that is mounted (4th field)
    std::string mount_point;           // where (5th field)
    std::string fstype;                // cgroup or cgroup2
    std::vector<std::string> options;  // super options: the v1 controllers among them
};

std::vector<Mount> cgroup_mounts(const std::string& root) {
    std::vector<Mount> mounts;
    std::ifstream in(root + "/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::istringstream words(line);
        for (std::string w; words >> w;) f.push_back(w);
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
        size_t dash = 6;
        while (dash < f.size() && f[dash] != "-") ++dash;
        if (dash + 3 >= f.size()) continue;
        const std::string& fstype = f[dash + 1];
        if (fstype != "cgroup" && fstype != "cgroup2") continue;
        mounts.push_back({unescape(f[3]), unescape(f[4]), fstype, split(f[dash + 3], ',')});
    }
    return mounts;
}

// The process's cgroup per hierarchy: "HIERARCHY-ID:CONTROLLERS:PATH" lines; v2 is "0::PATH".
struct Membership {
    std::vector<std::string> controllers;
    std::string path;
};

std::vector<Membership> memberships(const std::string& root) {
    std::vector<Membership> out;
    std::ifstream in(root + "/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        size_t first = line.find(':');
        size_t second = first == std::string::npos ? first : line.find(':', first + 1);
        if (second == std::string::npos) continue;
        Membership m;
        m.controllers = split(line.substr(first + 1, second - first - 1), ',');
        m.path = line.substr(second + 1);
        out.push_back(std::move(m));
    }
    return out;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
    for (const auto& x : list)
        if (x == item) return true;
    return false;
}

// The directories to read a controller's files from, the process's own cgroup first, then each
// ancestor up to the mount point. Empty when the controller is not mounted.
std::vector<std::string> cgroup_dirs(const std::string& root, const std::vector<Mount>& mounts,
                                     const std::vector<Membership>& member,
                                     const std::string& controller, bool& v2) {
    const Mount* mount = nullptr;
    const Membership* membership = nullptr;
    for (const auto& m : mounts) {
        if (m.fstype != "cgroup" || !contains(m.options, controller)) continue;
        for (const auto& g : member)
            if (contains(g.controllers, controller)) {
                mount = &m;
                membership = &g;
                break;
            }
        if (mount != nullptr) break;
    }
    v2 = mount == nullptr;
    if (v2) {
        for (const auto& m : mounts)
            if (m.fstype == "cgroup2") mount = &m;
        for (const auto& g : member)
            if (g.controllers.empty()) membership = &g;  // "0::PATH"
    }
    if (mount == nullptr || membership == nullptr) return {};

    // The part of the path below the mount's root; when the path lies outside it (a cgroup
    // namespace or bind mount that hides it), the mount point is the closest directory we see.
    std::string path = membership->path;
    std::string relative;
    if (mount->root == "/")
        relative = path;
    else if (path.rfind(mount->root, 0) == 0 &&
             (path.size() == mount->root.size() || path[mount->root.size()] == '/'))
        relative = path.substr(mount->root.size());
    std::string base = root + mount->mount_point;
    std::vector<std::string> dirs;
    while (!relative.empty() && relative != "/") {
        dirs.push_back(base + relative);
        relative.resize(relative.rfind('/'));
    }
    dirs.push_back(base);
    return dirs;
}

std::optional<std::string> read_line(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    if (!std::getline(in, line)) return std::nullopt;
    return line;
}

std::optional<int64_t> to_int(const std::string& text) {
    try {
        return static_cast<int64_t>(std::stoll(text));
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

void read_cpu(const std::string& root, const std::vector<Mount>& mounts,
              const std::vector<Membership>& member, CgroupLimits& out) {
    bool v2 = false;
    for (const std::string& dir : cgroup_dirs(root, mounts, member, "cpu", v2)) {
        int64_t quota = -1, period = 0;
        if (v2) {
            // "max 100000" (no limit) or "QUOTA PERIOD".
            std::optional<std::string> line = read_line(dir + "/cpu.max");
            if (!line) continue;
            std::istringstream in(*line);
            std::string q;
            in >> q >> period;
            if (q == "max") continue;
            quota = to_int(q).value_or(-1);
        } else {
            std::optional<std::string> q = read_line(dir + "/cpu.cfs_quota_us");
            std::optional<std::string> p = read_line(dir + "/cpu.cfs_period_us");
            if (!q || !p) continue;
            quota = to_int(*q).value_or(-1);  // -1: no limit
            period = to_int(*p).value_or(0);
        }
        if (quota <= 0 || period <= 0) continue;
        double cpus = static_cast<double>(quota) / static_cast<double>(period);
        if (out.cpu_quota > 0 && out.cpu_quota <= cpus) continue;
        out.cpu_quota = cpus;
        out.cpu_source =
            std::string(v2 ? "cgroup cpu.max " : "cgroup cpu.cfs_quota_us/cpu.cfs_period_us ") +
            std::to_string(quota) + "/" + std::to_string(period);
    }
}

void read_memory(const std::string& root, const std::vector<Mount>& mounts,
                 const std::vector<Membership>& member, CgroupLimits& out) {
    bool v2 = false;
    for (const std::string& dir : cgroup_dirs(root, mounts, member, "memory", v2)) {
        std::optional<std::string> line =
            read_line(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
        if (!line || *line == "max") continue;
        std::optional<int64_t> bytes = to_int(*line);
        if (!bytes || *bytes <= 0 || static_cast<uint64_t>(*bytes) >= kUnlimitedMemory) continue;
        uint64_t limit = static_cast<uint64_t>(*bytes);
        if (out.memory_max != 0 && out.memory_max <= limit) continue;
        out.memory_max = limit;
        out.memory_source = v2 ? "cgroup memory.max" : "cgroup memory.limit_in_bytes";
    }
}

}  // namespace

CgroupLimits read_cgroup_limits(const std::string& root) {
    CgroupLimits out;
    std::vector<Mount> mounts = cgroup_mounts(root);
    std::vector<Membership> member = memberships(root);
    read_cpu(root, mounts, member, out);
    read_memory(root, mounts, member, out);
    return out;
}

int cpu_budget(int affinity_cpus, const CgroupLimits& cgroup) {
    int quota = cgroup.cpu_quota > 0 ? static_cast<int>(std::ceil(cgroup.cpu_quota)) : -1;
    if (affinity_cpus < 1) return quota;
    if (quota < 1) return affinity_cpus;
    return std::max(1, std::min(affinity_cpus, quota));
}

}  // namespace ringlb::runtime
