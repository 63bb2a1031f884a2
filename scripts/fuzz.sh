#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers devices reach with libFuzzer, on the stable toolchain.
# cargo-fuzz's sanitizer flags need nightly; the SanitizerCoverage instrumentation below does not,
# so the fuzzer is still guided by coverage (without ASan, which safe Rust rarely needs).
# Usage: scripts/fuzz.sh [seconds per target, default 30] [target ...]
set -euo pipefail
cd "$(dirname "$0")/../crates/protocol/fuzz"
secs="${1:-30}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(parse_uplink parse_downlink parse_login range_header download_token psk_connect proxy_header)
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-target}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --locked --target "$triple"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" artifacts
  # seeds/<target>: the SDKs' exact messages (committed), read alongside the working corpus.
  seeds=(); [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "fuzzing $t for ${secs}s"
  # seeds/<target>: hand-written inputs for parsers whose magic prefixes the fuzzer cannot guess.
  seeds=(); [ -d "seeds/$t" ] && seeds=("seeds/$t")
  "$CARGO_TARGET_DIR/$triple/release/$t" -max_total_time="$secs" -max_len=4096 \
    -artifact_prefix=artifacts/ "corpus/$t" "${seeds[@]}" 2>&1 | tail -n 2
done
