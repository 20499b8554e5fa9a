"""Hostile clients against one running linkhub, and a well-behaved probe.

`python3 scripts/hostile.py BASE_URL [--clients 32] [--quiet 10] [--attack 15] ...`

Measures, from the outside over HTTP, what a well-behaved client sees while
anonymous clients send the most expensive requests the contract allows, and
prints one JSON summary (the last line of stdout; progress goes to stderr).
The server should run with `TRUSTED_PROXIES=127.0.0.1` so that each client's
`X-Forwarded-For` names it (else every client is one address: 127.0.0.1).

Phases:

  setup   the probe registers a user of its own (its own address) with one
          link, and logs in.
  quiet   the probe alone for `--quiet` seconds.
  attack  the probe again for `--attack` seconds, while:
          - `--clients` hostile readers, each from its own IPv4 address,
            send users-list reads with no pause, each a new cache key: a
            random 3-letter search at a random page (`page x limit` up to
            10,000), an `after` page with a search, or a deep page;
          - `--registrars` registration flooders, each rotating addresses
            inside an IPv6 /64 of its own, register new users with no pause;
          - `--readyz-flooders` clients send `/readyz` with no pause;
          - an orchestrator asks `/readyz` every 0.5 s with a 1 s timeout,
            as a load balancer's probe would.

The probe, each round (about 10 a second): `PATCH` its link (a write, which
invalidates its profile), then `GET` its profile (a miss: that read's time is
the figure), and every 5th round a login. Its figures: p50/p99 of the
profile misses quiet and under attack, their ratio, and the status counts
of its writes, reads and logins. Hostile status counts are per kind.

The hostile processes run at `nice 10`: sharing this machine, they stand for
clients on other machines, and the probe measures the server, not the
contention of the load generator itself. The probe's process keeps the
normal priority. Standard library only; every request has a timeout, every
loop ends with its phase.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import statistics
import string
import sys
import threading
import time
import urllib.parse
from collections import Counter

TIMEOUT_SECS = 10.0


def log(message):
    print(message, file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP connection that names its client in X-Forwarded-For."""

    def __init__(self, base, forwarded_for=None, timeout=TIMEOUT_SECS):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port or 80
        self.forwarded_for = forwarded_for
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, token=None, forwarded_for=None):
        """(status, headers dict, body bytes, seconds); status 0 on a failure."""
        headers = {}
        source = forwarded_for or self.forwarded_for
        if source:
            headers["X-Forwarded-For"] = source
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            payload = response.read()
            took = time.perf_counter() - started
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, payload, took
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, {}, b"", time.perf_counter() - started

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(seconds):
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(percentile(ms, 0.99), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
    }


# --- the probe ------------------------------------------------------------


def probe_setup(base, address):
    client = Client(base, address)
    username = "probe_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=12))
    password = "probe password " + username
    status, _, body, _ = client.request(
        "POST",
        "/api/v1/users",
        {"username": username, "email": f"{username}@example.com", "password": password},
    )
    if status != 201:
        raise SystemExit(f"the probe could not register: {status} {body[:200]!r}")
    user_id = json.loads(body)["data"]["id"]
    status, _, body, _ = client.request(
        "POST", "/api/v1/auth/login", {"login": username, "password": password}
    )
    if status != 200:
        raise SystemExit(f"the probe could not log in: {status} {body[:200]!r}")
    token = json.loads(body)["data"]["token"]
    status, _, body, _ = client.request(
        "POST", f"/api/v1/users/{user_id}/links", {"title": "probe", "url": "https://example.com/p"}, token
    )
    if status != 201:
        raise SystemExit(f"the probe could not add a link: {status} {body[:200]!r}")
    link_id = json.loads(body)["data"]["id"]
    client.close()
    return {"username": username, "password": password, "token": token, "link_id": link_id}


