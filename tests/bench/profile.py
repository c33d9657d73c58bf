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
A second table bounds each lever not taken (direct descriptors, bundle receives, socket and
setsockopt as SQEs) by the samples of the kernel symbols it would remove.

  tests/bench/profile.py [--ringlb-bin build/release/ringlb] [--seconds 4] [--top 8]

With --ops it counts instead of sampling: the kernel operations per keepalive request and per
churned connection (receive calls, and those that found the socket empty or at EOF; send calls;
TCP segments sent, and those carrying data or a FIN), machine-wide, for the direct path and
through each proxy, from the sock:sock_recv_length and sock:sock_send_length tracepoints
(`perf stat -a`) and the kernel's TCP counters (nstat). What a proxy adds is its row minus the
direct one; the rows say where one proxy asks the kernel for more work than another.

  tests/bench/profile.py --ops [--seconds 4]
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

# The levers not taken, each with the kernel symbols whose samples it could remove at most: an
# upper bound on what it buys, read from the same profile. (name, regular expression on a kernel
# symbol); the user-space row is the "user" column above.
LEVERS = (
    # Registered (direct) descriptors skip the file table lookup and the file's reference count
    # on every operation (the file itself is still freed on close: __fput stays).
    ("direct descriptors", r"^(fget|fput|fdget|fdget_pos|__fget_light|__fget_files(_rcu)?|"
                           r"io_file_get_normal|fget_task)$"),
    # Bundle or byte-capped multishot receives cut completions and re-arms: at most all of
    # io_uring's own bookkeeping (the receive's copy and TCP work stay).
    ("bundle receives", dict(KINDS)["io_uring"]),
    # IORING_OP_SOCKET and setsockopt as an SQE: at most every syscall entry and exit.
    ("ops as SQEs (socket, setsockopt)", r"entry_SYSCALL|syscall_(enter|exit)|do_syscall_64|"
                                         r"^__x64_sys_"),
)


def split(data, top):
    """(percent per kind, the top symbols) of a perf.data file."""
    out = subprocess.run(["perf", "report", "-q", "-i", data, "--no-children", "--sort",
                          "dso,sym", "-g", "none"], capture_output=True, text=True).stdout
    share = dict.fromkeys(COLUMNS, 0.0)
    share.update(dict.fromkeys((name for name, _ in LEVERS), 0.0))
    symbols, others = [], []
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
        if mode == "k":
            for name, rx in LEVERS:
                if re.search(rx, sym):
                    share[name] += pct
        if len(symbols) < top:
            symbols.append("%.1f%% %s" % (pct, sym if mode == "k" else "%s (%s)" % (sym, dso)))
        if kind == "other kernel" and len(others) < top:
            others.append("%.1f%% %s" % (pct, sym))
    return share, symbols, others


# (column, perf event, tracepoint filter or None); the recv tracepoint fires once per receive
# call, with the bytes or the error (-11: the socket was empty) in `ret`.
OP_EVENTS = (
    ("recv calls", "sock:sock_recv_length", None),
    ("recv EAGAIN", "sock:sock_recv_length", "ret == -11"),
    ("recv EOF", "sock:sock_recv_length", "ret == 0"),
    ("send calls", "sock:sock_send_length", None),
)
# (column, nstat counter): every segment sent, and those carrying data or a FIN (a FIN sent on
# the last data segment is one segment fewer, and one ACK fewer from the peer).
OP_COUNTERS = (("segments out", "TcpOutSegs"), ("data/FIN segments", "TcpExtTCPOrigDataSent"))
OP_COLUMNS = tuple(c for c, _, _ in OP_EVENTS) + tuple(c for c, _ in OP_COUNTERS)


def nstat(history, reset):
    """The kernel's TCP counters since the last call with this history file."""
    env = dict(os.environ, NSTAT_HISTORY=history)
    out = subprocess.run(["nstat", "-n" if reset else "-z"], env=env, capture_output=True,
                         text=True, check=True).stdout
    return {f[0]: float(f[1]) for f in (line.split() for line in out.splitlines())
            if len(f) >= 2 and f[1].isdigit()}


