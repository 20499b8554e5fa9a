"""Chaos gate: faults under a mixed load, with nothing lost (scripts/chaos.sh).

A release build of linkhub runs on a private database (through a TCP proxy
in front of the shared PostgreSQL) and a private `redis-server` (through
another proxy). Many clients read and write at once while the controller:

  1. cuts Redis for 10 s, twice;
  2. kills Redis and restarts it empty;
  3. cuts PostgreSQL for 10 s.

A cut drops every live connection and black-holes new ones (accepted, never
answered) until it is restored. The run fails unless:

  * no response is a 5xx, except 503 for requests that overlapped the
    PostgreSQL cut (or the 2 s after it);
  * no request goes unanswered past the client timeout (12 s: linkhub waits
    up to DB_TIMEOUT_MS, 5 s, for a free pool slot and then up to as long
    for a new PostgreSQL connection);
  * after each fault ends, the service is whole again within 2 s, by itself
    (the process is never restarted): Redis faults -> `/readyz` reports the
    cache `ok`; PostgreSQL -> `/readyz` is 200 and a write succeeds;
  * every acknowledged write is in PostgreSQL afterwards and visible through
    the API;
  * no read that started after a write's acknowledgement showed older data;
  * the process's resident memory after the run is within 20 % of what it
    was after warm-up.

Each client sends up to CHAOS_RATE requests a second (a third of them
writes), so the load is the same on a quiet and on a busy machine.

Knobs (environment): CHAOS_CLIENTS (16), CHAOS_RATE (25 per client),
CHAOS_ROUNDS (1: the fault cycle above, repeated), CHAOS_WARMUP_SECS (20),
CHAOS_STEADY_SECS (12: load between faults), CHAOS_FAULT_SECS (10),
CHAOS_TIMEOUT_SECS (12: per request).
"""

import asyncio
import calendar
import http.client
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import (
    Linkhub, RedisServer, drop_abandoned_databases, free_port, register_and_login, request, wait_until,
)

RECOVERY_LIMIT_SECS = 2.0
MEMORY_LIMIT = 0.20
MAX_LINKS_PER_USER = 20


# --------------------------------------------------------------------------
# The TCP proxy, run as its own process: SIGUSR1 cuts, SIGUSR2 restores.
# --------------------------------------------------------------------------

def proxy_main(listen_port, upstream_port):
    live = set()
    held = []
    state = {"cut": False}

    async def pump(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def handle(client_reader, client_writer):
        if state["cut"]:
            held.append(client_writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        pair = (client_writer, up_writer)
        live.add(pair)
        try:
            await asyncio.gather(pump(client_reader, up_writer), pump(up_reader, client_writer))
        finally:
            live.discard(pair)

    def cut():
        state["cut"] = True
        for client_writer, up_writer in list(live):
            client_writer.transport.abort()
            up_writer.transport.abort()
        live.clear()

    def restore():
        state["cut"] = False
        for writer in held:
            writer.transport.abort()
        held.clear()

    async def serve():
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, cut)
        loop.add_signal_handler(signal.SIGUSR2, restore)
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class Proxy:
    def __init__(self, upstream_port):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "proxy", str(self.port), str(upstream_port)],
            stdout=subprocess.PIPE, text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("proxy did not start")

    def cut(self):
        self.proc.send_signal(signal.SIGUSR1)

    def restore(self):
        self.proc.send_signal(signal.SIGUSR2)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


# --------------------------------------------------------------------------
# What the clients have been told, and what every later read must show.
# --------------------------------------------------------------------------

def seq_of(text, mark):
    """`b17` -> 17 for mark `b`; anything else (the empty initial bio) -> -1."""
    if text and text.startswith(mark) and text[1:].isdigit():
        return int(text[1:])
    return -1


class UserState:
    def __init__(self, user_id, username, token):
        self.id = user_id
        self.username = username
        self.token = token
        self.seq = 0
        self.bio_acked = -1
        self.bio_attempted = -1
        self.links = {}        # id -> acknowledged title seq, for links acknowledged present
        self.deleting = set()  # delete sent, not acknowledged (may or may not be gone)
        self.deleted = set()   # delete acknowledged
        self.acked_writes = 0


