#!/usr/bin/env python3
"""TLS through ringlb against HAProxy in one interleaved run: handshake cost, bulk cost, and the
latency of new connections to a TLS backend.

    tests/bench/tls_bench.py [--rounds 5] [--handshakes 6000] [--bulk-mb 2000] [--conns 400]
    tests/bench/tls_bench.py --quick          # every cell tiny (CI: checks that every cell fills)

Rows: ringlb with each engine and HAProxy (Debian's 2.6), each with one worker thread pinned to
--proxy-cpu; this script (the clients) and the backends run on --load-cpu. A fresh proxy process
serves each row in each round, and the order of the rows rotates from round to round, so drift
hits every row alike. Each cell prints the median over rounds with min-max, and ratio rows
ringlb / HAProxy of the medians.

Both proxies get the same certificate, an ECDSA P-256 leaf issued by a CA of its own (made with
the openssl CLI into a temporary directory at start) and the same TLS: version 1.3 only, cipher
suite TLS_AES_128_GCM_SHA256, set explicitly on both sides; everything else is each proxy's
default (both send TLS 1.3 session tickets, which the clients never use). Before the first round
openssl s_client checks what each proxy negotiates (version, suite, key exchange group) and the
header prints it.

1. Handshakes (terminating): --workers client processes open --handshakes new TLS connections in
   all (full handshakes: no session is ever offered for resumption), each sends 64 bytes, reads
   them back from a plain echo backend (ringlb-echo) and resets. The figure is the proxy's own
   CPU (utime + stime of its whole thread group from /proc/PID/stat, read before and after)
   per handshake, and its inverse, handshakes per proxy-CPU-second: what one core of the proxy
   sustains, whatever the client's own speed. The client is Python's ssl module in processes,
   not `openssl s_time -new`: s_time either only handshakes (no request reaches the backend) or
   sends an HTTP/1.0 GET and waits for the server to close, which an echo backend never does,
   and it keeps one connection in flight. The client does not verify the proxy's certificate
   (its verification is client work, not the proxy's). The client core is slower than the
   proxy's, so the proxy runs below saturation; its busy share is printed ("proxy busy %") so a
   reader sees how loaded it was. Both proxies get the same offered load.
2. Bulk (terminating): one TLS connection per direction moves --bulk-mb megabytes to a
   ringlb-echo in hash mode (tests/tools/pattern.hpp): "up", the client sends, the proxy
   decrypts; "down", the backend sends, the proxy encrypts. The client ends its side with a TCP
   FIN (no close_notify, which both proxies take as the end of the direction); the backend's
   40-byte trailer, which carries the length it received, confirms every byte went through
   (byte-exact checks are tests/integration/tls_test.cpp's job). The figure is proxy CPU-seconds
   per GB (10^9 bytes) for each direction; the wall throughput is printed too (it is bounded by
   the client's core).
3. New-connection latency with TLS origination: a plain listener forwards to a cluster that
   speaks TLS (verifying the backend's certificate against the CA, server name
   backend.example.test) to a TLS backend: an HAProxy on --load-cpu terminating TLS in front of
   ringlb-echo. The client opens --conns connections one after the other, sends 64 bytes, reads
   the echo and resets; the figure is connect + that first round trip, p50 and p99 per round.
   Rows: ringlb without a pool, ringlb with `pool = { warm = 8 }` (connections handshaked in
   advance), HAProxy (`server ... ssl verify required ca-file ...`, which resumes its TLS
   session with the backend by default) and HAProxy with `no-ssl-reuse` (a full handshake each
   time, like ringlb, which does not resume towards backends). The client pauses --pause-ms
   after each connection in every row alike, so the pool has refilled (a pooled connection is
   a connect plus a handshake, well under a millisecond here) before the next client arrives;
   the "inline" column counts ringlb's sessions that still had to handshake themselves
   (ringlb_cluster_tls_inline_handshakes_total). The first --warmup connections are not
   counted.

Exit status: 0 when every cell has a number, 1 when one has none (a proxy that did not start or
died, a connection that failed: the error is printed), 2 on bad usage.
"""
import argparse
import contextlib
import functools
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import bench  # the harness's helpers: this directory is on sys.path when a script here runs

SUITE = "TLS_AES_128_GCM_SHA256"
SERVER_NAME = "backend.example.test"
REQUEST = bytes(range(64))
HASH_TRAILER = 40  # SHA-256 of what the backend received + its length, 8 bytes big-endian
GB = 1e9