def probe_phase(base, address, probe, seconds, interval):
    """Runs the probe's rounds for `seconds`; answers its figures."""
    client = Client(base, address)
    misses = []
    writes, reads, logins, cache = Counter(), Counter(), Counter(), Counter()
    deadline = time.monotonic() + seconds
    round_no = 0
    while time.monotonic() < deadline:
        round_no += 1
        started = time.monotonic()
        title = f"probe {round_no}"
        written, _, _, _ = client.request(
            "PATCH", f"/api/v1/links/{probe['link_id']}", {"title": title}, probe["token"]
        )
        writes[written] += 1
        status, headers, body, took = client.request("GET", f"/api/v1/profiles/{probe['username']}")
        reads[status] += 1
        cache[headers.get("x-cache", "none")] += 1
        if status == 200 and headers.get("x-cache") == "MISS":
            misses.append(took)
        # Read-your-writes: a write that answered 200 shows in the next read.
        if written == 200 and status == 200 and json.dumps(title).encode() not in body:
            cache["stale"] += 1
        if round_no % 5 == 0:
            status, _, _, _ = client.request(
                "POST", "/api/v1/auth/login", {"login": probe["username"], "password": probe["password"]}
            )
            logins[status] += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    client.close()
    return {
        "profile_misses": latency_summary(misses),
        "writes": dict(writes),
        "reads": dict(reads),
        "x_cache": dict(cache),
        "logins": dict(logins),
    }


def orchestrator(base, stop, counts):
    """A load balancer's readiness probe: every 0.5 s, 1 s timeout."""
    client = Client(base, timeout=1.0)
    while not stop.is_set():
        status, _, _, _ = client.request("GET", "/readyz")
        counts[status if status else "timeout"] += 1
        stop.wait(0.5)
    client.close()


def probe_process(base, args, results):
    random.seed()
    address = f"10.250.{random.randint(0, 255)}.{random.randint(1, 254)}"
    probe = probe_setup(base, address)
    log(f"probe: user {probe['username']} from {address}; quiet for {args.quiet} s")
    quiet = probe_phase(base, address, probe, args.quiet, args.interval)
    results.put(("ready", None))
    log(f"probe: quiet p50 {quiet['profile_misses']['p50_ms']} ms; attack for {args.attack} s")
    stop = threading.Event()
    readyz = Counter()
    watcher = threading.Thread(target=orchestrator, args=(base, stop, readyz), daemon=True)
    watcher.start()
    attacked = probe_phase(base, address, probe, args.attack, args.interval)
    stop.set()
    watcher.join(timeout=5)
    results.put(("probe", {"quiet": quiet, "attack": attacked, "readyz": dict(readyz)}))


# --- the hostile clients --------------------------------------------------


def expensive_read(rng):
    """A users-list read that is a new cache key each time."""
    term = "".join(rng.choices(string.ascii_lowercase, k=3))
    shape = rng.random()
    if shape < 0.5:
        limit = rng.randint(1, 100)
        page = rng.randint(1, 10_000 // limit)
        return f"/api/v1/users?search={term}&page={page}&limit={limit}"
    if shape < 0.75:
        return f"/api/v1/users?search={term}&after={rng.randint(0, 2_000_000)}&limit={rng.randint(1, 100)}"
    limit = rng.randint(50, 100)
    page = rng.randint(1_001 // limit + 1, 10_000 // limit)
    return f"/api/v1/users?page={page}&limit={limit}"


def reader(base, index, deadline, counts):
    rng = random.Random()
    address = f"10.66.{index // 250}.{index % 250 + 1}"
    client = Client(base, address)
    while time.monotonic() < deadline:
        status, _, _, _ = client.request("GET", expensive_read(rng))
        counts[status] += 1
    client.close()


def registrar(base, index, deadline, counts):
    rng = random.Random()
    client = Client(base)
    while time.monotonic() < deadline:
        # Rotating inside one /64: a new address every time.
        address = f"2001:db8:{index:x}:1:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:1"
        name = "flood_" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=14))
        status, _, _, _ = client.request(
            "POST",
            "/api/v1/users",
            {"username": name, "email": f"{name}@example.com", "password": "flooding password"},
            forwarded_for=address,
        )
        counts[status] += 1
    client.close()


