#!/usr/bin/env bash
# End-to-end browser tests of the web console. Installs what they need (Debian's chromium, the npm
# packages), builds `otter`, starts `otter serve` and a simulated fleet on free ports with a
# temporary data dir (version 9.9.9 is a faulty release for the fleet: devices that install it
# boot-loop, for the health-gate test), runs the node tests (headless chromium) and leaves screenshots in output/.
# Exits non-zero when a test fails. Env: FLEET (devices, default 30), CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/output"
fleet="${FLEET:-30}"

if [ ! -x /usr/bin/chromium ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
(cd "$here" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi)

(cd "$root" && cargo build -p otter-cli)
otter="${CARGO_TARGET_DIR:-$root/target}/debug/otter"
[[ "$otter" = /* ]] || otter="$root/$otter"

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
http_port="$(free_port)"
mqtt_port="$(free_port)"
data="$(mktemp -d)"
rm -rf "$out" && mkdir -p "$out"
OTTER_TOKEN="$(python3 -c 'import secrets;print(secrets.token_hex(16))')"
export OTTER_TOKEN
url="http://127.0.0.1:$http_port"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT

"$otter" serve --data-dir "$data" --http-listen "127.0.0.1:$http_port" \
  --mqtt-listen "127.0.0.1:$mqtt_port" >"$out/serve.log" 2>&1 &
pids+=($!)
up() { python3 -c 'import sys,urllib.request;urllib.request.urlopen(sys.argv[1],timeout=2)' "$url/healthz" 2>/dev/null; }
for _ in $(seq 100); do up && break; sleep 0.1; done
up || { echo "otter serve did not start:"; cat "$out/serve.log"; exit 1; }

"$otter" simulate --devices "$fleet" --dialect aliyun --product-prefix E2E --version 1.0.0 \
  --broker "127.0.0.1:$mqtt_port" --server "$url" --step-delay-ms 300 \
  --faulty-version 9.9.9 --boot-loop 1 --symptom-every-ms 400 >"$out/simulate.log" 2>&1 &
pids+=($!)

cd "$here"
status=0
OTTER_URL="$url" FLEET="$fleet" node --test --test-reporter=spec console.test.mjs || status=$?
echo "screenshots: $out"
if [ "$status" -ne 0 ]; then
  echo "--- last lines of otter serve's log"; tail -n 30 "$out/serve.log"
  echo "--- last lines of otter simulate's log"; tail -n 10 "$out/simulate.log"
fi
exit "$status"