# A cell that produced no number; bench.py's helpers (wait_listening) raise it as a scenario's.
CellError = bench.ScenarioError


# Its lines on stderr say they are this script's, not the harness's (scripts/test.sh runs both).
log = functools.partial(bench.log, who="tls_bench")


def spawn(argv, cpu, log_path):
    """bench.PROCS.spawn with the process's output in log_path."""
    with open(log_path, "wb") as out:
        return bench.PROCS.spawn(argv, cpu=cpu, stdout=out, stderr=subprocess.STDOUT)


def rst_close(s):
    # A reset: no TIME_WAIT piles up on the client side over thousands of connections.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ---------------------------------------------------------------------------------------------
# Certificates: a CA and a leaf for SERVER_NAME, both ECDSA P-256, made with the openssl CLI.


def make_certs(d):
    def run(*argv):
        r = subprocess.run(["openssl"] + list(argv), cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("openssl %s failed: %s" % (argv[0], r.stderr.strip()))

    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run("genpkey", *ec, "-out", "ca.key")
    run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=tls_bench CA", "-days", "2",
        "-addext", "basicConstraints=critical,CA:true",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt")
    run("genpkey", *ec, "-out", "server.key")
    run("req", "-new", "-key", "server.key", "-subj", "/CN=" + SERVER_NAME, "-out", "server.csr")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\n" % SERVER_NAME)
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt")
    with open(os.path.join(d, "server.pem"), "w") as f:  # HAProxy's crt: certificate + key
        for name in ("server.crt", "server.key"):
            with open(os.path.join(d, name)) as g:
                f.write(g.read())
    return {k: os.path.join(d, v) for k, v in (("ca", "ca.crt"), ("cert", "server.crt"),
                                               ("key", "server.key"), ("pem", "server.pem"))}


# ---------------------------------------------------------------------------------------------
# The proxies. A row is a name and a start() that returns a running Proxy serving `port`.

RINGLB_HEAD = """[runtime]
workers = 1
pin_cpus = false
engine = "{engine}"
drain_timeout = "0s"
drain_spread = "0s"
[admin]
bind = "127.0.0.1:{admin_port}"
"""

RINGLB_TERMINATE = RINGLB_HEAD + """[[listener]]
name = "tls"
bind = "127.0.0.1:{port}"
cluster = "echo"
backlog = 4096
tls = {{ certificates = [ {{ cert = "{cert}", key = "{key}" }} ], min_version = "1.3", ciphersuites = "{suite}" }}
[[cluster]]
name = "echo"
backends = [ {{ address = "127.0.0.1:{backend_port}" }} ]
"""

RINGLB_ORIGINATE = RINGLB_HEAD + """[[listener]]
name = "plain"
bind = "127.0.0.1:{port}"
cluster = "tls"
backlog = 4096
[[cluster]]
name = "tls"
{pool_line}
tls = {{ sni = "{sni}", verify = true, ca = "{ca}", min_version = "1.3", ciphersuites = "{suite}" }}
backends = [ {{ address = "127.0.0.1:{backend_port}" }} ]
"""

HAPROXY_HEAD = """global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
"""

HAPROXY_TERMINATE = HAPROXY_HEAD + """frontend tls
    bind 127.0.0.1:{port} ssl crt {pem} ssl-min-ver TLSv1.3 ciphersuites {suite}
    backlog 4096
    default_backend echo
backend echo
    server echo 127.0.0.1:{backend_port}
"""

HAPROXY_ORIGINATE = HAPROXY_HEAD + """frontend plain
    bind 127.0.0.1:{port}
    backlog 4096
    default_backend tls
backend tls
    server tls 127.0.0.1:{backend_port} ssl verify required ca-file {ca} sni str({sni}) ssl-min-ver TLSv1.3 ciphersuites {suite}{reuse}
"""


class Proxy:
    def __init__(self, proc, port, admin_port=None):
        self.proc = proc
        self.port = port
        self.admin_port = admin_port

    def cpu(self):
        if self.proc.poll() is not None:
            raise CellError("the proxy exited with status %s" % self.proc.returncode)
        # Our child's /proc entry outlives it until poll() reaps it: cpu_ticks always finds it.
        return bench.cpu_ticks([self.proc.pid]) / bench.CLK_TCK

    def metric(self, name):
        """Sum of a ringlb counter over its label sets (None for HAProxy)."""
        if self.admin_port is None:
            return None
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                    timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


class Env:
    def __init__(self, args, tmp, certs):
        self.args = args
        self.tmp = tmp
        self.certs = certs
        self.echo_port = None
        self.hash_port = None
        self.tls_backend_port = None
        self.seq = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start_backends(self):
        echo = os.path.join(self.args.bin_dir, "ringlb-echo")
        self.echo_port, self.hash_port = bench.free_port(), bench.free_port()
        self.tls_backend_port = bench.free_port()
        for port, mode in ((self.echo_port, "echo"), (self.hash_port, "hash")):
            p = spawn([echo, "--listen", "127.0.0.1:%d" % port, "--mode", mode],
                      cpu=self.args.load_cpu, log_path=self.path("echo-%s.log" % mode))
            bench.wait_listening([port], p, timeout=10, what="ringlb-echo --mode " + mode)
        # The TLS backend of measurement 3: HAProxy terminating TLS in front of the echo.
        conf = self.path("backend-haproxy.cfg")
        with open(conf, "w") as f:
            f.write(HAPROXY_TERMINATE.format(port=self.tls_backend_port, pem=self.certs["pem"],
                                             suite=SUITE, backend_port=self.echo_port))
        p = spawn(["haproxy", "-db", "-f", conf], cpu=self.args.load_cpu,
                  log_path=self.path("backend-haproxy.log"))
        bench.wait_listening([self.tls_backend_port], p, timeout=10,
                             what="the TLS backend (HAProxy)")

    def start_ringlb(self, template, engine, **kw):
        self.seq += 1
        port, admin_port = bench.free_port(), bench.free_port()
        conf = self.path("ringlb-%d.toml" % self.seq)
        with open(conf, "w") as f:
            f.write(template.format(engine=engine, port=port, admin_port=admin_port,
                                    suite=SUITE, **kw))
        log_path = self.path("ringlb-%d.log" % self.seq)
        p = spawn([os.path.join(self.args.bin_dir, "ringlb"), "run", conf],
                  cpu=self.args.proxy_cpu, log_path=log_path)
        deadline = time.time() + 10
        while time.time() < deadline:
            if p.poll() is not None:
                with open(log_path) as f:
                    raise CellError("ringlb exited with status %s at start: %s" %
                                    (p.returncode, f.read().strip()[-2000:]))
            with open(log_path) as f:
                if "ready:" in f.read():
                    return Proxy(p, port, admin_port)
            time.sleep(0.05)
        raise CellError("ringlb did not get ready within 10 s (see %s)" % log_path)

    def start_haproxy(self, template, **kw):
        self.seq += 1
        port = bench.free_port()
        conf = self.path("haproxy-%d.cfg" % self.seq)
        with open(conf, "w") as f:
            f.write(template.format(port=port, suite=SUITE, **kw))
        p = spawn(["haproxy", "-db", "-f", conf], cpu=self.args.proxy_cpu,
                  log_path=self.path("haproxy-%d.log" % self.seq))
        bench.wait_listening([port], p, timeout=10, what="haproxy")
        return Proxy(p, port)

    # Rows of measurements 1 and 2 (the proxy terminates TLS, the backend is plain).
    def terminating_rows(self):
        c = self.certs
        rows = {}
        for engine in self.args.engines:
            rows["ringlb-" + engine] = (lambda backend, e=engine: self.start_ringlb(
                RINGLB_TERMINATE, e, cert=c["cert"], key=c["key"], backend_port=backend))
        rows["haproxy"] = lambda backend: self.start_haproxy(
            HAPROXY_TERMINATE, pem=c["pem"], backend_port=backend)
        return rows

    # Rows of measurement 3 (plain listener, the proxy originates TLS to the TLS backend).
    def originating_rows(self):
        kw = {"ca": self.certs["ca"], "sni": SERVER_NAME, "backend_port": self.tls_backend_port}
        rows = {}
        for engine in self.args.engines:
            for warm in (0, self.args.warm):
                name = "ringlb-%s%s" % (engine, "-pool%d" % warm if warm else "")
                pool_line = "pool = { warm = %d }" % warm if warm else ""
                rows[name] = (lambda e=engine, p=pool_line: self.start_ringlb(
                    RINGLB_ORIGINATE, e, pool_line=p, **kw))
        rows["haproxy"] = lambda: self.start_haproxy(HAPROXY_ORIGINATE, reuse="", **kw)
        rows["haproxy-noreuse"] = lambda: self.start_haproxy(HAPROXY_ORIGINATE,
                                                             reuse=" no-ssl-reuse", **kw)
        return rows


# ---------------------------------------------------------------------------------------------
# Clients


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the client's verification is not the proxy's cost
    return ctx


def handshake_worker(port, count, results):
    """One client process: `count` full handshakes, each with a 64-byte echo round trip."""
    ctx = client_context()
    done, first = 0, None
    try:
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = ctx.wrap_socket(raw, server_hostname=SERVER_NAME)
            if first is None:
                first = (s.version(), s.cipher()[0], s.session_reused)
            s.sendall(REQUEST)
            got = b""
            while len(got) < len(REQUEST):
                chunk = s.recv(4096)
                if not chunk:
                    raise CellError("closed after %d of %d echoed bytes" % (len(got),
                                                                          len(REQUEST)))
                got += chunk
            if got != REQUEST:
                raise CellError("the echo differs from the request")
            rst_close(s)
            done += 1
        results.put((done, first, None))
    except Exception as e:  # reported by the parent, which fails the cell
        results.put((done, first, "%s: %s" % (type(e).__name__, e)))


def handshakes(port, total, workers, timeout):
    """Runs `total` handshakes over `workers` processes; returns (done, wall seconds, first)."""
    results = multiprocessing.Queue()
    counts = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    procs = [multiprocessing.Process(target=handshake_worker, args=(port, n, results))
             for n in counts]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    out = []
    try:
        for _ in procs:
            out.append(results.get(timeout=timeout))
    except Exception:
        raise CellError("handshake clients did not finish within %ds" % timeout)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    wall = time.perf_counter() - t0
    errors = [e for _, _, e in out if e]
    done = sum(d for d, _, _ in out)
    if errors:
        raise CellError("%d of %d handshakes failed; first error: %s" % (total - done, total,
                                                                         errors[0]))
    first = next(f for _, f, _ in out if f)
    if first != ("TLSv1.3", SUITE, False):
        raise CellError("negotiated %s, expected TLSv1.3, %s, no resumption" % (first, SUITE))
    return done, wall


class TlsConn:
    """A TLS client over memory BIOs, so the TCP socket stays ours: a FIN without close_notify
    ends our side while we keep reading (SSLSocket cannot half-close)."""

    def __init__(self, port, ctx):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=SERVER_NAME)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise CellError("closed during the handshake")
        self._flush()

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def write(self, data):
        self.tls.write(data)
        self._flush()

    def finish_writing(self):
        self.sock.shutdown(socket.SHUT_WR)

    def read_all(self):
        """Reads to the end (close_notify or FIN); returns (byte count, the last 40 bytes)."""
        count, tail = 0, b""
        while True:
            try:
                data = self.tls.read(1 << 20)
            except ssl.SSLWantReadError:
                self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not data:
                break
            count += len(data)
            tail = (tail + data)[-HASH_TRAILER:]
        return count, tail

    def close(self):
        self.sock.close()


