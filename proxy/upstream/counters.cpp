#include "proxy/upstream/counters.hpp"

#include <cerrno>

namespace ringlb::upstream {

const char* to_string(ConnectFailure failure) {
    switch (failure) {
#define RINGLB_FAILURE_NAME(name, help) \
    case ConnectFailure::k_##name:      \
        return #name;
        RINGLB_CONNECT_FAILURES(RINGLB_FAILURE_NAME)
#undef RINGLB_FAILURE_NAME
        case ConnectFailure::kCount:
            break;
    }
    return "?";
}

const char* to_string(CloseReason reason) {
    switch (reason) {
#define RINGLB_CLOSE_NAME(name, help) \
    case CloseReason::k_##name:       \
        return #name;
        RINGLB_CLOSE_REASONS(RINGLB_CLOSE_NAME)
#undef RINGLB_CLOSE_NAME
        case CloseReason::kCount:
            break;
    }
    return "?";
}

ConnectFailure classify_connect_error(int err) {
    switch (err) {
        case ECONNREFUSED:
            return ConnectFailure::k_refused;
        case ETIMEDOUT:
        case EHOSTUNREACH:
        case ENETUNREACH:
            return ConnectFailure::k_timeout;
        case ECONNRESET:
        case ECONNABORTED:
            return ConnectFailure::k_reset;
        case EADDRNOTAVAIL:
        case EADDRINUSE:
            return ConnectFailure::k_addr_not_avail;
        case EMFILE:
        case ENFILE:
            return ConnectFailure::k_no_fd;
        default:
            return ConnectFailure::k_other;
    }
}

}  // namespace ringlb::upstream
