#include "common/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>

namespace ringlb::common {

namespace {
std::optional<Address> fail(std::string* error, std::string reason) {
    if (error) *error = std::move(reason);
    return std::nullopt;
}
}  // namespace

uint16_t Address::port() const {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    return 0;
}

std::string Address::to_string() const {
    char host[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, host,
                  sizeof(host));
        std::string out(host);
        out.append(":").append(std::to_string(port()));
        return out;
    }
    if (family() == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, host,
                  sizeof(host));
        // Built with append: GCC 12 warns falsely (-Wrestrict) on chained operator+ here.
        std::string out("[");
        out.append(host).append("]:").append(std::to_string(port()));
        return out;
    }
    if (family() == AF_UNIX) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&storage);
        size_t size =
            length > offsetof(sockaddr_un, sun_path)
                ? std::min<size_t>(length - offsetof(sockaddr_un, sun_path), sizeof(un->sun_path))
                : 0;
        std::string out("unix:");
        if (size > 0 && un->sun_path[0] == '\0') {
            out.append(un->sun_path, size);
            std::replace(out.begin() + 5, out.end(), '\0', '@');
        } else {
            out.append(un->sun_path, strnlen(un->sun_path, size));
        }
        return out;
    }
    return "<unspecified>";
}

std::optional<Address> parse_address(std::string_view text, std::string* error) {
    std::string_view host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fail(error, "expected \"[ipv6]:port\"");
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else {
        size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) return fail(error, "expected \"ip:port\"");
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return fail(error, "IPv6 addresses must be written as \"[ipv6]:port\"");
    }
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 ||
        port_text.empty())
        return fail(error, "invalid port \"" + std::string(port_text) + "\"");

    Address out;
    std::string host_z(host);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET, host_z.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<uint16_t>(port));
        out.length = sizeof(sockaddr_in);
        return out;
    }
    std::memset(&out.storage, 0, sizeof(out.storage));
    if (inet_pton(AF_INET6, host_z.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<uint16_t>(port));
        out.length = sizeof(sockaddr_in6);
        return out;
    }
    return fail(error, "invalid IP address \"" + host_z + "\" (host names are not resolved)");
}

std::optional<Address> parse_ip(std::string_view text, std::string* error) {
    if (text.empty()) return fail(error, "empty IP address");
    Address out;
    std::string host(text);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        out.length = sizeof(sockaddr_in);
        return out;
    }
    std::memset(&out.storage, 0, sizeof(out.storage));
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        out.length = sizeof(sockaddr_in6);
        return out;
    }
    // The likely slips get a precise reason: a port, or the bracketed form of "ip:port".
    if (parse_address(text)) return fail(error, "expected an IP address without a port");
    if (text.front() == '[') return fail(error, "write IPv6 addresses without brackets");
    return fail(error, "invalid IP address \"" + host + "\" (host names are not resolved)");
}

std::optional<Address> make_unix_address(std::string_view path) {
    Address out;
    auto* un = reinterpret_cast<sockaddr_un*>(&out.storage);
    bool abstract = !path.empty() && path.front() == '\0';
    if (path.size() > sizeof(un->sun_path)) return std::nullopt;
    if (!abstract && path.find('\0') != std::string_view::npos) return std::nullopt;
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    size_t size = path.size();
    if (!path.empty() && !abstract && size < sizeof(un->sun_path)) ++size;  // the NUL
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + size);
    return out;
}

std::optional<Address> parse_socket_address(std::string_view text, std::string* error) {
    constexpr std::string_view kUnix = "unix:";
    if (text.substr(0, kUnix.size()) != kUnix) return parse_address(text, error);
    std::string_view path = text.substr(kUnix.size());
    // Relative paths would depend on the working directory of whoever starts ringlb.
    if (path.empty() || path.front() != '/')
        return fail(error, "expected an absolute path after \"unix:\", like \"unix:/run/x.sock\"");
    std::optional<Address> out;
    if (path.size() < sizeof(sockaddr_un::sun_path)) out = make_unix_address(path);
    if (!out)
        return fail(error, "a unix socket path must be shorter than " +
                               std::to_string(sizeof(sockaddr_un::sun_path)) +
                               " bytes and hold no NUL");
    return out;
}

std::string unix_path(const Address& address) {
    if (address.family() != AF_UNIX || address.length <= offsetof(sockaddr_un, sun_path)) return {};
    const auto* un = reinterpret_cast<const sockaddr_un*>(&address.storage);
    if (un->sun_path[0] == '\0') return {};
    size_t room =
        std::min<size_t>(address.length - offsetof(sockaddr_un, sun_path), sizeof(un->sun_path));
    return std::string(un->sun_path, strnlen(un->sun_path, room));
}

Address unmapped_ipv4(const Address& address) {
    if (address.family() != AF_INET6) return address;
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    if (!IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) return address;
    Address out;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    v4->sin_family = AF_INET;
    v4->sin_port = v6->sin6_port;
    std::memcpy(&v4->sin_addr, &v6->sin6_addr.s6_addr[12], 4);
    out.length = sizeof(sockaddr_in);
    return out;
}

bool Address::operator==(const Address& other) const {
    return length == other.length && std::memcmp(&storage, &other.storage, length) == 0;
}

}  // namespace ringlb::common