def readyz_flooder(base, index, deadline, counts):
    client = Client(base, f"10.77.0.{index + 1}")
    while time.monotonic() < deadline:
        status, _, _, _ = client.request("GET", "/readyz")
        counts[status] += 1
    client.close()


def hostile_process(base, kind, indices, seconds, results):
    os.nice(10)
    target = {"reads": reader, "registrations": registrar, "readyz_flood": readyz_flooder}[kind]
    deadline = time.monotonic() + seconds
    counts = [Counter() for _ in indices]
    threads = [
        threading.Thread(target=target, args=(base, index, deadline, count), daemon=True)
        for index, count in zip(indices, counts)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 2 * TIMEOUT_SECS)
    total = Counter()
    for count in counts:
        total.update(count)
    results.put((kind, dict(total)))


def split(indices, parts):
    return [indices[i::parts] for i in range(parts) if indices[i::parts]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--clients", type=int, default=32, help="hostile readers (default 32)")
    parser.add_argument("--registrars", type=int, default=4, help="registration flooders (default 4)")
    parser.add_argument("--readyz-flooders", type=int, default=4, help="/readyz flooders (default 4)")
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds of the quiet phase")
    parser.add_argument("--attack", type=float, default=15.0, help="seconds of the attack")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probe rounds")
    parser.add_argument("--processes", type=int, default=2, help="processes the hostile readers share")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    probe = context.Process(target=probe_process, args=(base, args, results))
    probe.start()
    kind, _ = results.get(timeout=args.quiet + 120)
    assert kind == "ready"
    hostile = []
    plan = [("reads", part) for part in split(list(range(args.clients)), args.processes)]
    plan += [("registrations", list(range(args.registrars)))] if args.registrars else []
    plan += [("readyz_flood", list(range(args.readyz_flooders)))] if args.readyz_flooders else []
    for kind, indices in plan:
        process = context.Process(target=hostile_process, args=(base, kind, indices, args.attack, results))
        process.start()
        hostile.append(process)
    gathered = {"reads": Counter(), "registrations": Counter(), "readyz_flood": Counter()}
    probe_figures = None
    for _ in range(len(plan) + 1):
        kind, value = results.get(timeout=args.attack + 120)
        if kind == "probe":
            probe_figures = value
        else:
            gathered[kind].update(value)
    for process in hostile + [probe]:
        process.join(timeout=30)

    quiet, attack = probe_figures["quiet"], probe_figures["attack"]
    q, a = quiet["profile_misses"], attack["profile_misses"]
    ratio = lambda key: round(a[key] / q[key], 2) if q[key] and a[key] else None
    bad = lambda counts: sum(n for status, n in counts.items() if status == 429 or status == 0 or int(status) >= 500)
    summary = {
        "clients": args.clients,
        "attack_secs": args.attack,
        "probe_quiet": q,
        "probe_attack": a,
        "ratio_p50": ratio("p50_ms"),
        "ratio_p99": ratio("p99_ms"),
        "probe_quiet_statuses": {k: quiet[k] for k in ("writes", "reads", "logins", "x_cache")},
        "probe_attack_statuses": {k: attack[k] for k in ("writes", "reads", "logins", "x_cache")},
        "probe_writes_and_logins_429_or_5xx": bad(attack["writes"]) + bad(attack["logins"]),
        "readyz_orchestrator": probe_figures["readyz"],
        "hostile": {kind: dict(sorted(counts.items(), key=lambda kv: str(kv[0]))) for kind, counts in gathered.items()},
        "hostile_requests_per_sec": {
            kind: round(sum(counts.values()) / args.attack, 1) for kind, counts in gathered.items()
        },
    }
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
