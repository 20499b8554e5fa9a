"""The abuse scenarios listed below, measured from the outside over HTTP.

`python3 scripts/abuse-figures.py BINARY [--only NAME ...]`

Runs one linkhub binary (any commit: it uses only what every version
serves and default settings, so the same script measures the code before
and after a change to its bounds) and prints one line per scenario with its
figure, then, as the last line, a JSON summary of every figure.

Everything is private and on loopback: one `redis-server` started for the
run, one PostgreSQL database `linkhub_abuse_<pid>` on the shared server
(dropped at the end), and a linkhub process per scenario with its own cache
prefix. The shared Redis on 6379 is never used. How each figure is taken:

  login_burst      48 wrong passwords for one login, sent at the same moment
                   (48 connections opened first, released by a barrier):
                   how many were judged (401) and refused (429).
  login_memory     100 failed logins under new 60 KB login names (warm-up),
                   then 1,200 more, 16 at a time: VmRSS of the process
                   (/proc/PID/status) before and after the 1,200.
  missing_reads    2,400 anonymous reads of ids and names that exist nowhere
                   (user, link, social, profile, links, socials): keys under
                   the prefix in Redis (SCAN + TTL) that the reads added, how
                   many have no TTL, and how many are left 65 s later.
  made_up_methods  200 requests with made-up methods (FOO1..FOO200) to
                   /healthz, then 100 more: sample lines (series) and bytes of
                   /metrics before, after 200 and after 300.
  links_101        101 links created for one user: the statuses.
  bypass_burst     linkhub reaches Redis through a TCP proxy; the profile is
                   warmed, the proxy cut, one read opens the breaker, then 100
                   reads are sent at the same moment (100 connections, a
                   barrier). PostgreSQL loads are counted as the delta of
                   `seq_scan + idx_scan` of the `users` table in
                   pg_stat_user_tables (every profile load looks its user up
                   once), read after the statistics are flushed (12 s idle),
                   and, where the binary has it, from the metric
                   `linkhub_cache_bypass_loads_total{namespace="profile"}`.
  first_reads      an instance writes a user, stops; a new one starts on the
                   same database and Redis (up); the profile is read twice as
                   soon as /healthz answers: the X-Cache pair, three rounds.
  patch_415        PATCH /api/v1/users/{id} with a JSON text but no content
                   type, and as text/plain: the statuses, and whether the
                   OpenAPI document lists 415 under that operation.

Every loop has a fixed count and every request a timeout. The processes and
the database are removed at the end, also when a scenario or the run fails
(a failed scenario is reported as not measured; the others still run).
Standard library only; uses scripts/harness.py.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    Linkhub, Proxy, RedisServer, drop_abandoned_databases, register_and_login, request,
    wait_until,
)

DB_PREFIX = "linkhub_abuse_"
PASSWORD = "abuse-password-1"
STATS_FLUSH_SECS = 12     # PostgreSQL flushes an idle backend's statistics within 10 s
NEGATIVE_WAIT_SECS = 65   # CACHE_NEGATIVE_TTL_SECS defaults to 60 where it exists
LOGIN_TIMEOUT = 60        # password hashing is slow on a busy 2-core machine


class Figure(NamedTuple):
    """What one scenario measured: a line for people, values for machines."""
    name: str
    what: str
    figure: str
    values: dict


class Outcome(NamedTuple):
    """One answer of a burst: the status (or "error:<kind>") and X-Cache."""
    status: object
    x_cache: object


def log(message):
    print(f"abuse-figures: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Clients: raw HTTP, simultaneous bursts, a minimal Redis client.
# --------------------------------------------------------------------------

def connection(base, timeout):
    host, port = base.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def raw_request(base, method, path, data=None, headers=None, timeout=10):
    """A request whose body bytes and headers are sent as given (no JSON
    content type added); answers (status, body bytes, headers lower-cased)."""
    conn = connection(base, timeout)
    try:
        conn.request(method, path, body=data, headers=dict(headers or {}))
        res = conn.getresponse()
        return res.status, res.read(), {k.lower(): v for k, v in res.getheaders()}
    finally:
        conn.close()


def simultaneous(base, count, method, path, body=None, timeout=30):
    """`count` requests sent at the same moment: every thread opens its own
    connection first, then all are released by one barrier. Answers one
    `Outcome` per request."""
    barrier = threading.Barrier(count)
    outcomes = [Outcome("error:unanswered", None)] * count
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}

    def one(i):
        conn = connection(base, timeout)
        try:
            try:
                conn.connect()
            finally:
                try:
                    barrier.wait(timeout)
                except threading.BrokenBarrierError:
                    pass
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            res.read()
            outcomes[i] = Outcome(res.status, res.getheader("X-Cache"))
        except (OSError, http.client.HTTPException) as e:
            outcomes[i] = Outcome(f"error:{type(e).__name__}", None)
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 2 * timeout + 10
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return outcomes


def tally(values):
    """{value: how many}, keys as strings, sorted."""
    counts = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return dict(sorted(counts.items()))


def in_parallel(items, work, threads):
    """Runs `work(item)` for every item on `threads` threads (each handles
    every `threads`-th item in order); answers the results in item order."""
    results = [None] * len(items)

    def worker(start):
        for i in range(start, len(items), threads):
            results[i] = work(items[i])

    pool = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(600)
    return results


class RedisClient:
    """Just enough RESP to SCAN a private redis-server and ask TTLs."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    def pipeline(self, commands):
        out = bytearray()
        for args in commands:
            out += b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(bytes(out))
        return [self._reply() for _ in commands]

    def command(self, *args):
        return self.pipeline([args])[0]

    def _reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.reader.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"unexpected Redis reply {line!r}")

    def keys(self, prefix):
        """Every key under `prefix:` (SCAN, at most 100,000 rounds)."""
        found, cursor = set(), b"0"
        for _ in range(100_000):
            cursor, batch = self.command("SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", 1000)
            found.update(batch)
            if cursor == b"0":
                return found
        raise RuntimeError("SCAN did not finish")

    def ttls(self, keys):
        """{key: TTL}; -1: no TTL; keys that expired meanwhile (-2) are left out."""
        keys = sorted(keys)
        out = {}
        for i in range(0, len(keys), 500):
            batch = keys[i:i + 500]
            for key, ttl in zip(batch, self.pipeline([("TTL", k) for k in batch])):
                if ttl != -2:
                    out[key] = ttl
        return out


