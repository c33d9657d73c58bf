#include "proxy/discovery/resolver.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace ringlb::discovery {

namespace asio = boost::asio;

std::string_view to_string(LookupError error) {
    switch (error) {
        case LookupError::kOk:
            return "ok";
        case LookupError::kNxdomain:
            return "nxdomain";
        case LookupError::kServerFailure:
            return "server_failure";
        case LookupError::kTimeout:
            return "timeout";
        case LookupError::kNoData:
            return "no_data";
        case LookupError::kOther:
            return "other";
    }
    return "?";
}

namespace {

LookupError classify(int status) {
    switch (status) {
        case ARES_SUCCESS:
            return LookupError::kOk;
        case ARES_ENOTFOUND:
            return LookupError::kNxdomain;
        case ARES_ENODATA:
            return LookupError::kNoData;
        // ECONNREFUSED: c-ares 1.18 (Debian 12) ends a query with it both when every try met
        // a closed port and when every answer was SERVFAIL, REFUSED or NOTIMP (later versions
        // report those three as themselves).
        case ARES_ESERVFAIL:
        case ARES_EREFUSED:
        case ARES_ENOTIMP:
        case ARES_ECONNREFUSED:
            return LookupError::kServerFailure;
        case ARES_ETIMEOUT:
            return LookupError::kTimeout;
        default:
            return LookupError::kOther;
    }
}

// Orders IPv4 before IPv6, then by address bytes, then by port: a stable set to compare.
bool address_less(const common::Address& a, const common::Address& b) {
    if (a.family() != b.family()) return a.family() < b.family();
    int order = 0;
    if (a.family() == AF_INET) {
        order = std::memcmp(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr,
                            &reinterpret_cast<const sockaddr_in*>(&b.storage)->sin_addr,
                            sizeof(in_addr));
    } else if (a.family() == AF_INET6) {
        order = std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr,
                            &reinterpret_cast<const sockaddr_in6*>(&b.storage)->sin6_addr,
                            sizeof(in6_addr));
    }
    if (order != 0) return order < 0;
    return a.port() < b.port();
}

Result to_result(int status, int timeouts, const ares_addrinfo* info, uint16_t port) {
    Result result;
    result.error = classify(status);
    if (status != ARES_SUCCESS) {
        result.message = ares_strerror(status);
        if (timeouts > 0) result.message += " (" + std::to_string(timeouts) + " timeouts)";
        return result;
    }
    int min_ttl = INT_MAX;
    for (const ares_addrinfo_node* node = info ? info->nodes : nullptr; node;
         node = node->ai_next) {
        common::Address address;
        if (node->ai_family == AF_INET && node->ai_addrlen >= sizeof(sockaddr_in)) {
            auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
            std::memcpy(v4, node->ai_addr, sizeof(sockaddr_in));
            v4->sin_port = htons(port);
            address.length = sizeof(sockaddr_in);
        } else if (node->ai_family == AF_INET6 && node->ai_addrlen >= sizeof(sockaddr_in6)) {
            auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
            std::memcpy(v6, node->ai_addr, sizeof(sockaddr_in6));
            v6->sin6_port = htons(port);
            address.length = sizeof(sockaddr_in6);
        } else {
            continue;
        }
        result.addresses.push_back(address);
        min_ttl = std::min(min_ttl, node->ai_ttl);
    }
    for (const ares_addrinfo_cname* cname = info ? info->cnames : nullptr; cname;
         cname = cname->next)
        min_ttl = std::min(min_ttl, cname->ttl);
    if (result.addresses.empty()) {
        result.error = LookupError::kNoData;
        result.message = "no A or AAAA record in the answer";
        return result;
    }
    result.ttl = std::chrono::seconds(std::max(0, min_ttl));
    std::sort(result.addresses.begin(), result.addresses.end(), address_less);
    result.addresses.erase(std::unique(result.addresses.begin(), result.addresses.end()),
                           result.addresses.end());
    return result;
}

// Whether `fd` is readable (or writable) right now. Asio's epoll reactor is edge-triggered and
// an async_wait is never tried speculatively: an edge that came while no wait was queued (data
// c-ares left unread, a TCP socket that was already writable) would never be reported again.
bool ready_now(int fd, bool read) {
    pollfd p{fd, static_cast<short>(read ? POLLIN : POLLOUT), 0};
    return ::poll(&p, 1, 0) > 0;
}

}  // namespace

class Resolver::Impl : public std::enable_shared_from_this<Impl> {
  public:
    Impl(asio::io_context& io, const std::vector<common::Address>& servers,
         ResolverOptions options);
    ~Impl();
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    void resolve(std::string host, uint16_t port, std::function<void(Result)> done);
    size_t pending() const { return waiting_; }

