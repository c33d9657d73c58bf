#include "config/prescan.hpp"

namespace ringlb::config {

namespace {

// A byte of a bare key (TOML 1.0 bare keys are ASCII).
bool is_bare(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

bool is_non_ascii(char c) {
    return static_cast<unsigned char>(c) >= 0x80;
}

class Scanner {
  public:
    explicit Scanner(std::string_view text) : text_(text) {}

    TextShape run() {
        // toml++ skips a UTF-8 byte order mark, and counts no column for it.
        if (text_.starts_with("\xEF\xBB\xBF")) i_ = 3;
        while (i_ < text_.size()) {
            char c = text_[i_];
            TextPosition here = position_;
            if (c == ' ' || c == '\t') {
                step();
            } else if (is_bare(c)) {
                while (i_ < text_.size() && is_bare(text_[i_])) step();
                segment(here);
            } else if (c == '"' || c == '\'') {
                string(c, here);
            } else if (c == '.') {
                if (parts_ > 0 && !after_dot_) {
                    after_dot_ = true;
                } else {
                    end_run();
                }
                step();
            } else if (c == '#') {
                while (i_ < text_.size() && text_[i_] != '\n') step();
                end_run();
            } else {
                if (is_non_ascii(c)) note_non_ascii(TextShape::NonAscii::kOutsideStrings, here);
                if (c == '[' || c == '{') {
                    ++depth_;
                    if (depth_ > shape_.nesting) {
                        shape_.nesting = depth_;
                        shape_.nesting_at = here;
                    }
                } else if ((c == ']' || c == '}') && depth_ > 0) {
                    --depth_;
                }
                // Anything else ends a run: '=', ',', a newline (keys never span lines), ...
                end_run();
                step();
            }
        }
        return shape_;
    }

  private:
    bool at(size_t offset, char c) const {
        return i_ + offset < text_.size() && text_[i_ + offset] == c;
    }

    void step() {
        char c = text_[i_++];
        if (c == '\n') {
            ++position_.line;
            position_.column = 1;
        } else if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) {
            // Continuation bytes of a UTF-8 sequence belong to the code point already counted.
            ++position_.column;
        }
    }

    // One more segment: it extends the run if a dot came just before, else starts one.
    void segment(TextPosition where) {
        if (parts_ > 0 && after_dot_) {
            ++parts_;
        } else {
            parts_ = 1;
            run_at_ = where;
        }
        after_dot_ = false;
        if (parts_ > shape_.key_parts) {
            shape_.key_parts = parts_;
            shape_.key_at = run_at_;
        }
    }

    void note_non_ascii(TextShape::NonAscii where, TextPosition at) {
        if (shape_.non_ascii != TextShape::NonAscii::kNone) return;
        shape_.non_ascii = where;
        shape_.non_ascii_at = at;
    }

    // One byte of a string's content.
    void string_step() {
        if (is_non_ascii(text_[i_])) note_non_ascii(TextShape::NonAscii::kInString, position_);
        step();
    }

    // After a backslash in a multi-line basic string: an escaped character, or a line-ending
    // backslash with the whitespace and newlines it trims.
    void escape_in_multiline() {
        step();
        auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
        if (i_ < text_.size() && is_space(text_[i_])) {
            while (i_ < text_.size() && is_space(text_[i_])) step();
        } else if (i_ < text_.size()) {
            string_step();
        }
    }

    void end_run() {
        parts_ = 0;
        after_dot_ = false;
    }

    // A string opened by `quote` at text_[i_]. A one-line string is a key segment (it may be a
    // quoted key); a multi-line one never is.
    void string(char quote, TextPosition here) {
        bool basic = quote == '"';
        if (at(1, quote) && at(2, quote)) {
            for (int k = 0; k < 3; ++k) step();
            while (i_ < text_.size()) {
                if (basic && text_[i_] == '\\') {
                    escape_in_multiline();
                } else if (at(0, quote) && at(1, quote) && at(2, quote)) {
                    for (int k = 0; k < 3; ++k) step();
                    // Up to two more quotes belong to the content: """a""""" is `a""`.
                    for (int k = 0; k < 2 && at(0, quote); ++k) step();
                    break;
                } else {
                    string_step();
                }
            }
            end_run();
            return;
        }
        step();
        while (i_ < text_.size() && text_[i_] != quote && text_[i_] != '\n') {
            if (basic && text_[i_] == '\\') {
                step();
                // A backslash before the newline does not continue a one-line string.
                if (i_ < text_.size() && text_[i_] != '\n') string_step();
            } else {
                string_step();
            }
        }
        if (at(0, quote)) {
            step();
            segment(here);
        } else {
            end_run();  // unterminated: toml++ fails here
        }
    }

    std::string_view text_;
    size_t i_ = 0;
    TextPosition position_;
    size_t parts_ = 0;        // parts of the current run; 0: none
    bool after_dot_ = false;  // the current run ends with a dot, waiting for its next part
    TextPosition run_at_;
    size_t depth_ = 0;
    TextShape shape_;
};

}  // namespace

TextShape measure_shape(std::string_view text) {
    return Scanner(text).run();
}

}  // namespace ringlb::config
