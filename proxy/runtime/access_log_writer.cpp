#include "proxy/runtime/access_log_writer.hpp"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/clock.hpp"

namespace ringlb::runtime {

std::unique_ptr<AccessLogWriter> AccessLogWriter::open(const config::LogConfig& log,
                                                       std::string* error) {
    if (log.access == "stderr")
        return std::unique_ptr<AccessLogWriter>(
            new AccessLogWriter(common::Fd(), true, log.format, log.access));
    common::Fd fd(
        ::open(log.access.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640));
    if (!fd) {
        *error = "cannot open access log " + log.access + ": " + std::strerror(errno);
        return nullptr;
    }
    return std::unique_ptr<AccessLogWriter>(
        new AccessLogWriter(std::move(fd), false, log.format, log.access));
}

AccessLogWriter::AccessLogWriter(common::Fd fd, bool to_stderr, common::LogFormat format,
                                 std::string target)
    : fd_(std::move(fd)), to_stderr_(to_stderr), format_(format), target_(std::move(target)) {}

AccessLogWriter::~AccessLogWriter() {
    flush();
}

shard::AccessLogBuffer* AccessLogWriter::add_shard() {
    buffers_.push_back(std::make_unique<shard::AccessLogBuffer>(format_));
    return buffers_.back().get();
}

void AccessLogWriter::start(boost::asio::io_context& io) {
    timer_ = std::make_unique<boost::asio::steady_timer>(io);
    arm();
}

void AccessLogWriter::arm() {
    timer_->expires_after(kInterval);
    timer_->async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        flush();
        arm();
    });
}

void AccessLogWriter::flush() {
    for (auto& buffer : buffers_) {
        scratch_.clear();
        buffer->take(scratch_);
        if (!scratch_.empty()) write_out(scratch_, *buffer);
    }
    // Keep the capacity the batches use, but not a burst's worth forever.
    if (scratch_.capacity() > 2 * shard::AccessLogBuffer::kBatchBytes) std::string().swap(scratch_);
}

void AccessLogWriter::write_out(std::string_view data, shard::AccessLogBuffer& source) {
    int fd = to_stderr_ ? STDERR_FILENO : fd_.get();
    while (!data.empty()) {
        size_t n = data.size();
        if (to_stderr_ && n > PIPE_BUF) {
            // Whole lines up to PIPE_BUF (a pipe write that size is atomic); a longer line alone.
            size_t cut = data.rfind('\n', PIPE_BUF - 1);
            n = cut != std::string_view::npos ? cut + 1 : data.find('\n') + 1;
            if (n == 0) n = data.size();  // no newline at all (never: every line ends in one)
        }
        ssize_t w = ::write(fd, data.data(), n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int err = w < 0 ? errno : EIO;
            uint64_t lines = static_cast<uint64_t>(std::count(data.begin(), data.end(), '\n'));
            source.count_dropped(lines);
            LOG_WARN_LIMITED(error_log_, common::coarse_monotonic_ms(),
                             "access log %s: write failed: %s; %llu lines dropped "
                             "(ringlb_access_log_dropped_total)",
                             target_.c_str(), std::strerror(err),
                             static_cast<unsigned long long>(lines));
            return;
        }
        data.remove_prefix(static_cast<size_t>(w));
    }
}

}  // namespace ringlb::runtime
