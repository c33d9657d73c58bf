#include "common/log.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "common/fd.hpp"
#include "tests/tools/logfmt.hpp"

namespace ringlb::common {
namespace {

TEST(LogLimiterTest, FirstOccurrenceLogsThenTheWindowCountsThenReports) {
    LogLimiter limiter(10000);
    EXPECT_TRUE(limiter.admit(5000));
    EXPECT_EQ(limiter.suppressed(), 0u);
    for (uint64_t t = 5100; t < 15000; t += 100) EXPECT_FALSE(limiter.admit(t)) << t;
    // 99 dropped; the first one a whole window after the logged one is logged with that count.
    EXPECT_TRUE(limiter.admit(15000));
    EXPECT_EQ(limiter.suppressed(), 99u);
    EXPECT_EQ(limiter.since_ms(), 10000u);
    // A new window starts at the one just logged.
    EXPECT_FALSE(limiter.admit(24999));
    EXPECT_TRUE(limiter.admit(25000));
    EXPECT_EQ(limiter.suppressed(), 1u);
}

TEST(LogLimiterTest, AfterAQuietSpellTheNextOccurrenceLogsWithNothingSuppressed) {
    LogLimiter limiter(10000);
    EXPECT_TRUE(limiter.admit(0));  // time 0 is a time like any other
    EXPECT_FALSE(limiter.admit(1));
    EXPECT_FALSE(limiter.admit(2));
    // The window closed with 2 dropped and nothing new: they are reported with the next one,
    // however late it comes.
    EXPECT_TRUE(limiter.admit(60000));
    EXPECT_EQ(limiter.suppressed(), 2u);
    EXPECT_EQ(limiter.since_ms(), 60000u);
    EXPECT_TRUE(limiter.admit(120000));
    EXPECT_EQ(limiter.suppressed(), 0u);
}

TEST(LogLimiterTest, DefaultWindowIsTenSeconds) {
    LogLimiter limiter;
    EXPECT_EQ(limiter.window_ms(), 10000u);
    EXPECT_TRUE(limiter.admit(1000));
    EXPECT_FALSE(limiter.admit(10999));
    EXPECT_TRUE(limiter.admit(11000));
}

// Runs `body` with stderr redirected to a temporary file and returns what it wrote.
template <typename Body>
std::string capture_stderr(Body body) {
    std::FILE* tmp = std::tmpfile();
    if (tmp == nullptr) return "<tmpfile failed>";
    Fd saved(::dup(STDERR_FILENO));
    ::dup2(::fileno(tmp), STDERR_FILENO);
    body();
    ::dup2(saved.get(), STDERR_FILENO);
    std::string out;
    std::rewind(tmp);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), tmp)) > 0) out.append(buf, n);
    std::fclose(tmp);
    return out;
}

size_t lines(const std::string& text) {
    size_t n = 0;
    for (char c : text) n += c == '\n';
    return n;
}

TEST(LogLimiterTest, LimitedLinesCarryTheSuppressedCount) {
    LogLimiter limiter(10000);
    std::string out = capture_stderr([&] {
        for (uint64_t t = 0; t <= 25000; t += 100)
            LOG_WARN_LIMITED(limiter, t, "shard %u: out of file descriptors", 3u);
    });
    // t = 0, 10000, 20000: three lines out of 251.
    ASSERT_EQ(lines(out), 3u) << out;
    size_t first_end = out.find('\n');
    std::string first = out.substr(0, first_end);
    EXPECT_NE(first.find(" warn shard 3: out of file descriptors"), std::string::npos) << first;
    EXPECT_EQ(first.find("suppressed"), std::string::npos) << first;
    std::string second = out.substr(first_end + 1, out.find('\n', first_end + 1) - first_end - 1);
    EXPECT_TRUE(
        second.ends_with("shard 3: out of file descriptors (suppressed 99 in the last 10 s)"))
        << second;
}

TEST(LogLimiterTest, BelowTheLogLevelNothingIsWritten) {
    LogLimiter limiter;
    LogLevel saved = log_level();
    set_log_level(LogLevel::kError);
    std::string out = capture_stderr([&] { LOG_WARN_LIMITED(limiter, 0, "hidden %d", 1); });
    set_log_level(saved);
    EXPECT_EQ(out, "");
}

// Sets the log format for one test and restores text after it.
class ScopedFormat {
  public:
    explicit ScopedFormat(LogFormat format) { set_log_format(format); }
    ~ScopedFormat() { set_log_format(LogFormat::kText); }
};

