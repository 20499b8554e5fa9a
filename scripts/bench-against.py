#!/usr/bin/env python3
"""What this build costs a cached read and a write beside another build of
linkhub (an earlier main, say), measured side by side in one run.

    scripts/bench.sh against OTHER_LINKHUB_BINARY [--label NAME] [--reps N]

Each build runs on a database and a private redis-server of its own (their
schemas may differ), with the same settings and the same profile (5 links,
3 socials). In ABBA order, `--reps` times each:
- cached reads: `wrk -t2 -c64` on the profile (every read a `HIT`):
  requests a second, and the instance's own CPU time per request (user +
  system, from /proc: the figure the rest of the machine disturbs least);
- writes: `--writes` sequential `PATCH`es of the user's bio on one
  keep-alive connection, each followed by the profile's read (a `MISS`):
  the write's and the read's latency, p50 and p99.

Prints a Markdown table, and writes it into docs/BENCHMARKS.md between the
`against` markers when `--write-docs` is given.
"""
import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Linkhub, RedisServer, register_and_login, request  # noqa: E402

PROFILE = "/api/v1/profiles/bench_user"


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; fields[0] here is field 3.
    return int(fields[11]) + int(fields[12])


def seed(app):
    account = register_and_login(app.base, "bench_user", "bench-password")
    for i in range(1, 6):
        request(app.base, "POST", f"/api/v1/users/{account.id}/links",
                {"title": f"Link {i}", "url": f"https://example.com/{i}"}, token=account.token)
    for platform in ("github", "mastodon", "youtube"):
        request(app.base, "POST", f"/api/v1/users/{account.id}/socials",
                {"platform": platform, "url": f"https://{platform}.example.com/bench"},
                token=account.token)
    return account


def reads(app, secs):
    """`wrk` on the profile: (requests a second, CPU µs per request)."""
    before = cpu_ticks(app.proc.pid)
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{secs}s", f"{app.base}{PROFILE}"],
        check=True, capture_output=True, text=True).stdout
    after = cpu_ticks(app.proc.pid)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, (after - before) / os.sysconf("SC_CLK_TCK") * 1e6 / n


def writes(app, account, n, rep):
    """`n` bio writes, each followed by a read: their latencies in ms."""
    host, port = app.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    wrote, read = [], []
    for i in range(n):
        t0 = time.perf_counter()
        status, body, _ = request(app.base, "PATCH", f"/api/v1/users/{account.id}",
                                  {"bio": f"rep {rep} write {i}"}, token=account.token, conn=conn)
        t1 = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"write: {status} {body}")
        status, body, headers = request(app.base, "GET", PROFILE, conn=conn)
        t2 = time.perf_counter()
        if status != 200 or body["data"]["user"]["bio"] != f"rep {rep} write {i}":
            raise RuntimeError(f"read after write: {status} {headers.get('x-cache')}")
        wrote.append((t1 - t0) * 1000)
        read.append((t2 - t1) * 1000)
    conn.close()
    return wrote, read


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("this", help="this build's linkhub binary")
    parser.add_argument("other", help="the other build's linkhub binary")
    parser.add_argument("--label", default="the other build", help="what the other build is")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--secs", type=int, default=8)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="linkhub-bench-against.")
    builds = {"this": args.this, "other": args.other}
    redis, apps, accounts = {}, {}, {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        for name, binary in builds.items():
            os.makedirs(f"{work}/{name}")
            redis[name] = RedisServer(f"{work}/{name}")
            redis[name].start()
            apps[name] = Linkhub(binary, f"linkhub_bench_against_{name}_{os.getpid()}",
                                 f"redis://127.0.0.1:{redis[name].port}", f"{work}/{name}.log",
                                 env={"RUST_LOG": "warn", "METRICS_TOKEN": "", "METRICS_BIND_ADDR": "",
                                      "CACHE_VERIFY_SAMPLE": "0"})
            apps[name].start()
            accounts[name] = seed(apps[name])
            reads(apps[name], 3)  # warm: the entry, the connections, the near cache
        figures = {name: {"rps": [], "cpu": [], "write": [], "read": []} for name in builds}
        for rep in range(args.reps):
            order = ["this", "other"] if rep % 2 == 0 else ["other", "this"]
            for name in order:
                rps, cpu = reads(apps[name], args.secs)
                wrote, read = writes(apps[name], accounts[name], args.writes, rep)
                f = figures[name]
                f["rps"].append(rps)
                f["cpu"].append(cpu)
                f["write"] += wrote
                f["read"] += read
                print(f"bench against: rep {rep + 1} {name}: {rps:.0f} req/s, {cpu:.1f} CPU-µs/HIT, "
                      f"write p50 {pct(wrote, 0.5):.2f} ms, read after it p50 {pct(read, 0.5):.2f} ms",
                      flush=True)
    finally:
        for app in apps.values():
            app.stop()
            app.drop_database()
        for server in redis.values():
            server.kill()

    def row(what, key, fmt, reducer):
        this, other = reducer(figures["this"][key]), reducer(figures["other"][key])
        return f"| {what} | {fmt.format(this)} | {fmt.format(other)} | {this / other:.3f} × |"

    median = statistics.median
    table = "\n".join([
        f"| | this build | {args.label} | this / other |",
        "|---|---|---|---|",
        row("cached `HIT`s a second (median of the repetitions)", "rps", "{:.0f}", median),
        row("CPU per `HIT`, µs (median)", "cpu", "{:.2f}", median),
        row("write (`PATCH` bio), p50 ms", "write", "{:.2f}", lambda v: pct(v, 0.5)),
        row("write, p99 ms", "write", "{:.2f}", lambda v: pct(v, 0.99)),
        row("the read after it (`MISS`), p50 ms", "read", "{:.2f}", lambda v: pct(v, 0.5)),
        row("the read after it, p99 ms", "read", "{:.2f}", lambda v: pct(v, 0.99)),
    ])
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    section = "\n".join([
        "<!-- against:start: written by `scripts/bench.sh against` -->",
        "## This build beside another",
        "",
        f"Written by `scripts/bench.sh against` on {started}: this release build and {args.label}, "
        f"each on its own database and private redis-server, same settings (observer off); "
        f"{args.reps} repetitions each in ABBA order of `wrk -t2 -c64 -d{args.secs}s` on one profile "
        f"(5 links, 3 socials; every read a `HIT`) and {args.writes} sequential bio writes each followed "
        f"by the profile's read. Load average at the end: {load}.",
        "",
        table,
        "<!-- against:end -->",
    ])
    print(table)
    if args.write_docs:
        path = "docs/BENCHMARKS.md"
        text = open(path).read()
        block = re.compile(r"<!-- against:start.*?<!-- against:end -->", re.S)
        text = block.sub(lambda _: section, text) if block.search(text) else text.rstrip() + "\n\n" + section + "\n"
        open(path, "w").write(text)
        print("bench against: written to docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
