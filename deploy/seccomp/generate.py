#!/usr/bin/env python3
"""Writes deploy/seccomp/ringlb.json: the container runtime's default seccomp profile plus the
three io_uring system calls, for running ringlb on its io_uring engine in a container.

The source is containers-common's default profile (/usr/share/containers/seccomp.json, Debian
package golang-github-containers-common, the one podman, buildah and CRI-O use). It has no rule
for io_uring_setup, io_uring_enter and io_uring_register, so they meet its default action, an
ENOSYS error, and ringlb falls back to epoll. Docker 25+ and containerd 2.0 leave them out of
their defaults too (EPERM). Everything else is kept as it is: the only change is that the three
calls join the profile's unconditional allow rule.

    deploy/seccomp/generate.py [SOURCE] [OUTPUT]
"""
import json
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"
    output = sys.argv[2] if len(sys.argv) > 2 else "deploy/seccomp/ringlb.json"
    with open(source) as f:
        profile = json.load(f)
    # The rule that allows syscalls without conditions on arguments, capabilities or arches.
    allow = [
        rule for rule in profile["syscalls"]
        if rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args")
        and not rule.get("includes") and not rule.get("excludes")
    ]
    if not allow:
        sys.exit(f"{source}: no unconditional SCMP_ACT_ALLOW rule to extend")
    rule = max(allow, key=lambda r: len(r["names"]))
    for rule_ in profile["syscalls"]:
        if rule_ is not rule and set(rule_["names"]) & set(IO_URING):
            sys.exit(f"{source}: another rule already names io_uring: {rule_}")
    rule["names"] = sorted(set(rule["names"]) | set(IO_URING))
    with open(output, "w") as f:
        json.dump(profile, f, indent="\t")
        f.write("\n")
    print(f"{output}: {source} with {', '.join(IO_URING)} allowed")


if __name__ == "__main__":
    main()
