"""Real workloads nobody here wrote, proxied by every target of tests/bench/bench.py.

redis-benchmark against redis-server and pgbench against PostgreSQL: their own clients, their own
servers and their own request patterns (small pipelined-less request/response exchanges, a
database's connection start-up), so the benchmark is not only wrk against an nginx we configured.
bench.py starts the two backends once per run (Backends), each target forwards a listener to each
(the redis_* and pg_* lines of anchors/), and the scenarios below run through target.redis_port and
target.pg_port. See tests/bench/README.md, "Real workloads".
"""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

import bench  # bench.py registers itself under this name when it runs as the main script

# Requests per command per second of --duration: at the ~50,000 GET/SET a second this 2-core box
# does on loopback, GET and SET each take about half of the keepalive scenario's duration.
# redis-benchmark has no time limit, only a count.
REDIS_REQUESTS_PER_S = 25000
REDIS_CLIENTS = 50
PG_CLIENTS = 16
PG_THREADS = 2
PG_SCALE = 1
# initdb's superuser and the database pgbench uses (created by initdb; no createdb step).
PG_USER = "bench"
PG_DB = "postgres"
# The user PostgreSQL runs as when the harness is root (it refuses to run as root); Debian's
# postgresql package creates it.
PG_SYSTEM_USER = "postgres"

TITLE = "Real workloads (redis-benchmark, pgbench)"


def metrics():
    """(key, label, format, proxy_only) of the workloads table, as bench.metric_table wants."""
    return [
        ("redis_set_rps", "redis SET req/s", "%.0f", False),
        ("redis_set_p99_us", "redis SET p99 µs", "%.0f", False),
        ("redis_get_rps", "redis GET req/s", "%.0f", False),
        ("redis_get_p99_us", "redis GET p99 µs", "%.0f", False),
        ("pg_select_tps", "pgbench -S tps", "%.0f", False),
        ("pg_select_p99_us", "pgbench -S p99 µs", "%.0f", False),
        ("pg_connect_tps", "pgbench -S -C tps", "%.0f", False),
        ("pg_connect_p99_us", "pgbench -S -C p99 µs", "%.0f", False),
    ]


def ratio_pairs(names, ringlb_names):
    """The ratio rows of the workloads table: each proxy against the direct path (what the hop
    costs a real client) and each ringlb against HAProxy."""
    pairs = [(n, "direct") for n in names if n != "direct"]
    if "haproxy" in names:
        pairs += [(r, "haproxy") for r in ringlb_names]
    return pairs


