#!/usr/bin/env bash
# Rolling deploy under load: two release-built linkhub instances behind
# HAProxy (health checks on /readyz, `retries 2`, `option redispatch`), each
# replaced in turn (SIGTERM, exit, a new process on the same port, /readyz)
# while goose's `mixed` scenario writes and reads back through HAProxy.
# Reports failed requests and stale reads (goal 0 each; any is a failure)
# and the p99 during the deploy beside the p99 of the same load without one
# (scripts/rolling_deploy.py says what is measured and its knobs).
#
#   scripts/rolling-deploy.sh           # short form (CI): 20 s of load per run, one round
#   scripts/rolling-deploy.sh --long    # 60 s per run, 3 rounds, 16 goose users
#
# Uses a private database (dropped afterwards), a private redis-server and
# HAProxy on free ports of 127.0.0.1, its config in a temporary directory.
# Needs haproxy, redis-server, psql and PostgreSQL on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--long" ]; then
  export DEPLOY_SECS="${DEPLOY_SECS:-60}" DEPLOY_ROUNDS="${DEPLOY_ROUNDS:-3}"
  export DEPLOY_USERS="${DEPLOY_USERS:-16}" DEPLOY_WARMUP_SECS="${DEPLOY_WARMUP_SECS:-5}"
fi

. scripts/lib.sh
# Two builds, not one: linkhub's is then the very build scripts/chaos.sh
# makes (one build of a package set unifies features across it).
cargo build --release --locked --bin linkhub
cargo build --release --locked -p loadtest --bin loadtest
exec python3 scripts/rolling_deploy.py "$CARGO_TARGET_DIR/release"
