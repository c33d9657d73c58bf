#!/usr/bin/env python3
"""ringlb benchmark harness: ringlb against HAProxy and nginx (stream) on one loopback box.

Started by tests/bench/run (which installs the tools first); see tests/bench/README.md for what
each number means. Standard library only.
"""

import argparse
import atexit
import datetime
import grp
import json
import math
import os
import platform
import pwd
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import time

# workloads.py imports this file as "bench"; when it runs as the main script that must be this
# module, not a second copy with its own process list.
sys.modules.setdefault("bench", sys.modules[__name__])
import workloads  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ANCHORS = os.path.join(HERE, "anchors")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Proxy under test, one row each; "direct" is the client talking to the backend with no proxy.
ANCHOR_NAMES = ("haproxy", "nginx")


class ScenarioError(Exception):
    """A scenario that produced no number (a failure, unlike a slow number)."""


def log(msg, who="bench"):
    print("[%s %s] %s" % (who, time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes: everything started here is tracked and killed on exit, each in its own session so
# a kill reaches its children too (nginx workers).


class Procs:
    def __init__(self):
        self.live = []

    def spawn(self, argv, cpu=None, stdin=subprocess.DEVNULL, stdout=None, stderr=None,
              text=False):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                             start_new_session=True, text=text)
        self.live.append(p)
        return p

    def stop(self, p, grace=5.0):
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # The leader is gone; its group (say, orphaned nginx workers) may not be.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream:
                try:
                    stream.close()
                except OSError:
                    pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(reversed(self.live)):
            self.stop(p, grace=3.0)

    def run(self, argv, timeout, cpu=None):
        """Runs a command to completion within `timeout` seconds; returns (rc, stdout, stderr)."""
        p = self.spawn(argv, cpu=cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(p, grace=1.0)
            raise ScenarioError("%s did not finish within %ds" % (os.path.basename(argv[0]),
                                                                   timeout))
        self.live.remove(p)
        return p.returncode, out, err


PROCS = Procs()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------
# /proc readers


def proc_children(pid):
    out = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            out = [int(x) for x in f.read().split()]
    except OSError:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == pid:
                        out.append(int(entry))
                except (OSError, IndexError, ValueError):
                    pass
    return out


def proc_tree(pid):
    pids = [pid]
    for child in proc_children(pid):
        pids.extend(proc_tree(child))
    return pids


def cpu_ticks(pids):
    """utime+stime of the given processes (all their threads, exited ones included)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
        except (OSError, IndexError, ValueError):
            pass
    return total


def machine_busy_ticks():
    """All cores' busy time: user+nice+system+irq+softirq+steal from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def busy_percent(ncpu, seconds=1.0):
    """How busy all cores are over `seconds` while the harness itself idles."""
    b0, t0 = machine_busy_ticks(), time.time()
    time.sleep(seconds)
    return (machine_busy_ticks() - b0) / CLK_TCK / (time.time() - t0) / ncpu * 100.0


def listen_overflows():
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            if names.startswith("TcpExt:"):
                table = dict(zip(names.split()[1:], values.split()[1:]))
                return int(table.get("ListenOverflows", 0)) + int(table.get("ListenDrops", 0))
    except (OSError, ValueError):
        pass
    return 0


def tcp_count(port, state):
    """Sockets on 127.0.0.1 with local port `port` in `state` ("listen" or "established")."""
    if shutil.which("ss"):
        flag = "-l" if state == "listen" else ""
        argv = ["ss", "-Htn"] + ([flag] if flag else ["state", "established"]) + \
            ["sport", "=", ":%d" % port]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
            return sum(1 for line in out.splitlines() if line.strip())
        except (subprocess.SubprocessError, OSError):
            pass
    want = "0A" if state == "listen" else "01"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == want and int(parts[1].split(":")[1], 16) == port:
                count += 1
    return count


def wait_listening(ports, proc=None, timeout=15.0, what="server"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ScenarioError("%s exited with status %s while starting" % (what, proc.returncode))
        if all(tcp_count(p, "listen") > 0 for p in ports):
            return
        time.sleep(0.05)
    raise ScenarioError("%s did not listen on %s within %ds" % (what, ports, timeout))


USED_PORTS = set()


def free_port():
    """A free 127.0.0.1 port below the ephemeral range, so no outgoing connection of the churn
    scenarios can be holding it when a server binds it a moment later."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    lo, hi = (10000, low - 1) if low > 12000 else (low // 2, low - 1)
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port in USED_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        USED_PORTS.add(port)
        return port
    raise SystemExit("bench: found no free port in %d-%d" % (lo, hi))


def render(template, out_path, **values):
    with open(os.path.join(ANCHORS, template)) as f:
        text = string.Template(f.read()).substitute(**values)
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


def user_line():
    # nginx drops to "nobody" when started as root unless told otherwise; the benchmark runs every
    # server as the current user.
    if os.geteuid() != 0:
        return "# not root: nginx keeps the current user"
    return "user %s %s;" % (pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name)


# ---------------------------------------------------------------------------------------------
# Servers


class Env:
    """Paths, CPUs and the shared backends of one harness run."""

    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.run_dir = os.path.join(out, "run")
        self.log_dir = os.path.join(out, "logs")
        self.load_cpu = args.load_cpu
        self.proxy_cpu = args.proxy_cpu
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.backend_port = free_port()
        self.iperf_port = free_port()
        self.redis_port = free_port()
        self.pg_port = free_port()
        self.workloads = None
        self.backend = None
        self.iperf = None

    def logfile(self, name):
        return open(os.path.join(self.log_dir, name), "ab")

    def start_backend(self):
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.run_dir, "tmp", sub), exist_ok=True)
        conf = render("backend-nginx.conf", os.path.join(self.run_dir, "backend-nginx.conf"),
                      user_line=user_line(), nofile=self.nofile,
                      worker_connections=max(1024, self.nofile - 500), dir=self.run_dir,
                      port=self.backend_port)
        err = os.path.join(self.log_dir, "backend-nginx.stderr.log")
        self.backend = PROCS.spawn(["nginx", "-p", self.run_dir, "-c", conf, "-e", err,
                                    "-g", "daemon off;"], cpu=self.load_cpu,
                                   stdout=self.logfile("backend-nginx.out.log"),
                                   stderr=subprocess.STDOUT)
        wait_listening([self.backend_port], self.backend, what="backend nginx")

    def start_iperf(self):
        if self.iperf is not None:
            PROCS.stop(self.iperf)
        self.iperf = PROCS.spawn(["iperf3", "-s", "-p", str(self.iperf_port)], cpu=self.load_cpu,
                                 stdout=self.logfile("iperf3-server.log"),
                                 stderr=subprocess.STDOUT)
        wait_listening([self.iperf_port], self.iperf, what="iperf3 server")

    def check_servers(self):
        if self.backend.poll() is not None:
            log("backend nginx died (status %s); restarting" % self.backend.returncode)
            PROCS.stop(self.backend)
            self.start_backend()
        if self.iperf.poll() is not None:
            log("iperf3 server died; restarting")
            self.start_iperf()


class Target:
    """One row of the table: a proxy (or the direct path) with its HTTP and bulk ports."""

    def __init__(self, name, env):
        self.name = name
        self.env = env
        self.proc = None
        self.http_port = None
        self.bulk_port = None
        self.redis_port = None
        self.pg_port = None

    is_proxy = True

    def _ports(self):
        """Fresh listener ports; the template values of them and of the backends they front."""
        self.http_port, self.bulk_port = free_port(), free_port()
        self.redis_port, self.pg_port = free_port(), free_port()
        env = self.env
        return dict(http_port=self.http_port, bulk_port=self.bulk_port,
                    redis_port=self.redis_port, pg_port=self.pg_port,
                    backend_port=env.backend_port, iperf_port=env.iperf_port,
                    redis_backend_port=env.redis_port, pg_backend_port=env.pg_port)

    def pids(self):
        if self.proc is None or self.proc.poll() is not None:
            return []
        return proc_tree(self.proc.pid)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        PROCS.stop(self.proc)
        self.proc = None

    def exit_stats(self):
        return {}

    def _start(self, argv, what):
        self.proc = PROCS.spawn(argv, cpu=self.env.proxy_cpu,
                                stdout=self.env.logfile("%s.log" % self.name),
                                stderr=subprocess.STDOUT)
        wait_listening([self.http_port, self.bulk_port, self.redis_port, self.pg_port],
                       self.proc, what=what)


class Direct(Target):
    is_proxy = False

    def __init__(self, env):
        super().__init__("direct", env)
        self.http_port = env.backend_port
        self.bulk_port = env.iperf_port
        self.redis_port = env.redis_port
        self.pg_port = env.pg_port

    def start(self):
        pass

    def alive(self):
        return True

    def pids(self):
        return []

    def version(self):
        return "-"


class HAProxy(Target):
    def __init__(self, env):
        super().__init__("haproxy", env)

    def start(self):
        conf = render("haproxy.cfg", os.path.join(self.env.run_dir, "haproxy.cfg"),
                      maxconn=max(500, (self.env.nofile - 1200) // 2), maxpipes=400,
                      dir=self.env.run_dir, **self._ports())
        self._start(["haproxy", "-db", "-f", conf], "haproxy")

    @staticmethod
    def version():
        out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
        words = out.split()
        return words[2] if len(words) > 2 else out.strip()


class NginxStream(Target):
    def __init__(self, env):
        super().__init__("nginx", env)

    def start(self):
        module = "/usr/lib/nginx/modules/ngx_stream_module.so"
        built_in = "--with-stream " in (subprocess.run(["nginx", "-V"], capture_output=True,
                                                       text=True).stderr + " ")
        load = "load_module %s;" % module if (os.path.exists(module) and not built_in) else ""
        conf = render("nginx-stream.conf", os.path.join(self.env.run_dir, "nginx-stream.conf"),
                      load_module_line=load, user_line=user_line(), nofile=self.env.nofile,
                      worker_connections=max(1024, self.env.nofile - 500), dir=self.env.run_dir,
                      **self._ports())
        err = os.path.join(self.env.log_dir, "nginx-stream.stderr.log")
        self._start(["nginx", "-p", self.env.run_dir, "-c", conf, "-e", err, "-g", "daemon off;"],
                    "nginx stream")

    @staticmethod
    def version():
        err = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        return err.split("/", 1)[1] if "/" in err else err


class Ringlb(Target):
    def __init__(self, env, binary, engine, forward, pool=0, suffix=""):
        name = "ringlb-%s" % engine
        if pool:
            name += "-pool%d" % pool
        super().__init__(name + suffix, env)
        self.binary = binary
        self.engine = engine
        self.forward = forward
        self.pool = pool

    def start(self):
        # The warm pool only on the HTTP cluster: the churn scenario is where a pre-connected
        # upstream socket can take the connect off the client's path.
        pool_line = "pool = { warm = %d }" % self.pool if self.pool else ""
        conf = render("ringlb.toml", os.path.join(self.env.run_dir, "%s.toml" % self.name),
                      engine=self.engine, forward=self.forward, pool_line=pool_line,
                      **self._ports())
        check = subprocess.run([self.binary, "check", conf], capture_output=True, text=True)
        if check.returncode != 0:
            raise ScenarioError("ringlb check %s failed: %s" % (conf, check.stderr.strip()))
        self._start([self.binary, "run", conf, "--log-level", "info"], self.name)

    def exit_stats(self):
        """The shard counters ringlb logs when it stops (the last such lines of its log)."""
        stats = {}
        try:
            with open(os.path.join(self.env.log_dir, "%s.log" % self.name), errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return stats
        for line in lines:
            if " stats: " in line and "shard " in line:
                shard = line.split("shard ", 1)[1].split()[0]
                stats["shard " + shard] = line.split(" stats: ", 1)[1].strip()
        return stats

    def version(self):
        try:
            out = subprocess.run([self.binary, "version"], capture_output=True, text=True,
                                 timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"


# ---------------------------------------------------------------------------------------------
# Load generators

WRK_SCRIPT = r"""
-- Prints wrk's summary as one JSON line the harness parses (latency in microseconds).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status,
    e.timeout))
end
"""


class Measure:
    """CPU of the proxy and of the whole machine across one whole load run (bulk)."""

    def __init__(self, target):
        self.target = target

    def __enter__(self):
        self.pids = self.target.pids()
        self.proxy0 = cpu_ticks(self.pids)
        self.machine0 = machine_busy_ticks()
        self.overflow0 = listen_overflows()
        self.t0 = time.time()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.time() - self.t0
        # Re-read the tree so a worker that started late is not missed (its time is all since).
        pids = set(self.pids) | set(self.target.pids())
        self.proxy_s = (cpu_ticks(pids) - self.proxy0) / CLK_TCK
        self.machine_s = (machine_busy_ticks() - self.machine0) / CLK_TCK
        self.overflows = listen_overflows() - self.overflow0
        return False


def backend_requests(env):
    """Requests the backend nginx has served so far (its stub_status counter)."""
    try:
        with socket.create_connection(("127.0.0.1", env.backend_port), timeout=5) as s:
            s.sendall(b"GET /__bench_status HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        lines = data.decode("ascii", "replace").split("\r\n\r\n", 1)[1].splitlines()
        return int(lines[2].split()[2])
    except (OSError, IndexError, ValueError) as e:
        raise ScenarioError("could not read the backend's request counter: %s" % e)


class Window:
    """A snapshot of the work done (backend requests) and the CPU spent so far."""

    def __init__(self, env, target):
        self.requests = backend_requests(env)
        self.proxy = cpu_ticks(target.pids())
        self.machine = machine_busy_ticks()
        self.overflows = listen_overflows()
        self.t = time.time()


def run_wrk(env, target, conns, duration, close=False, ramp_requests=None):
    """Runs wrk through `target` and measures CPU over a steady window of the run.

    Throughput and latency come from wrk's whole run. CPU per request is CPU divided by the
    requests the backend served inside the window, so connections wrk opened but never finished do
    not bias it. Without `ramp_requests` the run lasts `duration` seconds and the window skips a
    margin at each end. With it (high concurrency, where a slow proxy may need seconds to bring
    every connection round once), the window opens only once the backend has served that many
    requests (at most `ramp_limit` seconds), lasts `duration` seconds or as long as that ramp took,
    whichever is longer, and wrk is then stopped with SIGINT (it still prints its summary): a slow
    proxy yields a slow number, not a missing one.
    """
    ramp_limit = 60.0
    argv = ["wrk", "-t1", "-c%d" % conns, "--latency", "--timeout", "10s", "-s", env.wrk_script]
    if ramp_requests is None:
        margin = max(0.3, min(1.5, 0.2 * duration))
        window = max(0.2, duration - 2 * margin)
        argv.append("-d%ds" % duration)
    else:
        margin, window = 0.3, float(duration)
        argv.append("-d%ds" % int(2 * ramp_limit + duration + 30))
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("http://127.0.0.1:%d/" % target.http_port)
    start_count = backend_requests(env) if ramp_requests is not None else 0
    p = PROCS.spawn(argv, cpu=env.load_cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
    ramp_s = None
    try:
        t0 = time.time()
        if ramp_requests is not None:
            while backend_requests(env) - start_count < ramp_requests:
                if p.poll() is not None:
                    break
                if time.time() - t0 > ramp_limit:
                    raise ScenarioError("the backend served fewer than %d requests in %ds of "
                                        "wrk -c%d" % (ramp_requests, ramp_limit, conns))
                time.sleep(0.2)
            ramp_s = time.time() - t0
            # The window spans at least as long as the ramp (two rounds of every connection),
            # so at high concurrency it never covers less than a couple of round trips.
            window = min(ramp_limit, max(window, ramp_s))
        time.sleep(margin)
        w0 = Window(env, target)
        time.sleep(window)
        w1 = Window(env, target)
        if ramp_requests is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=duration + 2 * ramp_limit + 60)
    except subprocess.TimeoutExpired:
        raise ScenarioError("wrk did not finish in time")
    finally:
        PROCS.stop(p, grace=1.0)
    result = None
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            result = json.loads(line[len("WRK_JSON "):])
    if result is None:
        raise ScenarioError("wrk gave no summary (status %s): %s"
                            % (p.returncode, (err or out).strip()[-300:]))
    done = w1.requests - w0.requests
    if result["requests"] <= 0 or done <= 0:
        raise ScenarioError("wrk completed no request (%s)" % result)
    result.update({
        "window_s": round(w1.t - w0.t, 3), "window_requests": done,
        "proxy_cpu_s": (w1.proxy - w0.proxy) / CLK_TCK,
        "machine_cpu_s": (w1.machine - w0.machine) / CLK_TCK,
        "overflows": w1.overflows - w0.overflows,
        "rate": result["requests"] / (result["duration_us"] / 1e6),
    })
    if ramp_s is not None:
        result["ramp_s"] = round(ramp_s, 2)
    result["proxy_us_per_req"] = result["proxy_cpu_s"] * 1e6 / done
    result["machine_us_per_req"] = result["machine_cpu_s"] * 1e6 / done
    return result


def run_iperf(env, port, streams, reverse, duration):
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(duration), "-P", str(streams),
            "-J", "--connect-timeout", "5000"]
    if reverse:
        argv.append("-R")
    rc, out, err = PROCS.run(argv, timeout=duration + 40, cpu=env.load_cpu)
    try:
        report = json.loads(out)
    except ValueError:
        raise ScenarioError("iperf3 gave no JSON (status %s): %s" % (rc, err.strip()[-300:]))
    if "error" in report:
        raise ScenarioError("iperf3: %s" % report["error"])
    received = report.get("end", {}).get("sum_received", {})
    if not received.get("bytes"):
        raise ScenarioError("iperf3 moved no data")
    return received["bits_per_second"], received["bytes"]


# ---------------------------------------------------------------------------------------------
# Scenarios. Each returns a dict of metric -> number and records diagnostics.


def scenario_keepalive(env, target, diag):
    w = run_wrk(env, target, 64, env.dur_main)
    diag["keepalive"] = w
    res = {"ka_rps": w["rate"], "ka_p50_us": w["p50_us"], "ka_p99_us": w["p99_us"],
           "_mach_us_per_req": w["machine_us_per_req"]}
    if target.is_proxy:
        res["cpu_us_per_req"] = w["proxy_us_per_req"]
    return res


def scenario_churn(env, target, diag):
    w = run_wrk(env, target, 64, env.dur_main, close=True)
    diag["churn"] = w
    res = {"churn_cps": w["rate"], "churn_p50_us": w["p50_us"], "churn_p99_us": w["p99_us"],
           "_mach_us_per_conn": w["machine_us_per_req"]}
    if target.is_proxy:
        res["cpu_us_per_conn"] = w["proxy_us_per_req"]
    return res


BULK_RUNS = ((1, False, "bulk_1_up_gbps"), (1, True, "bulk_1_down_gbps"),
             (8, False, "bulk_8_up_gbps"), (8, True, "bulk_8_down_gbps"))


def scenario_bulk(env, target, diag):
    res = {}
    proxy_s = machine_s = 0.0
    total_bytes = 0
    for streams, reverse, key in BULK_RUNS:
        for attempt in (1, 2):
            try:
                with Measure(target) as m:
                    bps, nbytes = run_iperf(env, target.bulk_port, streams, reverse, env.dur_bulk)
                break
            except ScenarioError as e:
                # A stuck iperf3 server (it serves one test at a time) must not sink the rest.
                if attempt == 2:
                    raise
                log("%s %s: %s; restarting iperf3 server and retrying" % (target.name, key, e))
                env.start_iperf()
        res[key] = bps / 1e9
        proxy_s += m.proxy_s
        machine_s += m.machine_s
        total_bytes += nbytes
        diag[key] = {"bytes": nbytes, "proxy_cpu_s": m.proxy_s, "machine_cpu_s": m.machine_s}
    res["_mach_s_per_gb"] = machine_s / (total_bytes / 1e9)
    if target.is_proxy:
        res["cpu_s_per_gb"] = proxy_s / (total_bytes / 1e9)
    return res


def http_get(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise ScenarioError("warm-up request through port %d got %r" % (port, data[:40]))


def scenario_memory(env, target, diag):
    if not target.is_proxy:
        return {}
    count = env.idle_conns
    for _ in range(8):  # let lazily built per-shard state exist before the baseline
        http_get(target.http_port)
    time.sleep(0.3)
    base_backend = tcp_count(env.backend_port, "established")
    before = rss_kib(target.pids())
    hold = PROCS.spawn([env.hold_binary, "--connect", "127.0.0.1:%d" % target.http_port,
                        "--count", str(count), "--hold", "600"], cpu=env.load_cpu,
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=env.logfile("hold.log"), text=True)
    try:
        deadline = time.time() + 60
        line = ""
        while time.time() < deadline:
            ready, _, _ = select.select([hold.stdout], [], [], 0.5)
            if ready:
                line = hold.stdout.readline().strip()
                break
            if hold.poll() is not None:
                break
        if line != "held %d" % count:
            raise ScenarioError("ringlb-hold did not hold %d connections (said %r, status %s; "
                                "see logs/hold.log)" % (count, line, hold.poll()))
        # The client side is established before the proxy has dialled the backend: wait until
        # every held connection has its upstream half.
        deadline = time.time() + 30
        upstream = 0
        while time.time() < deadline:
            upstream = tcp_count(env.backend_port, "established") - base_backend
            if upstream >= count:
                break
            time.sleep(0.2)
        if upstream < count:
            raise ScenarioError("only %d of %d held connections reached the backend"
                                % (upstream, count))
        time.sleep(0.5)
        after = rss_kib(target.pids())
    finally:
        if hold.poll() is None:
            try:
                hold.stdin.close()
            except OSError:
                pass
            try:
                hold.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        tail = hold.stdout.read() if hold.stdout and hold.poll() is not None else ""
        PROCS.stop(hold)
    diag["memory"] = {"count": count, "rss_before_kib": before, "rss_after_kib": after,
                      "released": tail.strip()}
    return {"rss_per_conn_b": (after - before) * 1024.0 / count}


def scenario_scaling(env, target, diag):
    if not target.is_proxy:
        return {}
    res = {}
    for conns in env.scale_levels:
        # Every connection goes round twice before the window opens (at c=8,000 the first SYNs
        # overflow the accept queue and come back only after the retransmit timeout).
        w = run_wrk(env, target, conns, env.dur_scale, close=True, ramp_requests=2 * conns)
        diag["scale_c%d" % conns] = w
        res["scale_c%d" % conns] = w["proxy_us_per_req"]
    return res


# Memory runs first, on a freshly started proxy, so earlier load cannot have pre-grown its heap.
SCENARIOS = (("memory", scenario_memory), ("keepalive", scenario_keepalive),
             ("churn", scenario_churn), ("bulk", scenario_bulk)) + workloads.SCENARIOS + \
    (("scaling", scenario_scaling),)


# ---------------------------------------------------------------------------------------------
# Metrics and report


NO_RATIO = {"scale_spread_pct"}  # a ratio of two spreads says nothing


def metric_table(scale_levels, with_workloads):
    """(title, [(key, label, format, proxy_only)]) per table."""
    scale = [("scale_c%d" % c, "µs/conn @ c=%d" % c, "%.1f", True) for c in scale_levels]
    return [
        ("Throughput and latency", [
            ("ka_rps", "keepalive req/s", "%.0f", False),
            ("ka_p50_us", "keepalive p50 µs", "%.0f", False),
            ("ka_p99_us", "keepalive p99 µs", "%.0f", False),
            ("churn_cps", "churn conn/s", "%.0f", False),
            ("churn_p50_us", "churn p50 µs", "%.0f", False),
            ("churn_p99_us", "churn p99 µs", "%.0f", False),
            ("bulk_1_up_gbps", "bulk 1→ Gbit/s", "%.2f", False),
            ("bulk_1_down_gbps", "bulk 1← Gbit/s", "%.2f", False),
            ("bulk_8_up_gbps", "bulk 8→ Gbit/s", "%.2f", False),
            ("bulk_8_down_gbps", "bulk 8← Gbit/s", "%.2f", False),
        ]),
        ("Proxy CPU and added machine CPU", [
            ("cpu_us_per_req", "proxy µs/req", "%.2f", True),
            ("cpu_us_per_conn", "proxy µs/conn", "%.1f", True),
            ("cpu_s_per_gb", "proxy CPU-s/GB", "%.3f", True),
            ("mach_us_per_req", "machine +µs/req", "%.2f", True),
            ("mach_us_per_conn", "machine +µs/conn", "%.1f", True),
            ("mach_s_per_gb", "machine +CPU-s/GB", "%.3f", True),
        ]),
        ("Memory and scaling", [("rss_per_conn_b", "RSS B/idle conn", "%.0f", True)] + scale + [
            ("scale_spread_pct", "µs/conn spread %", "%.1f", True)]),
    ] + ([(workloads.TITLE, workloads.metrics())] if with_workloads else [])


def ratio_pairs(title, names, ringlb_names):
    """(row, against) of a table's ratio rows: ringlb against each anchor, except in the real
    workloads table, which has its own."""
    if title == workloads.TITLE:
        return workloads.ratio_pairs(names, ringlb_names)
    return [(r, a) for r in ringlb_names for a in ANCHOR_NAMES if a in names]


def summarize(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "values": vals}


def percentile(values, pct):
    """Nearest rank: the value at rank ceil(n * pct / 100) of the n sorted values. (tls_bench.py
    and pool_latency.py used to take one rank higher when n * pct / 100 was whole; over their
    hundreds of samples that is within run-to-run noise.)"""
    ordered = sorted(values)
    at = math.ceil(len(ordered) * (pct / 100.0)) - 1
    return ordered[min(len(ordered) - 1, max(0, at))]


def aggregate(raw, names, scale_levels):
    """raw[name] is a list (one per rep) of metric dicts; returns name -> metric -> summary."""
    out = {}
    direct_reps = raw.get("direct", [])
    for name in names:
        reps = raw[name]
        keys = set()
        for r in reps:
            keys.update(k for k in r if not k.startswith("_"))
        per = {k: summarize([r.get(k) for r in reps]) for k in keys}
        if name != "direct":
            # Added machine CPU: this run's machine busy time per unit of work minus that of the
            # direct run of the same repetition.
            for src, dst in (("_mach_us_per_req", "mach_us_per_req"),
                             ("_mach_us_per_conn", "mach_us_per_conn"),
                             ("_mach_s_per_gb", "mach_s_per_gb")):
                diffs = []
                for i, r in enumerate(reps):
                    d = direct_reps[i] if i < len(direct_reps) else {}
                    if r.get(src) is not None and d.get(src) is not None:
                        diffs.append(r[src] - d[src])
                per[dst] = summarize(diffs)
            base = per.get("scale_c%d" % scale_levels[0])
            levels = [per.get("scale_c%d" % c) for c in scale_levels]
            if base and all(levels) and base["median"] > 0:
                spread = max(abs(l["median"] / base["median"] - 1.0) for l in levels) * 100.0
                per["scale_spread_pct"] = {"median": spread, "min": spread, "max": spread,
                                           "values": [spread]}
        else:
            for src, dst in (("_mach_us_per_req", "base_mach_us_per_req"),
                             ("_mach_us_per_conn", "base_mach_us_per_conn"),
                             ("_mach_s_per_gb", "base_mach_s_per_gb")):
                per[dst] = summarize([r.get(src) for r in reps])
        out[name] = {k: v for k, v in per.items() if v is not None}
    return out


def fmt_cell(summary, fmt, reps):
    if summary is None:
        return "**missing**"
    med = fmt % summary["median"]
    if reps > 1 and len(summary["values"]) > 1:
        return "%s (%s–%s)" % (med, fmt % summary["min"], fmt % summary["max"])
    return med


def ratio(results, a, b, key):
    sa, sb = results.get(a, {}).get(key), results.get(b, {}).get(key)
    if not sa or not sb or sb["median"] == 0:
        return None
    return sa["median"] / sb["median"]


def check_targets(results, ringlb_names):
    """The project's targets, each met or missed (a report, never a failure)."""
    rows = []

    def add(name, what, value, threshold, ok, shown):
        rows.append({"ringlb": name, "target": what, "value": value, "threshold": threshold,
                     "met": ok, "shown": shown})

    # The goals of the performance issue (#18): CPU as the whole machine sees it ("machine +",
    # what the proxy adds over the direct path) against HAProxy, one bulk stream against the
    # direct path.
    for name in ringlb_names:
        for key, what, limit in (
                ("mach_us_per_conn", "machine +CPU per connection ≤ 0.75× HAProxy", 0.75),
                ("mach_us_per_req", "machine +CPU per keepalive request ≤ 0.65× HAProxy", 0.65),
                ("mach_s_per_gb", "machine +CPU per GB ≤ 0.5× HAProxy", 0.5)):
            r = ratio(results, name, "haproxy", key)
            add(name, what, r, limit, None if r is None else r <= limit,
                "n/a" if r is None else "%.2f×" % r)
        r = ratio(results, name, "haproxy", "churn_cps")
        add(name, "conn/s ≥ 1.0× HAProxy", r, 1.0, None if r is None else r >= 1.0,
            "n/a" if r is None else "%.2f×" % r)
        for key, label in (("ka_p99_us", "keepalive p99 ≤ HAProxy"),
                           ("churn_p99_us", "churn p99 ≤ HAProxy")):
            r = ratio(results, name, "haproxy", key)
            add(name, label, r, 1.0, None if r is None else r <= 1.0,
                "n/a" if r is None else "%.2f×" % r)
        ratios = [ratio(results, name, "direct", key) for _s, _r, key in BULK_RUNS[:2]]
        worst = None if any(r is None for r in ratios) else min(ratios)
        add(name, "one bulk stream ≥ 0.9× direct (worse direction)", worst, 0.9,
            None if worst is None else worst >= 0.9, "n/a" if worst is None else "%.2f×" % worst)
        rss = results.get(name, {}).get("rss_per_conn_b")
        v = rss["median"] if rss else None
        add(name, "RSS per idle proxied connection ≤ 1 KiB", v, 1024,
            None if v is None else v <= 1024, "n/a" if v is None else "%.0f B" % v)
        spread = results.get(name, {}).get("scale_spread_pct")
        v = spread["median"] if spread else None
        add(name, "cost per connection flat (±10%) across concurrency", v, 10.0,
            None if v is None else v <= 10.0, "n/a" if v is None else "%.1f %%" % v)
    return rows


def render_report(meta, results, names, ringlb_names, tables, reps, target_rows, failures):
    lines = ["# ringlb benchmark", ""]
    lines += ["| | |", "|---|---|"]
    for k, v in meta["header"]:
        lines.append("| %s | %s |" % (k, v))
    lines.append("")
    lines.append("Cells: median of %d repetition(s)%s. Ratios are of medians. "
                 "Lower is better for µs, CPU, latency and bytes; higher for req/s, conn/s and "
                 "Gbit/s." % (reps, ", (min–max)" if reps > 1 else ""))
    for title, metrics in tables:
        lines += ["", "## " + title, ""]
        lines.append("| | " + " | ".join(label for _k, label, _f, _p in metrics) + " |")
        lines.append("|---" * (len(metrics) + 1) + "|")
        for name in names:
            cells = []
            for key, _label, f, proxy_only in metrics:
                if name == "direct" and proxy_only:
                    cells.append("n/a")
                else:
                    cells.append(fmt_cell(results.get(name, {}).get(key), f, reps))
            lines.append("| %s | %s |" % (name, " | ".join(cells)))
        for r, a in ratio_pairs(title, names, ringlb_names):
            cells = []
            for key, _label, _f, _p in metrics:
                x = None if key in NO_RATIO else ratio(results, r, a, key)
                cells.append("—" if x is None else "%.2f×" % x)
            lines.append("| *%s / %s* | %s |" % (r, a, " | ".join(cells)))
        if title.startswith("Proxy CPU") and "direct" in results:
            d = results["direct"]
            parts = []
            for key, label, f in (("base_mach_us_per_req", "µs/req", "%.2f"),
                                  ("base_mach_us_per_conn", "µs/conn", "%.1f"),
                                  ("base_mach_s_per_gb", "CPU-s/GB", "%.3f")):
                parts.append("%s %s" % (fmt_cell(d.get(key), f, reps), label))
            lines += ["", "Direct path machine CPU (the baseline subtracted for \"machine +\"): "
                      + ", ".join(parts) + "."]
    lines += ["", "## Targets (report only)", ""]
    if not target_rows:
        lines.append("ringlb was not measured in this run (--only); no target to compare.")
    else:
        lines += ["| ringlb | target | measured | verdict |", "|---|---|---|---|"]
        for row in target_rows:
            verdict = "n/a" if row["met"] is None else ("met" if row["met"] else "missed")
            lines.append("| %s | %s | %s | %s |" % (row["ringlb"], row["target"], row["shown"],
                                                     verdict))
    if failures:
        lines += ["", "## Failures", ""] + ["- " + f for f in failures]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Setup


def first_line(argv, use_stderr=False):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (r.stderr if use_stderr else r.stdout) or r.stdout or r.stderr
        return text.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def build(env, need_ringlb):
    """Builds ringlb (when measured) and the hold tool; returns (ringlb binary, hold binary)."""
    build_log = os.path.join(env.log_dir, "build.log")
    release = os.path.join(ROOT, "build", "release")
    if need_ringlb:
        log("building ringlb (scripts/build.sh release)")
        with open(build_log, "ab") as f:
            rc = subprocess.run([os.path.join(ROOT, "scripts", "build.sh"), "release"], stdout=f,
                                stderr=subprocess.STDOUT).returncode
        ringlb = os.path.join(release, "ringlb")
        hold = os.path.join(release, "ringlb-hold")
        if rc != 0 or not os.path.exists(ringlb) or not os.path.exists(hold):
            with open(build_log, errors="replace") as f:
                sys.stderr.write("".join(f.readlines()[-30:]))
            raise SystemExit("bench: build failed (see %s)" % build_log)
        return ringlb, hold
    # HAProxy/nginx only: the hold tool is all we need; build just that target when the tree is
    # configured, else compile it straight (the rest of the tree need not build).
    hold = os.path.join(release, "ringlb-hold")
    if os.path.exists(os.path.join(release, "CMakeCache.txt")):
        with open(build_log, "ab") as f:
            rc = subprocess.run(["cmake", "--build", release, "--target", "ringlb-hold"],
                                stdout=f, stderr=subprocess.STDOUT).returncode
        if rc == 0 and os.path.exists(hold):
            return None, hold
    hold = os.path.join(env.out, "bin", "ringlb-hold")
    os.makedirs(os.path.dirname(hold), exist_ok=True)
    log("compiling ringlb-hold directly into %s" % hold)
    argv = ["g++", "-std=c++20", "-O2", "-I", ROOT, os.path.join(HERE, "hold_conns.cpp")] + \
        [os.path.join(ROOT, "common", f) for f in ("address.cpp", "socket.cpp", "log.cpp",
                                                  "log_format.cpp")] + \
        ["-o", hold, "-pthread"]
    with open(build_log, "ab") as f:
        if subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT).returncode != 0:
            raise SystemExit("bench: could not compile ringlb-hold (see %s)" % build_log)
    return None, hold


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tests/bench/run",
                                description="Benchmark ringlb against HAProxy and nginx stream.")
    p.add_argument("--quick", action="store_true",
                   help="1 rep, short runs, small counts (CI: checks the harness, not timings)")
    p.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per keepalive/churn run (default 10; quick 2); bulk runs and "
                        "scaling windows take half (at least 1 and 2 s)")
    p.add_argument("--proxy-cpu", type=int, default=1)
    p.add_argument("--load-cpu", type=int, default=0)
    p.add_argument("--only", default="ringlb,haproxy,nginx")
    p.add_argument("--engine", choices=("io_uring", "epoll", "both"), default="both")
    p.add_argument("--forward", choices=("auto", "splice", "buffered"), default="auto")
    p.add_argument("--idle-conns", type=int, default=None,
                   help="idle proxied connections for the memory figure (default 5000; quick 200)")
    p.add_argument("--ringlb-bin", default=None,
                   help="measure this ringlb binary instead of building build/release/ringlb")
    p.add_argument("--pool", type=int, default=0,
                   help="also measure ringlb with pool = { warm = N } on the HTTP cluster "
                        "(rows ringlb-ENGINE-poolN)")
    p.add_argument("--baseline-bin", default=None,
                   help="also measure this (older) ringlb binary, interleaved in the same run "
                        "(rows ringlb-ENGINE-base)")
    p.add_argument("--scale", default=None,
                   help="comma list of concurrencies for the scaling figure "
                        "(default 100,1000,8000; quick 100,1000)")
    p.add_argument("--workloads", action=argparse.BooleanOptionalAction, default=True,
                   help="also run redis-benchmark and pgbench through every target "
                        "(--no-workloads skips them)")
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in only if x not in ("ringlb", "haproxy", "nginx")]
    if bad or not only:
        p.error("--only takes a comma list of ringlb, haproxy, nginx")
    args.only = only
    args.reps = args.reps or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 10)
    args.idle_conns = args.idle_conns or (200 if args.quick else 5000)
    scale = args.scale or ("100,1000" if args.quick else "100,1000,8000")
    args.scale_levels = [int(x) for x in scale.split(",")]
    if args.reps < 1 or args.duration < 1 or args.idle_conns < 1 or \
            any(c < 1 for c in args.scale_levels):
        p.error("counts and durations must be positive")
    return args