  private:
    // One socket c-ares asked us to watch. The descriptor does not own the fd: c-ares closes
    // it, after telling on_sock_state() to stop watching.
    struct Watch {
        explicit Watch(asio::io_context& io) : descriptor(io) {}
        asio::posix::stream_descriptor descriptor;
        bool want_read = false;
        bool want_write = false;
        bool read_armed = false;
        bool write_armed = false;
    };
    struct Lookup {
        Lookup(asio::io_context& io, Impl* owner) : owner(owner), deadline(io) {}
        Impl* owner;
        uint64_t id = 0;
        uint16_t port = 0;
        std::function<void(Result)> done;
        asio::steady_timer deadline;
        bool answered = false;
    };

    static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
    static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* info);
    void arm(int fd, const std::shared_ptr<Watch>& watch);
    void on_ready(int fd, const std::shared_ptr<Watch>& watch, bool read);
    void arm_timer();
    void answer(Lookup& lookup, Result result);

    asio::io_context& io_;
    ResolverOptions options_;
    ares_channel channel_ = nullptr;
    std::unordered_map<int, std::shared_ptr<Watch>> watches_;
    asio::steady_timer timer_;  // c-ares' next retransmission or query timeout
    // Owned here until c-ares calls on_addrinfo() for them, which it does exactly once, also on
    // ares_destroy(); answered (by the deadline) but still in c-ares' hands in between.
    std::map<uint64_t, std::unique_ptr<Lookup>> lookups_;
    uint64_t next_id_ = 1;
    size_t waiting_ = 0;
};

Resolver::Impl::Impl(asio::io_context& io, const std::vector<common::Address>& servers,
                     ResolverOptions options)
    : io_(io), options_(options), timer_(io) {
    // Only Windows needs it, but c-ares asks for it once per process before any channel.
    static std::once_flag library_once;
    static int library_status = ARES_SUCCESS;
    std::call_once(library_once, [] { library_status = ares_library_init(ARES_LIB_INIT_ALL); });
    if (library_status != ARES_SUCCESS)
        throw std::runtime_error(std::string("c-ares: ") + ares_strerror(library_status));
    if (options_.tries < 1) options_.tries = 1;
    if (options_.timeout < std::chrono::milliseconds(1))
        options_.timeout = std::chrono::milliseconds(1);

    ares_options opts{};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    opts.sock_state_cb = &Impl::on_sock_state;
    opts.sock_state_cb_data = this;
    opts.timeout =
        static_cast<int>(std::max<int64_t>(1, options_.timeout.count() / options_.tries));
    opts.tries = options_.tries;
    char dns_only[] = "b";
    if (!servers.empty()) {
        // Explicit servers: no /etc/hosts and no search list, so that a name means the same on
        // every machine that runs this configuration.
        mask |= ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS;
        opts.lookups = dns_only;
        opts.domains = nullptr;
        opts.ndomains = 0;
    }
    if (int status = ares_init_options(&channel_, &opts, mask); status != ARES_SUCCESS)
        throw std::runtime_error(std::string("c-ares: ") + ares_strerror(status));
    if (!servers.empty()) {
        std::vector<ares_addr_port_node> nodes(servers.size());
        for (size_t i = 0; i < servers.size(); ++i) {
            const common::Address& server = servers[i];
            ares_addr_port_node& node = nodes[i];
            node.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
            node.family = server.family();
            if (server.family() == AF_INET) {
                node.addr.addr4 = reinterpret_cast<const sockaddr_in*>(&server.storage)->sin_addr;
            } else if (server.family() == AF_INET6) {
                std::memcpy(&node.addr.addr6,
                            &reinterpret_cast<const sockaddr_in6*>(&server.storage)->sin6_addr,
                            sizeof(in6_addr));
            } else {
                ares_destroy(channel_);
                throw std::runtime_error("DNS server " + server.to_string() +
                                         " is not an IP address");
            }
            node.udp_port = node.tcp_port = server.port() == 0 ? 53 : server.port();
        }
        if (int status = ares_set_servers_ports(channel_, nodes.data()); status != ARES_SUCCESS) {
            ares_destroy(channel_);
            throw std::runtime_error(std::string("c-ares: setting the DNS servers: ") +
                                     ares_strerror(status));
        }
    }
}

Resolver::Impl::~Impl() {
    // Calls on_addrinfo(ARES_EDESTRUCTION) for every query, which frees its Lookup without
    // calling done(), and on_sock_state(fd, 0, 0) for every socket before closing it.
    ares_destroy(channel_);
    // Should c-ares ever close a socket without saying so, its number must still not be closed
    // a second time here (it may belong to someone else by now).
    for (auto& [fd, watch] : watches_) {
        boost::system::error_code ignored;
        watch->descriptor.cancel(ignored);
        watch->descriptor.release();
    }
}