// A message with everything a format must escape: quotes, a backslash, a newline, a tab, a
// control character and non-ASCII text.
constexpr const char* kAwkward = "listener \"web\": C:\\dir\nnext\tline \x01 caf\xc3\xa9";

TEST(LogFormatLinesTest, TextIsTimestampLevelMessage) {
    std::string out = capture_stderr([] { log(LogLevel::kWarn, "hello %d", 42); });
    // 2026-12-02T12:00:00.123Z warn hello 42
    ASSERT_EQ(lines(out), 1u) << out;
    ASSERT_GE(out.size(), 25u);
    EXPECT_EQ(out[4], '-');
    EXPECT_EQ(out[10], 'T');
    EXPECT_EQ(out[23], 'Z');
    EXPECT_EQ(out.substr(24), " warn hello 42\n");
}

TEST(LogFormatLinesTest, JsonLinesParseWithEveryCharacterKept) {
    ScopedFormat json(LogFormat::kJson);
    std::string out = capture_stderr([] {
        log(LogLevel::kError, "%s", kAwkward);
        log(LogLevel::kInfo, "plain");
    });
    ASSERT_EQ(lines(out), 2u) << out;
    std::string first = out.substr(0, out.find('\n'));
    nlohmann::json parsed = nlohmann::json::parse(first);
    EXPECT_EQ(parsed.size(), 3u) << first;
    EXPECT_EQ(parsed["level"], "error");
    EXPECT_EQ(parsed["msg"], kAwkward);
    std::string ts = parsed["ts"];
    EXPECT_EQ(ts.size(), 24u) << ts;
    EXPECT_TRUE(ts.ends_with('Z')) << ts;
    EXPECT_TRUE(first.starts_with("{\"ts\":\"")) << first;
    nlohmann::json second = nlohmann::json::parse(out.substr(first.size() + 1));
    EXPECT_EQ(second["msg"], "plain");
    EXPECT_EQ(second["level"], "info");
}

TEST(LogFormatLinesTest, LogfmtLinesParseWithEveryCharacterKept) {
    ScopedFormat logfmt(LogFormat::kLogfmt);
    std::string out = capture_stderr([] {
        log(LogLevel::kWarn, "%s", kAwkward);
        log(LogLevel::kDebug, "stopped");
    });
    ASSERT_EQ(lines(out), 2u) << out;
    std::string first = out.substr(0, out.find('\n'));
    std::string error;
    auto fields = tools::parse_logfmt(first, &error);
    ASSERT_TRUE(fields) << error;
    EXPECT_EQ(fields->size(), 3u);
    EXPECT_EQ(fields->at("level"), "warn");
    EXPECT_EQ(fields->at("msg"), kAwkward);
    EXPECT_EQ(fields->at("ts").size(), 24u);
    EXPECT_TRUE(first.starts_with("ts=")) << first;
    // A one-word message needs no quotes.
    std::string second = out.substr(first.size() + 1);
    EXPECT_TRUE(second.ends_with(" level=debug msg=stopped\n")) << second;
}

TEST(LogFormatLinesTest, LimitedLinesKeepTheirSuffixInsideTheMessage) {
    ScopedFormat json(LogFormat::kJson);
    LogLimiter limiter(10000);
    std::string out = capture_stderr([&] {
        for (uint64_t t = 0; t <= 10000; t += 100) LOG_WARN_LIMITED(limiter, t, "out of fds");
    });
    ASSERT_EQ(lines(out), 2u) << out;
    nlohmann::json second = nlohmann::json::parse(out.substr(out.find('\n') + 1));
    EXPECT_EQ(second["msg"], "out of fds (suppressed 99 in the last 10 s)");
}

TEST(LogFormatLinesTest, ALongMessageIsCutButStaysOneValidLine) {
    ScopedFormat json(LogFormat::kJson);
    // 3000 quotes: cut at about 1000 before escaping, each escaped to two bytes.
    std::string quotes(3000, '"');
    std::string out = capture_stderr([&] { log(LogLevel::kInfo, "%s", quotes.c_str()); });
    ASSERT_EQ(lines(out), 1u);
    nlohmann::json parsed = nlohmann::json::parse(out);
    std::string msg = parsed["msg"];
    EXPECT_GE(msg.size(), 1000u);
    EXPECT_LT(msg.size(), 1024u);
    EXPECT_EQ(msg.find_first_not_of('"'), std::string::npos);
}

}  // namespace
}  // namespace ringlb::common
