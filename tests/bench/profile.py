#!/usr/bin/env python3
"""Where the proxy's CPU goes: a perf profile of the proxy's core under each load, split by kind.

Each proxy (ringlb io_uring, ringlb epoll, HAProxy 2.6; one worker/thread) runs pinned to
--proxy-cpu (1) in front of `ringlb-echo --mode http` and `iperf3 -s` on --load-cpu (0), with wrk
and iperf3 on the load CPU too. For keepalive (wrk -c64), churn (wrk -c64, Connection: close) and
bulk (one iperf3 stream), `perf record -e cpu-clock -C PROXY_CPU` samples the proxy's core for a
few seconds mid-run, and the samples are split into: the proxy's user space, io_uring, copies
(copy_to_iter/copy_from_iter), the TCP/IP stack, syscall entry and epoll, scheduling and wakeups,
and the rest of the kernel (allocators, locks, file refs). The split says what a user-space change
can still remove: the proxy's own code and the per-operation kernel entry costs, not the stack.

  tests/bench/profile.py [--ringlb-bin build/release/ringlb] [--seconds 4] [--top 8]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import bench  # the harness's helpers: this directory is on sys.path when a script here runs

RINGLB = """\
[runtime]
workers = 1
pin_cpus = false
engine = "{engine}"

[[listener]]
name = "http"
bind = "127.0.0.1:{port}"
cluster = "http"
backlog = 4096

[[listener]]
name = "bulk"
bind = "127.0.0.1:{bulk_port}"
cluster = "bulk"
backlog = 4096

[[cluster]]
name = "http"
backends = [ {{ address = "127.0.0.1:{backend_port}" }} ]

[[cluster]]
name = "bulk"
backends = [ {{ address = "127.0.0.1:{iperf_port}" }} ]
"""

# The same two listeners as the bench's anchor (tcp mode, splice-auto, one thread); maxconn
# stays small, since HAProxy refuses to start when 2 x maxconn exceeds the fd limit.
HAPROXY = """\
global
    nbthread 1
    maxconn 2000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option splice-auto
listen http
    bind 127.0.0.1:{port}
    server b 127.0.0.1:{backend_port}
listen bulk
    bind 127.0.0.1:{bulk_port}
    server b 127.0.0.1:{iperf_port}
