"""The one Python test harness of the scripts (fuzzing and chaos gates): free
ports, a private Redis, a TCP proxy that can cut a connection, a private
linkhub process on its own database and key prefix, and a small HTTP client.

Everything listens on 127.0.0.1 only. The shared PostgreSQL (5432) is used
through a private database that is dropped afterwards; the shared Redis
(6379) is never touched: each run starts its own `redis-server`.
Standard library only.

`python3 scripts/harness.py proxy LISTEN_PORT UPSTREAM_PORT` runs the proxy
(what `Proxy` starts as a process of its own).
"""

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import NamedTuple

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
            drop_database(name)


def drop_database(name):
    """Drops database `name` on the shared PostgreSQL, connections and all."""
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


def proxy_main(listen_port, upstream_port):
    """The TCP proxy, run as its own process: SIGUSR1 cuts, SIGUSR2 restores.

    A cut drops every live connection and black-holes new ones (accepted, never
    answered) until it is restored."""
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
    """A TCP proxy on a free port in front of `upstream_port`, in a process of
    its own (so a busy load generator cannot delay it); `cut()` and `restore()`."""

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


LIFTED_PER_ADDRESS_LIMITS = {
    "REGISTRATIONS_PER_ADDRESS": "1000000000",
    "EXPENSIVE_READS_PER_ADDRESS": "1000000000",
    "READINESS_PER_ADDRESS": "1000000000",
}


class Linkhub:
    """A linkhub process with its own database, key prefix and port (a free
    one, or `port`: a replacement takes its predecessor's)."""

    def __init__(self, binary, name, redis_url, logfile, database_url=None, env=None, port=None):
        self.binary = binary
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_name = name
        self.database_url = database_url or f"{PG_ADMIN_URL}/{name}"
        self.env = dict(os.environ)
        # Every client of a gate or benchmark comes from 127.0.0.1: the
        # per-address limits, meant for the open internet, are lifted unless
        # the caller (or the environment) sets them.
        for limit, value in LIFTED_PER_ADDRESS_LIMITS.items():
            self.env.setdefault(limit, value)
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
        drop_database(self.db_name)

    def sql(self, query):
        """Runs `query` on this instance's database directly (not through any
        proxy); returns the rows as lists of strings."""
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-h", "127.0.0.1", "-U", "postgres",
             "-d", self.db_name, "-c", query],
            check=True, capture_output=True, text=True,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]


class Response(NamedTuple):
    """An answer: its status, its JSON body (None when it is not JSON) and its
    headers with lower-case names."""
    status: int
    body: object
    headers: dict


class Account(NamedTuple):
    """A registered, logged-in user."""
    id: int
    token: str


def request(base, method, path, body=None, token=None, timeout=10, conn=None, headers=None):
    """One HTTP request; answers a `Response`.
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
        return Response(res.status, parsed, {k.lower(): v for k, v in res.getheaders()})
    finally:
        if own:
            conn.close()


def register_and_login(base, username, password="chaos-password-1"):
    """Registers `username` and logs it in; answers its `Account`."""
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
    return Account(user_id, body["data"]["token"])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "proxy":
        proxy_main(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: harness.py proxy LISTEN_PORT UPSTREAM_PORT")
