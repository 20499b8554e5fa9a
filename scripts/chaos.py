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
    was after warm-up;
  * the consistency observer, which checks every cached HIT against
    PostgreSQL here (`CACHE_VERIFY_SAMPLE=1`), found no stale entry, and
    found some fresh (else it did not run, and proves nothing).

Beside that load, clickers follow links through `GET /l/{id}` on the
instance above and on a second one (same database, same Redis, same click
journal directory), and that second instance is `kill -9`ed in the middle
of the first fault and started again. The run also fails unless:

  * the killed instance's journal segment is adopted (by the main instance
    or by the restarted one) within 30 s of the load's end: the totals are
    read only then, and after the last clicks were applied;
  * the owners' `GET /users/{id}/clicks` adds up to the `302`s the
    clickers were answered, on both instances (a click answered is never
    lost, none is counted twice), plus at most the clicks in doubt: those
    without an answer, cut by the kill or timed out (journaled, perhaps, in
    the instant before their 302 was lost). A 503 counts nothing; and no
    click is answered a 5xx other than 503 within the PostgreSQL window.

With `--failover` linkhub runs instead on a private Redis
Cluster of three masters with one replica each, and each round is a
failover with unreplicated writes:

  1. every replica's replication link is broken (it authenticates to its
     master as a user that does not exist; clients and the cluster bus are
     untouched, so the cluster still counts it alive), for CHAOS_FAULT_SECS
     of writes;
  2. the masters are killed and every replica takes over
     (`CLUSTER FAILOVER TAKEOVER`): the fault ends there;
  3. the killed nodes are restarted; they rejoin as replicas of the new
     masters, so the next round fails over the other way.

The checks are the same; the recovery is `/readyz` reporting the cache `ok`.

Each client sends up to CHAOS_RATE requests a second (a third of them
writes), so the load is the same on a quiet and on a busy machine.

Knobs (environment): CHAOS_CLIENTS (16), CHAOS_RATE (25 per client),
CHAOS_CLICKERS (4), CHAOS_CLICK_RATE (25 clicks a second per clicker),
CHAOS_ROUNDS (1: the fault cycle above, repeated), CHAOS_WARMUP_SECS (20),
CHAOS_STEADY_SECS (12: load between faults), CHAOS_FAULT_SECS (10),
CHAOS_TIMEOUT_SECS (12: per request).
"""

import calendar
import http.client
import secrets
import subprocess
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from typing import NamedTuple

from harness import (
    Linkhub, Proxy, RedisServer, drop_abandoned_databases, free_port, register_and_login, request,
    wait_until,
)

RECOVERY_LIMIT_SECS = 2.0
# The instance's observer checks every HIT; its /metrics asks for this token
# (an operator's METRICS_TOKEN or METRICS_BIND_ADDR in the environment would
# otherwise decide where and how it answers).
METRICS_TOKEN = secrets.token_hex(16)
OBSERVER_ENV = {
    "CACHE_VERIFY_SAMPLE": "1",
    "CACHE_VERIFY_PER_SECOND": "0",
    "METRICS_TOKEN": METRICS_TOKEN,
    "METRICS_BIND_ADDR": "",
}
MEMORY_LIMIT = 0.20
MAX_LINKS_PER_USER = 20


# --------------------------------------------------------------------------
# What the clients have been told, and what every later read must show.
# --------------------------------------------------------------------------

def seq_of(text, mark):
    """`b17` -> 17 for mark `b`; anything else (the empty initial bio) -> -1."""
    if text and text.startswith(mark) and text[1:].isdigit():
        return int(text[1:])
    return -1


class Snapshot(NamedTuple):
    """What one user's acknowledged writes say a read must show at least."""
    bio: int        # seq of the acknowledged bio (-1: none)
    links: dict     # link id -> acknowledged title seq
    deleted: set    # link ids whose delete was acknowledged


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
            return Snapshot(
                bio=user.bio_acked,
                links={i: s for i, s in user.links.items() if i not in user.deleting},
                deleted=set(user.deleted),
            )


