#!/usr/bin/env bash
# Fuzzing gate: schemathesis (pinned, in its own virtualenv) against a release
# build of linkhub on a private database and a private Redis, with an admin
# token so write endpoints are exercised. Checks: no 5xx and every response
# conforms to the OpenAPI document. FUZZ_SECONDS bounds the run (default 120),
# FUZZ_SEED replays one. Needs PostgreSQL on 127.0.0.1:5432 and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
SCHEMATHESIS_VERSION=4.32.5
venv="${SCHEMATHESIS_VENV:-/var/tmp/linkhub-schemathesis}"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --release --locked --bin linkhub
exec python3 scripts/fuzz.py "$CARGO_TARGET_DIR/release/linkhub" "$venv/bin/schemathesis"
