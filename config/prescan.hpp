#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringlb::config {

// A place in the text, counted the way toml++ counts: lines from 1, columns from 1 in UTF-8
// code points.
struct TextPosition {
    uint32_t line = 1;
    uint32_t column = 1;
};

// How deep the text could make toml++ nest, measured before it is parsed. toml++ 3.3 caps
// nested arrays and inline tables at 256 levels, but every part of a dotted key or table name
// (`[a.b.c]`, `a.b.c = 1`) is one more table level, uncapped, and its recursive passes over the
// tree (update_region_ends, the destructors) overflow the stack: `[a.a. ... a]` with 40,000
// parts kills the process with SIGSEGV.
struct TextShape {
    // The most parts in one run of dot-joined segments (bare words [A-Za-z0-9_-]+, or quoted
    // strings), with spaces or tabs allowed around the dots, outside strings and comments.
    // Conservative: a float such as 1.5 is a run of 2, a date-time's fraction too.
    size_t key_parts = 0;
    TextPosition key_at;  // where the longest run starts
    // The most '[' and '{' open at once outside strings and comments (a `[[header]]` counts 2).
    size_t nesting = 0;
    TextPosition nesting_at;  // where that depth is first reached
    // A non-ASCII character outside comments. toml++ 3.3 tests whether such a character is
    // whitespace in many places (after a value, to collect a bad token for its error message;
    // after a line-ending backslash in a multi-line string; outside strings), and that test
    // reaches __builtin_unreachable for most code points (is_non_ascii_horizontal_whitespace;
    // upstream issues #190 and #295, found here by the fuzzer: `d=1"é` and `"""\` + newline +
    // `§"""`): undefined behaviour. Inside what looks like a string it is not safe either, since
    // on invalid input toml++ may read it as part of a bad value (`d=1"é`).
    enum class NonAscii { kNone, kOutsideStrings, kInString };
    NonAscii non_ascii = NonAscii::kNone;
    TextPosition non_ascii_at;  // the first one
};

// One pass over the text, no recursion, no allocation: basic and literal strings (one-line and
// multi-line, with the escapes of basic ones) and comments are skipped. On invalid TOML it may
// count differently from toml++, but toml++ stops at the first error, and up to there the two
// read the same tokens.
TextShape measure_shape(std::string_view text);

}  // namespace ringlb::config
