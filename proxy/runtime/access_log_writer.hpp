#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "proxy/shard/access_log.hpp"

namespace ringlb::runtime {

// The control thread's side of the access log ([log] access): owns the output and one
// shard::AccessLogBuffer per shard, and writes what the shards handed over every kInterval, so
// no shard ever waits for the disk or a slow stderr reader. Created before the shards and
// destroyed after them: its destructor writes whatever they handed over last.
//
// A file is opened with O_APPEND (lines from one batch go out in one write(2)) and never
// reopened: rotate it with logrotate's copytruncate. On "stderr" the lines go out in writes of
// at most PIPE_BUF bytes cut at line ends, so log lines of other threads never land inside one.
class AccessLogWriter {
  public:
    static constexpr std::chrono::milliseconds kInterval{100};

    // Opens `log.access`; nullptr with the reason in *error when the file cannot be opened.
    static std::unique_ptr<AccessLogWriter> open(const config::LogConfig& log, std::string* error);
    ~AccessLogWriter();
    AccessLogWriter(const AccessLogWriter&) = delete;
    AccessLogWriter& operator=(const AccessLogWriter&) = delete;

    // A buffer for one more shard (ShardOptions::access_log), alive as long as the writer.
    shard::AccessLogBuffer* add_shard();
    // Writes every kInterval on `io` from now on.
    void start(boost::asio::io_context& io);
    // Writes everything handed over so far (at shutdown: after the shards have joined).
    void flush();

    const std::string& target() const { return target_; }

  private:
    AccessLogWriter(common::Fd fd, bool to_stderr, common::LogFormat format, std::string target);
    void arm();
    // Writes `data` (whole lines); on a failure drops the rest and counts its lines on `source`.
    void write_out(std::string_view data, shard::AccessLogBuffer& source);

    common::Fd fd_;  // empty for stderr, which is not ours to close
    bool to_stderr_;
    common::LogFormat format_;
    std::string target_;
    std::vector<std::unique_ptr<shard::AccessLogBuffer>> buffers_;
    std::string scratch_;  // reused: the batches swap their buffers with it
    std::unique_ptr<boost::asio::steady_timer> timer_;
    common::LogLimiter error_log_;
};

}  // namespace ringlb::runtime
