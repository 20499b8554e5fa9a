"""What the fuzzing and chaos gates share: a private Redis, a private linkhub
process on its own database and key prefix, and a small HTTP client.

Everything listens on 127.0.0.1 only. The shared PostgreSQL (5432) is used
through a private database that is dropped afterwards; the shared Redis
(6379) is never touched: each run starts its own `redis-server`.
Standard library only.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, every=0.05):
    """Polls `predicate` until it is true; returns the seconds it took, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(every)
    return None


def drop_abandoned_databases(prefix):
    """Drops the `<prefix><pid>` databases of runs whose process is gone (a
    run that was killed could not drop its own)."""
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres",
         "-c", f"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'"],
        check=False, capture_output=True, text=True,
    ).stdout
    for name in out.split():
        pid = name.removeprefix(prefix)
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            subprocess.run(
                ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c",
                 f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )


class RedisServer:
    """A private `redis-server` that persists nothing; it can be killed and
    restarted empty on the same port."""

    def __init__(self, workdir, port=None):
        self.port = port or free_port()
        self.workdir = workdir
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", self.workdir,
                "--logfile", os.path.join(self.workdir, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait_until(self.answers, 10) is None:
            raise RuntimeError(f"redis-server on port {self.port} did not start")

    def answers(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Linkhub:
    """A linkhub process with its own database, key prefix and port."""

    def __init__(self, binary, name, redis_url, logfile, database_url=None, env=None):
        self.binary = binary
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_name = name
        self.database_url = database_url or f"{PG_ADMIN_URL}/{name}"
        self.env = dict(os.environ)
        self.env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": redis_url,
                "BIND_ADDR": f"127.0.0.1:{self.port}",
                "CACHE_PREFIX": name,
                "RUST_LOG": os.environ.get("RUST_LOG", "warn,linkhub=info"),
            }
        )
        self.env.update(env or {})
        self.logfile = logfile
        self.proc = None

    def run_cli(self, *args):
        """Runs a `linkhub` subcommand (migrate, promote) against this database."""
        subprocess.run([self.binary, *args], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def start(self):
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env,
                                     stdout=log, stderr=log)
        ready = wait_until(lambda: request(self.base, "GET", "/readyz")[0] == 200, 60, 0.2)
        if ready is None:
            raise RuntimeError(f"linkhub did not become ready; see {self.logfile}")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def drop_database(self):
        subprocess.run(
            ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c",
             f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def sql(self, query):
        """Runs `query` on this instance's database directly (not through any
        proxy); returns the rows as lists of strings."""
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-h", "127.0.0.1", "-U", "postgres",
             "-d", self.db_name, "-c", query],
            check=True, capture_output=True, text=True,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]


def request(base, method, path, body=None, token=None, timeout=10, conn=None, headers=None):
    """One HTTP request; returns (status, parsed JSON or None, headers dict).
    Raises OSError (socket.timeout included) when no answer came."""
    host, port = base.removeprefix("http://").split(":")
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, int(port), timeout=timeout)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=hdrs)
        res = conn.getresponse()
        raw = res.read()
        parsed = None
        if raw and res.getheader("Content-Type", "").startswith("application/json"):
            parsed = json.loads(raw)
        return res.status, parsed, {k.lower(): v for k, v in res.getheaders()}
    finally:
        if own:
            conn.close()


def register_and_login(base, username, password="chaos-password-1"):
    status, body, _ = request(
        base, "POST", "/api/v1/users",
        {"username": username, "email": f"{username}@example.com", "password": password,
         "name": username},
    )
    if status != 201:
        raise RuntimeError(f"registering {username}: {status} {body}")
    user_id = body["data"]["id"]
    status, body, _ = request(base, "POST", "/api/v1/auth/login",
                              {"login": username, "password": password})
    if status != 200:
        raise RuntimeError(f"login {username}: {status} {body}")
    return user_id, body["data"]["token"]