# --------------------------------------------------------------------------
# The run: one private Redis and database; a linkhub per scenario.
# --------------------------------------------------------------------------

class Run:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        self.db_name = f"{DB_PREFIX}{os.getpid()}"
        self.redis = RedisServer(workdir)
        self.apps = []
        self.proxies = []
        self.users = 0

    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis.port}"

    def linkhub(self, prefix, redis_url=None, env=None, start=True):
        """A linkhub on the run's database under cache prefix `prefix`."""
        app = Linkhub(
            self.binary, self.db_name, redis_url or self.redis_url(),
            os.path.join(self.workdir, f"linkhub-{prefix}.log"),
            env={"CACHE_PREFIX": f"{self.db_name}_{prefix}", "RUST_LOG": "warn", **(env or {})},
        )
        self.apps.append(app)
        if start:
            app.start()
        return app

    def proxy(self):
        proxy = Proxy(self.redis.port)
        self.proxies.append(proxy)
        return proxy

    def new_user(self, app, tag):
        """A fresh registered, logged-in user: (username, Account)."""
        self.users += 1
        username = f"ab_{tag}_{self.users}"
        return username, register_and_login(app.base, username, PASSWORD)

    def redis_client(self):
        return RedisClient(self.redis.port)

    def close(self):
        for app in self.apps:
            app.stop()
        for proxy in self.proxies:
            proxy.stop()
        self.redis.kill()
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres",
                        "-c", f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prefix_of(app):
    return app.env["CACHE_PREFIX"]


