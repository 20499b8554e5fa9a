#!/usr/bin/env bash
# Generated-client check: what a mobile or web team does with linkhub's
# OpenAPI document. Starts a private linkhub (its own database and
# CACHE_PREFIX on the local PostgreSQL and Redis), generates a Python client
# from the /api/v1/openapi.json it serves with openapi-python-client, then
# type-checks tests/client/use_client.py against that client (mypy --strict)
# and runs it: register, login, add a link, and the cached reads (user,
# profile, links list). Fails when the client gets a duplicate model of a
# resource (an envelope whose `data` is not a `$ref`), when the program no
# longer type-checks, or when any call answers what the document does not say.
#
#   scripts/check-generated-client.sh         # debug build (reuses `cargo test`'s)
#
# The tools live in a virtual environment under the target directory
# ($CARGO_TARGET_DIR/py-tools, shared with .ci/run), pinned below. Settings: PG_SERVER
# (postgres://postgres@127.0.0.1:5432), REDIS_URL (redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lift_per_address_limits
STEP_PREFIX="generated client: "

pg_server="${PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
tag="gen_client_$$_${RANDOM}"
work="$(mktemp -d /tmp/generated-client.XXXXXX)"
venv="$CARGO_TARGET_DIR/py-tools"
LINKHUB_PID=""

cleanup() {
  local status=$?
  if [ -n "$LINKHUB_PID" ]; then
    kill "$LINKHUB_PID" 2>/dev/null || true
    wait "$LINKHUB_PID" 2>/dev/null || true
  fi
  forget_run "$tag" "$pg_server" "$redis_url"
  if [ "$status" -ne 0 ]; then
    echo "generated client: FAILED (exit $status); files in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

step "tools (openapi-python-client, mypy) in $venv"
python_tools "$venv" openapi-python-client==0.29.1 mypy==2.4.1

step "build"
cargo build --locked --bin linkhub

step "start a private linkhub"
DATABASE_URL="$pg_server/$tag" REDIS_URL="$redis_url" CACHE_PREFIX="$tag" \
  start_linkhub "$CARGO_TARGET_DIR/debug/linkhub" "$work/linkhub.log"
echo "linkhub (pid $LINKHUB_PID) on $LINKHUB_URL"

step "generate linkhub_client from $LINKHUB_URL/api/v1/openapi.json"
curl -fsS "$LINKHUB_URL/api/v1/openapi.json" -o "$work/openapi.json"
# No post-generation hooks: they would format with ruff, which is not needed
# to type-check or run the client.
printf 'post_hooks: []\n' >"$work/generator.yaml"
"$venv/bin/openapi-python-client" generate --path "$work/openapi.json" --meta none \
  --config "$work/generator.yaml" --output-path "$work/linkhub_client" >"$work/generate.log" 2>&1 \
  || { cat "$work/generate.log" >&2; exit 1; }
# One model per resource: an inline envelope would add e.g. DataBodyLinkData.
duplicates=$(ls "$work/linkhub_client/models" | grep -E '^(data_body|message_body|page)_.*_data(_item)?\.py$' || true)
if [ -n "$duplicates" ]; then
  echo "envelopes with an inline resource (their data should be a \$ref):" >&2
  echo "$duplicates" >&2
  exit 1
fi
ls "$work/linkhub_client/models" | sed 's/\.py$//' | tr '\n' ' '
echo

step "mypy --strict tests/client/use_client.py"
cp tests/client/use_client.py "$work/"
(cd "$work" && "$venv/bin/mypy" --strict --no-incremental use_client.py)

step "run tests/client/use_client.py against $LINKHUB_URL"
(cd "$work" && "$venv/bin/python" use_client.py "$LINKHUB_URL")

step "passed"
