#!/usr/bin/env bash
# Cached profile reads on a single Redis node vs a 3-master Redis Cluster:
# the same wrk load against two release-build linkhub instances on one
# database, alternating, 3 repetitions each. Prints a Markdown table.
#
#   scripts/bench-topologies.sh            # DURATION=10s CONNECTIONS=64 REPS=3
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lift_per_address_limits
DURATION="${DURATION:-10s}"; CONNECTIONS="${CONNECTIONS:-64}"; REPS="${REPS:-3}"
need_apt wrk wrk
install_needed
bash scripts/services.sh >/dev/null
cargo build --release -q -p linkhub
bin="$CARGO_TARGET_DIR/release/linkhub"

db="linkhub_bench_topologies"
single_port=7390; cluster_base=7391
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  redis-cli -p "$single_port" shutdown nosave >/dev/null 2>&1 || true
  BASE_PORT=$cluster_base bash scripts/redis-cluster.sh stop >/dev/null 2>&1 || true
  drop_database "$db"
  rm -rf "$work"
}
trap cleanup EXIT
drop_database "$db"
redis-server --port "$single_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$work/redis.log"
cluster_urls=$(BASE_PORT=$cluster_base bash scripts/redis-cluster.sh start | sed -n 's/^REDIS_CLUSTER_URLS=//p')

start() { # name port extra-env...
  local name=$1 port=$2; shift 2
  env RUST_LOG=warn DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" BIND_ADDR="127.0.0.1:$port" \
    CACHE_PREFIX=bench "$@" "$bin" > "$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do linkhub_ready "http://127.0.0.1:$port" && return; sleep 0.1; done
  echo "$name did not become ready" >&2; cat "$work/$name.log" >&2; exit 1
}
start single 18181 REDIS_URL="redis://127.0.0.1:$single_port"
start cluster 18182 REDIS_CLUSTER_URLS="$cluster_urls"

api=http://127.0.0.1:18181/api/v1
curl -sf -X POST "$api/users" -H 'content-type: application/json' \
  -d '{"username":"bench_user","email":"bench@example.com","password":"bench-password","name":"Bench User","bio":"A profile for benchmarks"}' >/dev/null
token=$(curl -sf -X POST "$api/auth/login" -H 'content-type: application/json' \
  -d '{"login":"bench_user","password":"bench-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
for i in 1 2 3 4 5; do
  curl -sf -X POST "$api/users/1/links" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"title\":\"Link $i\",\"url\":\"https://example.com/$i\"}" >/dev/null
done
for p in github mastodon youtube; do
  curl -sf -X POST "$api/users/1/socials" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"platform\":\"$p\",\"url\":\"https://$p.example.com/bench\"}" >/dev/null
done

run() { # port -> "req/s p50 p99"
  curl -sf "http://127.0.0.1:$1/api/v1/profiles/bench_user" >/dev/null
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$1/api/v1/profiles/bench_user" |
    awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print rps, p50, p99}'
}
declare -A results
for rep in $(seq 1 "$REPS"); do
  results[single]+="$(run 18181);"
  results[cluster]+="$(run 18182);"
done
median() { tr ';' '\n' | grep . | sort -n -k1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
hits() { curl -sf "http://127.0.0.1:$1/metrics" | awk '/^linkhub_cache_requests_total\{namespace="profile",result="hit"\}/ {print $2}'; }
echo "| Redis | requests/s (median of $REPS) | p50 | p99 | profile HITs | each repetition (req/s p50 p99) |"
echo "|---|---|---|---|---|---|"
for t in single cluster; do
  port=18181; [ "$t" = cluster ] && port=18182
  read -r rps p50 p99 <<<"$(printf '%s' "${results[$t]}" | median)"
  echo "| $t | $rps | $p50 | $p99 | $(hits $port) | ${results[$t]} |"
done
echo
echo "wrk -t2 -c$CONNECTIONS -d$DURATION --latency, one profile with 5 links and 3 socials; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
