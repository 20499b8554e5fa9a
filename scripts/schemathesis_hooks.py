"""Schemathesis hooks for linkhub's fuzzing gate (scripts/fuzz.sh).

* Every request is sent as an admin (`LINKHUB_FUZZ_LOGIN`), so write endpoints
  get past authorization and their bodies reach validation and the database.
  The token is fetched by logging in and fetched again after any `401` (the
  fuzzer itself calls `POST /auth/logout`, which kills the token it used).
* The fuzzer may not change or delete that admin (its own id is swapped for
  the id of a seeded user in `PATCH`/`DELETE /users/{id}`): a random new
  password, username or a deletion would lock the rest of the run out.
"""

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["LINKHUB_FUZZ_BASE"]
LOGIN = os.environ["LINKHUB_FUZZ_LOGIN"]
PASSWORD = os.environ["LINKHUB_FUZZ_PASSWORD"]
ADMIN_ID = int(os.environ["LINKHUB_FUZZ_ADMIN_ID"])
SPARE_ID = int(os.environ["LINKHUB_FUZZ_SPARE_ID"])


@schemathesis.auth(refresh_interval=600)
class AdminToken:
    def get(self, case, ctx):
        request = urllib.request.Request(
            f"{BASE}/api/v1/auth/login",
            data=json.dumps({"login": LOGIN, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["data"]["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() not in ("PATCH", "DELETE"):
        return
    if not case.operation.path.endswith("/users/{id}"):
        return
    params = case.path_parameters or {}
    if str(params.get("id")) == str(ADMIN_ID):
        params["id"] = SPARE_ID
        case.path_parameters = params
