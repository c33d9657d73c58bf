#include "proxy/shard/access_log.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>
#include <utility>

#include "common/socket.hpp"

namespace ringlb::shard {

namespace {

// "127.0.0.1:40312" or "[::1]:40312" into `text`, without the allocation of
// Address::to_string(); empty when the address is neither.
std::string_view format_address(const common::Address& address, char (&text)[64]) {
    char* p = text;
    char* const end = text + sizeof(text);
    uint16_t port = 0;
    if (address.family() == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(address.storage);
        if (!inet_ntop(AF_INET, &in.sin_addr, p, static_cast<socklen_t>(end - p))) return {};
        p += std::char_traits<char>::length(p);
        port = ntohs(in.sin_port);
    } else if (address.family() == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
        *p++ = '[';
        if (!inet_ntop(AF_INET6, &in6.sin6_addr, p, static_cast<socklen_t>(end - p))) return {};
        p += std::char_traits<char>::length(p);
        *p++ = ']';
        port = ntohs(in6.sin6_port);
    } else {
        return {};
    }
    *p++ = ':';
    p = std::to_chars(p, end, port).ptr;
    return {text, static_cast<size_t>(p - text)};
}

}  // namespace

std::unique_ptr<AccessTally> AccessTally::for_client(int fd) {
    auto tally = std::make_unique<AccessTally>();
    tally->client = common::peer_address(fd);
    return tally;
}

void format_access_record(std::string& out, common::LogFormat format, const timespec& end,
                          const AccessRecord& record) {
    char stamp_text[40];
    std::string_view stamp = common::format_timestamp(end, stamp_text);
    if (format == common::LogFormat::kText) {
        out.append(stamp);
        out += " access ";
    }
    common::FieldWriter fields(out, format);
    if (format != common::LogFormat::kText) fields.text("ts", stamp);
    fields.text("listener", record.listener);
    char client_text[64];
    std::string_view client;
    if (record.client) client = format_address(*record.client, client_text);
    if (client.empty())
        fields.none("client");
    else
        fields.text("client", client);
    if (record.backend.empty())
        fields.none("backend");
    else
        fields.text("backend", record.backend);
    fields.number("bytes_in", record.bytes_in);
    fields.number("bytes_out", record.bytes_out);
    fields.millis("duration_ms", record.duration_ns);
    if (record.connected)
        fields.millis("connect_ms", record.connect_ns);
    else
        fields.none("connect_ms");
    fields.text("reason", record.reason);
    if (!record.tls_version.empty()) {
        fields.text("tls_version", record.tls_version);
        fields.text("tls_cipher", record.tls_cipher);
    }
    fields.end();
}

AccessLogBuffer::AccessLogBuffer(common::LogFormat format) : format_(format) {
    timer_.bind(this, 0);
}

void AccessLogBuffer::append(const AccessRecord& record, TimerWheel& timers, uint64_t now_ms) {
    timespec end{};
    ::clock_gettime(CLOCK_REALTIME, &end);
    format_access_record(batch_, format_, end, record);
    ++batch_lines_;
    if (batch_.size() >= kBatchBytes) {
        hand_off();
    } else if (!timer_.scheduled() && !stopping_) {
        timers.schedule(timer_, now_ms + kBatchMs);
    }
}

void AccessLogBuffer::stopping() {
    stopping_ = true;
}

void AccessLogBuffer::on_timer(Timer&) {
    hand_off();
}

void AccessLogBuffer::hand_off() {
    if (batch_.empty()) return;
    {
        std::lock_guard lock(mutex_);
        if (stopping_ || pending_.size() + batch_.size() <= kMaxPendingBytes) {
            if (pending_.empty())
                pending_.swap(batch_);  // the writer's emptied buffer comes back as our batch
            else
                pending_.append(batch_);
            batch_lines_ = 0;
        }
    }
    if (batch_lines_ > 0) count_dropped(batch_lines_);
    batch_.clear();
    batch_lines_ = 0;
}

void AccessLogBuffer::take(std::string& out) {
    std::lock_guard lock(mutex_);
    if (out.empty())
        out.swap(pending_);
    else
        out.append(pending_);
    pending_.clear();
}

}  // namespace ringlb::shard
