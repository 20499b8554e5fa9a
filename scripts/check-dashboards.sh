#!/usr/bin/env bash
# Checks deploy/: the Prometheus alert rules and the Grafana dashboard.
#
#   1. `promtool check rules` and `promtool test rules` (alerts.test.yml).
#   2. A private linkhub (its own database, CACHE_PREFIX, port, and a
#      METRICS_TOKEN that Prometheus scrapes with) under a small load of
#      registrations, cached reads (MISS then HIT), writes and 404s.
#   3. A private Prometheus (127.0.0.1, a spare port, a scratch storage
#      directory) scraping it every second with alerts.yml loaded.
#   4. Every panel's query and every rule's expression, evaluated through
#      Prometheus's HTTP API, must return series: no panel or rule names a
#      metric or label linkhub does not export. An alert's comparisons are
#      made `bool` for this (`x > 0` -> `x > bool 0`), so that it returns its
#      series whether it fires or not. Rules and panels that name a metric
#      marked `# pending-metric: <name>` in alerts.yml (one linkhub does not
#      export yet) are skipped, and listed.
#
# Stops both processes and removes the database, Redis keys and scratch
# files at the end. Needs `prometheus` and `promtool` (Debian: prometheus),
# curl, python3, and the shared PostgreSQL and Redis.
#
# Settings: LOAD_SECS (20), PG_SERVER (postgres://postgres@127.0.0.1:5432), REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lift_per_address_limits
STEP_PREFIX="dashboards: "

load_secs="${LOAD_SECS:-20}"
pg_server="${PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
tag="dash_check_$$_${RANDOM}"
work="$(mktemp -d /tmp/check-dashboards.XXXXXX)"
token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
linkhub_pid="" prometheus_pid="" load_pid=""