def restart(target, rep, failures):
    """Replaces a dead proxy with a fresh process; False (and a failure) if it will not start."""
    log("restarting %s" % target.name)
    target.stop()
    try:
        target.start()
        return True
    except ScenarioError as e:
        failures.append("rep %d %s: restart: %s" % (rep + 1, target.name, e))
        log("FAILED: %s" % failures[-1])
        return False


def main(argv):
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(PROCS.stop_all)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ncpu = os.cpu_count() or 1
    for cpu in (args.proxy_cpu, args.load_cpu):
        if cpu >= ncpu:
            raise SystemExit("bench: CPU %d does not exist (this machine has %d)" % (cpu, ncpu))

    out = os.path.abspath(args.out)
    for sub in ("run", "logs"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        os.makedirs(os.path.join(out, sub))
    env = Env(args, out)
    env.dur_main = args.duration
    env.dur_bulk = max(1, args.duration // 2)
    env.dur_scale = max(2, args.duration // 2)
    env.idle_conns = args.idle_conns
    env.scale_levels = args.scale_levels
    env.wrk_script = os.path.join(env.run_dir, "wrk-report.lua")
    with open(env.wrk_script, "w") as f:
        f.write(WRK_SCRIPT)
    if env.nofile < 2 * max(args.scale_levels + [args.idle_conns]) + 500:
        log("warning: fd limit %d is low for %d connections" % (env.nofile,
                                                               max(args.scale_levels)))

    if args.ringlb_bin:
        _, env.hold_binary = build(env, False)
        ringlb_bin = os.path.abspath(args.ringlb_bin)
        if not os.access(ringlb_bin, os.X_OK):
            raise SystemExit("bench: %s is not an executable" % ringlb_bin)
    else:
        ringlb_bin, env.hold_binary = build(env, "ringlb" in args.only)

    targets = [Direct(env)]
    engines = ["io_uring", "epoll"] if args.engine == "both" else [args.engine]
    if "ringlb" in args.only:
        targets += [Ringlb(env, ringlb_bin, e, args.forward) for e in engines]
        if args.pool:
            targets += [Ringlb(env, ringlb_bin, e, args.forward, pool=args.pool) for e in engines]
        if args.baseline_bin:
            base = os.path.abspath(args.baseline_bin)
            targets += [Ringlb(env, base, e, args.forward, suffix="-base") for e in engines]
    if "haproxy" in args.only:
        targets.append(HAProxy(env))
    if "nginx" in args.only:
        targets.append(NginxStream(env))
    names = [t.name for t in targets]
    ringlb_names = [t.name for t in targets if isinstance(t, Ringlb)]

    header = [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", "%s, %d cores" % (cpu_model(), ncpu)),
        ("kernel", platform.release()),
        ("ringlb", targets[1].version() if ringlb_names else "not measured"),
        ("haproxy", HAProxy.version()),
        ("nginx", NginxStream.version()),
        ("wrk", first_line(["wrk", "-v"]).split()[1] if first_line(["wrk", "-v"]) != "?" else "?"),
        ("iperf3", " ".join(first_line(["iperf3", "--version"]).split()[:2])),
        ("pinning", "each proxy (1 worker/thread) on CPU %d; wrk, iperf3, ringlb-hold and the "
                    "backends on CPU %d (taskset)" % (args.proxy_cpu, args.load_cpu)),
        ("mode", "%s: %d rep(s), %ds keepalive/churn, %ds per bulk run, %ds scaling windows, %d "
                 "idle conns, scaling at c=%s, ringlb forward=%s%s"
         % ("quick" if args.quick else "full", args.reps, env.dur_main, env.dur_bulk,
            env.dur_scale,
            env.idle_conns, "/".join(str(c) for c in env.scale_levels), args.forward,
            "" if args.workloads else ", no real workloads")),
    ]
    if args.workloads:
        at = [k for k, _v in header].index("pinning")
        header[at:at] = workloads.versions()
    tables = metric_table(args.scale_levels, args.workloads)
    scenarios = [(n, fn) for n, fn in SCENARIOS
                 if args.workloads or (n, fn) not in workloads.SCENARIOS]
    meta = {"header": header, "args": {k: v for k, v in vars(args).items()}}
    log("targets: %s; %s" % (", ".join(names), header[-1][1]))

    env.start_backend()
    env.start_iperf()
    if args.workloads:
        env.workloads = workloads.Backends(env)
        atexit.register(env.workloads.stop)
        try:
            env.workloads.start()
        except (ScenarioError, OSError, KeyError, subprocess.SubprocessError) as e:
            raise SystemExit("bench: could not start the real workloads' backends: %s" % e)
    # Machine-wide CPU figures assume this box is otherwise idle: measure what else runs, before
    # and after (a build started meanwhile by someone else shows in the second reading).
    background = [busy_percent(ncpu)]
    header.append(("background load", ""))
    raw = {n: [] for n in names}
    diags = {n: [] for n in names}
    failures = []
    proxies = targets[1:]
    for rep in range(args.reps):
        # Rotate the proxies' order each repetition so drift over time favours none of them;
        # the direct path runs first so "added machine CPU" pairs with the same repetition.
        k = rep % len(proxies) if proxies else 0
        order = [targets[0]] + proxies[k:] + proxies[:k]
        for target in order:
            metrics, diag = {}, {}
            log("rep %d/%d: %s" % (rep + 1, args.reps, target.name))
            try:
                try:
                    target.start()
                except ScenarioError as e:
                    # Once more on fresh ports, in case something took one meanwhile.
                    log("%s did not start (%s); retrying" % (target.name, e))
                    target.stop()
                    target.start()
            except ScenarioError as e:
                failures.append("rep %d %s: start: %s" % (rep + 1, target.name, e))
                log("FAILED: %s" % failures[-1])
                target.stop()
                raw[target.name].append(metrics)
                diags[target.name].append(diag)
                continue
            for sname, fn in scenarios:
                env.check_servers()
                if not target.alive():
                    # It died after the previous scenario's numbers were taken (or while a
                    # restart was pending): one failure, then a fresh process for this one.
                    failures.append("rep %d %s: proxy exited (status %s) after a scenario"
                                    % (rep + 1, target.name, target.proc.returncode))
                    log("FAILED: %s; restarting it" % failures[-1])
                    if not restart(target, rep, failures):
                        break
                t0 = time.time()
                try:
                    numbers = fn(env, target, diag)
                    if not target.alive():
                        raise ScenarioError("proxy exited (status %s) during the scenario"
                                            % target.proc.returncode)
                    metrics.update(numbers)
                except ScenarioError as e:
                    failures.append("rep %d %s: %s: %s" % (rep + 1, target.name, sname, e))
                    log("FAILED: %s" % failures[-1])
                    if not target.alive() and not restart(target, rep, failures):
                        break
                log("  %s: %.1fs" % (sname, time.time() - t0))
            target.stop()
            stats = target.exit_stats()
            if stats:
                diag["exit_stats"] = stats
            raw[target.name].append(metrics)
            diags[target.name].append(diag)

    background.append(busy_percent(ncpu))
    header[-1] = ("background load", "%.0f%% / %.0f%% of all cores busy in the second before / "
                  "after the run%s" % (background[0], background[1],
                                       " (**not idle: machine-wide figures are inflated, proxy "
                                       "figures may be too**)" if max(background) > 10 else ""))
    if max(background) > 10:
        log("warning: the machine was %.0f%%/%.0f%% busy before/after the run; figures are noisy"
            % tuple(background))
    results = aggregate(raw, names, args.scale_levels)
    # Every cell the table shows must hold a number: a missing one is a failure.
    for name in names:
        missing = [label for _t, metrics in tables
                   for key, label, _f, proxy_only in metrics
                   if not (name == "direct" and proxy_only) and key not in results.get(name, {})]
        if missing:
            failures.append("%s: no number for %s" % (name, ", ".join(missing)))
    target_rows = check_targets(results, ringlb_names)
    report = render_report(meta, results, names, ringlb_names, tables, args.reps,
                           target_rows, failures)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(report)
    ratios = {}
    pairs = [(r, a) for r in ringlb_names for a in [x for x in ANCHOR_NAMES if x in names] +
             ["direct"]] + [p for title, _ms in tables for p in ratio_pairs(title, names,
                                                                             ringlb_names)]
    for r, a in pairs:
        ratios["%s/%s" % (r, a)] = {
            key: ratio(results, r, a, key)
            for _t, ms in tables for key, _l, _f, _p in ms if key not in NO_RATIO}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": {"header": dict(header), "args": meta["args"]}, "results": results,
                   "ratios": ratios, "targets": target_rows, "diagnostics": diags,
                   "failures": failures}, f, indent=2, sort_keys=True, default=str)
    print(report)
    log("wrote %s and %s" % (os.path.join(out, "results.md"), os.path.join(out, "results.json")))
    if failures:
        log("%d failure(s):\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    finally:
        PROCS.stop_all()
    sys.exit(code)
