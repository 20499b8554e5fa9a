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
# observer costs cached reads (see verify_cost below); so is
# `scripts/bench.sh clicks`: what a counted redirect costs beside a cached
# read, and PostgreSQL transactions per 1,000 clicks (see clicks_cost).
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

# What the parts `verify` and `clicks` share, one definition each: a private
# database and redis-server, release-build instances on fixed ports, one
# profile seeded through the API, a wrk run, the median, and a section of
# docs/BENCHMARKS.md between markers.
#
# bench_private NAME REDIS_PORT: a work directory, the binary (LINKHUB_BIN,
# else a fresh release build), a private database and a redis-server on
# REDIS_PORT, all removed on exit. Sets BENCH_WORK, BENCH_DB, BENCH_BUILD
# (the binary, as the section names it) and BENCH_STARTED.
bench_private() {
  # Global: the EXIT trap runs after the part returned.
  BENCH_DB="linkhub_bench_$1_$$" BENCH_REDIS_PORT=$2 BENCH_PIDS=()
  BENCH_STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
  BENCH_WORK=$(mktemp -d "/tmp/linkhub-bench-$1.XXXXXX")
  BENCH_BUILD="release build"
  if [ -n "${LINKHUB_BIN:-}" ]; then
    BENCH_BUILD="the binary $LINKHUB_BIN (not a fresh release build)"
    cp "$LINKHUB_BIN" "$BENCH_WORK/linkhub"
  else
    cargo build --release --locked -p linkhub
    cp "$CARGO_TARGET_DIR/release/linkhub" "$BENCH_WORK/linkhub"
  fi
  trap bench_cleanup EXIT
  redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --logfile "$BENCH_WORK/redis.log"
}
# shellcheck disable=SC2317  # run by the trap
bench_cleanup() {
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # Stopped before their database is dropped (a stopping instance still
  # holds connections to it).
  for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  redis-cli -p "$BENCH_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  drop_database "$BENCH_DB"
  rm -rf "$BENCH_WORK"
}

# bench_start NAME PORT [VAR=VALUE ...]: an instance on PORT on the private
# database and Redis, with those settings; waits until it is ready. Sets
# BENCH_PID (its process).
bench_start() {
  local name=$1 port=$2
  shift 2
  env RUST_LOG=warn DATABASE_URL="postgres://postgres@127.0.0.1:5432/$BENCH_DB" \
    REDIS_URL="redis://127.0.0.1:$BENCH_REDIS_PORT" BIND_ADDR="127.0.0.1:$port" CACHE_PREFIX=bench \
    METRICS_TOKEN= METRICS_BIND_ADDR= "$@" \
    "$BENCH_WORK/linkhub" serve >"$BENCH_WORK/$name.log" 2>&1 &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
  for _ in $(seq 1 300); do linkhub_ready "http://127.0.0.1:$port" && return; sleep 0.2; done
  echo "bench: $name did not become ready" >&2; cat "$BENCH_WORK/$name.log" >&2; exit 1
}

