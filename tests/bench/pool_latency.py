#!/usr/bin/env python3
"""Time to first byte through ringlb with and without a warm pool, interleaved in one run.

A server-speaks-first backend (ringlb-echo --greeting) sits behind one ringlb shard pinned to CPU 1;
the client (this script, on CPU 0 when started with taskset) connects, waits for the greeting and
resets. Without a pool the greeting needs ringlb's upstream connect first; with one it already sits
in a pooled socket. Rounds alternate engines and pool on/off, so drift hits all four alike.

    taskset -c 0 tests/bench/pool_latency.py [--rounds 3] [--conns 1500]
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import bench  # the harness's helpers: this directory is on sys.path when a script here runs

BIN = os.path.join(bench.ROOT, "build", "release")


def config(port, backend_port, pool, engine):
    pool_line = "pool = { warm = 8 }" if pool else ""
    return f"""[runtime]
workers = 1
engine = "{engine}"
[[listener]]
name = "l"
bind = "127.0.0.1:{port}"
cluster = "c"
[[cluster]]
name = "c"
{pool_line}
backends = [ {{ address = "127.0.0.1:{backend_port}" }} ]
"""


def measure(port, conns, greeting_len):
    lat = []
    for i in range(conns):
        t = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port))
        data = b""
        while len(data) < greeting_len:
            chunk = s.recv(64)
            if not chunk:
                raise SystemExit("connection closed before the greeting")
            data += chunk
        lat.append((time.perf_counter() - t) * 1e6)
        # RST: no TIME_WAIT piles up on the client side over thousands of connects.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        if i % 50 == 0:
            time.sleep(0.002)  # lets the pool refill between bursts, as real arrivals would
    return lat[len(lat) // 15:]  # the first connects warm caches up


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--conns", type=int, default=1500)
    args = p.parse_args()
    greeting = b"220 hi\r\n"
    backend_port = bench.free_port()
    bench.PROCS.spawn([os.path.join(BIN, "ringlb-echo"), "--listen", "127.0.0.1:%d" % backend_port,
                       "--mode", "echo", "--greeting", "220 hi\\r\\n"], stderr=subprocess.DEVNULL)
    results = {}
    try:
        time.sleep(0.3)
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for engine in ("io_uring", "epoll"):
                    for pool in (False, True):
                        port = bench.free_port()
                        path = os.path.join(tmp, "ringlb.toml")
                        with open(path, "w") as f:
                            f.write(config(port, backend_port, pool, engine))
                        proxy = bench.PROCS.spawn([os.path.join(BIN, "ringlb"), "run", path],
                                                  cpu=1, stderr=subprocess.DEVNULL)
                        try:
                            time.sleep(0.5)
                            results.setdefault((engine, pool), []).extend(
                                measure(port, args.conns, len(greeting)))
                        finally:
                            bench.PROCS.stop(proxy)
    finally:
        bench.PROCS.stop_all()
    print("| engine | pool | connects | p50 µs | p99 µs |")
    print("|---|---|---|---|---|")
    for (engine, pool), lat in sorted(results.items()):
        print("| %s | %s | %d | %.0f | %.0f |" % (engine, "warm = 8" if pool else "off", len(lat),
                                                  bench.percentile(lat, 50),
                                                  bench.percentile(lat, 99)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
