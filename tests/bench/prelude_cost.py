#!/usr/bin/env python3
"""ringlb's CPU per connection with a prelude (PROXY v2 in, SNI routing) against plain forwarding.

One ringlb shard pinned to --proxy-cpu serves three listeners in front of one echo backend
(ringlb-echo): "plain" (no prelude), "proxy" (proxy_protocol = "v2") and "sni" (routes; the hello
names Www.Example.COM, which the wildcard route *.example.com takes, to the same cluster).
A client sends a real TLS ClientHello (openssl s_client's, from the fuzz corpus), reads the echo
and resets. Four variants: "sni" and "plain" get the bare hello; "proxy" and "plain+header" get a
PROXY v2 header before it, which "plain+header" forwards as data and "proxy" strips. Rounds
alternate the order, so drift hits every variant alike; the figure is ringlb's own CPU (utime +
stime from /proc) per connection, median over rounds, and its ratio to the plain variant with
the same bytes.

    taskset -c 0 tests/bench/prelude_cost.py [--rounds 5] [--conns 3000] [--engine io_uring]
"""
import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import bench  # the harness's helpers: this directory is on sys.path when a script here runs

BIN = os.path.join(bench.ROOT, "build", "release")
HELLO = os.path.join(bench.ROOT, "tests", "fuzz", "corpus", "client_hello")


def proxy_v2(src, dst, sport, dport):
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
            socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport))


def client_hello():
    # openssl s_client's TLS 1.3 hello (-servername), as captured for the parser's tests.
    with open(os.path.join(HELLO, "capture-openssl-tls13-sni.bin"), "rb") as f:
        return f.read()


def config(ports, backend_port, engine):
    return f"""[runtime]
workers = 1
engine = "{engine}"
drain_timeout = "0s"
drain_spread = "0s"
[[listener]]
name = "plain"
bind = "127.0.0.1:{ports['plain']}"
cluster = "c"
[[listener]]
name = "proxy"
bind = "127.0.0.1:{ports['proxy']}"
cluster = "c"
proxy_protocol = "v2"
[[listener]]
name = "sni"
bind = "127.0.0.1:{ports['sni']}"
cluster = "c"
routes = [ {{ sni = "*.example.com", cluster = "c" }} ]
[[cluster]]
name = "c"
backends = [ {{ address = "127.0.0.1:{backend_port}" }} ]
"""


def cpu_seconds(pid):
    # Run time of every thread in ns (schedstat), not utime/stime's 10 ms ticks.
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e9


def run(port, payload, expect, conns):
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(payload)
        got = 0
        while got < expect:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit(f"port {port}: closed after {got} of {expect} bytes")
            got += len(chunk)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--conns", type=int, default=3000)
    p.add_argument("--engine", default="io_uring", choices=("io_uring", "epoll"))
    p.add_argument("--proxy-cpu", type=int, default=1)
    args = p.parse_args()

    hello = client_hello()
    header = proxy_v2("192.0.2.1", "192.0.2.2", 40000, 443)
    # name: (listener, bytes sent, bytes echoed back, baseline variant)
    variants = {
        "plain": ("plain", hello, len(hello), "plain"),
        "sni": ("sni", hello, len(hello), "plain"),
        "plain+header": ("plain", header + hello, len(header + hello), "plain+header"),
        "proxy": ("proxy", header + hello, len(hello), "plain+header"),
    }

    tmp = tempfile.mkdtemp(prefix="ringlb-prelude-")
    backend_port = bench.free_port()
    try:
        bench.PROCS.spawn([os.path.join(BIN, "ringlb-echo"), "--listen",
                           f"127.0.0.1:{backend_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ports = {k: bench.free_port() for k in ("plain", "proxy", "sni")}
        path = os.path.join(tmp, "ringlb.toml")
        with open(path, "w") as f:
            f.write(config(ports, backend_port, args.engine))
        log = open(os.path.join(tmp, "ringlb.log"), "w")
        proxy = bench.PROCS.spawn([os.path.join(BIN, "ringlb"), "run", path],
                                  cpu=args.proxy_cpu, stdout=log, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(os.path.join(tmp, "ringlb.log")) as f:
                if "ready:" in f.read():
                    break
            time.sleep(0.05)
        else:
            raise SystemExit("ringlb did not start: see " + tmp)
        for name, (listener, data, back, _) in variants.items():  # warm every path up
            run(ports[listener], data, back, 200)
        per_conn = {k: [] for k in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(list(variants)))
            for name in order:
                listener, data, back, _ = variants[name]
                before = cpu_seconds(proxy.pid)
                run(ports[listener], data, back, args.conns)
                per_conn[name].append((cpu_seconds(proxy.pid) - before) / args.conns * 1e6)
        med = {k: statistics.median(v) for k, v in per_conn.items()}
        print(f"engine {args.engine}, {args.rounds} rounds x {args.conns} connections, hello "
              f"{len(hello)} B, PROXY v2 header {len(header)} B; ringlb CPU per connection (us), "
              f"median [min-max]:")
        for name, (_, _, _, base) in variants.items():
            v = per_conn[name]
            print(f"  {name:13s} {med[name]:7.2f} [{min(v):.2f}-{max(v):.2f}]  "
                  f"x{med[name] / med[base]:.3f} {base}")
    finally:
        bench.PROCS.stop_all()


if __name__ == "__main__":
    sys.exit(main())
