"""The data-scale benchmark (`scripts/bench.sh scale`): what a read costs
when the cache misses, and how the users list holds up beside a
registration stream, at 1,000 and at 1,000,000 users; writes its section of
docs/BENCHMARKS.md.

For each scale it loads a private database by SQL (scripts/seed-scale.sh,
which runs linkhub's migrations first), starts a private redis-server and a
release linkhub on ports 7500-7549 (`--ports` moves them), and measures:

1. **Miss cost per read shape**: 5 distinct misses of each shape, one at a
   time, each checked to answer `X-Cache: MISS`; the median of the client's
   wall time, and beside it the time PostgreSQL itself spent: the instance's
   connections run with `log_min_duration_statement=0` (a libpq `options` of
   this instance's DATABASE_URL only), and the parse, bind and execute
   durations PostgreSQL logs for this database while the request runs are
   summed (the server log is read from its file; when it cannot be read the
   column says so). Misses are made distinct by the query alone (another
   `limit`, another page, another user), never by touching Redis.
2. **The list under a registration stream**: 4 readers cycling
   `GET /api/v1/users?page=1..5` for 10 s, without and then with one
   registration every 0.2 s beside them (a fresh instance without statement
   logging, on a key prefix of its own): reads made, hit ratio from
   `X-Cache`, and the ratio of reads with/without.
3. **Hostile clients**: `scripts/hostile.py BASE_URL` when that script
   exists (it prints a JSON summary, kept as it is).

`--smoke` seeds 2,000 users, runs every shape once and a 2 s stream, checks
that the rows are what seed-scale.sql promises (a seeded user logs in with the
seed password, `lovelace` matches users/20) and writes nothing: it keeps the
seeder and this script from rotting without the minutes the full run takes.
Standard library only; the harness is scripts/harness.py.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_LOG = "/var/log/postgresql/postgresql-15-main.log"
SEED_PASSWORD = "seed-scale-password-1"
PORTS = range(7500, 7550)
BEGIN = "<!-- bench.sh scale: begin -->"
END = "<!-- bench.sh scale: end -->"
# PostgreSQL's share of a miss, the target at 1,000,000 users.
PG_TARGET_MS = 10.0
HIT_TARGET = 0.95
READS_RATIO_TARGET = 0.80

DURATION = re.compile(
    r"^\S+ \S+ \S+ \[(\d+)\] \S+@(\S+) LOG:  duration: ([0-9.]+) ms  (parse|bind|execute|statement)(.*)$"
)


# What an instance runs on its own while a request is measured: the pool's
# check (`SELECT $1`), the cache's book-keeping (epoch, outbox, its report).
BACKGROUND = re.compile(r"^ [^:]*: (SELECT \$1$|LISTEN |.*\bcache_(outbox|epoch|instances)\b)")


DETAIL = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] \S+ DETAIL:  parameters: (.*)$")
PARAM = re.compile(r"\$(\d+) = ('(?:[^']|'')*'|NULL)")


def spare_port():
    """The first free port of this benchmark's range."""
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def sql(db_url, query):
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", db_url, "-c", query],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class PgLog:
    """The durations PostgreSQL logs for one database, read from the
    server's log file between two marks."""

    def __init__(self, db_name, path=PG_LOG):
        self.db_name = db_name
        self.path = path
        try:
            with open(path, "rb"):
                self.readable = True
        except OSError:
            self.readable = False
        self.offset = 0

    def mark(self):
        if self.readable:
            self.offset = os.path.getsize(self.path)

    def since_mark(self):
        """What was logged for the database since the mark, what runs in the
        background (`BACKGROUND`) left out: (total ms, statements, slowest),
        the slowest being the (ms, SQL, parameters) of the longest execute."""
        if not self.readable:
            return None
        total, statements, slowest = 0.0, 0, None
        current = None  # [ms, phase, sql lines, pid] of the last line of ours
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        for raw in lines:
            if raw.startswith("\t") and current is not None:
                current[2].append(raw[1:])
                continue
            detail = DETAIL.match(raw)
            if detail and current is not None and detail.group(1) == current[3]:
                current.append(PARAM.findall(detail.group(2)))
                continue
            if current is not None:
                slowest = keep_slowest(slowest, current)
                current = None
            m = DURATION.match(raw)
            if not m or m.group(2) != self.db_name or BACKGROUND.search(m.group(5)):
                continue
            total += float(m.group(3))
            if m.group(4) in ("execute", "statement"):
                statements += 1
            text = m.group(5).split(": ", 1)[1] if ": " in m.group(5) else m.group(5)
            current = [float(m.group(3)), m.group(4), [text], m.group(1)]
        if current is not None:
            slowest = keep_slowest(slowest, current)
        return total, statements, slowest


