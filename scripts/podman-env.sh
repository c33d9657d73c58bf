# Sourced, not run: `. scripts/podman-env.sh`. Points buildah and podman at configuration and
# storage of this checkout (build/containers/ unless RINGLB_CONTAINERS_DIR says otherwise), so
# building and running the image needs no global container configuration and changes none.
#
# Why these settings (all found on the test machine, and common on CI hosts):
# - vfs storage and chroot isolation: no overlay mount or user namespace is needed to build.
# - runtime runc: crun fails on hosts with hybrid (v1 + v2) cgroups.
# - cgroupfs, file events: no systemd or journald is needed.
# - default_ulimits: podman asks runc for these fd and process limits (1048576 each by default);
#   above the caller's hard limit (20000 fds here) the request fails with EPERM.
# - no default sysctls: podman's default (net.ipv4.ping_group_range) cannot be set in the host's
#   network namespace, which is the one the tests use (bridge networking adds NAT rules that skew
#   measurements).
# shellcheck shell=bash

ringlb_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RINGLB_CONTAINERS_DIR=${RINGLB_CONTAINERS_DIR:-$ringlb_root/build/containers}
mkdir -p "$RINGLB_CONTAINERS_DIR"/{storage,run,tmp,cni}
RINGLB_CONTAINERS_DIR=$(cd "$RINGLB_CONTAINERS_DIR" && pwd)

# Writes $1 from stdin only when the content differs, through a rename, so a shell that sources
# this while another one runs podman never sees a half-written file.
ringlb_write_if_changed() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# $2, or the hard limit of this shell for `ulimit -H$1` when that is lower.
ringlb_capped() {
  local hard
  hard=$(ulimit -H"$1")
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$2" ]; then echo "$hard"; else echo "$2"; fi
}
ringlb_nofile=$(ringlb_capped n "${RINGLB_CONTAINER_NOFILE:-16384}")
# Podman asks for 1048576 processes unless told otherwise; conmon runs with at most pid_max
# (32768 here), and runc cannot raise the container's limit above its own.
ringlb_nproc=$(ringlb_capped u "$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)")

ringlb_write_if_changed "$RINGLB_CONTAINERS_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$ringlb_nofile:$ringlb_nofile", "nproc=$ringlb_nproc:$ringlb_nproc"]
default_sysctls = []
log_driver = "k8s-file"

[network]
network_config_dir = "$RINGLB_CONTAINERS_DIR/cni"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$RINGLB_CONTAINERS_DIR/tmp/events.log"
tmp_dir = "$RINGLB_CONTAINERS_DIR/tmp"
EOF

ringlb_write_if_changed "$RINGLB_CONTAINERS_DIR/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$RINGLB_CONTAINERS_DIR/storage"
runroot = "$RINGLB_CONTAINERS_DIR/run"
EOF

# No registry is needed: images are built FROM scratch and named localhost/...
ringlb_write_if_changed "$RINGLB_CONTAINERS_DIR/registries.conf" <<EOF
unqualified-search-registries = []
EOF

ringlb_write_if_changed "$RINGLB_CONTAINERS_DIR/policy.json" <<EOF
{"default": [{"type": "insecureAcceptAnything"}]}
EOF

export RINGLB_CONTAINERS_DIR
export CONTAINERS_CONF=$RINGLB_CONTAINERS_DIR/containers.conf
export CONTAINERS_STORAGE_CONF=$RINGLB_CONTAINERS_DIR/storage.conf
export CONTAINERS_REGISTRIES_CONF=$RINGLB_CONTAINERS_DIR/registries.conf
# For `buildah push`, `skopeo copy` and `podman load`, which take --signature-policy.
export RINGLB_SIGNATURE_POLICY=$RINGLB_CONTAINERS_DIR/policy.json
export BUILDAH_ISOLATION=chroot
unset ringlb_nofile ringlb_nproc
unset -f ringlb_capped ringlb_write_if_changed