class Model:
    def __init__(self):
        self.lock = threading.Lock()
        self.users = []

    def snapshot(self, user):
        with self.lock:
            return {
                "bio": user.bio_acked,
                "links": {i: s for i, s in user.links.items() if i not in user.deleting},
                "deleted": set(user.deleted),
            }


def stale_reasons(snapshot, bio=None, links=None):
    """Why a read is older than the acknowledged writes in `snapshot` (empty: it is not)."""
    reasons = []
    if bio is not None and seq_of(bio, "b") < snapshot["bio"]:
        reasons.append(f"bio {bio!r} older than acknowledged b{snapshot['bio']}")
    if links is not None:
        shown = {link["id"]: seq_of(link["title"], "t") for link in links}
        for link_id, acked in snapshot["links"].items():
            if link_id not in shown:
                reasons.append(f"acknowledged link {link_id} missing")
            elif shown[link_id] < acked:
                reasons.append(f"link {link_id} title t{shown[link_id]} older than t{acked}")
        for link_id in snapshot["deleted"] & set(shown):
            reasons.append(f"deleted link {link_id} still shown")
    return reasons


# --------------------------------------------------------------------------
# The load.
# --------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.records = []  # (start, end, op, status or "timeout"/"error:<kind>", x-cache)
        self.stale = []

    def add(self, *record):
        self.records.append(record)


