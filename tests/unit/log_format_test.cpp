// common/log_format: JSON and logfmt escaping, read back by independent parsers (nlohmann::json,
// tests/tools/logfmt.hpp), and the field writer both log lines and access-log lines use.

#include "common/log_format.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/tools/logfmt.hpp"

namespace ringlb::common {
namespace {

std::string json_string(std::string_view text) {
    std::string out;
    append_json_string(out, text);
    return out;
}

std::string logfmt_value(std::string_view text) {
    std::string out;
    append_logfmt_value(out, text);
    return out;
}

// Every ASCII control character, quotes, backslash, DEL and valid UTF-8 of 2, 3 and 4 bytes.
std::string awkward_text() {
    std::string text = "say \"hi\" \\ back\\slash\nnew line\r\ttab =eq ";
    for (int c = 0; c < 0x20; ++c) text += static_cast<char>(c);
    text += '\x7f';
    text += " caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 end";
    return text;
}

TEST(LogFormatTest, JsonEscapesQuotesBackslashesAndControlCharacters) {
    EXPECT_EQ(json_string("plain"), "\"plain\"");
    EXPECT_EQ(json_string(""), "\"\"");
    EXPECT_EQ(json_string("a\"b"), "\"a\\\"b\"");
    EXPECT_EQ(json_string("a\\b"), "\"a\\\\b\"");
    EXPECT_EQ(json_string("a\nb\rc\td\be\ff"), "\"a\\nb\\rc\\td\\be\\ff\"");
    EXPECT_EQ(json_string(std::string("\0\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\\u007f\"");
    // Valid UTF-8 passes through unchanged.
    EXPECT_EQ(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
              "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

TEST(LogFormatTest, JsonRoundTripsThroughAParser) {
    std::string text = awkward_text();
    nlohmann::json parsed = nlohmann::json::parse(json_string(text));
    ASSERT_TRUE(parsed.is_string());
    EXPECT_EQ(parsed.get<std::string>(), text);
}

TEST(LogFormatTest, BytesThatAreNotUtf8BecomeReplacementCharacters) {
    // A stray continuation byte, a Latin-1 byte, a truncated sequence, an overlong '/', a UTF-16
    // surrogate, a code point above U+10FFFF, and a 3-byte sequence cut by the end of the text.
    struct Case {
        std::string in;
        std::string out;  // what the parser reads back
    };
    const std::string r = "\xef\xbf\xbd";  // U+FFFD
    std::vector<Case> cases{
        {"a\x80z", "a" + r + "z"},   {"caf\xe9!", "caf" + r + "!"},
        {"\xc3 x", r + " x"},        {"\xc0\xaf", r + r},
        {"\xed\xa0\x80", r + r + r}, {"\xf4\x90\x80\x80", r + r + r + r},
        {"\xff\xfe", r + r},         {"end\xe2\x82", "end" + r + r},
    };
    for (const Case& c : cases) {
        std::string json = json_string(c.in);
        EXPECT_EQ(json.find('\x80'), std::string::npos) << json;
        nlohmann::json parsed;
        ASSERT_NO_THROW(parsed = nlohmann::json::parse(json)) << json;
        EXPECT_EQ(parsed.get<std::string>(), c.out) << json;
        // logfmt quotes them the same way.
        auto fields = tools::parse_logfmt("k=" + logfmt_value(c.in));
        ASSERT_TRUE(fields) << logfmt_value(c.in);
        EXPECT_EQ(fields->at("k"), c.out);
    }
}

TEST(LogFormatTest, LogfmtValuesAreBareOnlyWhenTheyCanBe) {
    EXPECT_EQ(logfmt_value("warn"), "warn");
    EXPECT_EQ(logfmt_value("127.0.0.1:8080"), "127.0.0.1:8080");
    EXPECT_EQ(logfmt_value("2026-12-02T12:00:00.123Z"), "2026-12-02T12:00:00.123Z");
    EXPECT_EQ(logfmt_value("-"), "-");
    EXPECT_EQ(logfmt_value(""), "\"\"");
    EXPECT_EQ(logfmt_value("two words"), "\"two words\"");
    EXPECT_EQ(logfmt_value("a=b"), "\"a=b\"");
    EXPECT_EQ(logfmt_value("say \"x\""), "\"say \\\"x\\\"\"");
    EXPECT_EQ(logfmt_value("a\\b"), "a\\b");  // bare: nothing a reader would misread
    EXPECT_EQ(logfmt_value("line\nbreak"), "\"line\\nbreak\"");
    EXPECT_EQ(logfmt_value("tab\t"), "\"tab\\t\"");
    EXPECT_EQ(logfmt_value("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
}

TEST(LogFormatTest, LogfmtRoundTripsThroughAParser) {
    std::string text = awkward_text();
    for (std::string_view value : {std::string_view(text), std::string_view("a\\b"),
                                   std::string_view(""), std::string_view("x=\"y\"")}) {
        std::string line = "ts=now msg=" + logfmt_value(value) + " end=1";
        std::string error;
        auto fields = tools::parse_logfmt(line, &error);
        ASSERT_TRUE(fields) << error;
        EXPECT_EQ(fields->size(), 3u);
        EXPECT_EQ(fields->at("msg"), value);
        EXPECT_EQ(fields->at("end"), "1");
        // One line, whatever the value held.
        EXPECT_EQ(line.find('\n'), std::string::npos);
    }
}

TEST(LogFormatTest, Timestamp) {
    timespec ts{};
    ts.tv_sec = 1796212800;  // 2026-12-02T12:00:00Z
    ts.tv_nsec = 123456789;
    std::string out = "x";
    append_timestamp(out, ts);
    EXPECT_EQ(out, "x2026-12-02T12:00:00.123Z");
    ts.tv_nsec = 7000000;
    char text[40];
    EXPECT_EQ(format_timestamp(ts, text), "2026-12-02T12:00:00.007Z");
}

void write_fields(FieldWriter& fields) {
    fields.text("ts", "2026-12-02T12:00:00.123Z");
    fields.text("msg", "a \"quoted\" word\n");
    fields.number("n", 18446744073709551615ull);
    fields.millis("ms", 12345678);  // 12.345678 ms
    fields.millis("zero", 999);     // below a microsecond
    fields.none("backend");
    fields.end();
}

TEST(LogFormatTest, FieldWriterJson) {
    std::string out;
    FieldWriter fields(out, LogFormat::kJson);
    write_fields(fields);
    EXPECT_EQ(out,
              "{\"ts\":\"2026-12-02T12:00:00.123Z\",\"msg\":\"a \\\"quoted\\\" word\\n\","
              "\"n\":18446744073709551615,\"ms\":12.345,\"zero\":0.000,\"backend\":null}\n");
    ASSERT_TRUE(out.ends_with('\n'));
    nlohmann::json parsed = nlohmann::json::parse(out.substr(0, out.size() - 1));
    EXPECT_EQ(parsed["msg"], "a \"quoted\" word\n");
    EXPECT_EQ(parsed["n"].get<uint64_t>(), 18446744073709551615ull);
    EXPECT_DOUBLE_EQ(parsed["ms"].get<double>(), 12.345);
    EXPECT_TRUE(parsed["backend"].is_null());
}

TEST(LogFormatTest, FieldWriterLogfmt) {
    std::string out;
    FieldWriter fields(out, LogFormat::kLogfmt);
    write_fields(fields);
    EXPECT_EQ(out,
              "ts=2026-12-02T12:00:00.123Z msg=\"a \\\"quoted\\\" word\\n\" "
              "n=18446744073709551615 ms=12.345 zero=0.000 backend=-\n");
    auto parsed = tools::parse_logfmt(std::string_view(out).substr(0, out.size() - 1));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->at("msg"), "a \"quoted\" word\n");
    EXPECT_EQ(parsed->at("backend"), "-");
}

TEST(LogFormatTest, ParseFormat) {
    LogFormat format = LogFormat::kText;
    EXPECT_TRUE(parse_log_format("json", format));
    EXPECT_EQ(format, LogFormat::kJson);
    EXPECT_TRUE(parse_log_format("logfmt", format));
    EXPECT_EQ(format, LogFormat::kLogfmt);
    EXPECT_TRUE(parse_log_format("text", format));
    EXPECT_EQ(format, LogFormat::kText);
    EXPECT_FALSE(parse_log_format("JSON", format));
    for (LogFormat f : {LogFormat::kText, LogFormat::kLogfmt, LogFormat::kJson}) {
        LogFormat back{};
        EXPECT_TRUE(parse_log_format(to_string(f), back));
        EXPECT_EQ(back, f);
    }
}

}  // namespace
}  // namespace ringlb::common
