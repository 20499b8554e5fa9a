#!/usr/bin/env bash
# A local Redis Cluster for tests and demos: 3 masters (and, with
# REPLICAS=1, one replica each for failover tests) on loopback ports.
#
#   scripts/redis-cluster.sh start   # idempotent; prints the REDIS_CLUSTER_URLS to use
#   scripts/redis-cluster.sh stop    # stops the nodes and removes their files
#   scripts/redis-cluster.sh urls    # prints REDIS_CLUSTER_URLS
#
# BASE_PORT (default 7101) and REPLICAS (default 0, any number per master)
# choose the layout; ANNOUNCE_HOSTNAME (e.g. localhost) makes every node
# announce that host name and be addressed by it, as TLS deployments do
# (cluster-announce-hostname, cluster-preferred-endpoint-type hostname).
# Data lives under CLUSTER_DIR (default /var/tmp/linkhub-redis-cluster-$BASE_PORT).
set -euo pipefail

BASE_PORT="${BASE_PORT:-7101}"
REPLICAS="${REPLICAS:-0}"
MASTERS=3
NODES=$(( MASTERS * (1 + REPLICAS) ))
DIR="${CLUSTER_DIR:-/var/tmp/linkhub-redis-cluster-$BASE_PORT}"
HOSTNAME_ARGS=()
if [[ -n "${ANNOUNCE_HOSTNAME:-}" ]]; then
  HOSTNAME_ARGS=(--cluster-announce-hostname "$ANNOUNCE_HOSTNAME" --cluster-preferred-endpoint-type hostname)
fi

ports() { seq "$BASE_PORT" $(( BASE_PORT + NODES - 1 )); }
urls() {
  local out=()
  for p in $(seq "$BASE_PORT" $(( BASE_PORT + MASTERS - 1 ))); do out+=("redis://127.0.0.1:$p"); done
  (IFS=,; echo "${out[*]}")
}

start() {
  mkdir -p "$DIR"
  for p in $(ports); do
    if ! redis-cli -p "$p" ping >/dev/null 2>&1; then
      mkdir -p "$DIR/$p"
      redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$DIR/$p/nodes.conf" --cluster-node-timeout 2000 \
        --save "" --appendonly no --dir "$DIR/$p" --daemonize yes \
        --logfile "$DIR/$p/redis.log" --pidfile "$DIR/$p/redis.pid" \
        "${HOSTNAME_ARGS[@]}"
    fi
  done
  for p in $(ports); do
    for _ in $(seq 1 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  if ! redis-cli -p "$BASE_PORT" cluster info | grep -q 'cluster_state:ok'; then
    local addrs=()
    for p in $(ports); do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" --cluster-yes >/dev/null
    for _ in $(seq 1 100); do
      redis-cli -p "$BASE_PORT" cluster info | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
  fi
  redis-cli -p "$BASE_PORT" cluster info | grep -q 'cluster_state:ok'
  echo "REDIS_CLUSTER_URLS=$(urls)"
}

stop() {
  for p in $(ports); do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  urls) urls ;;
  *) echo "usage: $0 start|stop|urls" >&2; exit 2 ;;
esac
