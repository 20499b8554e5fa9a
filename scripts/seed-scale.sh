#!/usr/bin/env bash
# Loads a linkhub database with users at scale, by SQL (scripts/seed-scale.sql
# says what the rows look like): N users (default 1,000,000), each with 2
# links and 1 social, secondary indexes rebuilt, VACUUM ANALYZE. A million
# users take a few minutes on 2 cores; the API seeder (`loadtest seed`) makes
# about 30 users/s, because every registration hashes a password.
#
#   scripts/seed-scale.sh DATABASE_URL [USERS]
#   LINKHUB_BIN=target/release/linkhub scripts/seed-scale.sh postgres://postgres@127.0.0.1:5432/big
#
# The database is made by linkhub's own migration (`linkhub migrate`: creates
# it when missing and runs what is pending), so the rows meet the schema and
# the triggers of the code that will serve them. LINKHUB_BIN is that binary
# (default: the release build in $CARGO_TARGET_DIR, else the debug one). Users
# are added after those already there; run it on a database nothing else
# writes to while it loads (the load holds its tables for one transaction).
#
# Every user's password is SEED_PASSWORD below: its argon2id hash (linkhub's
# own, from a registration through the API with linkhub's default argon2
# parameters) was computed once and is stored in every row. Logging in as a
# seeded user costs one argon2 verification, as for any user.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SEED_PASSWORD='seed-scale-password-1'
SEED_HASH='$argon2id$v=19$m=19456,t=2,p=1$pUX1E5l7JhEDoJ26lsH+nw$FMX75unAANGcDfPEDQ/0p/j8oc44BSPjmHswigYSacg'

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
database_url="$1"
users="${2:-1000000}"
case "$users" in
  '' | *[!0-9]*) echo "seed-scale: USERS must be a number, not '$users'" >&2; exit 2 ;;
esac

linkhub="${LINKHUB_BIN:-}"
if [ -z "$linkhub" ]; then
  for candidate in "$CARGO_TARGET_DIR/release/linkhub" "$CARGO_TARGET_DIR/debug/linkhub"; do
    if [ -x "$candidate" ]; then linkhub="$candidate"; break; fi
  done
fi
if [ -z "$linkhub" ] || [ ! -x "$linkhub" ]; then
  echo "seed-scale: no linkhub binary (set LINKHUB_BIN or build it: cargo build --release -p linkhub)" >&2
  exit 2
fi

start=$(date +%s.%N)
step "migrations (linkhub migrate)"
DATABASE_URL="$database_url" RUST_LOG=warn "$linkhub" migrate >/dev/null

step "loading $users users, $((2 * users)) links, $users socials"
psql -X -q "$database_url" -v users="$users" -v hash="$SEED_HASH" -f scripts/seed-scale.sql

end=$(date +%s.%N)
psql -X -q -A -t "$database_url" -c "SELECT 'seed-scale: now ' || (SELECT count(*) FROM users) || ' users, '
  || (SELECT count(*) FROM links) || ' links, ' || (SELECT count(*) FROM socials) || ' socials; cache epoch '
  || epoch || ' (' || reason || ')' FROM cache_epoch"
awk -v n="$users" -v s="$start" -v e="$end" 'BEGIN { printf "seed-scale: %d users loaded in %.1f s\n", n, e - s }'