def stale_reasons(snapshot, bio=None, links=None):
    """Why a read is older than the acknowledged writes in `snapshot` (empty: it is not)."""
    reasons = []
    if bio is not None and seq_of(bio, "b") < snapshot.bio:
        reasons.append(f"bio {bio!r} older than acknowledged b{snapshot.bio}")
    if links is not None:
        shown = {link["id"]: seq_of(link["title"], "t") for link in links}
        for link_id, acked in snapshot.links.items():
            if link_id not in shown:
                reasons.append(f"acknowledged link {link_id} missing")
            elif shown[link_id] < acked:
                reasons.append(f"link {link_id} title t{shown[link_id]} older than t{acked}")
        for link_id in snapshot.deleted & set(shown):
            reasons.append(f"deleted link {link_id} still shown")
    return reasons


# --------------------------------------------------------------------------
# The load.
# --------------------------------------------------------------------------

class Record(NamedTuple):
    """One request a client sent."""
    start: float    # time.monotonic() when it was sent
    end: float      # ... and when it was answered or given up on
    op: str         # e.g. "GET profile"
    outcome: object  # the HTTP status (int), "timeout" or "error:<exception>"
    x_cache: object  # the X-Cache header, or None


class StaleRead(NamedTuple):
    """A read that showed data older than an acknowledged write."""
    at: float
    op: str
    reasons: list


class Fault(NamedTuple):
    """One injected fault and how long the service took to be whole again."""
    label: str
    kind: str        # "redis" or "pg"
    start: float
    end: float
    recovery: object  # seconds, or None: never within the wait


class LinkRow(NamedTuple):
    owner: int
    title: str


class Replay(NamedTuple):
    """A recovery linkhub logged: when (unix second) and how many outbox rows it replayed."""
    at: int
    rows: str


class Row(NamedTuple):
    """A line of the final table."""
    check: str
    figure: str
    limit: str
    result: str


class Recorder:
    def __init__(self):
        self.records = []  # Record
        self.stale = []    # StaleRead

    def add(self, start, end, op, outcome, x_cache):
        self.records.append(Record(start, end, op, outcome, x_cache))


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
        snapshot = snapshot._replace(links={i: s for i, s in snapshot.links.items() if i not in gone})
        reasons = stale_reasons(snapshot, **shown)
        if reasons:
            self.rec.stale.append(StaleRead(time.monotonic(), op, reasons[:3]))

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
            candidates = list(snap.links.items()) + [(i, None) for i in snap.deleted]
            if not candidates:
                return
            link_id, acked = self.rng.choice(candidates)
            status, body = self.call("GET link", "GET", f"/api/v1/links/{link_id}")
            only_this = snap._replace(links={} if acked is None else {link_id: acked})
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


class Click(NamedTuple):
    """One click a clicker sent."""
    start: float
    end: float
    instance: str    # "main" or "peer"
    outcome: object  # the HTTP status (int), "timeout" or "error:<exception>"


class Clicker(threading.Thread):
    """Clicks the click links of random users, on a random instance each
    time, paced like `Client`; keeps every click's outcome."""

    def __init__(self, n, bases, links, stop, timeout, rate):
        super().__init__(daemon=True)
        self.bases, self.links, self.stop = bases, links, stop
        self.timeout, self.interval = timeout, 1.0 / rate
        self.conns = {}
        self.clicks = []  # Click
        self.rng = random.Random(f"clicker-{n}")

    def click(self, instance, link_id):
        base = self.bases[instance]
        if instance not in self.conns:
            host, port = base.removeprefix("http://").split(":")
            self.conns[instance] = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        start = time.monotonic()
        try:
            outcome = request(base, "GET", f"/l/{link_id}", conn=self.conns[instance]).status
        except (OSError, http.client.HTTPException) as e:
            outcome = "timeout" if isinstance(e, TimeoutError) else f"error:{type(e).__name__}"
            self.conns.pop(instance).close()
        self.clicks.append(Click(start, time.monotonic(), instance, outcome))

    def run(self):
        due = time.monotonic()
        while not self.stop.is_set():
            self.click(self.rng.choice(sorted(self.bases)), self.rng.choice(self.links))
            due = max(due + self.interval, time.monotonic() - self.interval)
            self.stop.wait(max(0.0, due - time.monotonic()))


def clicks_shown(base, model):
    """The clicks of every user's links, as their owners read them."""
    total = 0
    for u in model.users:
        status, body, _ = request(base, "GET", f"/api/v1/users/{u.id}/clicks", token=u.token)
        if status != 200:
            raise RuntimeError(f"GET /api/v1/users/{u.id}/clicks: {status} {body}")
        total += sum(row["clicks"] for row in body["data"])
    return total