def keep_slowest(slowest, record):
    ms, phase, text, _pid, *params = record
    if phase not in ("execute", "statement") or (slowest and slowest[0] >= ms):
        return slowest
    return ms, "\n".join(text), [(int(n), v) for n, v in (params[0] if params else [])]


def explain(db_url, statement):
    """EXPLAIN ANALYZE of a logged statement with its logged parameters:
    (execution ms, the plan's lines)."""
    _, text, params = statement
    values = [v for _, v in sorted(params)]
    script = (f"PREPARE q AS {text};\n"
              f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE q{'(' + ', '.join(values) + ')' if values else ''};\n")
    done = subprocess.run(["psql", "-X", "-q", "-A", "-t", db_url], input=script, capture_output=True,
                          text=True, check=False)
    plan = done.stdout.splitlines()
    m = re.search(r"Execution Time: ([0-9.]+) ms", done.stdout)
    return (float(m.group(1)) if m else None), (plan or [done.stderr.strip()])


def start_trusted(instance):
    """Starts `instance` and waits until its cache is trusted (`/readyz`
    says `"cache": "ok"`): a miss measured before that would be a BYPASS."""
    instance.start()

    def trusted():
        status, body, _ = harness.request(instance.base, "GET", "/readyz")
        return status == 200 and (body or {}).get("cache") == "ok"

    if harness.wait_until(trusted, 60, 0.2) is None:
        raise RuntimeError(f"linkhub's cache never became ok; see {instance.logfile}")


def timed_get(conn, path):
    start = time.perf_counter()
    conn.request("GET", path)
    res = conn.getresponse()
    raw = res.read()
    elapsed = (time.perf_counter() - start) * 1000
    body = json.loads(raw) if raw and res.getheader("Content-Type", "").startswith("application/json") else None
    return res.status, body, res.getheader("X-Cache", ""), elapsed


def shapes(n, users, max_id, after_supported):
    """Each read shape: (key, description, 5 distinct paths)."""
    prof = [u for u, _ in users[:5]]
    link_ids = [i for _, i in users[5:10]]
    out = [
        ("page1", "`page=1`, `limit` 11-15", [f"/api/v1/users?page=1&limit={11 + i}" for i in range(5)]),
        ("page100", "`page=100`, `limit` 96-100 (offset 9,500-9,900)",
         [f"/api/v1/users?page=100&limit={96 + i}" for i in range(5)]),
    ]
    if after_supported:
        out.append(("deep", "`after` near the end: `after` = last id − 200…600, `limit=100`",
                    [f"/api/v1/users?after={max(0, max_id - 100 * (i + 2))}&limit=100" for i in range(5)]))
    else:
        last = max(1, n // 100 - 5)
        out.append(("deep", f"no `after` in this build: `page={last}`…{last + 4}, `limit=100` (offset near the end)",
                    [f"/api/v1/users?page={last + i}&limit=100" for i in range(5)]))
    out += [
        ("search3", "`search=son` (3 letters, ~8 % of users), `page=100`, `limit` 96-100",
         [f"/api/v1/users?search=son&page=100&limit={96 + i}" for i in range(5)]),
        ("lovelace", "`search=lovelace` (users/20 match), `limit` 11-15",
         [f"/api/v1/users?search=lovelace&limit={11 + i}" for i in range(5)]),
        ("profile", "`/profiles/{username}`, 5 users", [f"/api/v1/profiles/{u}" for u in prof]),
        ("links", "`/users/{id}/links`, 5 users", [f"/api/v1/users/{i}/links" for i in link_ids]),
    ]
    return out


def miss_costs(base, db_url, shape_list, pglog, samples):
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    results = {}
    for key, desc, paths in shape_list:
        rows = []
        for path in paths[:samples]:
            pglog.mark()
            status, body, xcache, ms = timed_get(conn, path)
            time.sleep(0.05)  # the backend's log line is written before it answers; margin for the file
            pg = pglog.since_mark()
            rows.append({"path": path, "status": status, "x_cache": xcache, "http_ms": ms,
                         "pg_ms": pg[0] if pg else None, "pg_statements": pg[1] if pg else None,
                         "slowest": pg[2] if pg else None,
                         "total": (body or {}).get("meta", {}).get("total") if isinstance(body, dict) else None,
                         "total_exact": (body or {}).get("meta", {}).get("total_exact") if isinstance(body, dict) else None})
        results[key] = {"desc": desc, "samples": rows}
        slow = [r["slowest"] for r in rows if r.get("slowest")]
        if slow:
            # The median sample's slowest statement, explained again.
            statement = sorted(slow)[len(slow) // 2]
            explain_ms, plan = explain(db_url, statement)
            results[key]["plan"] = {"logged_ms": statement[0], "sql": statement[1],
                                    "params": statement[2], "explain_ms": explain_ms, "plan": plan}
        med = statistics.median(r["http_ms"] for r in rows)
        pgs = [r["pg_ms"] for r in rows if r["pg_ms"] is not None]
        print(f"  {key:9} HTTP {med:8.2f} ms  PG {statistics.median(pgs) if pgs else float('nan'):8.2f} ms  "
              f"{[r['x_cache'] for r in rows]} {[r['status'] for r in rows]}", flush=True)
    conn.close()
    return results


def reader(base, stop, tally):
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    k = 0
    while not stop.is_set():
        page = 1 + k % 5
        k += 1
        try:
            conn.request("GET", f"/api/v1/users?page={page}")
            res = conn.getresponse()
            res.read()
        except (OSError, http.client.HTTPException):
            tally["errors"] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            continue
        if stop.is_set():
            break
        if res.status == 200:
            tally["reads"] += 1
            if res.getheader("X-Cache", "") == "HIT":
                tally["hits"] += 1
        else:
            tally["errors"] += 1
    conn.close()


def registrar(base, stop, every, tally):
    """One registration every `every` seconds, open loop: each in a thread of
    its own, so a slow answer (argon2) does not thin the stream."""
    lock = threading.Lock()
    sent = []

    def register(name, n):
        # Each registration from an address of its own (the instance trusts
        # 127.0.0.1's X-Forwarded-For): people, not one client, register,
        # and one address would meet REGISTRATIONS_PER_ADDRESS.
        address = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        try:
            status, _, _ = harness.request(base, "POST", "/api/v1/users",
                                           {"username": name, "email": f"{name}@example.com",
                                            "password": "stream-password-1"}, timeout=60,
                                           headers={"X-Forwarded-For": address})
        except OSError:
            status = 0
        with lock:
            tally["registered"] += status == 201
            if status != 201:
                tally["failed"][str(status)] = tally["failed"].get(str(status), 0) + 1

    next_at = time.monotonic()
    while not stop.is_set():
        t = threading.Thread(target=register, args=(f"stream_{len(sent)}", len(sent)))
        t.start()
        sent.append(t)
        tally["registrations"] += 1
        next_at += every
        stop.wait(max(0.0, next_at - time.monotonic()))
    for t in sent:
        t.join()


def stream(base, secs, readers, register_every):
    stop = threading.Event()
    tallies = [{"reads": 0, "hits": 0, "errors": 0} for _ in range(readers)]
    reg = {"registrations": 0, "registered": 0, "failed": {}}
    threads = [threading.Thread(target=reader, args=(base, stop, t)) for t in tallies]
    if register_every:
        threads.append(threading.Thread(target=registrar, args=(base, stop, register_every, reg)))
    for t in threads:
        t.start()
    time.sleep(secs)
    stop.set()
    for t in threads:
        t.join()
    reads = sum(t["reads"] for t in tallies)
    hits = sum(t["hits"] for t in tallies)
    return {"reads": reads, "hits": hits, "hit_ratio": hits / reads if reads else 0.0,
            "errors": sum(t["errors"] for t in tallies), **reg}


def hostile(base, workdir):
    """scripts/hostile.py's JSON summary against `base`, or why there is none."""
    script = os.path.join(ROOT, "scripts", "hostile.py")
    if not os.path.exists(script):
        return {"skipped": "scripts/hostile.py is not in this tree"}
    log = os.path.join(workdir, "hostile.log")
    with open(log, "w") as err:
        done = subprocess.run([sys.executable, script, base], stdout=subprocess.PIPE, stderr=err,
                              text=True, timeout=900, check=False)
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            return {"exit": done.returncode, "summary": json.loads(line)}
        except ValueError:
            continue
    return {"exit": done.returncode, "error": f"no JSON summary; see {log}"}


def drop_abandoned():
    """Drops the databases of runs whose process is gone (`lhc_scale_<pid>_<n>`):
    a million users take about a gigabyte."""
    for (name,) in sql(f"{harness.PG_ADMIN_URL}/postgres",
                       "SELECT datname FROM pg_database WHERE datname LIKE 'lhc\\_scale\\_%'"):
        pid = name.split("_")[2]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            harness.drop_database(name)


def run_scale(args, n, workdir):
    tag = f"lhc_scale_{os.getpid()}_{n}"
    db_url = f"{harness.PG_ADMIN_URL}/{tag}"
    harness.drop_database(tag)
    out = {"users": n}
    redis = harness.RedisServer(workdir, spare_port())
    instances = []
    try:
        print(f"== {n} users: seeding ({time.strftime('%H:%M:%S')})", flush=True)
        env = dict(os.environ, LINKHUB_BIN=args.linkhub)
        seeded = subprocess.run(["bash", os.path.join(ROOT, "scripts", "seed-scale.sh"), db_url, str(n)],
                                env=env, check=True, capture_output=True, text=True)
        m = re.search(r"loaded in ([0-9.]+) s", seeded.stdout)
        out["seed_secs"] = float(m.group(1)) if m else None
        out["seed_log"] = [line for line in seeded.stdout.splitlines() if line.startswith(("Time:", "seed-scale:"))]
        print("\n".join(out["seed_log"]), flush=True)
        out["db_size"] = sql(db_url, f"SELECT pg_size_pretty(pg_database_size('{tag}'))")[0][0]
        redis.start()
        redis_url = f"redis://127.0.0.1:{redis.port}"

        # Pass 1: misses, with PostgreSQL logging this instance's statements.
        logged = harness.Linkhub(args.linkhub, tag, redis_url, os.path.join(workdir, f"linkhub-{n}-a.log"),
                                 database_url=db_url + "?options=-c%20log_min_duration_statement%3D0",
                                 env={"RUST_LOG": "warn", "CACHE_PREFIX": f"{tag}_a"}, port=spare_port())
        instances.append(logged)
        start_trusted(logged)
        max_id = int(sql(db_url, "SELECT max(id) FROM users")[0][0])
        picks = sql(db_url, "SELECT username, id FROM users WHERE id IN ("
                    + ",".join(str(max(1, max_id * k // 11)) for k in range(1, 11)) + ") ORDER BY id")
        users = [(u, int(i)) for u, i in picks]
        # Whether this build has keyset pages (a query no shape below repeats).
        status, body, _ = harness.request(logged.base, "GET", f"/api/v1/users?after={max_id - 1}&limit=1")
        after_supported = status == 200 and "next_after" in (body or {}).get("meta", {})
        pglog = PgLog(tag)
        out["pg_log_readable"] = pglog.readable
        print(f"== {n} users: miss costs ({time.strftime('%H:%M:%S')})", flush=True)
        out["misses"] = miss_costs(logged.base, db_url, shapes(n, users, max_id, after_supported), pglog,
                                   args.samples)
        out["after_supported"] = after_supported
        if args.smoke:
            smoke_checks(logged.base, db_url, n, users)
        logged.stop()

        # Pass 2: reads beside registrations, no statement logging.
        plain = harness.Linkhub(args.linkhub, tag, redis_url, os.path.join(workdir, f"linkhub-{n}-b.log"),
                                # hostile.py names each client by X-Forwarded-For.
                                env={"RUST_LOG": "warn", "CACHE_PREFIX": f"{tag}_b",
                                     "TRUSTED_PROXIES": "127.0.0.1/32"}, port=spare_port())
        # The hostile run measures the per-address limits too: this instance
        # keeps the service's defaults (the stream's registrations each come
        # from an address of their own).
        for name in harness.LIFTED_PER_ADDRESS_LIMITS:
            plain.env.pop(name, None)
        instances.append(plain)
        start_trusted(plain)
        print(f"== {n} users: list under registrations ({time.strftime('%H:%M:%S')})", flush=True)
        quiet = stream(plain.base, args.secs, args.readers, 0)
        busy = stream(plain.base, args.secs, args.readers, args.register_every)
        out["stream"] = {"without": quiet, "with": busy,
                         "ratio": busy["reads"] / quiet["reads"] if quiet["reads"] else 0.0}
        print(f"  without: {quiet}\n  with:    {busy}", flush=True)
        if args.hostile and not args.smoke:
            print(f"== {n} users: hostile clients ({time.strftime('%H:%M:%S')})", flush=True)
            out["hostile"] = hostile(plain.base, workdir)
            print(f"  {json.dumps(out['hostile'])[:400]}", flush=True)
        plain.stop()
    finally:
        for instance in instances:
            instance.stop()
        redis.kill()
        if not args.keep_db:
            harness.drop_database(tag)
        else:
            print(f"kept database {tag}")
    return out


def smoke_checks(base, db_url, n, users):
    """What seed-scale.sql promises, checked through the API."""
    username = users[0][0]
    status, body, _ = harness.request(base, "POST", "/api/v1/auth/login",
                                      {"login": username, "password": SEED_PASSWORD})
    if status != 200:
        raise SystemExit(f"smoke: a seeded user cannot log in with the seed password: {status} {body}")
    status, body, _ = harness.request(base, "GET", "/api/v1/users?search=lovelace&limit=100")
    if status != 200 or body["meta"]["total"] != n // 20:
        raise SystemExit(f"smoke: search=lovelace should match {n // 20} users: {status} {body and body.get('meta')}")
    counts = sql(db_url, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM links), "
                 "(SELECT count(*) FROM socials)")[0]
    if counts != [str(n), str(2 * n), str(n)]:
        raise SystemExit(f"smoke: expected {n} users, {2 * n} links, {n} socials, found {counts}")
    status, body, _ = harness.request(base, "GET", f"/api/v1/profiles/{username}")
    if status != 200 or len(body["data"]["links"]) != 2 or len(body["data"]["socials"]) != 1:
        raise SystemExit(f"smoke: profile of {username}: {status} {body}")


def median_of(rows, field):
    values = [r[field] for r in rows if r[field] is not None]
    return statistics.median(values) if values else None


def fmt_ms(value):
    if value is None:
        return "n/a"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def yes_no(ok):
    return "yes" if ok else "**no**"


def report(args, results, started, elapsed, loads, commit):
    scales = [r["users"] for r in results]
    names = {1000: "1K", 1000000: "1M"}
    label = [names.get(n, f"{n:,}") for n in scales]
    lines = [BEGIN, "", f"## 6. Data scale: {' and '.join(f'{n:,}' for n in scales)} users", ""]
    lines += [
        f"Written by `{args.command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} "
        f"in {elapsed / 60:.1f} minutes against linkhub {commit} (release build, defaults, `RUST_LOG=warn`); "
        f"load average (1, 5, 15 min) {loads[0]} at the start and {loads[1]} at the end. "
        "Everything on one shared machine, as above: compare the figures with each other.",
        "",
        "**Data.** `scripts/seed-scale.sh` loads each database by SQL after linkhub's migrations: "
        "users named `<first>_<last>_<n>` / `<First> <Last>` from lists of common names, every 20th "
        "a Lovelace, 2 links and 1 social each, one argon2id hash reused by every row; the search grams "
        "(`user_search_grams`) inserted in one statement and keyed after; secondary indexes "
        "rebuilt, `VACUUM ANALYZE`. The bulk INSERTs move the cache epoch through the outbox triggers.",
        "",
        "| users | load time | database size |",
        "|---|---|---|",
    ]
    for r in results:
        secs = f"{r['seed_secs']:.0f} s" if r.get("seed_secs") is not None else "n/a"
        lines.append(f"| {r['users']:,} | {secs} | {r['db_size']} |")
    lines += [
        "",
        "### Miss cost per read shape",
        "",
        f"Median of {args.samples} distinct misses of each shape, made one at a time (each answered "
        "`X-Cache: MISS`; the misses differ by `limit`, page or user, Redis is not touched). *HTTP* is the "
        "client's wall time; *PostgreSQL* is the sum of the parse, bind and execute durations PostgreSQL "
        "logged for the request's statements (`log_min_duration_statement=0` on this instance's "
        f"connections only). Target: PostgreSQL ≤ {PG_TARGET_MS:g} ms per miss at the largest scale.",
        "",
    ]
    head = "| shape | " + " | ".join(f"{lb} HTTP ms | {lb} PostgreSQL ms" for lb in label) + " | met |"
    lines += [head, "|---|" + "---|---|" * len(results) + "---|"]
    keys = list(results[0]["misses"].keys())
    for key in keys:
        cells = []
        for r in results:
            rows = r["misses"][key]["samples"]
            cells += [fmt_ms(median_of(rows, "http_ms")), fmt_ms(median_of(rows, "pg_ms"))]
        pg_big = median_of(results[-1]["misses"][key]["samples"], "pg_ms")
        met = "n/a" if pg_big is None else yes_no(pg_big <= PG_TARGET_MS)
        lines.append(f"| {results[-1]['misses'][key]['desc']} | " + " | ".join(cells) + f" | {met} |")
    not_miss = [(r["users"], s["path"], s["x_cache"], s["status"]) for r in results
                for m in r["misses"].values() for s in m["samples"] if s["x_cache"] != "MISS" or s["status"] != 200]
    lines.append("")
    if not_miss:
        lines.append("Samples that were not a `200 MISS` (counted all the same): "
                     + "; ".join(f"{n:,} users `{p}` → {st} {xc or '-'}" for n, p, xc, st in not_miss) + ".")
    else:
        lines.append("Every sample answered `200` with `X-Cache: MISS`.")
    big = results[-1]
    planned = [(m["desc"], m["plan"]) for m in big["misses"].values() if m.get("plan")]
    if planned:
        lines += [
            "",
            f"The slowest statement of each shape at {big['users']:,} users (of its median sample), as "
            "PostgreSQL logged it and as `EXPLAIN (ANALYZE)` runs it again with the logged parameters "
            "(warm buffers by then); the plan's scan, sort and aggregate nodes:",
            "",
            "| shape | logged ms | EXPLAIN ANALYZE ms | plan |",
            "|---|---|---|---|",
        ]
        for desc, plan in planned:
            nodes = [re.sub(r" \(actual.*", "", line.strip().lstrip("-> ")) for line in plan["plan"]
                     if re.search(r"Scan|Sort|Aggregate|Limit|Join|Nested Loop|Append|Gather", line)]
            lines.append(f"| {desc} | {fmt_ms(plan['logged_ms'])} | {fmt_ms(plan['explain_ms'])} | "
                         + ("; ".join(f"`{n}`" for n in nodes[:6]) or "-") + " |")
    lines += [
        "",
        "### The users list beside a registration stream",
        "",
        f"{args.readers} readers cycling `GET /api/v1/users?page=1…5` (keep-alive, one request at a time "
        f"each) for {args.secs} s, then the same with one registration every {args.register_every} s beside "
        "them (`POST /api/v1/users`: each one changes the list and hashes a password). A fresh instance, "
        "no statement logging.",
        "",
        "| | " + " | ".join(label) + " | target | met |",
        "|---|" + "---|" * len(results) + "---|---|",
        "| reads without registrations | " + " | ".join(f"{r['stream']['without']['reads']:,}" for r in results) + " | | |",
        "| hit ratio without | " + " | ".join(f"{r['stream']['without']['hit_ratio']:.3f}" for r in results)
        + f" | ≥ {HIT_TARGET} | {yes_no(results[-1]['stream']['without']['hit_ratio'] >= HIT_TARGET)} |",
        "| reads with registrations | " + " | ".join(f"{r['stream']['with']['reads']:,}" for r in results) + " | | |",
        "| registrations sent / answered 201 | " + " | ".join(
            f"{r['stream']['with']['registrations']} / {r['stream']['with']['registered']}" for r in results) + " | | |",
        "| hit ratio with | " + " | ".join(f"{r['stream']['with']['hit_ratio']:.3f}" for r in results)
        + f" | ≥ {HIT_TARGET} | {yes_no(results[-1]['stream']['with']['hit_ratio'] >= HIT_TARGET)} |",
        "| reads with / without | " + " | ".join(f"{r['stream']['ratio']:.2f}" for r in results)
        + f" | ≥ {READS_RATIO_TARGET} | {yes_no(results[-1]['stream']['ratio'] >= READS_RATIO_TARGET)} |",
        "",
        "### Hostile clients",
        "",
    ]
    for r in results:
        h = r.get("hostile")
        if h is None:
            lines.append(f"- {r['users']:,} users: not run (`--no-hostile`).")
        elif "skipped" in h:
            lines.append(f"- {r['users']:,} users: not run: {h['skipped']}.")
        else:
            lines.append(f"- {r['users']:,} users (`scripts/hostile.py`, exit {h.get('exit')}): "
                         f"`{json.dumps(h.get('summary', h.get('error')))}`")
    if args.notes:
        with open(args.notes) as f:
            lines += ["", f.read().strip()]
    lines += ["", END, ""]
    return "\n".join(line for line in lines if line is not None)


def write_section(path, section):
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--linkhub", required=True, help="the linkhub binary (a release build)")
    p.add_argument("--scales", default="1000,1000000", help="user counts, comma-separated")
    p.add_argument("--samples", type=int, default=5, help="distinct misses per shape (at most 5)")
    p.add_argument("--secs", type=float, default=10, help="seconds of each list run")
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--register-every", type=float, default=0.2)
    p.add_argument("--no-hostile", dest="hostile", action="store_false")
    p.add_argument("--keep-db", action="store_true", help="keep the loaded databases")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"),
                   help="the file whose data-scale section is (re)written")
    p.add_argument("--json-out", default="", help="also write every sample to this file")
    p.add_argument("--command", default="scripts/bench.sh scale")
    p.add_argument("--smoke", action="store_true", help="2,000 users, checks, writes nothing")
    p.add_argument("--notes", default="",
                   help="a Markdown file appended to the section (what the figures mean, measured beside them)")
    p.add_argument("--ports", default="7500-7549",
                   help="FIRST-LAST: the ports its private redis-server and linkhub instances may take")
    args = p.parse_args()
    global PORTS
    first, _, last = args.ports.partition("-")
    PORTS = range(int(first), int(last or first) + 1)
    if args.smoke:
        args.scales, args.secs, args.samples = "2000", 2, 1
    args.samples = max(1, min(5, args.samples))
    scales = [int(s) for s in args.scales.split(",") if s]
    workdir = tempfile.mkdtemp(prefix="linkhub-scale.")
    drop_abandoned()
    started = time.time()
    loads = [load_average()]
    results = []
    try:
        for n in scales:
            results.append(run_scale(args, n, workdir))
    except BaseException:
        print(f"bench-scale: failed; logs in {workdir}", file=sys.stderr)
        raise
    loads.append(load_average())
    if args.smoke:
        for r in results:
            bad = [s for m in r["misses"].values() for s in m["samples"] if s["status"] != 200]
            if bad or r["stream"]["without"]["reads"] == 0 or r["stream"]["with"]["registered"] == 0:
                raise SystemExit(f"smoke: failed requests: {bad} stream: {r['stream']}")
        print("bench-scale smoke: ok")
        shutil.rmtree(workdir, ignore_errors=True)
        return
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    write_section(args.out, report(args, results, started, time.time() - started, loads, commit))
    print(f"bench-scale: wrote {args.out}; logs in {workdir}")


if __name__ == "__main__":
    main()