class Client(threading.Thread):
    def __init__(self, base, me, model, recorder, stop, timeout, rate):
        super().__init__(daemon=True)
        self.base, self.me, self.model, self.rec = base, me, model, recorder
        self.stop, self.timeout, self.interval = stop, timeout, 1.0 / rate
        self.conn = None
        self.rng = random.Random(me.id)

    def call(self, op, method, path, body=None, token=None):
        if self.conn is None:
            host, port = self.base.removeprefix("http://").split(":")
            self.conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        start = time.monotonic()
        try:
            status, parsed, headers = request(self.base, method, path, body, token, conn=self.conn)
        except TimeoutError:
            self.rec.add(start, time.monotonic(), op, "timeout", None)
            self.conn.close()
            self.conn = None
            return None, None
        except (OSError, http.client.HTTPException) as e:
            self.rec.add(start, time.monotonic(), op, f"error:{type(e).__name__}", None)
            self.conn.close()
            self.conn = None
            return None, None
        self.rec.add(start, time.monotonic(), op, status, headers.get("x-cache"))
        return status, parsed

    def check(self, op, user, snapshot, **shown):
        # A link the owner started deleting after the snapshot may be gone.
        with self.model.lock:
            gone = user.deleting | user.deleted
        snapshot = dict(snapshot, links={i: s for i, s in snapshot["links"].items() if i not in gone})
        reasons = stale_reasons(snapshot, **shown)
        if reasons:
            self.rec.stale.append((time.monotonic(), op, reasons[:3]))

    def run(self):
        due = time.monotonic()
        while not self.stop.is_set():
            r = self.rng.random()
            if r < 0.68:
                self.read(self.rng.choice(self.model.users), r)
            else:
                self.write(r)
            # Paced, without catching up in a burst after a slow answer.
            due = max(due + self.interval, time.monotonic() - self.interval)
            self.stop.wait(max(0.0, due - time.monotonic()))

    def read(self, user, r):
        snap = self.model.snapshot(user)
        if r < 0.25:
            status, body = self.call("GET profile", "GET", f"/api/v1/profiles/{user.username}")
            if status == 200:
                self.check("GET profile", user, snap, bio=body["data"]["user"]["bio"],
                           links=body["data"]["links"])
        elif r < 0.43:
            status, body = self.call("GET user", "GET", f"/api/v1/users/{user.id}")
            if status == 200:
                self.check("GET user", user, snap, bio=body["data"]["bio"])
        elif r < 0.53:
            status, body = self.call("GET links", "GET", f"/api/v1/users/{user.id}/links?limit=100")
            if status == 200:
                self.check("GET links", user, snap, links=body["data"])
        elif r < 0.62:
            candidates = list(snap["links"].items()) + [(i, None) for i in snap["deleted"]]
            if not candidates:
                return
            link_id, acked = self.rng.choice(candidates)
            status, body = self.call("GET link", "GET", f"/api/v1/links/{link_id}")
            only_this = dict(snap, links={} if acked is None else {link_id: acked})
            if status == 200:
                self.check("GET link", user, only_this, links=[body["data"]])
            elif status == 404:
                self.check("GET link", user, only_this, links=[])
        else:
            self.call("GET users", "GET", f"/api/v1/users?search=chaos&page={self.rng.randint(1, 3)}&limit=10")

    def write(self, r):
        me, model = self.me, self.model
        with model.lock:
            me.seq += 1
            seq = me.seq
            present = [i for i in me.links if i not in me.deleting]
        if r < 0.82:
            with model.lock:
                me.bio_attempted = seq
            status, _ = self.call("PATCH user", "PATCH", f"/api/v1/users/{me.id}", {"bio": f"b{seq}"}, me.token)
            if status == 200:
                with model.lock:
                    me.bio_acked = max(me.bio_acked, seq)
                    me.acked_writes += 1
        elif r < 0.92 and len(present) < MAX_LINKS_PER_USER:
            status, body = self.call("POST link", "POST", f"/api/v1/users/{me.id}/links",
                                     {"title": f"t{seq}", "url": f"https://example.com/{me.id}/{seq}"},
                                     me.token)
            if status == 201:
                with model.lock:
                    me.links[body["data"]["id"]] = seq
                    me.acked_writes += 1
        elif r < 0.96 and present:
            link_id = self.rng.choice(present)
            status, _ = self.call("PATCH link", "PATCH", f"/api/v1/links/{link_id}", {"title": f"t{seq}"},
                                  me.token)
            if status == 200:
                with model.lock:
                    me.links[link_id] = max(me.links[link_id], seq)
                    me.acked_writes += 1
        elif present:
            link_id = self.rng.choice(present)
            with model.lock:
                me.deleting.add(link_id)
            status, _ = self.call("DELETE link", "DELETE", f"/api/v1/links/{link_id}", None, me.token)
            with model.lock:
                if status == 204:
                    me.links.pop(link_id, None)
                    me.deleting.discard(link_id)
                    me.deleted.add(link_id)
                    me.acked_writes += 1
                elif status is not None and 400 <= status < 500:
                    me.deleting.discard(link_id)
                # otherwise the outcome is unknown: the link stays "deleting" (never checked)


# --------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------

def cache_ok(base):
    status, body, _ = request(base, "GET", "/readyz", timeout=2)
    return status == 200 and body["cache"] == "ok"


def pg_ok(base, probe):
    status, _, _ = request(base, "GET", "/readyz", timeout=2)
    if status != 200:
        return False
    status, _, _ = request(base, "PATCH", f"/api/v1/users/{probe[0]}", {"name": f"probe {time.time()}"},
                           probe[1], timeout=2)
    return status == 200