# --------------------------------------------------------------------------
# A private Redis Cluster with replicas (--failover).
# --------------------------------------------------------------------------

class RedisCliError(OSError):
    """An OSError, so that `wait_until` polls on through it."""


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0 or out.stdout.startswith(("ERR", "Could not connect")):
        raise RedisCliError(f"redis-cli -p {port} {' '.join(args)}: {out.stdout} {out.stderr}")
    return out.stdout


class ClusterNode:
    """One cluster node on a free port, its bus on another, its `nodes.conf`
    in a directory of its own (so a restart rejoins as the same node)."""

    def __init__(self, workdir, n):
        self.port = free_port()
        self.bus_port = free_port()
        self.dir = os.path.join(workdir, f"node{n}")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log"),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if wait_until(lambda: redis_cli(self.port, "ping").strip() == "PONG", 10) is None:
            raise RuntimeError(f"cluster node on port {self.port} did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def info(self, field):
        for line in redis_cli(self.port, "info", "replication").splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return None


class ReplicatedCluster:
    """Three masters, one replica each; roles are read from the cluster."""

    def __init__(self, workdir):
        self.nodes = [ClusterNode(workdir, n) for n in range(6)]

    def urls(self):
        """Every node: the client finds the promoted replicas once every master is gone."""
        return ",".join(f"redis://127.0.0.1:{n.port}" for n in self.nodes)

    def start(self):
        for node in self.nodes:
            node.start()
        redis_cli(self.nodes[0].port, "--cluster", "create",
                  *[f"127.0.0.1:{n.port}" for n in self.nodes],
                  "--cluster-replicas", "1", "--cluster-yes")
        self.wait_whole()

    def roles(self):
        """(masters, replicas) as the live nodes agree on them, else None."""
        views = set()
        for node in self.nodes:
            if not node.alive():
                continue
            masters, replicas = [], []
            for line in redis_cli(node.port, "cluster", "nodes").splitlines():
                fields = line.split()
                if len(fields) < 8 or "fail" in fields[2]:
                    continue
                port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                if "master" in fields[2] and len(fields) > 8:
                    masters.append(port)
                elif "slave" in fields[2]:
                    replicas.append(port)
            views.add((tuple(sorted(masters)), tuple(sorted(replicas))))
        if len(views) != 1:
            return None
        masters, replicas = views.pop()
        by_port = {n.port: n for n in self.nodes}
        return [by_port[p] for p in masters], [by_port[p] for p in replicas]

    def wait_whole(self, within=60):
        """Until every node agrees on 3 masters and 3 replicas whose links are up."""
        def whole():
            roles = self.roles()
            if roles is None or len(roles[0]) != 3 or len(roles[1]) != 3:
                return False
            return all(r.info("master_link_status") == "up" for r in roles[1])
        if wait_until(whole, within, 0.2) is None:
            raise RuntimeError("the Redis cluster did not become whole")

    def break_links(self):
        """Each replica now authenticates to its master as a user that does
        not exist, and its current link is closed: every reconnection fails."""
        _, replicas = self.roles()
        for r in replicas:
            redis_cli(r.port, "config", "set", "masteruser", "linkhub-nobody")
            redis_cli(r.port, "config", "set", "masterauth", "wrong-password")
            redis_cli(r.port, "client", "kill", "type", "master")
        if wait_until(lambda: all(r.info("master_link_status") == "down" for r in replicas), 10) is None:
            raise RuntimeError("the replication links did not break")
        self.broken = replicas

    def fail_over(self):
        """Kills the masters; every replica takes over."""
        masters, _ = self.roles()
        for m in masters:
            m.kill()
        for r in self.broken:
            redis_cli(r.port, "cluster", "failover", "takeover")
        if wait_until(lambda: all(r.info("role") == "master" for r in self.broken), 20) is None:
            raise RuntimeError("the replicas did not take over")
        self.killed = masters

    def heal(self):
        """The killed nodes come back and rejoin as replicas of the new masters."""
        for node in self.killed:
            node.start()
        for node in self.broken:
            # Masters now; should they be replicas again, they authenticate normally.
            redis_cli(node.port, "config", "set", "masteruser", "")
            redis_cli(node.port, "config", "set", "masterauth", "")
        self.wait_whole()

    def stop(self):
        for node in self.nodes:
            node.kill()


# --------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------

def cache_ok(base):
    status, body, _ = request(base, "GET", "/readyz", timeout=2)
    return status == 200 and body["cache"] == "ok"


def pg_ok(base, probe):
    if request(base, "GET", "/readyz", timeout=2).status != 200:
        return False
    answer = request(base, "PATCH", f"/api/v1/users/{probe.id}", {"name": f"probe {time.time()}"},
                     probe.token, timeout=2)
    return answer.status == 200


def main():
    failover = "--failover" in sys.argv[1:]
    binary = [a for a in sys.argv[1:] if a != "--failover"][0]
    env = os.environ
    clients = int(env.get("CHAOS_CLIENTS", "16"))
    rate = float(env.get("CHAOS_RATE", "25"))
    rounds = int(env.get("CHAOS_ROUNDS", "1"))
    warmup = float(env.get("CHAOS_WARMUP_SECS", "20"))
    steady = float(env.get("CHAOS_STEADY_SECS", "12"))
    fault = float(env.get("CHAOS_FAULT_SECS", "10"))
    timeout = float(env.get("CHAOS_TIMEOUT_SECS", "12"))
    clickers = int(env.get("CHAOS_CLICKERS", "4"))
    click_rate = float(env.get("CHAOS_CLICK_RATE", "25"))

    workdir = tempfile.mkdtemp(prefix="linkhub-chaos-")
    drop_abandoned_databases("linkhub_chaos_")
    name = f"linkhub_chaos_{os.getpid()}"
    redis = RedisServer(workdir)
    redis.start()
    redis_proxy = Proxy(redis.port)
    pg_proxy = Proxy(5432)
    cluster = None
    cluster_env = {}
    if failover:
        # Its ports are chosen now; it starts within the `try` below, so that
        # a failure there still stops whatever nodes did start.
        cluster = ReplicatedCluster(workdir)
        cluster_env = {"REDIS_CLUSTER_URLS": cluster.urls()}
    app = Linkhub(
        binary, name, f"redis://127.0.0.1:{redis_proxy.port}", os.path.join(workdir, "linkhub.log"),
        database_url=f"postgres://postgres@127.0.0.1:{pg_proxy.port}/{name}",
        env={**cluster_env, **OBSERVER_ENV},
    )
    # The second instance: the clicks' other door, killed midway. Both share
    # one click journal directory, so that the segment the kill leaves is
    # adopted: by the main instance (a sibling) or by the peer's restart.
    journal = {"CLICKS_JOURNAL_DIR": os.path.join(workdir, "clicks-journal")}
    app.env.update(journal)
    peer = Linkhub(
        binary, name, f"redis://127.0.0.1:{redis_proxy.port}", os.path.join(workdir, "linkhub-peer.log"),
        database_url=f"postgres://postgres@127.0.0.1:{pg_proxy.port}/{name}",
        env={**cluster_env, **OBSERVER_ENV, **journal},
    )
    faults = []  # Fault
    ok = False
    killer = None
    try:
        if cluster:
            cluster.start()
        app.drop_database()
        app.start()
        pid = app.proc.pid
        model = Model()
        for i in range(clients):
            user_id, token = register_and_login(app.base, f"chaos_{i}")
            model.users.append(UserState(user_id, f"chaos_{i}", token))
        probe = register_and_login(app.base, "chaos_probe")
        # One link per user that only the clickers use: the writers never
        # delete it (a deleted link's counts go with it).
        click_links = []
        for u in model.users:
            status, body, _ = request(app.base, "POST", f"/api/v1/users/{u.id}/links",
                                      {"title": "clicked", "url": f"https://example.com/click/{u.id}"},
                                      u.token)
            if status != 201:
                raise RuntimeError(f"the click link of user {u.id}: {status} {body}")
            click_links.append(body["data"]["id"])
        peer.start()
        recorder = Recorder()
        stop = threading.Event()
        threads = [Client(app.base, u, model, recorder, stop, timeout, rate) for u in model.users]
        clicking = [Clicker(n, {"main": app.base, "peer": peer.base}, click_links, stop, timeout, click_rate)
                    for n in range(clickers)]
        peer_killed = []  # (killed, back) monotonic times

        def kill_peer():
            """kill -9 of the second instance, started again 2 s later."""
            killed = time.monotonic()
            peer.proc.kill()
            peer.proc.wait()
            print("chaos: second instance killed (-9) under clicks", flush=True)
            time.sleep(2)
            try:
                peer.start()
                peer_killed.append((killed, time.monotonic()))
            except RuntimeError as e:
                peer_killed.append((killed, None))
                print(f"chaos: the second instance did not come back: {e}", flush=True)

        # In the middle of the first fault.
        killer = threading.Timer(warmup + fault / 2, kill_peer)
        started = time.monotonic()
        for t in threads + clicking:
            t.start()
        killer.start()
        print(f"chaos: {clients} clients on {app.base}, {clickers} clickers on it and {peer.base}; "
              f"warming up {warmup:.0f} s", flush=True)
        time.sleep(warmup)
        rss_warm = (app.rss_kib(), near_cache_kib(app.base))

        def run_fault(label, kind, begin, end, healthy, duration=fault):
            start = time.monotonic()
            begin()
            time.sleep(duration)
            end()
            ended = time.monotonic()
            recovery = wait_until(healthy, 30)
            faults.append(Fault(label, kind, start, ended, recovery))
            shown = "never" if recovery is None else f"{recovery:.2f} s"
            print(f"chaos: {label}: fault {ended - start:.1f} s, recovered in {shown}", flush=True)
            time.sleep(steady)

        for n in range(1, rounds + 1):
            suffix = f" (round {n})" if rounds > 1 else ""
            if failover:
                # Writes go on while no replica gets them; the fault ends
                # when the replicas have taken over from the killed masters.
                run_fault(f"replication broken, masters killed, replicas took over{suffix}",
                          "redis", cluster.break_links, cluster.fail_over,
                          lambda: cache_ok(app.base))
                cluster.heal()
                continue
            for i in (1, 2):
                run_fault(f"Redis cut #{i}{suffix}", "redis", redis_proxy.cut, redis_proxy.restore,
                          lambda: cache_ok(app.base))
            # Killed, down for 2 s, back empty; the fault ends when the new Redis answers.
            run_fault(f"Redis killed, restarted empty{suffix}", "redis", redis.kill, redis.start,
                      lambda: cache_ok(app.base), duration=2)
            run_fault(f"PostgreSQL cut{suffix}", "pg", pg_proxy.cut, pg_proxy.restore,
                      lambda: pg_ok(app.base, probe))
        stop.set()
        killer.join()
        for t in threads + clicking:
            t.join(timeout + 5)
        load_secs = time.monotonic() - started
        time.sleep(2)
        rss_end = (app.rss_kib(), near_cache_kib(app.base))
        observer = observer_settled(app.base)
        alive = app.proc.poll() is None and app.proc.pid == pid
        clicks = [c for t in clicking for c in t.clicks]
        adopted = wait_for_adoption(journal["CLICKS_JOURNAL_DIR"], peer)
        ok = report(app, model, recorder, faults, timeout, load_secs, rss_warm, rss_end, alive, workdir,
                    observer, clicks, clicks_shown(app.base, model), peer_killed, adopted)
        return 0 if ok else 1
    finally:
        if killer:
            killer.cancel()
        peer.stop()
        app.stop()
        redis_proxy.stop()
        pg_proxy.stop()
        redis.kill()
        if cluster:
            cluster.stop()
        app.drop_database()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)


