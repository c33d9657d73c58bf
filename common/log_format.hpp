#pragma once

#include <time.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ringlb::common {

// How log lines (and access-log lines) are written: `text` is ringlb's own line
// ("TS LEVEL MESSAGE"), `logfmt` is space-separated key=value pairs, `json` one object per line.
enum class LogFormat : uint8_t { kText, kLogfmt, kJson };

const char* to_string(LogFormat format);
bool parse_log_format(std::string_view text, LogFormat& out);

// `text` as a JSON string, quotes included. `"`, `\` and control characters (U+0000..U+001F,
// and DEL) are escaped (\n, \r, \t, \b, \f, else \u00XX); valid UTF-8 passes through unchanged;
// each byte that is not part of a valid UTF-8 sequence (a Latin-1 file name, a cut message)
// becomes \ufffd, as Go's encoding/json does, so the line is always valid JSON and valid UTF-8.
void append_json_string(std::string& out, std::string_view text);

// `text` as a logfmt value: bare when it is non-empty printable ASCII without space, `=` or `"`,
// else quoted with the escapes of append_json_string (what go-logfmt writes and reads).
void append_logfmt_value(std::string& out, std::string_view text);

// "2026-12-02T12:00:00.123Z": UTC, milliseconds; written into `text` (no allocation).
std::string_view format_timestamp(const timespec& realtime, char (&text)[40]);
void append_timestamp(std::string& out, const timespec& realtime);

// Writes the fields of one line in a format: `k=v k=v` for logfmt and text (values through
// append_logfmt_value), `{"k":v,"k":v}` for json. Keys are the caller's constants (plain ASCII
// identifiers) and are written as given. end() closes the line with '\n'.
class FieldWriter {
  public:
    FieldWriter(std::string& out, LogFormat format);

    void text(std::string_view key, std::string_view value);
    void number(std::string_view key, uint64_t value);
    // Nanoseconds as milliseconds with three decimals ("12.345"): µs resolution, one unit for
    // every duration of a line.
    void millis(std::string_view key, uint64_t ns);
    // A value that does not exist (no backend, never connected): `-` in logfmt and text, null
    // in json.
    void none(std::string_view key);
    void end();

  private:
    void key(std::string_view name);

    std::string& out_;
    LogFormat format_;
    bool first_ = true;
};

}  // namespace ringlb::common