def main():
    binary = sys.argv[1]
    env = os.environ
    clients = int(env.get("CHAOS_CLIENTS", "16"))
    rate = float(env.get("CHAOS_RATE", "25"))
    rounds = int(env.get("CHAOS_ROUNDS", "1"))
    warmup = float(env.get("CHAOS_WARMUP_SECS", "20"))
    steady = float(env.get("CHAOS_STEADY_SECS", "12"))
    fault = float(env.get("CHAOS_FAULT_SECS", "10"))
    timeout = float(env.get("CHAOS_TIMEOUT_SECS", "12"))

    workdir = tempfile.mkdtemp(prefix="linkhub-chaos-")
    drop_abandoned_databases("linkhub_chaos_")
    name = f"linkhub_chaos_{os.getpid()}"
    redis = RedisServer(workdir)
    redis.start()
    redis_proxy = Proxy(redis.port)
    pg_proxy = Proxy(5432)
    app = Linkhub(
        binary, name, f"redis://127.0.0.1:{redis_proxy.port}", os.path.join(workdir, "linkhub.log"),
        database_url=f"postgres://postgres@127.0.0.1:{pg_proxy.port}/{name}",
    )
    faults = []  # (label, kind, start, end, recovery seconds or None)
    ok = False
    try:
        app.drop_database()
        app.start()
        pid = app.proc.pid
        model = Model()
        for i in range(clients):
            user_id, token = register_and_login(app.base, f"chaos_{i}")
            model.users.append(UserState(user_id, f"chaos_{i}", token))
        probe = register_and_login(app.base, "chaos_probe")
        recorder = Recorder()
        stop = threading.Event()
        threads = [Client(app.base, u, model, recorder, stop, timeout, rate) for u in model.users]
        started = time.monotonic()
        for t in threads:
            t.start()
        print(f"chaos: {clients} clients on {app.base}; warming up {warmup:.0f} s", flush=True)
        time.sleep(warmup)
        rss_warm = app.rss_kib()

        def run_fault(label, kind, begin, end, healthy, duration=fault):
            start = time.monotonic()
            begin()
            time.sleep(duration)
            end()
            ended = time.monotonic()
            recovery = wait_until(healthy, 30)
            faults.append((label, kind, start, ended, recovery))
            shown = "never" if recovery is None else f"{recovery:.2f} s"
            print(f"chaos: {label}: fault {ended - start:.1f} s, recovered in {shown}", flush=True)
            time.sleep(steady)

        for n in range(1, rounds + 1):
            suffix = f" (round {n})" if rounds > 1 else ""
            for i in (1, 2):
                run_fault(f"Redis cut #{i}{suffix}", "redis", redis_proxy.cut, redis_proxy.restore,
                          lambda: cache_ok(app.base))
            # Killed, down for 2 s, back empty; the fault ends when the new Redis answers.
            run_fault(f"Redis killed, restarted empty{suffix}", "redis", redis.kill, redis.start,
                      lambda: cache_ok(app.base), duration=2)
            run_fault(f"PostgreSQL cut{suffix}", "pg", pg_proxy.cut, pg_proxy.restore,
                      lambda: pg_ok(app.base, probe))
        stop.set()
        for t in threads:
            t.join(timeout + 5)
        load_secs = time.monotonic() - started
        time.sleep(2)
        rss_end = app.rss_kib()
        alive = app.proc.poll() is None and app.proc.pid == pid
        ok = report(app, model, recorder, faults, timeout, load_secs, rss_warm, rss_end, alive, workdir)
        return 0 if ok else 1
    finally:
        app.stop()
        redis_proxy.stop()
        pg_proxy.stop()
        redis.kill()
        app.drop_database()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)


