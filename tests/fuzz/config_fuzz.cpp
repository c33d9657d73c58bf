// libFuzzer target for the config loader (issue 17). Any input either loads or throws a
// ConfigError whose message is one line naming the source; anything else (another exception, a
// crash, a sanitizer report, a hang) is a bug. Built by `scripts/build.sh fuzz` and replayed over
// tests/fuzz/corpus/config by the ctest `ConfigFuzzCorpusReplay`.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string kSource = "fuzz.toml";
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        ringlb::config::load_string(text, kSource);
    } catch (const ringlb::config::ConfigError& error) {
        std::string_view message = error.what();
        if (message.rfind(kSource + ":", 0) != 0 || message.find('\n') != std::string_view::npos) {
            std::fprintf(stderr, "malformed ConfigError message: %s\n", error.what());
            std::abort();
        }
    }
    return 0;
}
