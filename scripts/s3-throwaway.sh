#!/usr/bin/env bash
# A throwaway S3-compatible server for the blob tests: moto's server (PyPI `moto[server]`, installed
# here when missing), listening on 127.0.0.1 at a free port, keeping everything in memory.
#
#   scripts/s3-throwaway.sh start [DIR]   prints the endpoint URL, e.g. http://127.0.0.1:5433
#   scripts/s3-throwaway.sh stop  [DIR]   stops the server and deletes DIR
#
# DIR (pid file, log, URL) defaults to $OTTER_S3_DIR or /tmp/otter-s3. The tests read the endpoint
# from OTTER_TEST_S3_ENDPOINT and make their own buckets (moto accepts any credentials):
#   export OTTER_TEST_S3_ENDPOINT=$(scripts/s3-throwaway.sh start)
set -euo pipefail

cmd=${1:-}
dir=${2:-${OTTER_S3_DIR:-/tmp/otter-s3}}
python=${PYTHON:-python3}

# moto's server module, installed from PyPI when it is not there yet.
ensure_moto() {
  if "$python" -c 'import moto.server, flask' >/dev/null 2>&1; then return; fi
  echo "s3-throwaway: installing moto[server] from PyPI" >&2
  # Debian's own Python refuses plain installs (PEP 668); this server is throwaway, so allow it.
  "$python" -m pip install --quiet 'moto[server]' >&2 \
    || "$python" -m pip install --quiet --break-system-packages 'moto[server]' >&2
}

# A port nothing listens on (bash's /dev/tcp connects fail on a free port), below Linux's
# ephemeral range (32768-60999) so that client sockets rarely hold it.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "s3-throwaway: no free port found" >&2
  exit 1
}

running() {
  [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null
}

case "$cmd" in
  start)
    if running && [ -f "$dir/url" ]; then cat "$dir/url"; exit 0; fi
    ensure_moto
    rm -rf "$dir"
    mkdir -p "$dir"
    port=$(free_port)
    # setsid + redirected output: the server outlives this script and holds no pipe of the caller's.
    setsid "$python" -m moto.server -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    url="http://127.0.0.1:$port"
    for _ in $(seq 1 150); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$url" | tee "$dir/url"
        exit 0
      fi
      running || break
      sleep 0.2
    done
    echo "s3-throwaway: moto did not start" >&2
    cat "$dir/server.log" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$dir/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
