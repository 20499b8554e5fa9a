#!/usr/bin/env bash
# Load-test smoke: keeps loadtest/ from rotting. Builds linkhub and the
# loadtest binary, starts a private linkhub (its own database, CACHE_PREFIX
# and port, on the local PostgreSQL and Redis), seeds a few users through the
# API, runs every scenario for a few seconds with goose thresholds, and exits
# non-zero when anything fails. Cleans up after itself (process, database,
# Redis keys).
#
#   scripts/loadtest-smoke.sh                 # debug build (reuses `cargo test`'s)
#   SMOKE_PROFILE=release scripts/loadtest-smoke.sh
#
# Settings: SMOKE_USERS (20), SMOKE_SECS (5), SMOKE_P95 (goose threshold,
# "p95<1s"), PG_SERVER (postgres://postgres@127.0.0.1:5432), REDIS_URL,
# LOADTEST_REPORTS (keep each scenario's goose report in
# $LOADTEST_REPORTS/<scenario>/, e.g. for scripts/check-report-offline.py;
# by default they go to a scratch directory that is removed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lift_per_address_limits
STEP_PREFIX="loadtest smoke: "

profile="${SMOKE_PROFILE:-debug}"
users="${SMOKE_USERS:-20}"
secs="${SMOKE_SECS:-5}"
p95="${SMOKE_P95:-p95<1s}"
pg_server="${PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
tag="lt_smoke_$$_${RANDOM}"
db_url="$pg_server/$tag"
work="$(mktemp -d /tmp/loadtest-smoke.XXXXXX)"
reports="${LOADTEST_REPORTS:-$work/reports}"
pid=""

cleanup() {
  local status=$?
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  forget_run "$tag" "$pg_server" "$redis_url"
  if [ "$status" -ne 0 ]; then
    echo "loadtest smoke: FAILED (exit $status); logs in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

step "build ($profile)"
build_flags=()
[ "$profile" = release ] && build_flags+=(--release)
cargo build "${build_flags[@]}" --locked -p linkhub -p loadtest
bin="$CARGO_TARGET_DIR/$profile"

step "services"
bash scripts/services.sh >/dev/null

step "start a private linkhub"
for _ in $(seq 1 10); do
  port=$(( (RANDOM % 30000) + 20000 ))
  DATABASE_URL="$db_url" REDIS_URL="$redis_url" CACHE_PREFIX="$tag" \
    BIND_ADDR="127.0.0.1:$port" RUST_LOG=warn "$bin/linkhub" >"$work/linkhub.log" 2>&1 &
  pid=$!
  ready=""
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    if linkhub_ready "http://127.0.0.1:$port"; then
      ready=yes
      break
    fi
    sleep 0.2
  done
  [ -n "$ready" ] && kill -0 "$pid" 2>/dev/null && break
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  grep -q "cannot listen" "$work/linkhub.log" || { cat "$work/linkhub.log" >&2; exit 1; }
done
[ -n "$pid" ] || { echo "no free port found" >&2; exit 1; }
host="http://127.0.0.1:$port"
echo "linkhub (pid $pid) on $host, database $tag, CACHE_PREFIX $tag"

step "seed $users users"
"$bin/loadtest" seed --host "$host" --users "$users"
# A second run must find every user complete (the command is idempotent).
"$bin/loadtest" seed --host "$host" --users "$users" | tee "$work/reseed.log"
grep -q "0 created, 0 completed, $users already complete" "$work/reseed.log"

for scenario in profiles search mixed stampede clicks; do
  step "scenario $scenario (${secs}s)"
  rm -rf "$reports/$scenario" # goose would write into "$scenario-2" next to an old run
  LOADTEST_USERS="$users" "$bin/loadtest" --host "$host" --scenarios "$scenario" \
    --users 4 --increase-rate 4 --run-time "${secs}s" \
    --threshold "error-rate<1%" --threshold "$p95" \
    --output-dir "$reports/$scenario" --report-file --quiet \
    >"$work/$scenario.log" 2>&1 || { tail -n 40 "$work/$scenario.log" >&2; exit 1; }
  summary=$(grep '^loadtest summary: ' "$work/$scenario.log")
  echo "$summary"
  test -s "$reports/$scenario/report.html" && test -s "$reports/$scenario/report.json"
  case "$scenario" in
    mixed | stampede)
      # The read-your-writes check only means something if writes happened.
      echo "$summary" | grep -Eq '"writes":[1-9]' || { echo "no write was checked" >&2; exit 1; }
      ;;
  esac
done

step "passed"
