# What linkhub's shell scripts share; sourced, never run:
#
#   . "$(dirname "$0")/lib.sh"          # from scripts/
#   . scripts/lib.sh                    # from the repository root
#
# One definition of: the cargo environment, the step banner, installing
# missing Debian packages, waiting for a linkhub to be ready, starting one on
# a free port, a Python virtual environment of pinned tools, and dropping a
# private database. Python scripts have theirs in scripts/harness.py; loadtest
# keeps its own processes in loadtest/src/bench/procs.rs.

# The shared target directory outside the clone, and rustup's cargo on PATH.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/linkhub-target}"
export PATH="$HOME/.cargo/bin:$PATH"

# step "what" -> "== <STEP_PREFIX>what (HH:MM:SS)" on a line of its own.
step() { printf '\n== %s%s (%s)\n' "${STEP_PREFIX:-}" "$*" "$(date -u +%H:%M:%S)"; }

# need_apt COMMAND PACKAGE ...: each pair whose command is missing adds its
# package; install_needed installs them all with one apt-get (idempotent).
NEED_APT=()
need_apt() {
  while [ $# -ge 2 ]; do
    command -v "$1" >/dev/null || NEED_APT+=("$2")
    shift 2
  done
}
install_needed() {
  if [ ${#NEED_APT[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${NEED_APT[@]}"
  fi
  NEED_APT=()
}

# linkhub_ready URL: whether the linkhub at URL answers /readyz with its cache ok.
linkhub_ready() {
  curl -fsS "$1/readyz" 2>/dev/null | grep -q '"cache": *"ok"'
}

# lift_per_address_limits: every client of a script (a seeder, a load test,
# a gate) comes from 127.0.0.1, so the per-address limits, meant for the open
# internet, are lifted for the linkhub processes the script starts, unless
# the environment sets them. scripts/harness.py does the same for Python.
lift_per_address_limits() {
  export REGISTRATIONS_PER_ADDRESS="${REGISTRATIONS_PER_ADDRESS:-1000000000}"
  export EXPENSIVE_READS_PER_ADDRESS="${EXPENSIVE_READS_PER_ADDRESS:-1000000000}"
  export READINESS_PER_ADDRESS="${READINESS_PER_ADDRESS:-1000000000}"
}

# start_linkhub BINARY LOG: starts `BINARY serve` in the background on a free
# port of 127.0.0.1 (BIND_ADDR=…:0; DATABASE_URL, REDIS_URL and CACHE_PREFIX
# come from the environment), its output in LOG, and waits until it is ready.
# Sets LINKHUB_PID and LINKHUB_URL; prints LOG and fails if it never is.
start_linkhub() {
  lift_per_address_limits
  BIND_ADDR=127.0.0.1:0 RUST_LOG="${RUST_LOG:-warn,linkhub=info}" "$1" serve >"$2" 2>&1 &
  LINKHUB_PID=$!
  local port=""
  for _ in $(seq 1 300); do
    kill -0 "$LINKHUB_PID" 2>/dev/null || break
    # The port the kernel picked, from the start-up line.
    [ -n "$port" ] || port=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$2" | head -n 1)
    if [ -n "$port" ] && linkhub_ready "http://127.0.0.1:$port"; then
      LINKHUB_URL="http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.2
  done
  cat "$2" >&2
  return 1
}

# python_tools DIR PACKAGE==VERSION ...: a virtual environment in DIR with
# those packages (pinned, from PyPI); made once, then only topped up.
python_tools() {
  local dir="$1"
  shift
  [ -x "$dir/bin/pip" ] || python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
}

# drop_database NAME [SERVER]: drops a private database, quietly, on SERVER
# (postgres://postgres@127.0.0.1:5432, the shared PostgreSQL).
drop_database() {
  psql -q "${2:-postgres://postgres@127.0.0.1:5432}/postgres" \
    -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true
}

# forget_run TAG SERVER REDIS_URL: what a script's private linkhub left
# behind: its database TAG on SERVER and its Redis keys under `TAG:`.
forget_run() {
  drop_database "$1" "$2"
  redis-cli -u "$3" --scan --pattern "$1:*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -u "$3" unlink >/dev/null 2>&1 || true
}
