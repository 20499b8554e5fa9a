"""Fuzzes a private linkhub with schemathesis (see scripts/fuzz.sh).

Starts a private Redis and a linkhub on its own database, seeds a few users
with links and socials (so lookups by id find something), makes an admin for
the fuzzer to write as, and runs schemathesis against the served
`/api/v1/openapi.json` with its server-error and response-schema checks.
Exits with schemathesis's status.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from harness import Linkhub, RedisServer, drop_abandoned_databases, register_and_login, request

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    binary, schemathesis = sys.argv[1], sys.argv[2]
    seconds = os.environ.get("FUZZ_SECONDS", "120")
    workdir = tempfile.mkdtemp(prefix="linkhub-fuzz-")
    drop_abandoned_databases("linkhub_fuzz_")
    name = f"linkhub_fuzz_{os.getpid()}"
    redis = RedisServer(workdir)
    redis.start()
    status = None
    # Every request of the fuzzer comes from 127.0.0.1, and most of its
    # logins are random (they fail): under the per-address limit of 100
    # failures the address would be locked out within seconds, the hooks'
    # admin login included, and every later case would test nothing but a
    # 429. The per-login limit stays at its default; the per-address one is
    # tested in tests/api/abuse_login.rs.
    app = Linkhub(binary, name, f"redis://127.0.0.1:{redis.port}",
                  os.path.join(workdir, "linkhub.log"),
                  env={"LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000000"})
    try:
        app.drop_database()
        app.start()
        seeded = []
        for i in range(3):
            user_id, token = register_and_login(app.base, f"seed_{i}")
            seeded.append(user_id)
            for j in range(3):
                request(app.base, "POST", f"/api/v1/users/{user_id}/links",
                        {"title": f"link {j}", "url": f"https://example.com/{i}/{j}"}, token)
            for platform in ("mastodon", "github"):
                request(app.base, "POST", f"/api/v1/users/{user_id}/socials",
                        {"platform": platform, "url": f"https://{platform}.example/{i}"}, token)
        admin_id, _ = register_and_login(app.base, "fuzz_admin", "fuzz-admin-password")
        app.run_cli("promote", "fuzz_admin")
        env = dict(os.environ)
        env.update(
            {
                "SCHEMATHESIS_HOOKS": os.path.join(HERE, "schemathesis_hooks.py"),
                "LINKHUB_FUZZ_BASE": app.base,
                "LINKHUB_FUZZ_LOGIN": "fuzz_admin",
                "LINKHUB_FUZZ_PASSWORD": "fuzz-admin-password",
                "LINKHUB_FUZZ_ADMIN_ID": str(admin_id),
                "LINKHUB_FUZZ_SPARE_ID": str(seeded[-1]),
                "NO_COLOR": "1",
            }
        )
        command = [
            schemathesis, "run", f"{app.base}/api/v1/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--max-time", seconds,
            "--request-timeout", "10",
            "--report", "junit",
            "--report-dir", workdir,
        ]
        if os.environ.get("FUZZ_SEED"):
            command += ["--seed", os.environ["FUZZ_SEED"]]
        print("fuzz:", " ".join(command), flush=True)
        # schemathesis keeps its cache in the working directory: the run's own.
        status = subprocess.run(command, env=env, cwd=workdir).returncode
        errors = [line for line in open(app.logfile, errors="replace") if " ERROR " in line]
        if errors:
            print(f"fuzz: linkhub logged {len(errors)} error(s):", *errors[:20], sep="\n  ")
        where = "" if status == 0 else f"; logs and report in {workdir}"
        print(f"fuzz: schemathesis exit status {status}{where}")
        return status
    finally:
        app.stop()
        redis.kill()
        app.drop_database()
        if status == 0:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