def pg_bin(tool):
    """A tool of the newest PostgreSQL in /usr/lib/postgresql (Debian installs the server
    binaries there, not on PATH)."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    if not dirs:
        raise bench.ScenarioError("no PostgreSQL under /usr/lib/postgresql (scripts/install-deps.sh "
                                  "bench installs it)")
    return os.path.join(dirs[-1], tool)


def versions():
    """Header lines for the report."""
    redis = bench.first_line(["redis-server", "--version"])
    m = re.search(r"v=(\S+)", redis)
    return [("redis", m.group(1) if m else redis),
            ("postgresql", " ".join(bench.first_line([pg_bin("postgres"), "--version"])
                                    .split()[2:3]) or "?")]


class Backends:
    """redis-server and PostgreSQL on free loopback ports, pinned like the other backends.

    The PostgreSQL cluster lives in a temporary directory its user owns (the run's output directory
    may not be reachable by that user), is initialised once with `pgbench -i` and removed at exit.
    """

    def __init__(self, env):
        self.env = env
        self.redis = None
        self.pg = None
        self.pg_dir = None

    def _as_pg_user(self, argv):
        if os.geteuid() != 0:
            return argv
        pwd.getpwnam(PG_SYSTEM_USER)  # a clear KeyError beats setpriv's message
        return ["setpriv", "--reuid=" + PG_SYSTEM_USER, "--regid=" + PG_SYSTEM_USER,
                "--init-groups"] + argv

    def start(self):
        self.start_redis()
        self.pg_dir = tempfile.mkdtemp(prefix="ringlb-bench-pg-")
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(self.pg_dir, user.pw_uid, user.pw_gid)
        # No fsync in initdb: the cluster is thrown away at the end of the run.
        argv = self._as_pg_user([pg_bin("initdb"), "-D", os.path.join(self.pg_dir, "data"),
                                 "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--locale=C",
                                 "--no-sync", "--no-instructions"])
        with self.env.logfile("postgres-initdb.log") as f:
            rc = subprocess.run(argv, cwd=self.pg_dir, stdout=f, stderr=subprocess.STDOUT,
                                timeout=120).returncode
        if rc != 0:
            raise bench.ScenarioError("initdb failed (status %d; see logs/postgres-initdb.log)" % rc)
        self.start_pg()
        rc, _out, err = bench.PROCS.run(self.pgbench_argv(self.env.pg_port, ["-i", "-s",
                                                                            str(PG_SCALE)]),
                                        timeout=120, cpu=self.env.load_cpu)
        if rc != 0:
            raise bench.ScenarioError("pgbench -i failed (status %d): %s" % (rc, err.strip()[-300:]))

    def start_redis(self):
        # No persistence: the server is a request/response peer, not a store, and a background
        # save would land in some target's run.
        self.redis = bench.PROCS.spawn(
            ["redis-server", "--port", str(self.env.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", self.env.run_dir], cpu=self.env.load_cpu,
            stdout=self.env.logfile("redis-server.log"), stderr=subprocess.STDOUT)
        bench.wait_listening([self.env.redis_port], self.redis, what="redis-server")

    def start_pg(self):
        # fsync and synchronous commit off: the select-only runs write nothing, and this keeps the
        # -i load and any checkpoint off the disk's latency. Unix sockets in the cluster's own
        # directory, so no system path (/var/run/postgresql) is touched.
        argv = self._as_pg_user([pg_bin("postgres"), "-D", os.path.join(self.pg_dir, "data"),
                                 "-c", "listen_addresses=127.0.0.1",
                                 "-c", "port=%d" % self.env.pg_port,
                                 "-c", "unix_socket_directories=%s" % self.pg_dir,
                                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                                 "-c", "full_page_writes=off"])
        self.pg = bench.PROCS.spawn(argv, cpu=self.env.load_cpu,
                                    stdout=self.env.logfile("postgres.log"),
                                    stderr=subprocess.STDOUT)
        bench.wait_listening([self.env.pg_port], self.pg, timeout=30, what="postgres")

    def ensure(self):
        if self.redis.poll() is not None:
            bench.log("redis-server died (status %s); restarting" % self.redis.returncode)
            bench.PROCS.stop(self.redis)
            self.start_redis()
        if self.pg.poll() is not None:
            bench.log("postgres died (status %s); restarting" % self.pg.returncode)
            bench.PROCS.stop(self.pg)
            self.start_pg()

    def stop(self):
        bench.PROCS.stop(self.redis)
        bench.PROCS.stop(self.pg)
        if self.pg_dir:
            shutil.rmtree(self.pg_dir, ignore_errors=True)
            self.pg_dir = None

    def pgbench_argv(self, port, extra):
        return [pg_bin("pgbench"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER] + extra + \
            [PG_DB]


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError as e:
        raise bench.ScenarioError("redis PING through port %d: %s" % (port, e))
    if not reply.startswith(b"+PONG"):
        raise bench.ScenarioError("redis PING through port %d got %r" % (port, reply[:40]))


def scenario_redis(env, target, diag):
    """redis-benchmark's GET and SET, 50 keepalive clients, no pipelining; its CSV has rps and
    latency percentiles in ms (redis 7)."""
    env.workloads.ensure()
    # redis-benchmark keeps retrying a refused connection until its time limit: see that the
    # path works first, so a broken one fails at once.
    redis_ping(target.redis_port)
    n = REDIS_REQUESTS_PER_S * env.dur_main
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(target.redis_port),
            "-c", str(REDIS_CLIENTS), "-n", str(n), "-t", "get,set", "-P", "1", "--csv"]
    # Fails below 2,500 req/s, a hundredth of what this box does.
    rc, out, err = bench.PROCS.run(argv, timeout=30 + 20 * env.dur_main, cpu=env.load_cpu)
    rows = {}
    lines = out.splitlines()
    if lines:
        header = [h.strip('"') for h in lines[0].split(",")]
        for line in lines[1:]:
            cells = dict(zip(header, (c.strip('"') for c in line.split(","))))
            rows[cells.get("test", "")] = cells
    res = {}
    for test in ("SET", "GET"):
        cells = rows.get(test)
        try:
            rps = float(cells["rps"])
            p99 = float(cells["p99_latency_ms"]) * 1000.0
        except (TypeError, KeyError, ValueError):
            raise bench.ScenarioError("redis-benchmark gave no %s row (status %s): %s"
                                      % (test, rc, (err or out).strip()[-300:]))
        if rps <= 0:
            raise bench.ScenarioError("redis-benchmark %s did no request" % test)
        res["redis_%s_rps" % test.lower()] = rps
        res["redis_%s_p99_us" % test.lower()] = p99
        diag["redis_" + test.lower()] = cells
    diag["redis_requests"] = n
    return res


def run_pgbench(env, target, connect_each, diag_key, diag):
    """One select-only pgbench run; (tps, p99 µs) from its summary and per-transaction logs."""
    seconds = max(1, env.dur_main // 2)
    log_dir = tempfile.mkdtemp(prefix="pgbench-log-", dir=env.workloads.pg_dir)
    prefix = os.path.join(log_dir, target.name)
    # -n: no vacuum before each run (select-only reads; every target gets the same tables).
    extra = ["-S", "-n", "-c", str(PG_CLIENTS), "-j", str(PG_THREADS), "-T", str(seconds),
             "--log", "--log-prefix", prefix] + (["-C"] if connect_each else [])
    try:
        rc, out, err = bench.PROCS.run(env.workloads.pgbench_argv(target.pg_port, extra),
                                       timeout=60 + 10 * seconds, cpu=env.load_cpu)
        m = re.search(r"^tps = ([0-9.]+)", out, re.M)
        if rc != 0 or not m:
            raise bench.ScenarioError("pgbench -S%s failed (status %d): %s"
                                      % (" -C" if connect_each else "", rc,
                                         (err or out).strip()[-300:]))
        # Log lines: client, transaction, latency µs, script, epoch s, µs (one file per thread).
        latencies = []
        for path in glob.glob(prefix + ".*"):
            with open(path) as f:
                latencies += [int(line.split()[2]) for line in f if line.strip()]
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    if not latencies:
        raise bench.ScenarioError("pgbench logged no transaction")
    latencies.sort()
    tps = float(m.group(1))
    diag[diag_key] = {"tps": tps, "transactions": len(latencies), "seconds": seconds,
                      "p50_us": bench.percentile(latencies, 50), "max_us": latencies[-1]}
    return tps, bench.percentile(latencies, 99)


def scenario_pgbench(env, target, diag):
    """pgbench select-only: keepalive clients (each transaction one small query), then -C (a new
    connection per transaction: PostgreSQL's connection start-up, a backend fork and its
    authentication exchange, through the proxy)."""
    env.workloads.ensure()
    started = time.time()
    select_tps, select_p99 = run_pgbench(env, target, False, "pg_select", diag)
    connect_tps, connect_p99 = run_pgbench(env, target, True, "pg_connect", diag)
    diag["pg_seconds"] = round(time.time() - started, 2)
    return {"pg_select_tps": select_tps, "pg_select_p99_us": select_p99,
            "pg_connect_tps": connect_tps, "pg_connect_p99_us": connect_p99}


SCENARIOS = (("redis", scenario_redis), ("pgbench", scenario_pgbench))
