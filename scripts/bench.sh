#!/usr/bin/env bash
# The benchmark suite: installs what it needs (wrk, redis-server, the
# PostgreSQL client), makes sure PostgreSQL runs, builds linkhub and the
# loadtest binaries in release mode, then runs `loadtest bench`, which starts
# a private redis-server, a fresh database, linkhub instances and the floor,
# seeds through the API, measures, and writes docs/BENCHMARKS.md and
# docs/bench-*.png. Extra arguments go to `loadtest bench` (see --help),
# e.g. `scripts/bench.sh --users 2000 --reps 1` for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/linkhub-target}"
export PATH="$HOME/.cargo/bin:$PATH"

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v psql >/dev/null || need_apt+=(postgresql-client)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
bash scripts/services.sh

cargo build --release --locked -p linkhub -p loadtest
# Run private copies: another build into the shared target directory must not
# swap a binary between the instances one run starts.
bin="$(mktemp -d /tmp/linkhub-bench-bin.XXXXXX)"
trap 'rm -rf "$bin"' EXIT
cp "$CARGO_TARGET_DIR/release/"{linkhub,loadtest,floor} "$bin/"
"$bin/loadtest" bench --command "scripts/bench.sh${*:+ $*}" "$@"
