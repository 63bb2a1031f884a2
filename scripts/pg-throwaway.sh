#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store tests: a fresh initdb in a temp folder, listening on
# 127.0.0.1 at a free port, trusting local connections. Needs Debian's `postgresql` package (or any
# PostgreSQL binaries in PATH); any cluster the package created is not used.
#
#   scripts/pg-throwaway.sh start [DIR]   prints the URL, e.g. postgres://postgres@127.0.0.1:5433/postgres
#   scripts/pg-throwaway.sh stop  [DIR]   stops the cluster and deletes DIR
#
# DIR defaults to $OTTER_PG_DIR or /tmp/otter-pg. The tests read the URL from OTTER_TEST_POSTGRES_URL:
#   export OTTER_TEST_POSTGRES_URL=$(scripts/pg-throwaway.sh start)
set -euo pipefail

cmd=${1:-}
dir=${2:-${OTTER_PG_DIR:-/tmp/otter-pg}}

# The newest PostgreSQL's binaries (Debian keeps them out of PATH).
bindir() {
  if command -v pg_ctl >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] || { echo "pg-throwaway: no PostgreSQL binaries (apt-get install postgresql)" >&2; exit 1; }
  echo "$found"
}

# initdb and postgres refuse to run as root: run them as an unprivileged user then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id otterpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin otterpg
    chown -R otterpg "$dir"
    su otterpg -s /bin/sh -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

# A port nothing listens on (bash's /dev/tcp connects fail on a free port), below Linux's
# ephemeral range (32768-60999) so that client sockets rarely hold it.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "pg-throwaway: no free port found" >&2
  exit 1
}

case "$cmd" in
  start)
    if [ -f "$dir/url" ] && [ -f "$dir/data/postmaster.pid" ]; then cat "$dir/url"; exit 0; fi
    bin=$(bindir)
    rm -rf "$dir"
    mkdir -p "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    # Many tests run at once, each with its own database and pool. A port can still be taken
    # between the check and the bind: then try another.
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off" start >/dev/null; then
        break
      fi
      [ "$attempt" = 5 ] && { cat "$dir/server.log" >&2; exit 1; }
    done
    echo "postgres://postgres@127.0.0.1:$port/postgres" | tee "$dir/url"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