def verify_final(app, model):
    """Every acknowledged write, in PostgreSQL (directly) and through the API."""
    ids = ",".join(str(u.id) for u in model.users)
    bios = {int(r[0]): r[1] for r in app.sql(f"SELECT id, bio FROM users WHERE id IN ({ids})")}
    links = {}
    for row in app.sql(f"SELECT id, user_id, title FROM links WHERE user_id IN ({ids})"):
        links[int(row[0])] = (int(row[1]), row[2])
    missing_db, missing_api, examples = 0, 0, []
    for u in model.users:
        expected = model.snapshot(u)
        # In PostgreSQL
        db_bio = seq_of(bios.get(u.id), "b")
        if db_bio < expected["bio"]:
            missing_db += 1
            examples.append(f"user {u.id}: PostgreSQL bio b{db_bio} < acknowledged b{expected['bio']}")
        for link_id, seq in expected["links"].items():
            row = links.get(link_id)
            if row is None or seq_of(row[1], "t") < seq:
                missing_db += 1
                examples.append(f"link {link_id}: acknowledged t{seq}, PostgreSQL has {row}")
        for link_id in expected["deleted"] & set(links):
            missing_db += 1
            examples.append(f"link {link_id}: acknowledged delete, still in PostgreSQL")
        # Through the API: equal to PostgreSQL, and at least what was acknowledged
        for path, extract in (
            (f"/api/v1/users/{u.id}", lambda d: {"bio": d["bio"]}),
            (f"/api/v1/profiles/{u.username}", lambda d: {"bio": d["user"]["bio"], "links": d["links"]}),
            (f"/api/v1/users/{u.id}/links?limit=100", lambda d: {"links": d}),
        ):
            status, body, headers = request(app.base, "GET", path)
            if status != 200:
                missing_api += 1
                examples.append(f"GET {path}: {status}")
                continue
            shown = extract(body["data"])
            reasons = stale_reasons(expected, **shown)
            if "bio" in shown and shown["bio"] != bios.get(u.id):
                reasons.append(f"bio {shown['bio']!r} != PostgreSQL {bios.get(u.id)!r}")
            if "links" in shown:
                in_db = {i: t for i, (owner, t) in links.items() if owner == u.id}
                api = {link["id"]: link["title"] for link in shown["links"]}
                if api != in_db:
                    reasons.append(f"links differ from PostgreSQL ({len(api)} vs {len(in_db)})")
            if reasons:
                missing_api += 1
                examples.append(f"GET {path} ({headers.get('x-cache')}): {reasons[:2]}")
    return missing_db, missing_api, examples


def replayed_counts(logfile):
    """(unix second, outbox rows replayed) of each recovery linkhub logged."""
    counts = []
    for line in open(logfile, errors="replace"):
        if "Redis trusted again (" in line:
            when = calendar.timegm(time.strptime(line[1:21], "%Y-%m-%dT%H:%M:%SZ"))
            counts.append((when, line.split("Redis trusted again (")[1].split()[0]))
    return counts


