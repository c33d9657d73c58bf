// proxy/shard/access_log: the line of one finished session in each format, and the shard's
// buffer: batches handed over by size and by time, a cap that drops and counts instead of
// growing, and nothing dropped once the shard stops.

#include "proxy/shard/access_log.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/address.hpp"
#include "tests/tools/logfmt.hpp"

namespace ringlb::shard {
namespace {

using common::LogFormat;

timespec end_time() {
    timespec ts{};
    ts.tv_sec = 1796212800;  // 2026-12-02T12:00:00Z
    ts.tv_nsec = 123000000;
    return ts;
}

struct Fixture {
    common::Address client = *common::parse_address("127.0.0.1:40312");
    AccessRecord record;

    Fixture() {
        record.listener = "web";
        record.client = &client;
        record.backend = "127.0.0.1:9001";
        record.bytes_in = 517;
        record.bytes_out = 1375;
        record.duration_ns = 12'345'678;
        record.connected = true;
        record.connect_ns = 210'000;
        record.reason = "done";
    }
};

std::string line_of(LogFormat format, const AccessRecord& record) {
    std::string out;
    format_access_record(out, format, end_time(), record);
    return out;
}

TEST(AccessLogTest, TextLine) {
    Fixture f;
    EXPECT_EQ(line_of(LogFormat::kText, f.record),
              "2026-12-02T12:00:00.123Z access listener=web client=127.0.0.1:40312 "
              "backend=127.0.0.1:9001 bytes_in=517 bytes_out=1375 duration_ms=12.345 "
              "connect_ms=0.210 reason=done\n");
}

TEST(AccessLogTest, LogfmtLine) {
    Fixture f;
    std::string line = line_of(LogFormat::kLogfmt, f.record);
    EXPECT_EQ(line,
              "ts=2026-12-02T12:00:00.123Z listener=web client=127.0.0.1:40312 "
              "backend=127.0.0.1:9001 bytes_in=517 bytes_out=1375 duration_ms=12.345 "
              "connect_ms=0.210 reason=done\n");
    auto fields = tools::parse_logfmt(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(fields);
    EXPECT_EQ(fields->size(), 9u);
}

TEST(AccessLogTest, TlsFieldsOnlyForTlsClients) {
    Fixture f;
    f.record.tls_version = "TLSv1.3";
    f.record.tls_cipher = "TLS_AES_256_GCM_SHA384";
    EXPECT_EQ(line_of(LogFormat::kLogfmt, f.record),
              "ts=2026-12-02T12:00:00.123Z listener=web client=127.0.0.1:40312 "
              "backend=127.0.0.1:9001 bytes_in=517 bytes_out=1375 duration_ms=12.345 "
              "connect_ms=0.210 reason=done tls_version=TLSv1.3 "
              "tls_cipher=TLS_AES_256_GCM_SHA384\n");
    nlohmann::json parsed = nlohmann::json::parse(line_of(LogFormat::kJson, f.record));
    EXPECT_EQ(parsed["tls_cipher"], "TLS_AES_256_GCM_SHA384");
}

TEST(AccessLogTest, JsonLine) {
    Fixture f;
    std::string line = line_of(LogFormat::kJson, f.record);
    EXPECT_EQ(line,
              "{\"ts\":\"2026-12-02T12:00:00.123Z\",\"listener\":\"web\",\"client\":"
              "\"127.0.0.1:40312\",\"backend\":\"127.0.0.1:9001\",\"bytes_in\":517,\"bytes_out\":"
              "1375,\"duration_ms\":12.345,\"connect_ms\":0.210,\"reason\":\"done\"}\n");
    nlohmann::json parsed = nlohmann::json::parse(line);
    EXPECT_EQ(parsed["bytes_out"].get<uint64_t>(), 1375u);
    EXPECT_DOUBLE_EQ(parsed["connect_ms"].get<double>(), 0.21);
}

TEST(AccessLogTest, MissingBackendClientAndConnectTime) {
    Fixture f;
    common::Address v6 = *common::parse_address("[::1]:40316");
    f.record.client = &v6;
    f.record.backend = {};
    f.record.connected = false;
    f.record.bytes_in = f.record.bytes_out = 0;
    f.record.reason = "no_backend";
    EXPECT_EQ(line_of(LogFormat::kLogfmt, f.record),
              "ts=2026-12-02T12:00:00.123Z listener=web client=[::1]:40316 backend=- bytes_in=0 "
              "bytes_out=0 duration_ms=12.345 connect_ms=- reason=no_backend\n");
    nlohmann::json parsed = nlohmann::json::parse(line_of(LogFormat::kJson, f.record));
    EXPECT_EQ(parsed["client"], "[::1]:40316");
    EXPECT_TRUE(parsed["backend"].is_null());
    EXPECT_TRUE(parsed["connect_ms"].is_null());
    f.record.client = nullptr;
    parsed = nlohmann::json::parse(line_of(LogFormat::kJson, f.record));
    EXPECT_TRUE(parsed["client"].is_null());
}

size_t lines(const std::string& text) {
    size_t n = 0;
    for (char c : text) n += c == '\n';
    return n;
}

TEST(AccessLogBufferTest, ABatchWaitsForItsTimer) {
    Fixture f;
    TimerWheel timers(1000);
    AccessLogBuffer buffer(LogFormat::kText);
    buffer.append(f.record, timers, 1000);
    buffer.append(f.record, timers, 1050);
    std::string out;
    buffer.take(out);
    EXPECT_EQ(out, "") << "handed over before its time";
    timers.advance(1000 + AccessLogBuffer::kBatchMs - TimerWheel::kTickMs);
    buffer.take(out);
    EXPECT_EQ(out, "");
    timers.advance(1000 + AccessLogBuffer::kBatchMs + TimerWheel::kTickMs);
    buffer.take(out);
    EXPECT_EQ(lines(out), 2u) << out;
    // The next line starts a new batch with its own timer.
    out.clear();
    buffer.append(f.record, timers, 2000);
    timers.advance(2000 + AccessLogBuffer::kBatchMs + TimerWheel::kTickMs);
    buffer.take(out);
    EXPECT_EQ(lines(out), 1u);
    EXPECT_EQ(buffer.dropped(), 0u);
}

TEST(AccessLogBufferTest, AFullBatchIsHandedOverAtOnce) {
    Fixture f;
    TimerWheel timers(0);
    AccessLogBuffer buffer(LogFormat::kText);
    size_t line = line_of(LogFormat::kText, f.record).size();
    size_t per_batch = (AccessLogBuffer::kBatchBytes + line - 1) / line;
    for (size_t i = 0; i < per_batch - 1; ++i) buffer.append(f.record, timers, 0);
    std::string out;
    buffer.take(out);
    EXPECT_EQ(out, "");
    buffer.append(f.record, timers, 0);
    buffer.take(out);
    EXPECT_EQ(lines(out), per_batch);
}

TEST(AccessLogBufferTest, AWriterThatFallsBehindCostsLinesNotMemory) {
    Fixture f;
    TimerWheel timers(0);
    AccessLogBuffer buffer(LogFormat::kJson);
    size_t line = line_of(LogFormat::kJson, f.record).size();
    // Nobody takes: twice the cap's worth of lines.
    size_t total = 2 * AccessLogBuffer::kMaxPendingBytes / line;
    for (size_t i = 0; i < total; ++i) buffer.append(f.record, timers, 0);
    buffer.hand_off();
    std::string out;
    buffer.take(out);
    EXPECT_LE(out.size(), AccessLogBuffer::kMaxPendingBytes);
    EXPECT_GT(out.size(), AccessLogBuffer::kMaxPendingBytes - AccessLogBuffer::kBatchBytes - line);
    // Whole batches are dropped, whole lines kept: every line is counted once, either way.
    EXPECT_EQ(lines(out) + buffer.dropped(), total);
    EXPECT_GT(buffer.dropped(), 0u);
    EXPECT_TRUE(out.ends_with("}\n"));
    // Taken: there is room again.
    for (size_t i = 0; i < 10; ++i) buffer.append(f.record, timers, 0);
    buffer.hand_off();
    uint64_t dropped = buffer.dropped();
    out.clear();
    buffer.take(out);
    EXPECT_EQ(lines(out), 10u);
    EXPECT_EQ(buffer.dropped(), dropped);
}

TEST(AccessLogBufferTest, NothingIsDroppedOnceTheShardStops) {
    Fixture f;
    TimerWheel timers(0);
    AccessLogBuffer buffer(LogFormat::kText);
    size_t line = line_of(LogFormat::kText, f.record).size();
    size_t total = 2 * AccessLogBuffer::kMaxPendingBytes / line;
    buffer.stopping();
    for (size_t i = 0; i < total; ++i) buffer.append(f.record, timers, 0);
    buffer.hand_off();
    std::string out;
    buffer.take(out);
    EXPECT_EQ(lines(out), total);
    EXPECT_EQ(buffer.dropped(), 0u);
}

TEST(AccessLogBufferTest, WriterDropsAreCounted) {
    AccessLogBuffer buffer(LogFormat::kText);
    buffer.count_dropped(3);
    buffer.count_dropped(4);
    EXPECT_EQ(buffer.dropped(), 7u);
}

}  // namespace
}  // namespace ringlb::shard
