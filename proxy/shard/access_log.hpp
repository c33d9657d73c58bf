#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/address.hpp"
#include "common/log_format.hpp"
#include "proxy/shard/timer_wheel.hpp"

namespace ringlb::shard {

// What a session notes for its access-log line while it runs. Allocated only when the access log
// is on, so a session without it pays one null pointer and no address lookup.
struct AccessTally {
    // A tally for the client on `fd`, its address looked up now (one getpeername()).
    static std::unique_ptr<AccessTally> for_client(int fd);

    common::Address client;  // length 0 when getpeername() failed
    // CLOCK_MONOTONIC when the upstream socket was handed over; 0: never.
    uint64_t connected_ns = 0;
    uint64_t bytes_in = 0;   // client -> upstream, as counted in ringlb_bytes_total
    uint64_t bytes_out = 0;  // upstream -> client
    // The client's TLS, when the listener terminates it: OpenSSL's static names.
    const char* tls_version = nullptr;
    const char* tls_cipher = nullptr;
};

// One finished session, as its access-log line shows it.
struct AccessRecord {
    std::string_view listener;
    const common::Address* client = nullptr;  // nullptr: unknown ("-")
    std::string_view backend;                 // empty: the session never had one ("-")
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    uint64_t duration_ns = 0;  // accept to close
    bool connected = false;
    uint64_t connect_ns = 0;  // accept to upstream connected, when `connected`
    std::string_view reason;  // upstream::CloseReason, as the metrics name it
    // The client's TLS version and cipher ("TLSv1.3", "TLS_AES_256_GCM_SHA384"); empty when the
    // listener does not terminate TLS or the handshake did not finish.
    std::string_view tls_version;
    std::string_view tls_cipher;
};

// Appends `record` as one line in `format`, stamped with `end` (CLOCK_REALTIME):
//   text    2026-12-02T12:00:00.123Z access listener=web client=127.0.0.1:40312 ...
//   logfmt  ts=2026-12-02T12:00:00.123Z listener=web client=127.0.0.1:40312 ...
//   json    {"ts":"2026-12-02T12:00:00.123Z","listener":"web","client":"127.0.0.1:40312",...}
// Fields, in this order: ts, listener, client, backend, bytes_in, bytes_out, duration_ms,
// connect_ms, reason, and for a client that finished a TLS handshake with ringlb tls_version and
// tls_cipher (only then: plain sessions' lines stay as they were). Durations are milliseconds with
// three decimals; a missing client, backend or connect time is `-` (json: null). No allocation
// beyond `out`'s own growth.
void format_access_record(std::string& out, common::LogFormat format, const timespec& end,
                          const AccessRecord& record);

// One shard's access-log lines on their way to the control thread, which writes them
// (runtime::AccessLogWriter). The shard formats each finished session into its own batch, with
// no lock; a batch moves to the pending buffer under a mutex once it passes kBatchBytes or
// kBatchMs after its first line (one lock per batch, never per session), and the control thread
// swaps the pending buffer out on its timer. A writer that falls behind never slows the shard:
// a batch that would take the pending buffer past kMaxPendingBytes is dropped and its lines
// counted (ringlb_access_log_dropped_total).
class AccessLogBuffer final : public TimerHandler {
  public:
    static constexpr size_t kBatchBytes = 64 * 1024;
    static constexpr uint64_t kBatchMs = 200;
    static constexpr size_t kMaxPendingBytes = 4 * 1024 * 1024;

    explicit AccessLogBuffer(common::LogFormat format);
    AccessLogBuffer(const AccessLogBuffer&) = delete;
    AccessLogBuffer& operator=(const AccessLogBuffer&) = delete;

    // --- The shard's thread only.
    // Formats `record` into the batch; arms a kBatchMs timer on `timers` when it starts one.
    void append(const AccessRecord& record, TimerWheel& timers, uint64_t now_ms);
    // The shard stops: from now on nothing is dropped, so the sessions it closes at shutdown are
    // all written (the control thread writes them once the shard has joined).
    void stopping();
    // Hands the batch over now (the shard calls it last, once its sessions are gone).
    void hand_off();
    void on_timer(Timer& timer) override;

    // --- Any thread.
    // Appends every line handed over so far to `out` (swapped in when `out` is empty).
    void take(std::string& out);
    // Lines dropped: by the shard (pending buffer full) or by the writer (count_dropped).
    uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
    void count_dropped(uint64_t lines) { dropped_.fetch_add(lines, std::memory_order_relaxed); }

  private:
    common::LogFormat format_;
    std::string batch_;
    uint64_t batch_lines_ = 0;
    Timer timer_;
    bool stopping_ = false;

    std::mutex mutex_;
    std::string pending_;  // guarded by mutex_
    std::atomic<uint64_t> dropped_{0};
};

}  // namespace ringlb::shard