def count_ops(wrk_argv, load_cpu, tmp):
    """Kernel operations per request of one wrk run (machine-wide), and the request count."""
    out_file = os.path.join(tmp, "ops.csv")
    history = os.path.join(tmp, "nstat.history")
    argv = ["perf", "stat", "-x,", "-a", "-o", out_file]
    for _, event, flt in OP_EVENTS:
        argv += ["-e", event] + (["--filter", flt] if flt else [])
    nstat(history, reset=True)
    _, out, err = bench.PROCS.run(argv + ["--", "taskset", "-c", str(load_cpu)] + wrk_argv,
                                  timeout=120)
    counters = nstat(history, reset=False)
    m = re.search(r"(\d+) requests in", out)
    if not m or int(m.group(1)) == 0:
        raise bench.ScenarioError("wrk failed: %s" % (out + err).strip()[-300:])
    requests = int(m.group(1))
    counts = []
    with open(out_file) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[2].startswith("sock:"):
                counts.append(float(fields[0]) if fields[0].replace(".", "").isdigit() else 0.0)
    if len(counts) != len(OP_EVENTS):
        raise bench.ScenarioError("perf stat gave %d counts, not %d" % (len(counts),
                                                                         len(OP_EVENTS)))
    per = {c: n / requests for (c, _, _), n in zip(OP_EVENTS, counts)}
    per.update({c: counters.get(name, 0.0) / requests for c, name in OP_COUNTERS})
    return per, requests


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ringlb-bin", default=os.path.join(bench.ROOT, "build/release/ringlb"))
    ap.add_argument("--seconds", type=int, default=4, help="perf sampling window per cell")
    ap.add_argument("--top", type=int, default=8, help="top symbols listed per cell")
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--ops", action="store_true",
                    help="count kernel operations per request and connection instead")
    args = ap.parse_args(argv)
    for tool in ("perf", "wrk", "iperf3", "haproxy") + (("nstat",) if args.ops else ()):
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
            if args.ops:
                for load in ("keepalive", "churn"):
                    direct = dict(ports, port=ports["backend_port"])
                    per, _ = count_ops([a.format(**direct) for a in loads[load]],
                                       args.load_cpu, tmp)
                    rows.append(("direct", load, per, None, None))
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
                    if args.ops:
                        for load in ("keepalive", "churn"):
                            per, n = count_ops([a.format(**ports) for a in loads[load]],
                                               args.load_cpu, tmp)
                            rows.append((name, load, per, None, None))
                            bench.log("%s %s: %d requests, %s" % (name, load, n, ", ".join(
                                "%s %.2f" % (k, per[k]) for k in OP_COLUMNS)), who="profile")
                        continue
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
                        share, symbols, others = split(data, args.top)
                        rows.append((name, load, share, symbols, others))
                        bench.log("%s %s: %s" % (name, load, ", ".join(
                            "%s %.1f%%" % (k, share[k]) for k in COLUMNS)), who="profile")
                finally:
                    bench.PROCS.stop(proxy)
        finally:
            bench.PROCS.stop_all()
    if args.ops:
        print("Kernel operations, machine-wide, per keepalive request and per churned connection"
              " (wrk -c64, %d s per cell; each proxy's added operations: its row minus direct):\n"
              % run_s)
        print("| path | load | " + " | ".join(OP_COLUMNS) + " |")
        print("|---|---|" + "---|" * len(OP_COLUMNS))
        for name, load, per, _, _ in rows:
            print("| %s | %s | %s |" % (name, load, " | ".join("%.2f" % per[k]
                                                              for k in OP_COLUMNS)))
        return 0
    print("Share of the proxy core's samples (%%, cpu-clock, %d s per cell):\n" % args.seconds)
    print("| proxy | load | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, load, share, _, _ in rows:
        print("| %s | %s | %s |" % (name, load, " | ".join("%.1f" % share[k] for k in COLUMNS)))
    print("\nThe most each lever not taken could remove (% of the proxy core's samples, from the"
          " same profiles):\n")
    levers = [name for name, _ in LEVERS] + ["user"]
    print("| proxy | load | " + " | ".join(levers[:-1]) + " | all user code |")
    print("|---|---|" + "---|" * len(levers))
    for name, load, share, _, _ in rows:
        print("| %s | %s | %s |" % (name, load, " | ".join("%.1f" % share[k] for k in levers)))
    print("\nTop symbols:\n")
    for name, load, _, symbols, _ in rows:
        print("- %s, %s: %s" % (name, load, "; ".join(symbols)))
    print("\nTop symbols of \"other kernel\":\n")
    for name, load, _, _, others in rows:
        print("- %s, %s: %s" % (name, load, "; ".join(others)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
