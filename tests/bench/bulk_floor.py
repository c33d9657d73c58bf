#!/usr/bin/env python3
"""One bulk stream: ringlb against the simplest forwarder there is, and the direct path.

The performance issue asks one iperf3 stream through ringlb to reach 0.9x the direct path. Whether
that is reachable on a machine depends on what moving bytes through any user-space process costs
there, so this script measures the floor beside ringlb, interleaved, one iperf3 stream per run in
each direction:

  direct           iperf3 client -> iperf3 server
  naive            tests/bench/naive_forwarder.c (compiled here with cc -O2): fork per
                   connection, one epoll loop, read up to 64 KiB and write it on, nothing else
  ringlb-ENGINE-S  ringlb, one shard, forward = "buffered", buffer_size = S (--buffer-sizes)

Each forwarder runs on --proxy-cpu (1), iperf3 client and server on --load-cpu (0). Besides
Gbit/s it reports the proxy core's busy time per GB (user+system+irq+softirq of that CPU from
/proc/stat, steal excluded), which also counts the kernel's TCP work that lands on that core.
Medians with min-max over --reps repetitions.

  tests/bench/bulk_floor.py [--ringlb-bin build/release/ringlb] [--reps 3] [--seconds 4]
                            [--buffer-sizes 65536,262144]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import types

import bench  # the harness's helpers: this directory is on sys.path when a script here runs

RINGLB = """\
[runtime]
workers = 1
pin_cpus = false
engine = "{engine}"
buffer_size = {size}

[[listener]]
name = "bulk"
bind = "127.0.0.1:{port}"
cluster = "iperf"
forward = "buffered"

[[cluster]]
name = "iperf"
backends = [ {{ address = "127.0.0.1:{backend_port}" }} ]
"""


def cpu_busy_ticks(cpu):
    """Busy ticks of one CPU: user+nice+system+irq+softirq (steal is the host's, not ours)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu%d " % cpu):
                v = [int(x) for x in line.split()[1:8]]
                return v[0] + v[1] + v[2] + v[5] + v[6]
    raise SystemExit("bulk_floor: no cpu%d in /proc/stat" % cpu)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--ringlb-bin", default=os.path.join(root, "build/release/ringlb"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4, help="seconds per iperf3 run")
    ap.add_argument("--buffer-sizes", default="65536,262144")
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    args = ap.parse_args(argv)
    for tool in ("iperf3", "cc"):
        if not shutil.which(tool):
            print("bulk_floor: %s is missing (scripts/install-deps.sh bench installs it)" % tool,
                  file=sys.stderr)
            return 1
    env = types.SimpleNamespace(load_cpu=args.load_cpu)
    sizes = [int(s) for s in args.buffer_sizes.split(",")]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with tempfile.TemporaryDirectory(prefix="bulk-floor-") as work:
            naive = os.path.join(work, "naive_forwarder")
            subprocess.run(["cc", "-O2", "-o", naive, os.path.join(here, "naive_forwarder.c")],
                           check=True)
            iperf_port = bench.free_port()
            iperf = bench.PROCS.spawn(["iperf3", "-s", "-p", str(iperf_port)], cpu=args.load_cpu,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bench.wait_listening([iperf_port], iperf, what="iperf3 -s")
            targets = [("direct", iperf_port, None)]
            port = bench.free_port()
            p = bench.PROCS.spawn([naive, str(port), str(iperf_port)], cpu=args.proxy_cpu)
            targets.append(("naive 64 KiB", port, p))
            for engine in ("io_uring", "epoll"):
                for size in sizes:
                    port = bench.free_port()
                    conf = os.path.join(work, "ringlb-%s-%d.toml" % (engine, size))
                    with open(conf, "w") as f:
                        f.write(RINGLB.format(engine=engine, size=size, port=port,
                                              backend_port=iperf_port))
                    p = bench.PROCS.spawn([args.ringlb_bin, "run", conf], cpu=args.proxy_cpu,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    targets.append(("ringlb %s %d KiB" % (engine, size // 1024), port, p))
            for name, port, p in targets:
                bench.wait_listening([port], p, what=name)
            results = {(name, d): [] for name, _, _ in targets for d in ("->", "<-")}
            for rep in range(args.reps):
                for name, port, _ in targets:
                    for reverse, d in ((False, "->"), (True, "<-")):
                        t0 = cpu_busy_ticks(args.proxy_cpu)
                        bps, nbytes = bench.run_iperf(env, port, 1, reverse, args.seconds)
                        busy = (cpu_busy_ticks(args.proxy_cpu) - t0) / bench.CLK_TCK
                        results[(name, d)].append((bps / 1e9, busy / (nbytes / 1e9)))
                        bench.log("rep %d %-22s %s %6.2f Gbit/s  proxy core %.3f CPU-s/GB"
                                  % (rep + 1, name, d, bps / 1e9, busy / (nbytes / 1e9)),
                                  who="bulk_floor")
    finally:
        bench.PROCS.stop_all()

    def cell(values, fmt):
        return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(values), min(values),
                                                      max(values))

    direct = {d: statistics.median(g for g, _ in results[("direct", d)]) for d in ("->", "<-")}
    print("| | Gbit/s -> | Gbit/s <- | / direct ->, <- | proxy core CPU-s/GB ->, <- |")
    print("|---|---|---|---|---|")
    for name, _, _ in targets:
        fwd, rev = results[(name, "->")], results[(name, "<-")]
        gf, gr = [g for g, _ in fwd], [g for g, _ in rev]
        ratio = "%.2fx, %.2fx" % (statistics.median(gf) / direct["->"],
                                  statistics.median(gr) / direct["<-"])
        cost = "–" if name == "direct" else "%.3f, %.3f" % (
            statistics.median(c for _, c in fwd), statistics.median(c for _, c in rev))
        print("| %s | %s | %s | %s | %s |" % (name, cell(gf, "%.2f"), cell(gr, "%.2f"), ratio,
                                              cost))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
