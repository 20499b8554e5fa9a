"""Rolling deploy under load, kept proven (scripts/rolling-deploy.sh).

Two linkhub instances (release build) share a private database and a
private `redis-server`, behind HAProxy on a free port of 127.0.0.1:

    option httpchk GET /readyz   a server is in rotation while it is ready
    retries 2                    a refused connection is tried again...
    option redispatch            ...on the other server

goose's `mixed` scenario (loadtest/src/scenarios.rs) drives it through
HAProxy: 95 % profile reads, 5 % writes by logged-in users, each write read
back at once through HAProxy (so from either instance); a read-back that
does not show its acknowledged write is a stale read.

The same load runs twice, for DEPLOY_SECS each:

  1. without a deploy: the baseline;
  2. with a deploy: after DEPLOY_WARMUP_SECS, each instance in turn is
     replaced, DEPLOY_ROUNDS times: `SIGTERM` to the old process, wait for it
     to exit, start a new one on the same port, wait for its `/readyz`, then
     for HAProxy to have it back in rotation before the next one goes.

It prints, for both runs: requests, failed requests (goal 0), stale reads
(goal 0), and the p50/p99/max latency, the deploy run's both over the deploy
itself (from the first `SIGTERM` to the last instance back in rotation) and
over the whole run; then each replacement's timings and the instances' peak
resident memory under the load (what deploy/kubernetes sizes its pods from).
Exits 1 on any failed request or stale read, in either run.

Knobs (environment): DEPLOY_SECS (20), DEPLOY_WARMUP_SECS (3),
DEPLOY_ROUNDS (1), DEPLOY_USERS (8 goose users), DEPLOY_SEED_USERS (40).

    python3 scripts/rolling_deploy.py TARGET_DIR/release
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import (
    Linkhub, RedisServer, drop_abandoned_databases, drop_database, free_port, wait_until,
)

DB_PREFIX = "lt_deploy_"
STALE_ERROR = "stale read"


def knob(name, default):
    return int(os.environ.get(name, default))


class HAProxy:
    """HAProxy in front of `servers` (name -> port), its config and admin
    socket in `workdir`, in the foreground as a child process."""

    def __init__(self, workdir, servers):
        self.port = free_port()
        self.socket = os.path.join(workdir, "haproxy.sock")
        self.config = os.path.join(workdir, "haproxy.cfg")
        lines = [
            "global",
            f"    stats socket {self.socket} level admin",
            # Abnormal exchanges only (the log says which side ended them).
            "    log stdout format raw local0",
            "    maxconn 4096",
            "defaults",
            "    mode http",
            "    log global",
            "    option httplog",
            "    option dontlog-normal",
            "    timeout connect 2s",
            "    timeout client 30s",
            "    timeout server 30s",
            "frontend linkhub",
            f"    bind 127.0.0.1:{self.port}",
            "    default_backend linkhub",
            "backend linkhub",
            "    balance roundrobin",
            "    option httpchk GET /readyz",
            "    retries 2",
            "    option redispatch",
            # Without it, a request that HAProxy sent on a kept-alive
            # connection just as the stopping instance closed it (idle, it
            # closes at once) came back empty, and HAProxy closed the client's
            # connection without an answer, as HTTP/1.1 allows: one failed
            # request per replacement or so, for a client that does not
            # resend (goose does not). linkhub answers every request it read
            # before stopping (SHUTDOWN_GRACE_SECS), so an empty answer means
            # the request was never handled, and sending it to the other
            # instance is safe for a write too.
            "    retry-on conn-failure empty-response",
            # Out after one failed check, back after two good ones, checked
            # every 300 ms: a replaced instance is out of rotation within
            # 300 ms of its listener closing; meanwhile `retries` and
            # `redispatch` carry its refused connections to the other one.
            "    default-server check inter 300ms fall 1 rise 2",
        ]
        lines += [f"    server {name} 127.0.0.1:{port}" for name, port in servers.items()]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["haproxy", "-c", "-q", "-f", self.config], check=True)
        self.log = open(os.path.join(workdir, "haproxy.log"), "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.config],
                                     stdout=self.log, stderr=self.log)
        for name in servers:
            self.wait_in_rotation(name, 15)

    def states(self):
        """Each server's status as HAProxy sees it (`UP`, `DOWN`, ...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.socket)
            s.sendall(b"show stat\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        rows = [line.split(",") for line in raw.decode().splitlines() if line and line[0] != "#"]
        # Columns: pxname, svname, ..., status is the 18th.
        return {r[1]: r[17] for r in rows if r[0] == "linkhub" and r[1] != "BACKEND"}

    def wait_in_rotation(self, name, timeout):
        if wait_until(lambda: self.states().get(name) == "UP", timeout, 0.05) is None:
            raise RuntimeError(f"HAProxy did not put {name} back in rotation: {self.states()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


class Instances:
    """The linkhub instances behind HAProxy, by server name; replacing one
    starts a new process on its port."""

    def __init__(self, binary, name, redis_url, workdir, names):
        self.binary, self.name, self.redis_url, self.workdir = binary, name, redis_url, workdir
        self.generation = 0
        self.by_name = {}
        for server in names:
            self.by_name[server] = self._start(server, None)
        self.peak_rss_kib = 0
        self._sampling = False

    def _start(self, server, port):
        self.generation += 1
        app = Linkhub(self.binary, self.name, self.redis_url,
                      os.path.join(self.workdir, f"linkhub-{server}-{self.generation}.log"),
                      port=port)
        app.start()
        return app

    def ports(self):
        return {server: app.port for server, app in self.by_name.items()}

    def replace(self, server, haproxy):
        """SIGTERM, wait for the exit, start anew on the same port, wait for
        `/readyz`, then for HAProxy; answers the seconds each step took."""
        old = self.by_name[server]
        began = time.monotonic()
        old.stop()
        exited = time.monotonic()
        self.by_name[server] = self._start(server, old.port)
        ready = time.monotonic()
        haproxy.wait_in_rotation(server, 15)
        back = time.monotonic()
        # linkhub exits non-zero when its stop cut requests in flight.
        return {"server": server, "stop": exited - began, "ready": ready - exited,
                "in_rotation": back - ready, "exit_status": old.proc.returncode,
                "stop_log": stop_lines(old.logfile)}

    def sample_rss(self):
        """Samples every instance's resident memory until `stop_sampling`."""
        self._sampling = True

        def loop():
            while self._sampling:
                for app in list(self.by_name.values()):
                    try:
                        self.peak_rss_kib = max(self.peak_rss_kib, app.rss_kib())
                    except OSError:
                        pass  # replaced in between
                time.sleep(0.25)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def stop_sampling(self, thread):
        self._sampling = False
        thread.join()

    def stop(self):
        for app in self.by_name.values():
            app.stop()


def stop_lines(logfile):
    """What a stopped instance said about its stop (requests cut, bumps owed)."""
    with open(logfile, errors="replace") as f:
        return [line.strip() for line in f if "stop" in line and ("SIGTERM" in line or "stopped" in line or "cut" in line)]


def run_load(loadtest, host, seeded, users, secs, workdir, tag):
    """Starts goose's `mixed` scenario against `host`; answers the process,
    the wall-clock time it started at, and its request log."""
    request_log = os.path.join(workdir, f"{tag}-requests.json")
    out = open(os.path.join(workdir, f"{tag}-goose.log"), "w")
    env = dict(os.environ, LOADTEST_USERS=str(seeded))
    started = time.monotonic()
    proc = subprocess.Popen(
        [loadtest, "--host", host, "--scenarios", "mixed", "--users", str(users),
         "--increase-rate", str(users), "--run-time", f"{secs}s",
         "--request-log", request_log, "--request-format", "json", "--quiet"],
        env=env, stdout=out, stderr=subprocess.STDOUT,
    )
    return proc, started, request_log, out.name


def figures(request_log, window=None):
    """Requests, failures, stale reads and latencies from goose's request
    log, of the requests that started within `window` (ms since the run
    began) when one is given."""
    latencies, failed, stale, total = [], 0, 0, 0
    with open(request_log) as f:
        for line in f:
            r = json.loads(line)
            if window and not window[0] <= r["elapsed"] <= window[1]:
                continue
            # A read-back found stale is logged again, as an update, with
            # the failure: counted there, and its latency only once.
            if not r["update"]:
                total += 1
                latencies.append(r["response_time"])
            if not r["success"]:
                if STALE_ERROR in r["error"]:
                    stale += 1
                else:
                    failed += 1
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0

    return {"requests": total, "failed": failed, "stale": stale,
            "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1] if latencies else 0}


def failed_requests(request_log, limit=10):
    with open(request_log) as f:
        rows = [json.loads(line) for line in f]
    return [f"{r['elapsed']} ms {r['raw']['method']} {r['name']} -> {r['status_code']} {r['error']}"
            for r in rows if not r["success"]][:limit]


def finish(proc, goose_log):
    proc.wait()
    with open(goose_log) as f:
        text = f.read()
    summary = next((line for line in text.splitlines() if line.startswith("loadtest summary: ")), None)
    if summary is None:
        raise RuntimeError(f"goose did not finish its run; see {goose_log}")
    return json.loads(summary.removeprefix("loadtest summary: "))


def main():
    release = sys.argv[1]
    secs, warmup = knob("DEPLOY_SECS", 20), knob("DEPLOY_WARMUP_SECS", 3)
    rounds, users, seeded = knob("DEPLOY_ROUNDS", 1), knob("DEPLOY_USERS", 8), knob("DEPLOY_SEED_USERS", 40)
    for tool in ("haproxy", "redis-server", "psql"):
        if shutil.which(tool) is None:
            sys.exit(f"rolling deploy: {tool} is missing (apt-get install haproxy redis-server postgresql-client)")
    drop_abandoned_databases(DB_PREFIX)
    name = f"{DB_PREFIX}{os.getpid()}"
    workdir = tempfile.mkdtemp(prefix="rolling-deploy.")
    redis = RedisServer(workdir)
    instances = haproxy = proc = None
    ok = False
    try:
        redis.start()
        instances = Instances(os.path.join(release, "linkhub"), name,
                              f"redis://127.0.0.1:{redis.port}", workdir, ["a", "b"])
        haproxy = HAProxy(workdir, instances.ports())
        host = f"http://127.0.0.1:{haproxy.port}"
        loadtest = os.path.join(release, "loadtest")
        print(f"rolling deploy: instances {instances.ports()} behind HAProxy {host}; "
              f"{users} goose users, {secs}s of load per run; files in {workdir}", flush=True)
        subprocess.run([loadtest, "seed", "--host", host, "--users", str(seeded)],
                       check=True, stdout=subprocess.DEVNULL)

        print("baseline: the load without a deploy", flush=True)
        sampler = instances.sample_rss()
        proc, _, base_log, base_out = run_load(loadtest, host, seeded, users, secs, workdir, "baseline")
        base_counters = finish(proc, base_out)
        instances.stop_sampling(sampler)
        warm = (warmup * 1000, secs * 1000)
        baseline = figures(base_log, warm)

        print(f"deploy: the same load; {rounds} round(s) of replacing a, then b", flush=True)
        proc, started, deploy_log, deploy_out = run_load(loadtest, host, seeded, users, secs, workdir, "deploy")
        time.sleep(warmup)
        deploy_began = time.monotonic()
        steps = []
        for _ in range(rounds):
            for server in ("a", "b"):
                step = instances.replace(server, haproxy)
                steps.append(step)
                print(f"  replaced {server}: exited ({step['exit_status']}) {step['stop']:.2f}s after SIGTERM, ready "
                      f"{step['ready']:.2f}s after start, in rotation {step['in_rotation']:.2f}s later",
                      flush=True)
        deploy_ended = time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError("the load ended before the deploy did: raise DEPLOY_SECS")
        deploy_counters = finish(proc, deploy_out)
        # goose's clock starts when it launches its users, a few ms after the
        # process does: the window is widened by 200 ms each side for that.
        window = ((deploy_began - started) * 1000 - 200, (deploy_ended - started) * 1000 + 200)
        during = figures(deploy_log, window)
        whole = figures(deploy_log)

        print()
        print(f"{'':28} {'requests':>9} {'failed':>7} {'stale':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
        rows = [
            (f"without a deploy ({warm[0] / 1000:.0f}-{secs}s)", baseline),
            (f"during the deploy ({window[0] / 1000:.1f}-{window[1] / 1000:.1f}s)", during),
            (f"whole deploy run (0-{secs}s)", whole),
        ]
        for label, f in rows:
            print(f"{label:28} {f['requests']:>9} {f['failed']:>7} {f['stale']:>6} "
                  f"{f['p50']:>7} {f['p99']:>7} {f['max']:>7}")
        print(f"writes read back: {base_counters['writes']} (baseline), {deploy_counters['writes']} (deploy); "
              f"stale per loadtest: {base_counters['stale_reads']}, {deploy_counters['stale_reads']}")
        print(f"peak RSS of an instance under the baseline load: {instances.peak_rss_kib / 1024:.1f} MiB")
        for step in steps:
            for line in step["stop_log"]:
                print(f"  {step['server']}: {line[-160:]}")
        bad = baseline["failed"] + baseline["stale"] + whole["failed"] + whole["stale"]
        bad += base_counters["stale_reads"] + deploy_counters["stale_reads"]
        unclean = [step["server"] for step in steps if step["exit_status"] != 0]
        if unclean:
            print(f"rolling deploy: FAILED (a stop cut requests: {', '.join(unclean)} exited non-zero)")
            return 1
        if bad:
            for line in failed_requests(base_log) + failed_requests(deploy_log):
                print(f"  failed: {line}")
            print("rolling deploy: FAILED (failed requests or stale reads)")
            return 1
        if baseline["requests"] == 0 or whole["requests"] == 0 or deploy_counters["writes"] == 0:
            print("rolling deploy: FAILED (no load went through)")
            return 1
        print("rolling deploy: passed (0 failed, 0 stale)")
        ok = True
        return 0
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if haproxy:
            haproxy.stop()
        if instances:
            instances.stop()
        redis.kill()
        drop_database(name)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
