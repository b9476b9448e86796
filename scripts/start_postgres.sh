#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the tests and print its URL on stdout (all else goes to stderr).
#
#   export NASPRUNE_TEST_PG_URL="$(bash scripts/start_postgres.sh)"   # start (or reuse) it
#   bash scripts/start_postgres.sh stop                               # stop it and delete its data
#
# Uses Debian's server binaries (apt-get install postgresql), a data directory under /tmp, trust
# authentication on 127.0.0.1 only, and port $NASPRUNE_PG_PORT (default 55432). initdb refuses to run
# as root, so as root the server runs as the `postgres` user that the Debian package creates.
set -euo pipefail

PORT=${NASPRUNE_PG_PORT:-55432}
DATA=${NASPRUNE_PG_DATA:-/tmp/nasprune-pg-$PORT}
DB=nasprune_test
PGUSER_NAME=nasprune
BIN=${NASPRUNE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
URL="postgresql+psycopg2://$PGUSER_NAME@127.0.0.1:$PORT/$DB"

if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  echo "start_postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin;" \
       "install them with: apt-get install postgresql" >&2
  exit 1
fi

as_owner() {  # run a command as the user owning the server
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
  else
    "$@"
  fi
}

if [ "${1:-start}" = "stop" ]; then
  [ -d "$DATA" ] && as_owner "$BIN/pg_ctl" -D "$DATA" -m fast stop >&2 || true
  rm -rf "$DATA"
  exit 0
fi

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U "$PGUSER_NAME" --auth=trust -E UTF8 >&2
  fi
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c max_connections=200" start >&2
fi
if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$PGUSER_NAME" -d postgres -tAc \
     "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1; then
  "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$PGUSER_NAME" "$DB" >&2
fi
echo "$URL"
