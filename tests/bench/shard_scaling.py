#!/usr/bin/env python3
"""Two shards against one: what a second shard costs per request and per new connection.

The goal (#18) is that two shards on two cores carry >= 1.7x what one shard carries, with the load
generator running elsewhere. This machine has two cores and no elsewhere: wrk and the backend
share the cores with the shards, so raw req/s of two shards against one says how the load
generator competes, not how ringlb scales. What decides scaling is whether a second shard makes
each request dearer (shared cache lines, locks, cross-shard wakeups, an uneven SO_REUSEPORT split).
So this script runs, interleaved, the same wrk load through

  1 shard:  workers = 1, the process pinned to CPU 1 (taskset);
  2 shards: workers = 2, pin_cpus = true (shard N on CPU N);

with wrk and the backend (ringlb-echo --mode http) free to run on either core in both layouts,
and reports ringlb's own CPU per keepalive request and per new connection (all its threads, from
/proc), the shards' split of the accepted connections, and

  capacity scaling = 2 x (CPU per request of 1 shard) / (CPU per request of 2 shards),

the factor two shards with a core each carry over one when the proxy's CPU is the bottleneck.

  tests/bench/shard_scaling.py [--ringlb-bin build/release/ringlb] [--reps 3] [--duration 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import bench  # the harness's helpers: this directory is on sys.path when a script here runs

CONFIG = """\
[runtime]
workers = {workers}
pin_cpus = {pin}
engine = "{engine}"

[admin]
bind = "127.0.0.1:{admin_port}"

[[listener]]
name = "http"
bind = "127.0.0.1:{port}"
cluster = "http"
backlog = 4096

[[cluster]]
name = "http"
backends = [ {{ address = "127.0.0.1:{backend_port}" }} ]
"""

# (name, workers, pin_cpus, taskset of the proxy)
LAYOUTS = (("1 shard", 1, "false", "1"), ("2 shards", 2, "true", "0,1"))


def accepted_per_shard(admin_port):
    """ringlb_accepted_total by shard, from /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("ringlb_accepted_total{"):
            shard = line.split('shard="', 1)[1].split('"', 1)[0]
            out[shard] = float(line.rsplit(" ", 1)[1])
    return out


def run_wrk(script, port, duration, close, pids):
    """wrk -t2 -c64 through the proxy; returns (requests/s, proxy CPU-µs per request)."""
    argv = ["wrk", "-t2", "-c64", "-d%ds" % duration, "--timeout", "10s", "-s", script]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("http://127.0.0.1:%d/" % port)
    cpu0 = bench.cpu_ticks(pids)
    rc, out, err = bench.PROCS.run(argv, timeout=duration + 30)
    cpu = (bench.cpu_ticks(pids) - cpu0) / bench.CLK_TCK
    summary = None
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            summary = json.loads(line[len("WRK_JSON "):])
    if summary is None or summary["requests"] <= 0:
        raise bench.ScenarioError("wrk failed (status %s): %s" % (rc, (err or out)[-300:]))
    errors = sum(summary[k] for k in summary if k.startswith("err_"))
    if errors:
        raise bench.ScenarioError("wrk saw %d errors: %s" % (errors, summary))
    return (summary["requests"] / (summary["duration_us"] / 1e6),
            cpu * 1e6 / summary["requests"])


def measure(args, layout, workdir, script, backend_port):
    name, workers, pin, cpus = layout
    port, admin_port = bench.free_port(), bench.free_port()
    conf = os.path.join(workdir, "ringlb-%d.toml" % workers)
    with open(conf, "w") as f:
        f.write(CONFIG.format(workers=workers, pin=pin, engine=args.engine, port=port,
                              admin_port=admin_port, backend_port=backend_port))
    log = open(os.path.join(workdir, "ringlb-%d.log" % workers), "ab")
    p = bench.PROCS.spawn([args.ringlb_bin, "run", conf], cpu=cpus, stdout=log,
                          stderr=subprocess.STDOUT)
    log.close()
    try:
        bench.wait_listening([port, admin_port], p, what="ringlb")
        pids = bench.proc_tree(p.pid)
        run_wrk(script, port, 1, False, pids)  # warm-up: buffers, lazily built state
        before = accepted_per_shard(admin_port)
        ka_rate, ka_us = run_wrk(script, port, args.duration, False, pids)
        ch_rate, ch_us = run_wrk(script, port, args.duration, True, pids)
        after = accepted_per_shard(admin_port)
    finally:
        bench.PROCS.stop(p)
    accepted = {s: after[s] - before.get(s, 0) for s in after}
    total = sum(accepted.values()) or 1
    split = "/".join("%.0f%%" % (100 * accepted[s] / total) for s in sorted(accepted))
    bench.log("%s: keepalive %.0f req/s %.2f us/req, churn %.0f conn/s %.2f us/conn, split %s"
              % (name, ka_rate, ka_us, ch_rate, ch_us, split))
    return {"ka_rate": ka_rate, "ka_us": ka_us, "ch_rate": ch_rate, "ch_us": ch_us,
            "split": split}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--ringlb-bin", default=os.path.join(root, "build/release/ringlb"))
    ap.add_argument("--engine", default="io_uring", choices=("io_uring", "epoll"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    args = ap.parse_args(argv)
    if os.cpu_count() < 2:
        print("shard_scaling: skipped: one CPU, two shards need two", file=sys.stderr)
        return 0
    echo = os.path.join(os.path.dirname(args.ringlb_bin), "ringlb-echo")
    results = {layout[0]: [] for layout in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="shard-scaling-") as workdir:
        script = os.path.join(workdir, "wrk.lua")
        with open(script, "w") as f:
            f.write(bench.WRK_SCRIPT)
        backend_port = bench.free_port()
        backend = bench.PROCS.spawn([echo, "--listen", "127.0.0.1:%d" % backend_port, "--mode",
                                     "http"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        try:
            bench.wait_listening([backend_port], backend, what="ringlb-echo")
            for rep in range(args.reps):
                # Alternate which layout goes first, so drift does not favour one.
                order = LAYOUTS if rep % 2 == 0 else tuple(reversed(LAYOUTS))
                for layout in order:
                    results[layout[0]].append(measure(args, layout, workdir, script,
                                                      backend_port))
                    time.sleep(0.5)
        finally:
            bench.PROCS.stop_all()

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    print("| %s | keepalive req/s | proxy µs/req | churn conn/s | proxy µs/conn | accepted by "
          "shard |" % args.engine)
    print("|---|---|---|---|---|---|")
    for name, *_ in LAYOUTS:
        print("| %s | %.0f | %.2f | %.0f | %.2f | %s |"
              % (name, med(name, "ka_rate"), med(name, "ka_us"), med(name, "ch_rate"),
                 med(name, "ch_us"), ", ".join(r["split"] for r in results[name])))
    one, two = LAYOUTS[0][0], LAYOUTS[1][0]
    print("\ncapacity scaling (2 x one shard's CPU per unit / two shards'): keepalive %.2fx, "
          "churn %.2fx (median of %d interleaved reps, %ds runs)"
          % (2 * med(one, "ka_us") / med(two, "ka_us"), 2 * med(one, "ch_us") / med(two, "ch_us"),
             args.reps, args.duration))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
