#!/usr/bin/env bash
# Runs every fuzz target for a short while (default 20 s each; FUZZ_SECONDS sets it), from the
# seed corpora in fuzz/corpus/ (read only: what the run finds goes to a temporary directory).
# A crash fails the run and leaves its input in fuzz/artifacts/.
#
# cargo-fuzz passes flags only nightly rustc takes; the stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1. No sanitizer: weir forbids unsafe code, and what the targets look for
# are panics and wrong answers, which need none.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O --sanitizer none
for target in $(cargo fuzz list); do
    mkdir -p "$out/$target"
    echo "fuzz: $target for ${seconds}s"
    log="$out/$target.log"
    if ! cargo fuzz run -O --sanitizer none "$target" "$out/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target failed; its input is in fuzz/artifacts/$target" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$log"
done
