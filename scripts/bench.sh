#!/usr/bin/env bash
# The benchmark suite: installs what it needs (wrk, redis-server, the
# PostgreSQL client), makes sure PostgreSQL runs, builds linkhub and the
# loadtest binaries in release mode, then runs `loadtest bench`, which starts
# a private redis-server, a fresh database, linkhub instances and the floor,
# seeds through the API, measures, and writes docs/BENCHMARKS.md and
# docs/bench-*.png. Extra arguments go to `loadtest bench` (see --help).
#
# The reference for a cached `HIT` is the floor with one Redis connection per
# worker (FLOOR_CONNECTION=per-worker); the pool floor is the second line;
# linkhub's /healthz is compared with bare actix-web's. Redis's own CPU,
# commands and bytes per request come from the private Redis's INFO. Writes
# are measured at 0, 100k, 1M and 10M unrelated keys (DEBUG POPULATE):
# latency, Redis CPU per write, and the
# invalidation cost of a write followed by a re-caching read.
#
# Time: with the defaults (10,000 users, --reps 3 --secs 10 --load-secs 30,
# four keyspace levels, 200 invalidation writes each) about 30 minutes on
# 2 cores: seeding about 4, reads 4, goose runs 3, writes and populating
# Redis the rest (a write's purge goes through its namespace's index, so its
# cost does not grow with the keyspace; a purge by SCAN cost about 1 s of Redis
# CPU per write at 10M keys). A look at every column in about 5
# minutes (what the change adding them ran):
#   scripts/bench.sh --users 200 --reps 1 --secs 2 --load-secs 3 \
#     --keyspaces 0,1000000,10000000 --invalidation-writes 30 --out /tmp/bench
# Only some comparisons: --parts (reads, memory, mixed, stampede, writes;
# the charts are drawn only when all run). The invalidation cost alone:
#   scripts/bench.sh --users 50 --reps 1 --secs 2 --load-secs 3 \
#     --keyspaces 0,1000000,10000000 --invalidation-writes 100 --parts writes \
#     --out /tmp/inv-bench
#
# The data-scale part runs on its own, never with the rest (about 6 minutes:
# loading a million users by SQL takes about 2 of them):
#   scripts/bench.sh scale [--scales 1000,1000000] [--no-hostile] ...
# It loads databases of 1,000 and 1,000,000 users (scripts/seed-scale.sh),
# measures each read shape's miss cost (HTTP and PostgreSQL's own time), the
# users list beside a registration stream and, when scripts/hostile.py is in
# the tree, hostile clients, and rewrites its own section of
# docs/BENCHMARKS.md (between `bench.sh scale` markers). The other parts
# leave that section in place. Options: scripts/bench-scale.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_apt wrk wrk redis-server redis-server psql postgresql-client
install_needed
bash scripts/services.sh

if [ "${1:-}" = scale ]; then
  shift
  cargo build --release --locked -p linkhub
  bin="$(mktemp -d /tmp/linkhub-bench-bin.XXXXXX)"
  trap 'rm -rf "$bin"' EXIT
  cp "$CARGO_TARGET_DIR/release/linkhub" "$bin/"
  python3 scripts/bench-scale.py --linkhub "$bin/linkhub" --command "scripts/bench.sh scale${*:+ $*}" "$@"
  exit
fi
# `loadtest bench` writes BENCHMARKS.md whole: the data-scale section is kept
# aside and put back after it.
scale_section="$(sed -n '/^<!-- bench.sh scale: begin -->$/,/^<!-- bench.sh scale: end -->$/p' docs/BENCHMARKS.md 2>/dev/null || true)"

cargo build --release --locked -p linkhub -p loadtest
# Run private copies: another build into the shared target directory must not
# swap a binary between the instances one run starts.
bin="$(mktemp -d /tmp/linkhub-bench-bin.XXXXXX)"
trap 'rm -rf "$bin"' EXIT
cp "$CARGO_TARGET_DIR/release/"{linkhub,loadtest,floor} "$bin/"
"$bin/loadtest" bench --command "scripts/bench.sh${*:+ $*}" "$@"
if [ -n "$scale_section" ] && ! grep -q '^<!-- bench.sh scale: begin -->$' docs/BENCHMARKS.md; then
  printf '\n%s\n' "$scale_section" >>docs/BENCHMARKS.md
fi
