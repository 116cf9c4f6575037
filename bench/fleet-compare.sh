#!/usr/bin/env bash
# Requests per second of one weir in store mode (fleet, etcd) against file mode: the same
# config (bench/bookinfo-bench.yaml) served both ways, each run through ../shared/bench/compare.sh
# beside nginx and HAProxy, so each is read as a ratio to nginx measured in the same run.
#
#   bench/fleet-compare.sh [compare.sh options...]      (after cargo build --release)
#
# Needs etcd (Debian's etcd-server), nginx, haproxy and wrk. Starts its own etcd on a free
# loopback port and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
compare=${COMPARE:-../shared/bench/compare.sh}
weir=./target/release/weir
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
peer=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
etcd --name bench --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" >"$data/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null; wait $etcd_pid 2>/dev/null; rm -rf "$data"' EXIT
store="etcd://127.0.0.1:$port/bench"
for _ in $(seq 100); do
    "$weir" apply --store "$store" -f bench/bookinfo-bench.yaml >/dev/null 2>&1 && break
    sleep 0.1
done

run_store() {
    echo "== store mode: weir run --store $store"
    "$compare" "$@" -- sh -c "exec $weir run --store $store --admin 127.0.0.1:0 --mesh-listen 127.0.0.1:0 --workers 1"
}
run_file() {
    echo "== file mode: weir run --config bench/bookinfo-bench.yaml"
    "$compare" "$@" -- sh -c "exec $weir run --config bench/bookinfo-bench.yaml --admin 127.0.0.1:0 --mesh-listen 127.0.0.1:0 --workers 1"
}
# FILE_FIRST=1 swaps the order, so that two runs can alternate it.
if [ "${FILE_FIRST:-0}" = 1 ]; then
    run_file "$@"
    run_store "$@"
else
    run_store "$@"
    run_file "$@"
fi