stop() { if [ -n "$1" ]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
cleanup() {
  local status=$?
  stop "$load_pid"
  stop "$prometheus_pid"
  stop "$linkhub_pid"
  forget_run "$tag" "$pg_server" "$redis_url"
  if [ "$status" -ne 0 ]; then
    echo "check-dashboards: FAILED (exit $status); logs in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

# A port nothing listens on now (the processes below retry on a clash).
spare_port() {
  local port
  while :; do
    port=$(( (RANDOM % 30000) + 20000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

step "promtool check rules, promtool test rules"
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts.test.yml)

step "build linkhub"
cargo build --locked -p linkhub
bin="$CARGO_TARGET_DIR/debug/linkhub"

step "start a private linkhub"
bash scripts/services.sh >/dev/null
port=$(spare_port)
DATABASE_URL="$pg_server/$tag" REDIS_URL="$redis_url" CACHE_PREFIX="$tag" \
  BIND_ADDR="127.0.0.1:$port" METRICS_TOKEN="$token" RUST_LOG=warn \
  "$bin" >"$work/linkhub.log" 2>&1 &
linkhub_pid=$!
host="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  kill -0 "$linkhub_pid" 2>/dev/null || { cat "$work/linkhub.log" >&2; exit 1; }
  linkhub_ready "$host" && break
  sleep 0.2
done
linkhub_ready "$host" || { echo "linkhub never became ready" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "$host/metrics")
[ "$status" = 401 ] || { echo "/metrics without the token answered $status, not 401" >&2; exit 1; }
echo "linkhub (pid $linkhub_pid) on $host; /metrics without its token: 401"

step "start Prometheus"
prom_port=$(spare_port)
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: linkhub
    authorization:
      credentials: $token
    static_configs:
      - targets: ["127.0.0.1:$port"]
EOF
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
prom="http://127.0.0.1:$prom_port"
for _ in $(seq 1 100); do
  kill -0 "$prometheus_pid" 2>/dev/null || { cat "$work/prometheus.log" >&2; exit 1; }
  curl -fsS "$prom/-/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "Prometheus (pid $prometheus_pid) on $prom"

step "load for ${load_secs}s: registrations, cached reads, writes, 404s"
# One user per loop: registered, logged in, read twice (MISS then HIT) in
# each cached shape, renamed (a bump), read again; plus a 404.
load() {
  local end=$((SECONDS + load_secs)) i=0 id login
  while [ "$SECONDS" -lt "$end" ]; do
    i=$((i + 1))
    local name="${tag}_${i}" password="dashboard-check-$i"
    id=$(curl -fsS -H 'content-type: application/json' \
      -d "{\"username\":\"u${i}x$$\",\"email\":\"$name@example.com\",\"password\":\"$password\"}" \
      "$host/api/v1/users" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
    login=$(curl -fsS -H 'content-type: application/json' \
      -d "{\"login\":\"u${i}x$$\",\"password\":\"$password\"}" "$host/api/v1/auth/login" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
    for _ in 1 2; do
      curl -fsS -o /dev/null "$host/api/v1/users/$id"
      curl -fsS -o /dev/null "$host/api/v1/profiles/u${i}x$$"
      curl -fsS -o /dev/null "$host/@u${i}x$$"
      curl -fsS -o /dev/null "$host/api/v1/users?page=1"
    done
    curl -fsS -o /dev/null -X PATCH -H "authorization: Bearer $login" \
      -H 'content-type: application/json' -d '{"name":"Renamed"}' "$host/api/v1/users/$id"
    curl -fsS -o /dev/null "$host/api/v1/users/$id"
    curl -s -o /dev/null "$host/api/v1/no-such-route"
  done
}
load >"$work/load.log" 2>&1 &
load_pid=$!
# Rates need two samples in their window and the load to be under way.
sleep "$load_secs"

step "evaluate every panel's query and every rule's expression"
python3 - "$prom" deploy/grafana/linkhub.json deploy/prometheus/alerts.yml <<'EOF'
import json, re, sys, urllib.parse, urllib.request

prom, dashboard_path, rules_path = sys.argv[1:4]

def api(path, **params):
    url = f"{prom}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"{path} {params}: {body}")
    return body["data"]

pending = set(re.findall(r"^\s*#\s*pending-metric:\s*(\S+)", open(rules_path).read(), re.M))
targets = api("targets")["activeTargets"]
if not targets or any(t["health"] != "up" for t in targets):
    raise SystemExit(f"linkhub is not scraped (with its token): {targets}")

checks = []  # (what, query)
dashboard = json.load(open(dashboard_path))
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        # Grafana's variables, as Grafana would fill them in for "All".
        expr = target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
        checks.append((f'panel "{panel["title"]}" {target["refId"]}', expr))
for variable in dashboard["templating"]["list"]:
    if variable["type"] == "query":
        metric = re.search(r"label_values\((\w+)", variable["definition"]).group(1)
        checks.append((f'variable "{variable["name"]}"', metric))
for group in api("rules")["groups"]:
    for rule in group["rules"]:
        expr = rule["query"]
        if rule["type"] == "alerting":
            # A filter becomes a 0/1 value: the series are there, firing or not.
            expr = re.sub(r"(?<![=!<>])(>=|<=|==|!=|>|<)\s*(?!bool)(-?[0-9.]+)", r"\1 bool \2", expr)
        checks.append((f'rule {rule["name"]}', expr))

failed = skipped = 0
for what, expr in checks:
    names = set(re.findall(r"\b(linkhub_[a-z_]+)", expr))
    if names & pending:
        print(f"SKIP  {what}: pending metric {', '.join(sorted(names & pending))}")
        skipped += 1
        continue
    series = api("query", query=expr)["result"]
    print(f"{'ok  ' if series else 'NONE'}  {what}: {len(series)} series  [{expr}]")
    failed += not series
print(f"{len(checks)} queries: {len(checks) - failed - skipped} found data, {failed} found none, {skipped} skipped (pending)")
sys.exit(1 if failed else 0)
EOF

step "passed"
