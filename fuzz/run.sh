#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 60) and fails on any crash, panic,
# timeout or out-of-memory. Usage: fuzz/run.sh [SECONDS] [TARGET...]
#
# Stable toolchain only: cargo fuzz passes nightly -Z flags (-Zsanitizer=address, ...)
# to rustc, which the stable compiler accepts with RUSTC_BOOTSTRAP=1. The AddressSanitizer
# runtime ships with the stable x86_64-unknown-linux-gnu standard library; where it does
# not, FUZZ_SANITIZER=none runs libFuzzer without it (panics and hangs are still caught).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build --sanitizer "$sanitizer"

summary=()
for target in "${targets[@]}"; do
    # New inputs go to a scratch corpus; the committed seeds stay small.
    corpus=$(mktemp -d "/tmp/pam-otp-fuzz-$target.XXXXXX")
    log="$corpus.log"
    echo "== fuzzing $target for ${seconds}s"
    status=0
    cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -dict=dict/toml.dict -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)
    units=$(find "$corpus" -type f | wc -l || true)
    coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || true)
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz/run.sh: $target FAILED (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    summary+=("$target: ${execs:-?} executions in ${seconds}s, $coverage, corpus $units inputs, 0 crashes")
    rm -rf "$corpus" "$log"
done
printf '%s\n' "${summary[@]}"