void Resolver::Impl::resolve(std::string host, uint16_t port, std::function<void(Result)> done) {
    auto owned = std::make_unique<Lookup>(io_, this);
    Lookup& lookup = *owned;
    lookup.id = next_id_++;
    lookup.port = port;
    lookup.done = std::move(done);
    lookups_.emplace(lookup.id, std::move(owned));
    ++waiting_;
    lookup.deadline.expires_after(options_.timeout);
    lookup.deadline.async_wait(
        [weak = weak_from_this(), id = lookup.id](const boost::system::error_code& ec) {
            if (ec) return;
            auto self = weak.lock();
            if (!self) return;
            auto it = self->lookups_.find(id);
            if (it == self->lookups_.end() || it->second->answered) return;
            Result result;
            result.error = LookupError::kTimeout;
            result.message =
                "no answer within " + std::to_string(self->options_.timeout.count()) + " ms";
            self->answer(*it->second, std::move(result));
        });

    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    // We sort ourselves; c-ares' RFC 6724 sort would open a socket per address to find sources.
    hints.ai_flags = ARES_AI_NOSORT;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    // May call on_addrinfo() before it returns (a bad name, /etc/hosts): answer() only posts.
    ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &Impl::on_addrinfo, &lookup);
    arm_timer();
}

void Resolver::Impl::on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* info) {
    auto* lookup = static_cast<Lookup*>(arg);
    Impl* self = lookup->owner;
    auto node = self->lookups_.extract(lookup->id);  // freed on return
    if (status != ARES_EDESTRUCTION && !lookup->answered)
        self->answer(*lookup, to_result(status, timeouts, info, lookup->port));
    if (info) ares_freeaddrinfo(info);
}

void Resolver::Impl::answer(Lookup& lookup, Result result) {
    lookup.answered = true;
    lookup.deadline.cancel();
    --waiting_;
    // Posted, so that done() never runs inside c-ares (where destroying the channel, which
    // done() may do by destroying the Resolver, is not allowed) nor inside resolve().
    asio::post(io_, [weak = weak_from_this(), done = std::move(lookup.done),
                     result = std::move(result)]() mutable {
        if (weak.expired()) return;  // the Resolver is gone: so may be done()'s owner
        done(std::move(result));
    });
}

void Resolver::Impl::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    auto it = self->watches_.find(fd);
    if (!readable && !writable) {
        if (it == self->watches_.end()) return;
        boost::system::error_code ignored;
        // Cancel first: release() alone would drop the queued waits without completing them.
        it->second->descriptor.cancel(ignored);
        it->second->descriptor.release();
        self->watches_.erase(it);
        return;
    }
    if (it == self->watches_.end()) {
        auto watch = std::make_shared<Watch>(self->io_);
        boost::system::error_code ec;
        watch->descriptor.assign(fd, ec);
        // Cannot happen for a fresh socket; should it, the lookup ends at its deadline.
        if (ec) return;
        it = self->watches_.emplace(fd, std::move(watch)).first;
    }
    it->second->want_read = readable != 0;
    it->second->want_write = writable != 0;
    self->arm(fd, it->second);
}

void Resolver::Impl::arm(int fd, const std::shared_ptr<Watch>& watch) {
    for (bool read : {true, false}) {
        bool want = read ? watch->want_read : watch->want_write;
        bool& armed = read ? watch->read_armed : watch->write_armed;
        if (!want || armed) continue;
        armed = true;
        auto handler = [weak = weak_from_this(), fd, watch,
                        read](const boost::system::error_code& ec) {
            (read ? watch->read_armed : watch->write_armed) = false;
            if (ec) return;  // cancelled: c-ares stopped watching this socket
            if (auto self = weak.lock()) self->on_ready(fd, watch, read);
        };
        if (ready_now(fd, read)) {
            asio::post(io_, [handler] { handler(boost::system::error_code()); });
        } else {
            watch->descriptor.async_wait(read ? asio::posix::stream_descriptor::wait_read
                                              : asio::posix::stream_descriptor::wait_write,
                                         handler);
        }
    }
}

void Resolver::Impl::on_ready(int fd, const std::shared_ptr<Watch>& watch, bool read) {
    auto current = [&] {
        auto it = watches_.find(fd);
        return it != watches_.end() && it->second == watch;
    };
    // The socket may have been closed (and its number reused) since the wait was queued.
    if (!current()) return;
    ares_process_fd(channel_, read ? fd : ARES_SOCKET_BAD, read ? ARES_SOCKET_BAD : fd);
    if (current()) arm(fd, watch);
    arm_timer();
}

void Resolver::Impl::arm_timer() {
    timeval tv{};
    if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
        timer_.cancel();  // no query in flight
        return;
    }
    timer_.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
        if (ec) return;
        auto self = weak.lock();
        if (!self) return;
        ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        self->arm_timer();
    });
}

Resolver::Resolver(asio::io_context& io, std::vector<common::Address> servers,
                   ResolverOptions options)
    : impl_(std::make_shared<Impl>(io, servers, options)) {}

Resolver::~Resolver() = default;

void Resolver::resolve(std::string host, uint16_t port, std::function<void(Result)> done) {
    impl_->resolve(std::move(host), port, std::move(done));
}

size_t Resolver::pending() const {
    return impl_->pending();
}

}  // namespace ringlb::discovery