def bulk(port, direction, nbytes):
    """Moves nbytes through a hash-mode backend in one direction; returns wall seconds."""
    ctx = client_context()
    t0 = time.perf_counter()
    conn = TlsConn(port, ctx)
    try:
        if direction == "up":
            conn.write(struct.pack("!Q", 0))
            block = os.urandom(256 * 1024)
            sent = 0
            while sent < nbytes:
                n = min(len(block), nbytes - sent)
                conn.write(block[:n] if n < len(block) else block)
                sent += n
            conn.finish_writing()
            count, tail = conn.read_all()
            expect_count, expect_received = HASH_TRAILER, nbytes
        else:
            conn.write(struct.pack("!Q", nbytes))
            conn.finish_writing()
            count, tail = conn.read_all()
            expect_count, expect_received = nbytes + HASH_TRAILER, 0
        received = struct.unpack("!Q", tail[-8:])[0] if len(tail) == HASH_TRAILER else None
        if count != expect_count or received != expect_received:
            raise CellError("bulk %s: read %d bytes (expected %d), the backend received %s "
                            "(expected %d)" % (direction, count, expect_count, received,
                                               expect_received))
    finally:
        conn.close()
    return time.perf_counter() - t0


def latencies(port, conns, pause):
    """Sequential connections: connect + 64-byte echo round trip, in microseconds."""
    out = []
    for _ in range(conns):
        t0 = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(REQUEST)
        got = 0
        while got < len(REQUEST):
            chunk = s.recv(4096)
            if not chunk:
                s.close()
                raise CellError("closed after %d of %d echoed bytes" % (got, len(REQUEST)))
            got += len(chunk)
        out.append((time.perf_counter() - t0) * 1e6)
        rst_close(s)
        time.sleep(pause)
    return out