def metrics_text(app):
    status, raw, _ = raw_request(app.base, "GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return raw.decode()


def metric_sum(text, name, labels):
    """The sum of the samples of `name` whose labels include `labels`;
    None when the binary has no such metric."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    if not seen and f"# TYPE {name} " not in text:
        return None
    return total


def series_count(text):
    """Sample lines of a Prometheus text (one per series)."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def users_scans(app):
    """seq_scan + idx_scan of the `users` table (pg_stat_user_tables)."""
    rows = app.sql("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) "
                   "FROM pg_stat_user_tables WHERE relname = 'users'")
    return int(rows[0][0])


def login(base, name, password, conn=None, timeout=LOGIN_TIMEOUT):
    """A login's status (or "error:<kind>")."""
    try:
        return request(base, "POST", "/api/v1/auth/login", {"login": name, "password": password},
                       timeout=timeout, conn=conn).status
    except (OSError, http.client.HTTPException) as e:
        return f"error:{type(e).__name__}"


# --------------------------------------------------------------------------
# The scenarios.
# --------------------------------------------------------------------------

def login_burst(run):
    app = run.linkhub("burst")
    username, _ = run.new_user(app, "burst")
    outcomes = simultaneous(app.base, 48, "POST", "/api/v1/auth/login",
                            {"login": username, "password": "a wrong password"},
                            timeout=LOGIN_TIMEOUT)
    statuses = tally(o.status for o in outcomes)
    right = login(app.base, username, PASSWORD)
    app.stop()
    judged = statuses.get("401", 0)
    return Figure(
        "login_burst", "48 simultaneous wrong passwords for one login (limit 10)",
        f"{judged} judged (401), {statuses.get('429', 0)} refused (429); statuses {statuses}; "
        f"the right password afterwards: {right}",
        {"judged_401": judged, "refused_429": statuses.get("429", 0), "statuses": statuses,
         "right_password_after": right},
    )


def login_memory(run):
    app = run.linkhub("memory", env={"WORKERS": "2"})

    def fail_with_new_logins(first, count):
        def work(i):
            return login(app.base, f"{i:08}" + "x" * (60 * 1024 - 8), "wrong password")
        return in_parallel(list(range(first, first + count)), work, 16)

    warm = tally(fail_with_new_logins(0, 100))
    before = app.rss_kib()
    started = time.monotonic()
    statuses = tally(fail_with_new_logins(100, 1200))
    took = time.monotonic() - started
    after = app.rss_kib()
    app.stop()
    grown = (after - before) / 1024
    return Figure(
        "login_memory", "1,200 failed logins, each under a new 60 KB login name",
        f"VmRSS {before / 1024:.1f} -> {after / 1024:.1f} MiB ({grown:+.1f} MiB); "
        f"statuses {statuses} in {took:.0f} s (warm-up of 100: {warm})",
        {"rss_before_kib": before, "rss_after_kib": after, "grown_mib": round(grown, 1),
         "statuses": statuses, "warmup_statuses": warm, "seconds": round(took, 1)},
    )


def missing_paths(count):
    """Reads of ids and names that exist nowhere, of every read kind."""
    paths = []
    for i in range(count):
        n = 9_000_000 + i
        paths.append([
            f"/api/v1/users/{n}", f"/api/v1/links/{n}", f"/api/v1/socials/{n}",
            f"/api/v1/profiles/nobody_{i}", f"/api/v1/users/{n}/links",
            f"/api/v1/users/{n}/socials",
        ][i % 6])
    return paths


def missing_reads(run):
    app = run.linkhub("missing")
    prefix = prefix_of(app)
    redis = run.redis_client()
    try:
        keys_before = redis.keys(prefix)
        local = threading.local()

        def read(path):
            if getattr(local, "conn", None) is None:
                local.conn = connection(app.base, 10)
            try:
                return request(app.base, "GET", path, conn=local.conn).status
            except (OSError, http.client.HTTPException) as e:
                local.conn.close()
                local.conn = None
                return f"error:{type(e).__name__}"

        statuses = tally(in_parallel(missing_paths(2400), read, 24))
        added = redis.keys(prefix) - keys_before
        ttls = redis.ttls(added)
        forever = sorted(k for k, t in ttls.items() if t == -1)
        longest = max((t for t in ttls.values()), default=None)
        log(f"missing_reads: waiting {NEGATIVE_WAIT_SECS} s to see which keys expire")
        time.sleep(NEGATIVE_WAIT_SECS)
        left = redis.keys(prefix) & added
        left_forever = sum(1 for t in redis.ttls(left).values() if t == -1)
    finally:
        redis.close()
    app.stop()
    example = forever[0].decode(errors="replace") if forever else None
    return Figure(
        "missing_reads", "2,400 anonymous reads of ids and names that do not exist",
        f"{len(ttls)} new Redis keys, {len(forever)} without a TTL (longest TTL "
        f"{longest if longest is None or longest >= 0 else 'none'} s); {len(left)} still there "
        f"{NEGATIVE_WAIT_SECS} s later ({left_forever} without a TTL); statuses {statuses}",
        {"new_keys": len(ttls), "without_ttl": len(forever),
         "longest_ttl_secs": longest, "left_after_wait": len(left),
         "left_without_ttl": left_forever, "wait_secs": NEGATIVE_WAIT_SECS,
         "statuses": statuses, "example_key_without_ttl": example},
    )


def made_up_methods(run):
    app = run.linkhub("methods")
    conn = connection(app.base, 10)

    def send(first, last):
        out = []
        for i in range(first, last + 1):
            try:
                conn.request(f"FOO{i}", "/healthz")
                res = conn.getresponse()
                res.read()
                out.append(res.status)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                out.append(f"error:{type(e).__name__}")
        return out

    try:
        send(0, 0)            # one made-up method first (a fixed "other" series, if any)
        metrics_text(app)     # /metrics counts itself once it has answered
        before = metrics_text(app)
        statuses = tally(send(1, 200))
        after_200 = metrics_text(app)
        statuses_300 = tally(send(201, 300))
        after_300 = metrics_text(app)
    finally:
        conn.close()
    app.stop()
    s0, s200, s300 = (series_count(t) for t in (before, after_200, after_300))
    r0, r200 = (series_count("\n".join(line for line in t.splitlines()
                                        if line.startswith("linkhub_http_requests_total")))
                for t in (before, after_200))
    methods = sorted(set(re.findall(r'method="(FOO\d+|[A-Z_]*OTHER[A-Z_]*)"', after_300)))
    foo_labels = sum(1 for m in methods if m.startswith("FOO"))
    return Figure(
        "made_up_methods", "200 requests with made-up HTTP methods (then 100 more)",
        f"linkhub_http_requests_total series {r0} -> {r200} ({r200 - r0:+d}); all series "
        f"{s0} -> {s200} after 200 ({s200 - s0:+d}) -> {s300} after 300; /metrics "
        f"{len(before) / 1024:.1f} KB -> {len(after_200) / 1024:.1f} KB -> "
        f"{len(after_300) / 1024:.1f} KB; {foo_labels} FOO* method labels after 301 made-up "
        f"methods; statuses {statuses}",
        {"requests_total_series_before": r0, "requests_total_series_after_200": r200,
         "series_before": s0, "series_after_200": s200, "series_after_300": s300,
         "metrics_bytes_before": len(before), "metrics_bytes_after_200": len(after_200),
         "metrics_bytes_after_300": len(after_300), "made_up_method_labels": foo_labels,
         "statuses": statuses, "statuses_201_300": statuses_300},
    )


def links_101(run):
    app = run.linkhub("links")
    _, me = run.new_user(app, "links")
    conn = connection(app.base, 10)
    statuses = []
    error_body = None
    try:
        for i in range(1, 102):
            res = request(app.base, "POST", f"/api/v1/users/{me.id}/links",
                          {"title": f"link {i}", "url": f"https://example.com/{i}"},
                          me.token, conn=conn)
            statuses.append(res.status)
            if i == 101:
                error_body = res.body
    finally:
        conn.close()
    app.stop()
    first_100 = tally(statuses[:100])
    code = (error_body or {}).get("error", {}).get("code") if isinstance(error_body, dict) else None
    return Figure(
        "links_101", "101 links created for one user (limit 100)",
        f"the first 100: {first_100}; the 101st: {statuses[100]}"
        + (f" ({code})" if code else ""),
        {"first_100": first_100, "the_101st": statuses[100], "the_101st_code": code},
    )


def bypass_burst(run):
    proxy = run.proxy()
    app = run.linkhub("bypass", redis_url=f"redis://127.0.0.1:{proxy.port}")
    username, me = run.new_user(app, "bypass")
    for i in range(3):
        request(app.base, "POST", f"/api/v1/users/{me.id}/links",
                {"title": f"t{i}", "url": f"https://example.com/{i}"}, me.token)
    for platform in ("github", "mastodon"):
        request(app.base, "POST", f"/api/v1/users/{me.id}/socials",
                {"platform": platform, "url": f"https://{platform}.example.com/{username}"},
                me.token)
    path = f"/api/v1/profiles/{username}"
    warmed = wait_until(lambda: request(app.base, "GET", path).headers.get("x-cache") == "HIT",
                        10, 0.1)
    proxy.cut()
    opener = request(app.base, "GET", path, timeout=30)
    log(f"bypass_burst: Redis cut, first read {opener.status} {opener.headers.get('x-cache')}; "
        f"letting PostgreSQL flush its statistics")
    time.sleep(STATS_FLUSH_SECS)
    quiet_start = users_scans(app)
    time.sleep(3)
    scans_before = users_scans(app)
    metric_before = metric_sum(metrics_text(app), "linkhub_cache_bypass_loads_total",
                               {"namespace": "profile"})
    outcomes = simultaneous(app.base, 100, "GET", path, timeout=30)
    metric_after = metric_sum(metrics_text(app), "linkhub_cache_bypass_loads_total",
                              {"namespace": "profile"})
    time.sleep(STATS_FLUSH_SECS)
    scans_after = users_scans(app)
    proxy.restore()
    app.stop()
    loads = scans_after - scans_before
    by_metric = None if metric_before is None else int(metric_after - metric_before)
    statuses = tally(o.status for o in outcomes)
    caches = tally(o.x_cache for o in outcomes)
    return Figure(
        "bypass_burst", "100 simultaneous reads of one profile while Redis is cut",
        f"{loads} PostgreSQL loads (users-table scans; "
        + ("no bypass-load metric in this binary" if by_metric is None
           else f"linkhub_cache_bypass_loads_total: {by_metric}")
        + f"); statuses {statuses}, X-Cache {caches}; scans while idle for 3 s before: "
        f"{scans_before - quiet_start}; warmed: {'yes' if warmed is not None else 'no'}, "
        f"first read after the cut: {opener.headers.get('x-cache')}",
        {"postgres_loads_users_scans": loads, "postgres_loads_metric": by_metric,
         "idle_scans_before": scans_before - quiet_start, "statuses": statuses,
         "x_cache": caches, "warmed_hit": warmed is not None,
         "opener_x_cache": opener.headers.get("x-cache")},
    )


def first_reads(run):
    """Three rounds: the running instance writes a user and stops; a new one
    starts and reads that user's profile twice as soon as /healthz answers."""
    writer = run.linkhub("first")
    rounds = []
    for _ in range(3):
        username, _ = run.new_user(writer, "first")
        writer.stop()
        fresh = run.linkhub("first", start=False)
        started = time.monotonic()
        log_file = open(fresh.logfile, "ab")
        fresh.proc = subprocess.Popen([fresh.binary, "serve"], env=fresh.env,
                                      stdout=log_file, stderr=log_file)
        log_file.close()
        healthy = wait_until(lambda: request(fresh.base, "GET", "/healthz", timeout=1).status
                             == 200, 60, 0.005)
        if healthy is None:
            raise RuntimeError(f"the new instance never answered /healthz; see {fresh.logfile}")
        conn = connection(fresh.base, 10)
        pair, at = [], []
        try:
            for _ in range(2):
                res = request(fresh.base, "GET", f"/api/v1/profiles/{username}", conn=conn)
                pair.append(f"{res.status} {res.headers.get('x-cache')}")
                at.append(round((time.monotonic() - started) * 1000))
        finally:
            conn.close()
        rounds.append({"x_cache": pair, "healthz_ms": round(healthy * 1000), "read_ms": at})
        wait_until(lambda: request(fresh.base, "GET", "/readyz", timeout=2).status == 200, 30, 0.1)
        writer = fresh
    writer.stop()
    shown = "; ".join(f"{' / '.join(r['x_cache'])} (healthz at {r['healthz_ms']} ms, "
                      f"reads at {r['read_ms'][0]} and {r['read_ms'][1]} ms)" for r in rounds)
    return Figure(
        "first_reads", "two reads right after start (Redis up, data from an earlier instance)",
        shown, {"rounds": rounds},
    )


def openapi_responses(document, method, template):
    """The response codes the OpenAPI document lists for `method` on the
    path `template` (placeholders written `{}`); None when it is not listed."""
    for path, item in document.get("paths", {}).items():
        if re.sub(r"\{[^}]*\}", "{}", path) == template and method in item:
            return sorted(item[method].get("responses", {}))
    return None


def patch_415(run):
    app = run.linkhub("patch")
    _, me = run.new_user(app, "patch")
    body = json.dumps({"bio": "not sent as JSON"}).encode()
    auth = {"Authorization": f"Bearer {me.token}"}
    path = f"/api/v1/users/{me.id}"
    no_type, _, _ = raw_request(app.base, "PATCH", path, body, auth)
    text_plain, _, _ = raw_request(app.base, "PATCH", path, body,
                                   {**auth, "Content-Type": "text/plain"})
    status, raw, _ = raw_request(app.base, "GET", "/api/v1/openapi.json")
    app.stop()
    listed = openapi_responses(json.loads(raw), "patch", "/api/v1/users/{}") if status == 200 else None
    in_doc = listed is not None and "415" in listed
    return Figure(
        "patch_415", "PATCH /users/{id} with a body and no JSON content type",
        f"no content type: {no_type}, text/plain: {text_plain}; 415 listed in the OpenAPI "
        f"document for that operation: {'yes' if in_doc else 'no'} (listed: {listed})",
        {"no_content_type": no_type, "text_plain": text_plain, "openapi_lists_415": in_doc,
         "openapi_responses": listed, "openapi_status": status},
    )


SCENARIOS = [login_burst, login_memory, missing_reads, made_up_methods, links_101,
             bypass_burst, first_reads, patch_415]


def main():
    parser = argparse.ArgumentParser(description="The abuse scenarios, measured over HTTP.")
    parser.add_argument("binary", help="a linkhub binary (release build)")
    parser.add_argument("--only", action="append", choices=[s.__name__ for s in SCENARIOS],
                        help="run only this scenario (may be repeated)")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"abuse-figures: {binary} is not an executable")
    # A SIGTERM ends the run through the `finally` below, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    drop_abandoned_databases(DB_PREFIX)
    workdir = tempfile.mkdtemp(prefix="linkhub-abuse-")
    # linkhub reads a `.env` of its working directory: the run's own has none.
    os.chdir(workdir)
    run = Run(binary, workdir)
    figures = []
    failed = False
    try:
        run.redis.start()
        for scenario in SCENARIOS:
            if args.only and scenario.__name__ not in args.only:
                continue
            log(f"{scenario.__name__} ...")
            started = time.monotonic()
            try:
                figure = scenario(run)
            except Exception as e:  # noqa: BLE001 - a scenario that cannot run is a figure too
                failed = True
                figure = Figure(scenario.__name__, "", f"not measured: {type(e).__name__}: {e}",
                                {"error": f"{type(e).__name__}: {e}"})
            finally:
                for app in run.apps:
                    app.stop()
            log(f"{scenario.__name__}: {time.monotonic() - started:.0f} s")
            figures.append(figure)
            print(f"{figure.name}: {figure.figure}", flush=True)
    finally:
        run.close()
        if failed:
            log(f"linkhub logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = {
        "binary": binary,
        "scenarios": {f.name: {"what": f.what, "figure": f.figure, **f.values} for f in figures},
    }
    print(json.dumps(summary, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
