#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/fd.hpp"

namespace ringlb::common {

// File descriptors passed over a Unix stream socket (SCM_RIGHTS), for the binary upgrade: one
// message is one line of text (ending in '\n') with up to kMaxFdsPerMessage fds attached to its
// first byte.
inline constexpr size_t kMaxFdsPerMessage = 250;  // the kernel's SCM_MAX_FD is 253

// Sends `line` (which must end in '\n' and be at most 4096 bytes) with `fds`; blocks up to
// `timeout` for room in the socket.
std::error_code send_line(int sock, std::string_view line, std::span<const int> fds,
                          std::chrono::milliseconds timeout);

// Receives one line (without its '\n') and the fds that came with it. Reads byte by byte, so
// no byte of the next message is consumed; lines longer than 4096 bytes are an error. EOF before
// a full line: std::errc::connection_aborted.
std::error_code recv_line(int sock, std::string& line, std::vector<Fd>& fds,
                          std::chrono::milliseconds timeout);

}  // namespace ringlb::common
