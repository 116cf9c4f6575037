#!/usr/bin/env bash
# What the access log costs: ../shared/bench/compare.sh run for weir without an access log and
# with one (JSON lines to a file), each beside nginx (whose own access log is off in compare.sh),
# so that each is read as a ratio to nginx in the same run.
#
#   bench/access-log-compare.sh [compare.sh options...]      (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
compare=${COMPARE:-../shared/bench/compare.sh}
weir=./target/release/weir
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== without an access log"
"$compare" "$@" -- sh -c "exec $weir run --config bench/bookinfo-bench.yaml --admin 127.0.0.1:0 --mesh-listen 127.0.0.1:0 --workers 1"
echo "== with --access-log (JSON, to a file)"
"$compare" "$@" -- sh -c "exec $weir run --config bench/bookinfo-bench.yaml --admin 127.0.0.1:0 --mesh-listen 127.0.0.1:0 --workers 1 --access-log $log"
echo "access log: $(wc -l <"$log") lines, $(du -h "$log" | cut -f1)"