"""

# (kind, regular expression on a kernel symbol); the first match wins, in this order.
KINDS = (
    ("io_uring", r"^(__)?io_"),
    ("copy", r"copy_(to|from)_iter|copy_user|memcpy|memmove"),
    ("tcp/ip", r"^(__)?(tcp|inet|ip|sk|skb|kfree_skb|dev|netif|napi|net_rx|process_backlog|"
               r"loopback|bbr|dst|fib|nf_|raw_local_deliver|sock|lock_sock|release_sock)"),
    ("syscall+epoll", r"entry_SYSCALL|syscall|^__x64_sys|^(__)?(ep|epoll)_"),
    ("sched+wakeup", r"spin_unlock_irqrestore|wake|schedule|finish_task|enqueue|dequeue|"
                     r"pick_next|psi_|update_(curr|load)|select_task|ttwu"),
)
COLUMNS = ("user",) + tuple(k for k, _ in KINDS) + ("other kernel",)


def split(data, top):
    """(percent per kind, the top symbols) of a perf.data file."""
    out = subprocess.run(["perf", "report", "-q", "-i", data, "--no-children", "--sort",
                          "dso,sym", "-g", "none"], capture_output=True, text=True).stdout
    share = dict.fromkeys(COLUMNS, 0.0)
    symbols = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if not m:
            continue
        pct, dso, mode, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
        if mode != "k":
            kind = "user"
        else:
            kind = next((k for k, rx in KINDS if re.search(rx, sym)), "other kernel")
        share[kind] += pct
        if len(symbols) < top:
            symbols.append("%.1f%% %s" % (pct, sym if mode == "k" else "%s (%s)" % (sym, dso)))
    return share, symbols


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ringlb-bin", default=os.path.join(bench.ROOT, "build/release/ringlb"))
    ap.add_argument("--seconds", type=int, default=4, help="perf sampling window per cell")
    ap.add_argument("--top", type=int, default=8, help="top symbols listed per cell")
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    args = ap.parse_args(argv)
    for tool in ("perf", "wrk", "iperf3", "haproxy"):
        if not shutil.which(tool):
            print("profile: %s is missing (scripts/install-deps.sh bench installs it)" % tool,
                  file=sys.stderr)
            return 1
    echo = os.path.join(os.path.dirname(args.ringlb_bin), "ringlb-echo")
    run_s = args.seconds + 3
    loads = {
        "keepalive": ["wrk", "-t1", "-c64", "-d%ds" % run_s, "http://127.0.0.1:{port}/"],
        "churn": ["wrk", "-t1", "-c64", "-d%ds" % run_s, "-H", "Connection: close",
                  "http://127.0.0.1:{port}/"],
        "bulk": ["iperf3", "-c", "127.0.0.1", "-p", "{bulk_port}", "-t", str(run_s)],
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="ringlb-profile-") as tmp:
        ports = {"backend_port": bench.free_port(), "iperf_port": bench.free_port(),
                 "port": bench.free_port(), "bulk_port": bench.free_port()}
        try:
            backend = bench.PROCS.spawn([echo, "--listen", "127.0.0.1:%d" % ports["backend_port"],
                                         "--mode", "http"], cpu=args.load_cpu,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            iperf = bench.PROCS.spawn(["iperf3", "-s", "-p", str(ports["iperf_port"])],
                                      cpu=args.load_cpu, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            bench.wait_listening([ports["backend_port"]], backend, what="ringlb-echo")
            bench.wait_listening([ports["iperf_port"]], iperf, what="iperf3 -s")
            for name in ("ringlb-io_uring", "ringlb-epoll", "haproxy"):
                conf = os.path.join(tmp, name + ".conf")
                with open(conf, "w") as f:
                    if name == "haproxy":
                        f.write(HAPROXY.format(**ports))
                        argv = ["haproxy", "-db", "-f", conf]
                    else:
                        f.write(RINGLB.format(engine=name.split("-", 1)[1], **ports))
                        argv = [args.ringlb_bin, "run", conf]
                proxy = bench.PROCS.spawn(argv, cpu=args.proxy_cpu, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
                try:
                    bench.wait_listening([ports["port"], ports["bulk_port"]], proxy, what=name)
                    for load, template in loads.items():
                        client = bench.PROCS.spawn([a.format(**ports) for a in template],
                                                   cpu=args.load_cpu, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, text=True)
                        time.sleep(1.5)
                        data = os.path.join(tmp, "%s-%s.data" % (name, load))
                        bench.PROCS.run(["perf", "record", "-q", "-e", "cpu-clock", "-C",
                                         str(args.proxy_cpu), "-o", data, "--", "sleep",
                                         str(args.seconds)], timeout=args.seconds + 30)
                        out, _ = client.communicate(timeout=run_s + 30)
                        bench.PROCS.stop(client)
                        if "Requests/sec" not in out and "receiver" not in out:
                            raise bench.ScenarioError("%s through %s failed: %s"
                                                      % (load, name, out.strip()[-300:]))
                        share, symbols = split(data, args.top)
                        rows.append((name, load, share, symbols))
                        bench.log("%s %s: %s" % (name, load, ", ".join(
                            "%s %.1f%%" % (k, share[k]) for k in COLUMNS)), who="profile")
                finally:
                    bench.PROCS.stop(proxy)
        finally:
            bench.PROCS.stop_all()
    print("Share of the proxy core's samples (%%, cpu-clock, %d s per cell):\n" % args.seconds)
    print("| proxy | load | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, load, share, _ in rows:
        print("| %s | %s | %s |" % (name, load, " | ".join("%.1f" % share[k] for k in COLUMNS)))
    print("\nTop symbols:\n")
    for name, load, _, symbols in rows:
        print("- %s, %s: %s" % (name, load, "; ".join(symbols)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