def wait_for_adoption(journal_dir, peer, within=30):
    """Waits (at most `within` s) until the click journal holds no segment
    but the live instances' own (one each; a killed instance's is adopted
    within a scan, 2 s), then for the last clicks to be applied (the
    applier flushes every 250 ms). Returns the seconds it took, or None."""
    live = 1 + (1 if peer.proc and peer.proc.poll() is None else 0)

    def settled():
        names = [n for n in os.listdir(journal_dir) if n.endswith(".clicks")]
        return len(names) <= live or None

    started = time.monotonic()
    if wait_until(settled, within) is None:
        left = sorted(os.listdir(journal_dir))
        print(f"chaos: the click journal still holds {left} after {within} s", flush=True)
        return None
    time.sleep(1.5)
    return time.monotonic() - started


def near_cache_kib(base):
    """What linkhub's near cache holds now, in KiB: a bounded cache
    (`CACHE_NEAR_MAX_BYTES`) that may fill during the run, not a leak."""
    return scrape(base).get(("linkhub_cache_near_bytes", ()), 0) / 1024


def scrape(base):
    """linkhub's /metrics as {(name, ((label, value), ...)): value}."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        res = conn.getresponse()
        text = res.read().decode()
        if res.status != 200:
            raise RuntimeError(f"/metrics answered {res.status}: {text[:200]}")
    finally:
        conn.close()
    samples = {}
    for line in text.splitlines():
        found = re.match(r'^(\w+)(?:\{(.*)\})? (\S+)$', line)
        if found:
            labels = tuple(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
            samples[(found.group(1), labels)] = float(found.group(3))
    return samples


class Observer(NamedTuple):
    """The consistency observer's figures: checks by result, skips by reason."""
    results: dict
    skipped: dict

    def checks(self):
        return int(sum(self.results.values()))