def s_client_check(port, ca):
    """What a proxy negotiates, as openssl s_client sees it (protocol, suite, group, verify)."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
                        SERVER_NAME, "-CAfile", ca, "-brief"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=10)
    seen = {}
    for line in (r.stdout + r.stderr).splitlines():
        key, _, value = line.partition(":")
        seen[key.strip()] = value.strip()
    return "%s, %s, %s, verification %s" % (
        seen.get("Protocol version", "?"), seen.get("Ciphersuite", "?"),
        seen.get("Server Temp Key", seen.get("Peer Temp Key", "?")), seen.get("Verification", "?"))


# ---------------------------------------------------------------------------------------------
# Rounds


class Results:
    def __init__(self):
        self.cells = {}  # (table, row, column) -> [per-round values]
        self.failures = []

    def add(self, table, row, column, value):
        self.cells.setdefault((table, row, column), []).append(value)

    def values(self, table, row, column):
        return self.cells.get((table, row, column), [])


@contextlib.contextmanager
def cell(results, name, kind, start_row):
    """One row's measurements in a round, as `with cell(...) as start:`, where start(*args) runs
    the row's proxy. A failure is recorded and the round goes on with the next row; the proxy is
    stopped whatever happens."""
    proxy = None

    def start(*args):
        nonlocal proxy
        if proxy is not None:  # one proxy at a time: a fresh one replaces the one before
            bench.PROCS.stop(proxy.proc)
            proxy = None
        proxy = start_row(*args)
        return proxy

    try:
        yield start
    except (CellError, OSError) as e:
        results.failures.append("%s (%s): %s" % (name, kind, e))
        log("FAILED %s: %s" % (name, e))
    finally:
        if proxy is not None:
            bench.PROCS.stop(proxy.proc)


def run_terminating(env, results, rows, order):
    a = env.args
    for name in order:
        with cell(results, name, "terminating", rows[name]) as start:
            proxy = start(env.echo_port)
            handshakes(proxy.port, a.warmup, min(a.workers, a.warmup), 60)
            c0, t0 = proxy.cpu(), time.perf_counter()
            done, _ = handshakes(proxy.port, a.handshakes, a.workers, 600)
            cpu, wall = proxy.cpu() - c0, time.perf_counter() - t0
            if cpu <= 0:
                raise CellError("no proxy CPU was counted over %d handshakes" % done)
            results.add("hs", name, "us", cpu / done * 1e6)
            results.add("hs", name, "per_cpu_s", done / cpu)
            results.add("hs", name, "wall", done / wall)
            results.add("hs", name, "busy", cpu / wall * 100)
            # A fresh proxy for bulk: the handshake run's thousands of closed sessions are gone.
            proxy = start(env.hash_port)
            bulk(proxy.port, "up", min(a.bulk_bytes, 10 ** 7))  # warm-up
            for direction in ("up", "down"):
                c0 = proxy.cpu()
                wall = bulk(proxy.port, direction, a.bulk_bytes)
                cpu = proxy.cpu() - c0
                results.add("bulk", name, direction, cpu / (a.bulk_bytes / GB))
                results.add("bulk", name, direction + "_gbps", a.bulk_bytes * 8 / wall / 1e9)


def run_originating(env, results, rows, order):
    a = env.args
    for name in order:
        with cell(results, name, "originating", rows[name]) as start:
            proxy = start()
            latencies(proxy.port, a.warmup_conns, a.pause)
            time.sleep(0.2)  # the pool (if any) is full again
            inline0 = proxy.metric("ringlb_cluster_tls_inline_handshakes_total")
            lat = latencies(proxy.port, a.conns, a.pause)
            inline1 = proxy.metric("ringlb_cluster_tls_inline_handshakes_total")
            results.add("orig", name, "p50", bench.percentile(lat, 50))
            results.add("orig", name, "p99", bench.percentile(lat, 99))
            if inline0 is not None:
                results.add("orig", name, "inline", inline1 - inline0)


# ---------------------------------------------------------------------------------------------
# Output


def fmt(values, spec):
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return spec % med
    return (spec + " [" + spec + "–" + spec + "]") % (med, min(values), max(values))


def ratio(results, table, row, base, column):
    a, b = results.values(table, row, column), results.values(table, base, column)
    if not a or not b or statistics.median(b) == 0:
        return "—"
    return "%.2f" % (statistics.median(a) / statistics.median(b))


def table(results, title, tab, rows, columns, bases):
    """columns: (key, header, format)."""
    lines = ["", "### " + title, "",
             "| row | " + " | ".join(h for _, h, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| %s | %s |" % (row, " | ".join(fmt(results.values(tab, row, k), f)
                                                     for k, _, f in columns)))
    for row in rows:
        if not row.startswith("ringlb"):
            continue
        for base in bases:
            lines.append("| %s / %s | %s |" % (row, base, " | ".join(
                ratio(results, tab, row, base, k) for k, _, _ in columns)))
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="1 round, every cell tiny: checks that every cell fills (CI)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--handshakes", type=int, default=6000,
                   help="new TLS connections per handshake cell (default 6000)")
    p.add_argument("--workers", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--bulk-mb", type=int, default=2000,
                   help="megabytes (10^6) per bulk cell and direction (default 2000)")
    p.add_argument("--conns", type=int, default=400,
                   help="sequential connections per latency cell (default 400)")
    p.add_argument("--pause-ms", type=float, default=5.0,
                   help="pause after each latency connection, every row (default 5)")
    p.add_argument("--warm", type=int, default=8, help="pool warm of the pool rows (default 8)")
    p.add_argument("--engine", default="both", choices=("io_uring", "epoll", "both"))
    p.add_argument("--proxy-cpu", type=int, default=1)
    p.add_argument("--load-cpu", type=int, default=0)
    p.add_argument("--bin-dir", default=os.path.join(bench.ROOT, "build", "release"),
                   help="where ringlb and ringlb-echo are (default build/release)")
    p.add_argument("--tables", default="hs,bulk,orig",
                   help="which measurements: hs, bulk (run together), orig")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.handshakes, args.workers = 1, 200, 2
        args.bulk_mb, args.conns = 20, 60
    args.warmup = max(args.workers, min(200, args.handshakes // 10))
    args.warmup_conns = 20
    args.bulk_bytes = args.bulk_mb * 10 ** 6
    args.pause = args.pause_ms / 1000
    args.engines = ("io_uring", "epoll") if args.engine == "both" else (args.engine,)
    tables = set(args.tables.split(","))
    if not tables <= {"hs", "bulk", "orig"} or args.rounds < 1 or args.workers < 1:
        p.error("bad --tables, --rounds or --workers")
    for tool in ("ringlb", "ringlb-echo"):
        if not os.access(os.path.join(args.bin_dir, tool), os.X_OK):
            p.error("%s not found in %s (build it, or pass --bin-dir)" % (tool, args.bin_dir))

    signal.signal(signal.SIGTERM, bench.on_signal)
    # This process and its client processes run on the load CPU; the proxies on theirs.
    os.sched_setaffinity(0, {args.load_cpu})
    results = Results()
    tmp = tempfile.mkdtemp(prefix="ringlb-tls-bench-")
    status = 1  # keeps tmp (configs, logs) for a look unless every cell filled
    try:
        certs = make_certs(tmp)
        load_before = bench.busy_percent(os.cpu_count())
        env = Env(args, tmp, certs)
        env.start_backends()
        term, orig = env.terminating_rows(), env.originating_rows()
        negotiated = {}
        if tables & {"hs", "bulk"}:
            for name, start in term.items():
                proxy = start(env.echo_port)
                try:
                    negotiated[name] = s_client_check(proxy.port, certs["ca"])
                finally:
                    bench.PROCS.stop(proxy.proc)
        for r in range(args.rounds):
            shift = r % len(term)
            if tables & {"hs", "bulk"}:
                order = list(term)[shift:] + list(term)[:shift]
                log("round %d/%d: terminating, %s" % (r + 1, args.rounds, ", ".join(order)))
                run_terminating(env, results, term, order)
            if "orig" in tables:
                shift = r % len(orig)
                order = list(orig)[shift:] + list(orig)[:shift]
                log("round %d/%d: originating, %s" % (r + 1, args.rounds, ", ".join(order)))
                run_originating(env, results, orig, order)

        bench.PROCS.stop_all()
        load_after = bench.busy_percent(os.cpu_count())
        haproxy_v = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
        ringlb_v = subprocess.run([os.path.join(args.bin_dir, "ringlb"), "version"],
                                  capture_output=True, text=True).stdout.strip()
        out = ["## TLS benchmark (%s)" % time.strftime("%Y-%m-%d %H:%M"), "",
               "- machine: %s, %d CPUs, Linux %s" % (bench.cpu_model(), os.cpu_count(),
                                                    platform.release()),
               "- ringlb: %s; HAProxy %s; %s (clients: Python %s)" % (
                   ringlb_v.splitlines()[0] if ringlb_v else "?",
                   haproxy_v.split()[2] if len(haproxy_v.split()) > 2 else "?",
                   ssl.OPENSSL_VERSION, platform.python_version()),
               "- proxy on CPU %d (1 worker/thread), clients and backends on CPU %d; %d round(s); "
               "cells: median [min–max]" % (args.proxy_cpu, args.load_cpu, args.rounds),
               "- ECDSA P-256 certificate from a CA of the run; TLS 1.3 only, %s" % SUITE,
               "- background load (all cores, 1 s before / after the run): %.0f%% / %.0f%%%s" % (
                   load_before, load_after, "  **busy machine: numbers unreliable**"
                   if max(load_before, load_after) > 10 else "")]
        for name, seen in negotiated.items():
            out.append("- %s negotiates: %s" % (name, seen))
        term_rows, orig_rows = list(term), list(orig)
        if "hs" in tables:
            out += table(results, "1. Handshakes, terminating (%d per round, %d client "
                         "processes, 64-byte echo each)" % (args.handshakes, args.workers),
                         "hs", term_rows,
                         [("us", "proxy µs/handshake", "%.1f"),
                          ("per_cpu_s", "handshakes/proxy-CPU-s", "%.0f"),
                          ("wall", "handshakes/s (client-bound)", "%.0f"),
                          ("busy", "proxy busy %", "%.0f")], ["haproxy"])
        if "bulk" in tables:
            out += table(results, "2. Bulk, terminating (%d MB per direction, one connection)"
                         % args.bulk_mb, "bulk", term_rows,
                         [("up", "proxy CPU-s/GB up (decrypt)", "%.3f"),
                          ("down", "proxy CPU-s/GB down (encrypt)", "%.3f"),
                          ("up_gbps", "Gbit/s up", "%.2f"),
                          ("down_gbps", "Gbit/s down", "%.2f")], ["haproxy"])
        if "orig" in tables:
            out += table(results, "3. New connection to a TLS backend, connect + 64-byte echo "
                         "(%d sequential per round, %.0f ms pause)" % (args.conns,
                                                                       args.pause_ms),
                         "orig", orig_rows,
                         [("p50", "p50 µs", "%.0f"), ("p99", "p99 µs", "%.0f"),
                          ("inline", "inline handshakes", "%.0f")],
                         ["haproxy", "haproxy-noreuse"])
        # Every cell must have a number; HAProxy has no inline counter.
        expected = []
        if "hs" in tables:
            expected += [("hs", r, c) for r in term_rows for c in ("us", "per_cpu_s")]
        if "bulk" in tables:
            expected += [("bulk", r, c) for r in term_rows for c in ("up", "down")]
        if "orig" in tables:
            expected += [("orig", r, c) for r in orig_rows for c in ("p50", "p99")]
            expected += [("orig", r, "inline") for r in orig_rows if r.startswith("ringlb")]
        missing = ["%s/%s/%s" % k for k in expected if len(results.values(*k)) != args.rounds]
        print("\n".join(out))
        if results.failures or missing:
            print("\nFAILED:")
            for f in results.failures:
                print("- " + f)
            if missing:
                print("- cells without a number in every round: " + ", ".join(missing))
            print("(configs and logs: %s)" % tmp)
            return 1
        status = 0
        return 0
    except CellError as e:  # a backend or a proxy that did not start before the rounds
        print("FAILED: %s\n(configs and logs: %s)" % (e, tmp))
        return 1
    finally:
        bench.PROCS.stop_all()
        if status == 0:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