def report(app, model, rec, faults, timeout, load_secs, rss_warm, rss_end, alive, workdir):
    pg_windows = [(s, e + RECOVERY_LIMIT_SECS) for _, kind, s, e, _ in faults if kind == "pg"]
    pg_cuts = [(s, e) for _, kind, s, e, _ in faults if kind == "pg"]
    redis_faults = [(s, e) for _, kind, s, e, _ in faults if kind == "redis"]

    def within(windows, start):
        return any(w_start <= start <= w_end for w_start, w_end in windows)

    def in_pg_window(start, end):
        return any(start <= w_end and end >= w_start for w_start, w_end in pg_windows)

    records = rec.records
    bad_5xx = [r for r in records if isinstance(r[3], int) and r[3] >= 500
               and not (r[3] == 503 and in_pg_window(r[0], r[1]))]
    allowed_503 = [r for r in records if r[3] == 503 and in_pg_window(r[0], r[1])]
    hung = [r for r in records if r[3] == "timeout" or (r[1] - r[0]) > timeout]
    dropped = [r for r in records if isinstance(r[3], str) and r[3].startswith("error:")]
    answered = [r for r in records if isinstance(r[3], int)]
    latencies = sorted(r[1] - r[0] for r in answered)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0
    xcache = {}
    for r in answered:
        if r[4]:
            xcache[r[4]] = xcache.get(r[4], 0) + 1
    acked = sum(u.acked_writes for u in model.users)
    during_pg = [r for r in answered if within(pg_cuts, r[0])]
    during_redis = [r for r in answered if within(redis_faults, r[0])]
    missing_db, missing_api, examples = verify_final(app, model)
    growth = (rss_end - rss_warm) / rss_warm if rss_warm else 0

    rows = []

    def row(check, figure, limit="", ok=None):
        rows.append((check, str(figure), limit, "" if ok is None else ("PASS" if ok else "FAIL")))

    row("requests (load time)", f"{len(records)} ({load_secs:.0f} s, {len(records) / load_secs:.0f}/s)")
    row("X-Cache HIT / MISS / BYPASS",
        f"{xcache.get('HIT', 0)} / {xcache.get('MISS', 0)} / {xcache.get('BYPASS', 0)}")
    row("while PostgreSQL was cut: HIT / other 2xx / 503",
        f"{sum(1 for r in during_pg if r[4] == 'HIT')} / "
        f"{sum(1 for r in during_pg if r[3] < 300 and r[4] != 'HIT')} / "
        f"{sum(1 for r in during_pg if r[3] == 503)}")
    row("while Redis was down: 2xx / BYPASS reads / 5xx",
        f"{sum(1 for r in during_redis if r[3] < 300)} / "
        f"{sum(1 for r in during_redis if r[4] == 'BYPASS')} / "
        f"{sum(1 for r in during_redis if r[3] >= 500)}")
    row("503 overlapping the PostgreSQL cut (+2 s)", len(allowed_503), "allowed")
    row("other 5xx", len(bad_5xx), "0", not bad_5xx)
    row(f"requests unanswered or slower than {timeout:.0f} s", len(hung), "0", not hung)
    row("connections dropped by linkhub", len(dropped), "0", not dropped)
    row("latency p99 / max", f"{p99 * 1000:.0f} ms / {latencies[-1] * 1000 if latencies else 0:.0f} ms")
    replays = replayed_counts(app.logfile)
    for label, kind, start, end, recovery in faults:
        shown = "never" if recovery is None else f"{recovery:.2f} s"
        if kind == "redis" and recovery is not None:
            # The first recovery logged at or after the fault ended.
            ended_wall = time.time() - (time.monotonic() - end)
            after = [n for when, n in replays if when >= int(ended_wall) - 1]
            if after:
                shown += f" ({after[0]} owed bumps replayed)"
        row(f"recovery after: {label}", shown, f"<= {RECOVERY_LIMIT_SECS:.0f} s",
            recovery is not None and recovery <= RECOVERY_LIMIT_SECS)
    row("same process throughout (no restart)", "yes" if alive else "no", "yes", alive)
    row("acknowledged writes", acked)
    row("acknowledged writes missing in PostgreSQL", missing_db, "0", missing_db == 0)
    row("final reads not showing PostgreSQL's data", missing_api, "0", missing_api == 0)
    row("reads older than an acknowledged write", len(rec.stale), "0", not rec.stale)
    row("RSS after warm-up -> after run",
        f"{rss_warm / 1024:.1f} MiB -> {rss_end / 1024:.1f} MiB ({growth * 100:+.1f} %)",
        f"within {MEMORY_LIMIT * 100:.0f} %", abs(growth) <= MEMORY_LIMIT)

    widths = [max(len(r[i]) for r in rows + [("check", "figure", "limit", "result")]) for i in range(4)]
    line = "+".join("-" * (w + 2) for w in widths)
    print(f"\n+{line}+")
    for r in [("check", "figure", "limit", "result")] + rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if r[0] == "check":
            print(f"+{line}+")
    print(f"+{line}+")
    def phase(t):
        """Where `t` falls: in a fault, or how long after the last one ended."""
        last = None
        for label, _, start, end, _ in faults:
            if start <= t <= end:
                return f"{t - start:.1f} s into {label}"
            if end < t:
                last = (label, end)
        return f"{t - last[1]:.1f} s after {last[0]}" if last else "before the first fault"

    for r in (bad_5xx + hung + dropped)[:10]:
        print(f"chaos: {r[2]} sent {phase(r[0])} -> {r[3]} after {r[1] - r[0]:.2f} s")
    for when, op, reasons in rec.stale[:10]:
        print(f"chaos: stale {op} {phase(when)}: {reasons}")
    for example in examples[:10]:
        print(f"chaos: final check: {example}")
    ok = all(r[3] != "FAIL" for r in rows)
    print("chaos: PASS" if ok else f"chaos: FAIL; linkhub log in {workdir}/linkhub.log")
    return ok


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "proxy":
        proxy_main(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
