#pragma once

#include <string>

#include "config/config.hpp"

namespace ringlb::config {

// The configuration as TOML text that load_string() takes back to an equal Config: every key with
// its effective value, defaults included (`workers = "auto"`, `connect_timeout = "2s"`), durations
// in the largest exact unit, addresses as written. Keys are sorted within each table (toml++
// keeps tables sorted). A comment at the top names the source file.
//
// Left out, because the file has no spelling for their "unset" value or the loader refuses them
// there: `[admin]` when the file has none, `access` in `[log]` when the access log is off,
// `tcp_keepalive` when it is off (present, even as `{}`, turns it on), its sub-keys that keep the
// kernel's value, `source_port_range` when it is the system range, `hash_key` and
// `maglev_table_size` unless `balance = "maglev"`, `tls` when it is off, and in it the cipher
// lists and paths that are not set (OpenSSL's defaults, no client CA, no client certificate).
// The lines ListenerTls, TlsCertificate and ClusterTls record are the rendering's own once loaded.
std::string render_toml(const Config& config);

}  // namespace ringlb::config