# bench_seed PORT: the profile bench_user (5 links, 3 socials) through the
# API of the instance on PORT. Sets BENCH_LINKS (the links' ids).
bench_seed() {
  local api="http://127.0.0.1:$1/api/v1" token id i p
  id=$(curl -sf -X POST "$api/users" -H 'content-type: application/json' \
    -d '{"username":"bench_user","email":"bench@example.com","password":"bench-password","name":"Bench User","bio":"A profile for benchmarks"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
  token=$(curl -sf -X POST "$api/auth/login" -H 'content-type: application/json' \
    -d '{"login":"bench_user","password":"bench-password"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
  BENCH_LINKS=""
  for i in 1 2 3 4 5; do
    BENCH_LINKS+="$(curl -sf -X POST "$api/users/$id/links" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' -d "{\"title\":\"Link $i\",\"url\":\"https://example.com/$i\"}" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])') "
  done
  for p in github mastodon youtube; do
    curl -sf -X POST "$api/users/$id/socials" -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"platform\":\"$p\",\"url\":\"https://$p.example.com/bench\"}" >/dev/null
  done
}

# bench_wrk PORT PATH CONNECTIONS DURATION [PID] -> "req/s p50 p99"
# (keep-alive); with PID, a fourth field: that process's own CPU time (user +
# system, from /proc) per request in µs, which other work on the machine
# disturbs far less than throughput.
bench_wrk() {
  local before=0 after=0
  [ -n "${5:-}" ] && before=$(awk '{print $14 + $15}' "/proc/$5/stat")
  wrk -t2 -c"$3" -d"$4" --latency "http://127.0.0.1:$1$2" >"$BENCH_WORK/wrk.out"
  [ -n "${5:-}" ] && after=$(awk '{print $14 + $15}' "/proc/$5/stat")
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" -v cpu="${5:+1}" '
    /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
    / requests in / {n=$1}
    END {if (cpu) printf "%s %s %s %.1f\n", rps, p50, p99, ticks / hz * 1e6 / n; else print rps, p50, p99}' \
    "$BENCH_WORK/wrk.out"
}

# bench_median [COLUMN]: the median of that field (default the first) of
# ';'-separated records on stdin.
bench_median() {
  tr ';' '\n' | awk -v c="${1:-1}" 'NF {print $c}' | sort -n |
    awk '{a[NR]=$0} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

# bench_section MARK FILE: FILE (which opens with `<!-- MARK:start` and ends
# with `<!-- MARK:end -->`) replaces that section of docs/BENCHMARKS.md, or
# is appended to it.
bench_section() {
  python3 - docs/BENCHMARKS.md "$2" "$1" <<'PY'
import re, sys
path, section, mark = sys.argv[1], open(sys.argv[2]).read().strip(), re.escape(sys.argv[3])
text = open(path).read()
block = re.compile(rf"<!-- {mark}:start.*?<!-- {mark}:end -->", re.S)
if block.search(text):
    text = block.sub(lambda _: section, text)
else:
    text = text.rstrip() + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
  echo "bench $1: written to docs/BENCHMARKS.md"
}

# The consistency observer's cost: two release-build instances on one
# database and one private redis-server, CACHE_VERIFY_SAMPLE=0 (off) and
# 0.01 (the default), the load tool of the read comparison (wrk -t2 -c64 on
# one profile with 5 links and 3 socials, every read a HIT) on each in
# turn, in ABBA order so that a drift of the shared machine falls on both,
# and each instance's own CPU time per request.
# The ratio of the medians goes into docs/BENCHMARKS.md, in its section
# between the `verify` markers (replaced on each run; `loadtest bench`
# rewrites the file whole, so run this part after it).
#   scripts/bench.sh verify      # REPS=4 DURATION=10s CONNECTIONS=64 VERIFY_PORT_BASE=7550
# LINKHUB_BIN=path/to/linkhub uses that binary instead of building one (the
# section then names it: a figure of a debug build is only indicative).
verify_cost() {
  local reps="${REPS:-4}" duration="${DURATION:-10s}" connections="${CONNECTIONS:-64}"
  local base="${VERIFY_PORT_BASE:-7550}"
  local off_port=$((base + 1)) on_port=$((base + 2))
  bench_private verify "$base"
  local off_pid on_pid
  bench_start off "$off_port" CACHE_VERIFY_SAMPLE=0
  off_pid=$BENCH_PID
  bench_start on "$on_port" CACHE_VERIFY_SAMPLE=0.01
  on_pid=$BENCH_PID
  bench_seed "$off_port"
  local path="/api/v1/profiles/bench_user"
  for port in "$off_port" "$on_port"; do # warm-up: the entry, the connections, the near cache
    wrk -t2 -c"$connections" -d3s "http://127.0.0.1:$port$path" >/dev/null
  done
  local off="" on="" rep which order result
  for rep in $(seq 1 "$reps"); do
    order="off on"; [ $((rep % 2)) -eq 0 ] && order="on off"
    for which in $order; do
      if [ "$which" = off ]; then result=$(bench_wrk "$off_port" "$path" "$connections" "$duration" "$off_pid"); off+="$result;"
      else result=$(bench_wrk "$on_port" "$path" "$connections" "$duration" "$on_pid"); on+="$result;"; fi
      echo "bench verify: rep $rep $which: $result (req/s p50 p99 CPU-µs/request)"
    done
  done
  local off_rps on_rps ratio checks met off_cpu on_cpu cpu_ratio
  off_rps=$(printf '%s' "$off" | bench_median)
  on_rps=$(printf '%s' "$on" | bench_median)
  off_cpu=$(printf '%s' "$off" | bench_median 4)
  on_cpu=$(printf '%s' "$on" | bench_median 4)
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
    echo "Written by \`scripts/bench.sh verify\` on $BENCH_STARTED: two instances ($BENCH_BUILD) on one database and" \
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
  } >"$BENCH_WORK/section.md"
  bench_section verify "$BENCH_WORK/section.md"
}

# The clicks part: what a counted redirect costs. One release-build instance
# on a private database and redis-server, with the default settings (a
# redirect is answered once its click is appended to the local click
# journal; the applier applies the journal every CLICKS_FLUSH_MS, 250 ms),
# the profile of the verify part, and:
#  - redirects (`wrk` on /l/{id}, keep-alive) beside cached profile HITs,
#    same connections, in ABBA order; the ratio of the medians (goal >= 0.8);
#  - at each number of clicks in flight (wrk connections, IN_FLIGHT):
#    redirects/s, p50/p99, PostgreSQL transactions per 1,000 clicks (the
#    private database's `xact_commit` delta, minus its idle rate measured
#    first) and linkhub's applier transactions per 1,000 clicks; the clicks
#    counted in PostgreSQL must equal the 302s linkhub counted;
#  - the instance's RSS after warm-up and at the end.
# PostgreSQL 15 flushes an idle backend's statistics up to 10 s late, so each
# transaction count is read 11 s after its run (the idle rate covers that).
# Writes its section of docs/BENCHMARKS.md between the `clicks` markers.
#   scripts/bench.sh clicks   # REPS=4 DURATION=10s CONNECTIONS=64 IN_FLIGHT="16 64 256" CLICKS_PORT_BASE=7300
# LINKHUB_BIN as for verify. About 4 minutes with the defaults.
clicks_cost() {
  local reps="${REPS:-4}" duration="${DURATION:-10s}" connections="${CONNECTIONS:-64}"
  local in_flight="${IN_FLIGHT:-16 64 256}" base="${CLICKS_PORT_BASE:-7300}"
  local port=$((base + 1)) settle=11
  bench_private clicks "$base"
  bench_start default "$port" CLICKS_JOURNAL_DIR="$BENCH_WORK/journal"
  local pid=$BENCH_PID
  bench_seed "$port"
  local profile="/api/v1/profiles/bench_user" link="${BENCH_LINKS%% *}"
  local redirect="/l/$link"
  xact() {
    psql -Atq "postgres://postgres@127.0.0.1:5432/postgres" \
      -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$BENCH_DB'"
  }
  stored() {
    psql -Atq "postgres://postgres@127.0.0.1:5432/$BENCH_DB" \
      -c "SELECT COALESCE(sum(clicks), 0) FROM link_clicks WHERE link_id = $link"
  }
  metric() { # name outcome -> the counter's value (0 when absent)
    curl -sf "http://127.0.0.1:$port/metrics" |
      awk -v name="$1" -v outcome="outcome=\"$2\"" '$1 == name "{" outcome "}" {v = $2} END {print v + 0}'
  }
  rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
  # Warm-up: entries, connections, near cache, salt.
  wrk -t2 -c"$connections" -d3s "http://127.0.0.1:$port$profile" >/dev/null
  wrk -t2 -c"$connections" -d3s "http://127.0.0.1:$port$redirect" >/dev/null
  local rss_before rss_after
  rss_before=$(rss_mib "$pid")
  # The idle rate: what the instance commits with no request (pool checks,
  # visitor merges, outbox), to subtract from each run's count.
  sleep "$settle"
  local x0 x1 t0 t1 idle_rate
  x0=$(xact) t0=$(date +%s.%N)
  sleep 30
  x1=$(xact) t1=$(date +%s.%N)
  idle_rate=$(python3 -c "print(f'{($x1 - $x0) / ($t1 - $t0):.2f}')")
  echo "bench clicks: idle: $idle_rate transactions/s"
  local hit="" red="" rep which order result
  for rep in $(seq 1 "$reps"); do
    order="hit redirect"; [ $((rep % 2)) -eq 0 ] && order="redirect hit"
    for which in $order; do
      if [ "$which" = hit ]; then result=$(bench_wrk "$port" "$profile" "$connections" "$duration"); hit+="$result;"
      else result=$(bench_wrk "$port" "$redirect" "$connections" "$duration"); red+="$result;"; fi
      echo "bench clicks: rep $rep $which: $result (req/s p50 p99)"
    done
  done
  local hit_rps red_rps ratio met
  hit_rps=$(printf '%s' "$hit" | bench_median)
  red_rps=$(printf '%s' "$red" | bench_median)
  ratio=$(python3 -c "print(f'{$red_rps / $hit_rps:.3f}')")
  met=$(python3 -c "print('yes' if $red_rps >= 0.8 * $hit_rps else '**no**')")
  echo "bench clicks: redirects vs HITs: $red_rps vs $hit_rps req/s = $ratio x (>= 0.8: $met)"
  # Transactions per 1,000 clicks at each number in flight.
  local rows="" c c0 c1 b0 b1 line
  sleep "$settle"
  for c in $in_flight; do
    x0=$(xact) t0=$(date +%s.%N)
    c0=$(metric linkhub_clicks_total counted)
    b0=$(metric linkhub_click_batches_total committed)
    result=$(bench_wrk "$port" "$redirect" "$c" "$duration")
    sleep "$settle"
    x1=$(xact) t1=$(date +%s.%N)
    c1=$(metric linkhub_clicks_total counted)
    b1=$(metric linkhub_click_batches_total committed)
    line=$(python3 -c "
clicks = $c1 - $c0
tx = ($x1 - $x0) - $idle_rate * ($t1 - $t0)
rps, p50, p99 = '$result'.split()
print(f'| {$c} | {rps} | {p50} | {p99} | {clicks:.0f} | {tx * 1000 / clicks:.2f} | {($b1 - $b0) * 1000 / clicks:.2f} |')")
    echo "bench clicks: $line"
    rows+="$line"$'\n'
  done
  rss_after=$(rss_mib "$pid")
  local counted stored_now exact
  counted=$(metric linkhub_clicks_total counted)
  stored_now=$(stored)
  exact=$(python3 -c "print('yes' if int($counted) == int($stored_now) else '**no**')")
  echo "bench clicks: RSS $rss_before MiB after warm-up, $rss_after MiB at the end; clicks answered $counted, in PostgreSQL $stored_now"
  {
    echo '<!-- clicks:start: written by `scripts/bench.sh clicks`, the rest of this file by `scripts/bench.sh` -->'
    echo '## 7. Link clicks: redirects beside cached reads, transactions per 1,000 clicks'
    echo
    echo "Written by \`scripts/bench.sh clicks\` on $BENCH_STARTED: one instance ($BENCH_BUILD) with the default" \
      "settings on a private database and redis-server, \`wrk -t2 --latency\` for $duration a run on one profile" \
      "(5 links, 3 socials; every read a \`HIT\`) and on \`GET /l/{id}\` of one of its links (each \`302\`" \
      "answered once its click is appended to the local click journal, which is applied to PostgreSQL every" \
      "\`CLICKS_FLUSH_MS\`, 250 ms). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo '| target | goal | measured | met |'
    echo '|---|---|---|---|'
    echo "| redirects vs cached profile \`HIT\`s, $connections connections, requests/s (medians of $reps, ABBA) | ≥ 0.8 × | $red_rps vs $hit_rps req/s = $ratio × | $met |"
    echo "| clicks in PostgreSQL at the end vs clicks answered | equal | $stored_now vs $counted | $exact |"
    echo
    echo "Each repetition (req/s p50 p99): \`HIT\` \`${hit%;}\`; redirect \`${red%;}\`."
    echo
    echo "Clicks in flight (wrk connections): PostgreSQL transactions per 1,000 clicks are the private" \
      "database's \`xact_commit\` delta over the run and the ${settle} s after it, minus the idle rate measured" \
      "before ($idle_rate transactions/s); applier transactions are linkhub's" \
      "\`linkhub_click_batches_total{outcome=\"committed\"}\` (one per flush that had clicks)."
    echo
    echo '| clicks in flight | redirects/s | p50 | p99 | clicks counted | PostgreSQL transactions / 1,000 clicks | applier transactions / 1,000 clicks |'
    echo '|---|---|---|---|---|---|---|'
    printf '%s' "$rows"
    echo
    echo "Resident memory of the instance: $rss_before MiB after warm-up, $rss_after MiB at the end."
    echo '<!-- clicks:end -->'
  } >"$BENCH_WORK/section.md"
  bench_section clicks "$BENCH_WORK/section.md"
}

if [ "${1:-}" = "verify" ]; then
  verify_cost
  exit 0
fi
if [ "${1:-}" = "clicks" ]; then
  clicks_cost
  exit 0
fi
# private_release: a fresh release build of linkhub, copied where another
# build into the shared target directory cannot swap it during the run.
# Sets RELEASE_BIN.
private_release() {
  cargo build --release --locked -p linkhub
  RELEASE_DIR="$(mktemp -d /tmp/linkhub-bench-bin.XXXXXX)"
  trap 'rm -rf "$RELEASE_DIR"' EXIT
  cp "$CARGO_TARGET_DIR/release/linkhub" "$RELEASE_DIR/"
  RELEASE_BIN="$RELEASE_DIR/linkhub"
}
if [ "${1:-}" = against ]; then
  shift
  private_release
  python3 scripts/bench-against.py "$RELEASE_BIN" --write-docs "$@"
  exit
fi
if [ "${1:-}" = scale ]; then
  shift
  private_release
  python3 scripts/bench-scale.py --linkhub "$RELEASE_BIN" --command "scripts/bench.sh scale${*:+ $*}" "$@"
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
