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
# loading a million users by SQL takes 2 to 4 of them):
#   scripts/bench.sh scale [--scales 1000,1000000] [--no-hostile] ...
# It loads databases of 1,000 and 1,000,000 users (scripts/seed-scale.sh),
# measures each read shape's miss cost (HTTP and PostgreSQL's own time), the
# users list beside a registration stream and, when scripts/hostile.py is in
# the tree, hostile clients, and rewrites its own section of
# docs/BENCHMARKS.md (between `bench.sh scale` markers). The other parts
# leave that section in place. Options: scripts/bench-scale.py --help.
#
# `scripts/bench.sh verify` is a part of its own: what the consistency
# observer costs cached reads (see verify_cost below).
#
# `scripts/bench.sh against OTHER_BINARY [--label NAME]` is another: this
# build's cached read and write beside another build's (an earlier main),
# side by side in one run (scripts/bench-against.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lift_per_address_limits

need_apt wrk wrk redis-server redis-server psql postgresql-client
install_needed
bash scripts/services.sh

# The consistency observer's cost: two release-build instances on one
# database and one private redis-server, CACHE_VERIFY_SAMPLE=0 (off) and
# 0.01 (the default), the load tool of the read comparison (wrk -t2 -c64 on
# one profile with 5 links and 3 socials, every read a HIT) on each in
# turn, in ABBA order so that a drift of the shared machine falls on both,
# and each instance's own CPU time per request (from /proc), which other
# work on the machine disturbs far less than throughput.
# The ratio of the medians goes into docs/BENCHMARKS.md, in its section
# between the `verify` markers (replaced on each run; `loadtest bench`
# rewrites the file whole, so run this part after it).
#   scripts/bench.sh verify      # REPS=4 DURATION=10s CONNECTIONS=64 VERIFY_PORT_BASE=7550
# LINKHUB_BIN=path/to/linkhub uses that binary instead of building one (the
# section then names it: a figure of a debug build is only indicative).
verify_cost() {
  local reps="${REPS:-4}" duration="${DURATION:-10s}" connections="${CONNECTIONS:-64}"
  local base="${VERIFY_PORT_BASE:-7550}"
  local redis_port=$base off_port=$((base + 1)) on_port=$((base + 2))
  # What the EXIT trap cleans up, global: it runs after this function returned.
  VERIFY_DB="linkhub_bench_verify_$$" VERIFY_REDIS_PORT=$redis_port
  local db=$VERIFY_DB
  local started
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
  VERIFY_WORK=$(mktemp -d /tmp/linkhub-bench-verify.XXXXXX)
  VERIFY_PIDS=()
  local build="release build"
  if [ -n "${LINKHUB_BIN:-}" ]; then
    build="the binary $LINKHUB_BIN (not a fresh release build)"
    cp "$LINKHUB_BIN" "$VERIFY_WORK/linkhub"
  else
    cargo build --release --locked -p linkhub
    cp "$CARGO_TARGET_DIR/release/linkhub" "$VERIFY_WORK/linkhub"
  fi
  # shellcheck disable=SC2317  # run by the trap
  cleanup_verify() {
    for p in "${VERIFY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    redis-cli -p "$VERIFY_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    drop_database "$VERIFY_DB"
    rm -rf "$VERIFY_WORK"
  }
  trap cleanup_verify EXIT
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --logfile "$VERIFY_WORK/redis.log"
  start_verify() { # name port sample
    env RUST_LOG=warn DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" \
      REDIS_URL="redis://127.0.0.1:$redis_port" BIND_ADDR="127.0.0.1:$2" CACHE_PREFIX=bench \
      CACHE_VERIFY_SAMPLE="$3" METRICS_TOKEN= METRICS_BIND_ADDR= \
      "$VERIFY_WORK/linkhub" serve >"$VERIFY_WORK/$1.log" 2>&1 &
    VERIFY_PIDS+=($!)
    for _ in $(seq 1 300); do linkhub_ready "http://127.0.0.1:$2" && return; sleep 0.2; done
    echo "bench verify: $1 did not become ready" >&2; cat "$VERIFY_WORK/$1.log" >&2; exit 1
  }
  start_verify off "$off_port" 0
  start_verify on "$on_port" 0.01
  local api="http://127.0.0.1:$off_port/api/v1" token id
  id=$(curl -sf -X POST "$api/users" -H 'content-type: application/json' \
    -d '{"username":"bench_user","email":"bench@example.com","password":"bench-password","name":"Bench User","bio":"A profile for benchmarks"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
  token=$(curl -sf -X POST "$api/auth/login" -H 'content-type: application/json' \
    -d '{"login":"bench_user","password":"bench-password"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
  for i in 1 2 3 4 5; do
    curl -sf -X POST "$api/users/$id/links" -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"title\":\"Link $i\",\"url\":\"https://example.com/$i\"}" >/dev/null
  done
  for p in github mastodon youtube; do
    curl -sf -X POST "$api/users/$id/socials" -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"platform\":\"$p\",\"url\":\"https://$p.example.com/bench\"}" >/dev/null
  done
  local path="/api/v1/profiles/bench_user"
  cpu_ticks() { # pid -> user + system CPU time so far, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
  }
  run_verify() { # port pid -> "req/s p50 p99 cpu-µs/request"
    local before after
    before=$(cpu_ticks "$2")
    wrk -t2 -c"$connections" -d"$duration" --latency "http://127.0.0.1:$1$path" >"$VERIFY_WORK/wrk.out"
    after=$(cpu_ticks "$2")
    awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
      /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
      / requests in / {n=$1}
      END {printf "%s %s %s %.1f\n", rps, p50, p99, ticks / hz * 1e6 / n}' "$VERIFY_WORK/wrk.out"
  }
  for port in "$off_port" "$on_port"; do # warm-up: the entry, the connections, the near cache
    wrk -t2 -c"$connections" -d3s "http://127.0.0.1:$port$path" >/dev/null
  done
  local off="" on="" rep which order result
  for rep in $(seq 1 "$reps"); do
    order="off on"; [ $((rep % 2)) -eq 0 ] && order="on off"
    for which in $order; do
      if [ "$which" = off ]; then result=$(run_verify "$off_port" "${VERIFY_PIDS[0]}"); off+="$result;"
      else result=$(run_verify "$on_port" "${VERIFY_PIDS[1]}"); on+="$result;"; fi
      echo "bench verify: rep $rep $which: $result (req/s p50 p99 CPU-µs/request)"
    done
  done
  median_of() { # column -> the median of that column over the repetitions
    tr ';' '\n' | awk -v c="$1" 'NF {print $c}' | sort -n |
      awk '{a[NR]=$0} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
  }
  local off_rps on_rps ratio checks met off_cpu on_cpu cpu_ratio
  off_rps=$(printf '%s' "$off" | median_of 1)
  on_rps=$(printf '%s' "$on" | median_of 1)
  off_cpu=$(printf '%s' "$off" | median_of 4)
  on_cpu=$(printf '%s' "$on" | median_of 4)
  ratio=$(python3 -c "print(f'{$on_rps / $off_rps:.3f}')")
  cpu_ratio=$(python3 -c "print(f'{$on_cpu / $off_cpu:.3f}')")
  met=$(python3 -c "print('yes' if $on_rps >= 0.97 * $off_rps else '**no**')")
  checks=$(curl -sf "http://127.0.0.1:$on_port/metrics" | awk -F'[{}" ]+' '
    $1 == "linkhub_cache_verify_total" {n[$3] = $4}
    END {printf "%d fresh, %d stale, %d skipped", n["fresh"], n["stale"], n["skipped"]}')
  echo "bench verify: observer at 0.01 vs off: $on_rps vs $off_rps req/s = $ratio x (>= 0.97: $met); CPU per request $on_cpu vs $off_cpu us = $cpu_ratio x; its checks: $checks"
  {
    echo '<!-- verify:start: written by `scripts/bench.sh verify`, the rest of this file by `scripts/bench.sh` -->'
    echo '## The consistency observer'"'"'s cost'
    echo
    echo "Written by \`scripts/bench.sh verify\` on $started: two instances ($build) on one database and" \
      "one private redis-server, \`CACHE_VERIFY_SAMPLE=0\` (off) and \`0.01\` (the default)," \
      "\`wrk -t2 -c$connections -d$duration --latency\` on one profile (5 links, 3 socials; every read a \`HIT\`)," \
      "$reps repetitions each, in ABBA order. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo '| target | goal | measured | met |'
    echo '|---|---|---|---|'
    echo "| cached \`HIT\`s with the observer at 0.01 vs off, requests/s (medians) | ≥ 0.97 × | $on_rps vs $off_rps req/s = $ratio × | $met |"
    echo "| linkhub's own CPU per cached \`HIT\` (user + system, from /proc), at 0.01 vs off (medians) | | $on_cpu vs $off_cpu µs = $cpu_ratio × | |"
    echo
    echo "The CPU per request is the steadier figure when other work shares the machine: it does not count the time the instance waited for a core."
    echo
    echo "Each repetition (req/s p50 p99 CPU-µs/request): off \`${off%;}\`; at 0.01 \`${on%;}\`." \
      "The observer's checks during the run: $checks."
    echo '<!-- verify:end -->'
  } >"$VERIFY_WORK/section.md"
  python3 - docs/BENCHMARKS.md "$VERIFY_WORK/section.md" <<'PY'
import re, sys
path, section = sys.argv[1], open(sys.argv[2]).read().strip()
text = open(path).read()
block = re.compile(r"<!-- verify:start.*?<!-- verify:end -->", re.S)
if block.search(text):
    text = block.sub(lambda _: section, text)
else:
    text = text.rstrip() + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
  echo "bench verify: written to docs/BENCHMARKS.md"
}

if [ "${1:-}" = "verify" ]; then
  verify_cost
  exit 0
fi
if [ "${1:-}" = against ]; then
  shift
  cargo build --release --locked -p linkhub
  bin="$(mktemp -d /tmp/linkhub-bench-bin.XXXXXX)"
  trap 'rm -rf "$bin"' EXIT
  cp "$CARGO_TARGET_DIR/release/linkhub" "$bin/"
  python3 scripts/bench-against.py "$bin/linkhub" --write-docs "$@"
  exit
fi
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