def observer_figures(base):
    samples = scrape(base)
    results, skipped = {}, {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "linkhub_cache_verify_total":
            results[label["result"]] = int(value)
        elif name == "linkhub_cache_verify_skipped_total":
            skipped[label["reason"]] = int(value)
    return Observer(results, skipped)


def observer_settled(base):
    """The observer's figures once its last checks (a settle delay, and up to
    2 x REDIS_TIMEOUT_MS + 1 s for a difference) have ended: unchanged for 3 s."""
    last = observer_figures(base)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(3)
        now = observer_figures(base)
        if now == last:
            break
        last = now
    return last


def verify_final(app, model):
    """Every acknowledged write, in PostgreSQL (directly) and through the API."""
    ids = ",".join(str(u.id) for u in model.users)
    bios = {int(r[0]): r[1] for r in app.sql(f"SELECT id, bio FROM users WHERE id IN ({ids})")}
    links = {}
    for row in app.sql(f"SELECT id, user_id, title FROM links WHERE user_id IN ({ids})"):
        links[int(row[0])] = LinkRow(owner=int(row[1]), title=row[2])
    missing_db, missing_api, examples = 0, 0, []
    for u in model.users:
        expected = model.snapshot(u)
        # In PostgreSQL
        db_bio = seq_of(bios.get(u.id), "b")
        if db_bio < expected.bio:
            missing_db += 1
            examples.append(f"user {u.id}: PostgreSQL bio b{db_bio} < acknowledged b{expected.bio}")
        for link_id, seq in expected.links.items():
            row = links.get(link_id)
            if row is None or seq_of(row.title, "t") < seq:
                missing_db += 1
                examples.append(f"link {link_id}: acknowledged t{seq}, PostgreSQL has {row}")
        for link_id in expected.deleted & set(links):
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
                in_db = {i: row.title for i, row in links.items() if row.owner == u.id}
                api = {link["id"]: link["title"] for link in shown["links"]}
                if api != in_db:
                    reasons.append(f"links differ from PostgreSQL ({len(api)} vs {len(in_db)})")
            if reasons:
                missing_api += 1
                examples.append(f"GET {path} ({headers.get('x-cache')}): {reasons[:2]}")
    return missing_db, missing_api, examples


def replayed_counts(logfile):
    """Each recovery linkhub logged (the first start's "trusted" and every
    later "trusted again"), as a `Replay`."""
    counts = []
    for line in open(logfile, errors="replace"):
        found = re.search(r"Redis trusted(?: again)? \((\S+)", line)
        stamp = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line)
        if found and stamp:
            # tracing's timestamp opens the line: 2026-12-01T23:33:30.512Z
            when = calendar.timegm(time.strptime(stamp.group(0), "%Y-%m-%dT%H:%M:%S"))
            counts.append(Replay(when, found.group(1)))
    return counts


def report(app, model, rec, faults, timeout, load_secs, rss_warm, rss_end, alive, workdir, observer,
           clicks, clicks_counted, peer_killed, adopted):
    pg_windows = [(f.start, f.end + RECOVERY_LIMIT_SECS) for f in faults if f.kind == "pg"]
    pg_cuts = [(f.start, f.end) for f in faults if f.kind == "pg"]
    redis_faults = [(f.start, f.end) for f in faults if f.kind == "redis"]

    def within(windows, start):
        return any(w_start <= start <= w_end for w_start, w_end in windows)

    def in_pg_window(start, end):
        return any(start <= w_end and end >= w_start for w_start, w_end in pg_windows)

    records = rec.records
    bad_5xx = [r for r in records if isinstance(r.outcome, int) and r.outcome >= 500
               and not (r.outcome == 503 and in_pg_window(r.start, r.end))]
    allowed_503 = [r for r in records if r.outcome == 503 and in_pg_window(r.start, r.end)]
    hung = [r for r in records if r.outcome == "timeout" or (r.end - r.start) > timeout]
    dropped = [r for r in records if isinstance(r.outcome, str) and r.outcome.startswith("error:")]
    answered = [r for r in records if isinstance(r.outcome, int)]
    latencies = sorted(r.end - r.start for r in answered)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0
    xcache = {}
    for r in answered:
        if r.x_cache:
            xcache[r.x_cache] = xcache.get(r.x_cache, 0) + 1
    acked = sum(u.acked_writes for u in model.users)
    during_pg = [r for r in answered if within(pg_cuts, r.start)]
    during_redis = [r for r in answered if within(redis_faults, r.start)]
    missing_db, missing_api, examples = verify_final(app, model)
    # The resident memory besides the near cache's entries: the cache fills
    # up to its bound as the epoch moves and entries are stored again.
    (rss_warm, near_warm), (rss_end, near_end) = rss_warm, rss_end
    rest_warm, rest_end = rss_warm - near_warm, rss_end - near_end
    growth = (rest_end - rest_warm) / rest_warm if rest_warm else 0

    rows = []

    def row(check, figure, limit="", ok=None):
        rows.append(Row(check, str(figure), limit, "" if ok is None else ("PASS" if ok else "FAIL")))

    row("requests (load time)", f"{len(records)} ({load_secs:.0f} s, {len(records) / load_secs:.0f}/s)")
    row("X-Cache HIT / MISS / BYPASS",
        f"{xcache.get('HIT', 0)} / {xcache.get('MISS', 0)} / {xcache.get('BYPASS', 0)}")
    row("while PostgreSQL was cut: HIT / other 2xx / 503",
        f"{sum(1 for r in during_pg if r.x_cache == 'HIT')} / "
        f"{sum(1 for r in during_pg if r.outcome < 300 and r.x_cache != 'HIT')} / "
        f"{sum(1 for r in during_pg if r.outcome == 503)}")
    row("while Redis was down: 2xx / BYPASS reads / 5xx",
        f"{sum(1 for r in during_redis if r.outcome < 300)} / "
        f"{sum(1 for r in during_redis if r.x_cache == 'BYPASS')} / "
        f"{sum(1 for r in during_redis if r.outcome >= 500)}")
    row("503 overlapping the PostgreSQL cut (+2 s)", len(allowed_503), "allowed")
    row("other 5xx", len(bad_5xx), "0", not bad_5xx)
    row(f"requests unanswered or slower than {timeout:.0f} s", len(hung), "0", not hung)
    row("connections dropped by linkhub", len(dropped), "0", not dropped)
    row("latency p99 / max", f"{p99 * 1000:.0f} ms / {latencies[-1] * 1000 if latencies else 0:.0f} ms")
    replays = replayed_counts(app.logfile)
    for f in faults:
        shown = "never" if f.recovery is None else f"{f.recovery:.2f} s"
        if f.kind == "redis" and f.recovery is not None:
            # The first recovery logged at or after the fault ended.
            ended_wall = time.time() - (time.monotonic() - f.end)
            after = [r for r in replays if r.at >= int(ended_wall) - 1]
            if after:
                shown += f" ({after[0].rows} owed bumps replayed)"
        row(f"recovery after: {f.label}", shown, f"<= {RECOVERY_LIMIT_SECS:.0f} s",
            f.recovery is not None and f.recovery <= RECOVERY_LIMIT_SECS)
    row("same process throughout (no restart)", "yes" if alive else "no", "yes", alive)
    row("acknowledged writes", acked)
    row("acknowledged writes missing in PostgreSQL", missing_db, "0", missing_db == 0)
    row("final reads not showing PostgreSQL's data", missing_api, "0", missing_api == 0)
    row("reads older than an acknowledged write", len(rec.stale), "0", not rec.stale)
    res = observer.results
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(observer.skipped.items()) if n)
    row("observer checks (CACHE_VERIFY_SAMPLE=1): fresh / stale / skipped",
        f"{observer.checks()}: {res.get('fresh', 0)} / {res.get('stale', 0)} / {res.get('skipped', 0)}"
        + (f" ({reasons})" if reasons else ""))
    row("observer: stale entries served", res.get("stale", 0), "0", res.get("stale", 0) == 0)
    row("observer: reads found fresh", res.get("fresh", 0), "> 0", res.get("fresh", 0) > 0)
    redirected = [c for c in clicks if c.outcome == 302]
    by_instance = {i: sum(1 for c in redirected if c.instance == i) for i in ("main", "peer")}
    click_503 = [c for c in clicks if c.outcome == 503]
    click_bad = [c for c in clicks if isinstance(c.outcome, int) and c.outcome != 302
                 and not (c.outcome == 503 and in_pg_window(c.start, c.end))]
    click_cut = [c for c in clicks if not isinstance(c.outcome, int)]
    row("clicks: 302s answered (main + second instance)",
        f"{len(redirected)} ({by_instance['main']} + {by_instance['peer']})")
    back = ", ".join("killed -9, never back" if b is None else f"killed -9, back in {b - k:.1f} s"
                     for k, b in peer_killed) or "never killed"
    row("clicks: second instance", back, "killed", bool(peer_killed))
    row("clicks: 503 within the PostgreSQL window / cut or timed out", f"{len(click_503)} / {len(click_cut)}")
    row("clicks: other answers than 302 (503 outside the window included)", len(click_bad), "0", not click_bad)
    # In doubt, and so allowed either way: a click without an answer (cut by
    # the kill, or timed out), which may have been journaled before its 302
    # was lost. A 503 counts nothing (it is answered before or instead of the
    # journal append). Nothing answered 302 may be missing, and nothing may
    # be counted twice.
    in_doubt = click_cut
    row("clicks: dead instance's journal segment adopted before the totals",
        "never" if adopted is None else f"within {adopted:.1f} s", "<= 30 s", adopted is not None)
    row("clicks: sum of GET /users/{id}/clicks", clicks_counted,
        f"{len(redirected)} + at most {len(in_doubt)} in doubt",
        len(redirected) <= clicks_counted <= len(redirected) + len(in_doubt))
    row("RSS after warm-up -> after run (the near cache apart)",
        f"{rss_warm / 1024:.1f} MiB -> {rss_end / 1024:.1f} MiB; near cache {near_warm / 1024:.1f} -> "
        f"{near_end / 1024:.1f} MiB; the rest {growth * 100:+.1f} %",
        f"within {MEMORY_LIMIT * 100:.0f} %", abs(growth) <= MEMORY_LIMIT)

    header = Row("check", "figure", "limit", "result")
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    print(f"\n+{line}+")
    for r in [header] + rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if r is header:
            print(f"+{line}+")
    print(f"+{line}+")
    def phase(t):
        """Where `t` falls: in a fault, or how long after the last one ended."""
        last = None
        for f in faults:
            if f.start <= t <= f.end:
                return f"{t - f.start:.1f} s into {f.label}"
            if f.end < t:
                last = f
        return f"{t - last.end:.1f} s after {last.label}" if last else "before the first fault"

    for r in (bad_5xx + hung + dropped)[:10]:
        print(f"chaos: {r.op} sent {phase(r.start)} -> {r.outcome} after {r.end - r.start:.2f} s")
    for c in click_bad[:10]:
        print(f"chaos: click on {c.instance} sent {phase(c.start)} -> {c.outcome} after {c.end - c.start:.2f} s")
    print(f"chaos: clicks: {len(redirected)} redirects answered, {clicks_counted} counted by the owners' "
          f"clicks endpoint ({len(in_doubt)} in doubt)", flush=True)
    for stale in rec.stale[:10]:
        print(f"chaos: stale {stale.op} {phase(stale.at)}: {stale.reasons}")
    for example in examples[:10]:
        print(f"chaos: final check: {example}")
    verdicts = res.get("fresh", 0) + res.get("stale", 0)
    if verdicts:
        # With 0 stale in N, the stale share is below 3/N at 95 % confidence
        # (the rule of three); a stale finding fails the run above anyway.
        print(f"chaos: observer: {verdicts} reads checked with a verdict, {res.get('stale', 0)} stale: "
              f"consistent to at least {1 - 3 / verdicts:.4%} (95 %)")
    ok = all(r.result != "FAIL" for r in rows)
    print("chaos: PASS" if ok else f"chaos: FAIL; linkhub log in {workdir}/linkhub.log")
    return ok


if __name__ == "__main__":
    sys.exit(main())
