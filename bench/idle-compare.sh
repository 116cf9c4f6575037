#!/usr/bin/env bash
# Memory with many idle keep-alive connections: weir (the bench config), nginx and HAProxy, one
# worker each, in front of compare.sh's backend. For each in turn, N clients (default 10,000)
# connect, send one request, read the answer and stay connected; the process tree's RSS is read
# before, with all of them open, and the difference per connection reported.
#
#   bench/idle-compare.sh [-n CONNECTIONS]                   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source "${COMPARE:-../shared/bench/compare.sh}"
RATE=0
N=10000
weir=$PWD/target/release/weir
while getopts ":n:" opt; do
    case $opt in
        n) N=$OPTARG ;;
        *) echo "usage: $0 [-n CONNECTIONS]" >&2; exit 2 ;;
    esac
done
[ -x "$weir" ] || die "build first: cargo build --release"
ensure_tools
# Open files: the clients and each target need N and some; HAProxy asks for twice its maxconn
# and is left out when the hard limit (not raisable in some containers) is below that.
limit=$(ulimit -Hn)
[ "$limit" = unlimited ] && limit=$((N * 4 + 4000))
[ "$limit" -gt $((N * 4 + 4000)) ] && limit=$((N * 4 + 4000))
ulimit -n "$limit"
[ "$limit" -ge $((N + 1000)) ] || die "the open-file limit ($limit) is too low for $N connections"
TARGETS=(nginx weir)
[ "$limit" -ge $((2 * (N + 1000) + 100)) ] && TARGETS=(nginx haproxy weir)
WORKDIR=$(mktemp -d)
trap 'set +e; cleanup' EXIT # compare.sh's cleanup is written for a shell without -e
trap 'exit 130' INT TERM
D=$WORKDIR

declare -A PORT=([nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [weir]=$CAND_PORT)
write_backend_conf "$D" "$BACKEND_PORT"
write_nginx_conf "$D" nginxp "$NGINX_PORT" 1 "$BACKEND_PORT"
write_haproxy_conf "$D" haproxyp "$HAPROXY_PORT" 1 "$BACKEND_PORT"
# Room for N clients in each peer (compare.sh's configs allow 8,192 and 4,096).
sed -i "s/worker_connections 8192;/worker_connections $((N + 1000));/; s/^worker_processes 1;/&\nworker_rlimit_nofile $((N * 2 + 1000));/" "$D/nginxp.conf"
sed -i "s/maxconn 4096/maxconn $((N + 1000))/" "$D/haproxyp.cfg"
start_nginx backend "$D/backend.conf"
wait_port "$BACKEND_PORT" 10 || die "backend did not start"
start_nginx nginxp "$D/nginxp.conf"
[ "${TARGETS[1]}" = haproxy ] && start_haproxy haproxyp "$D/haproxyp.cfg"
start_bg weir "$weir" run --config bench/bookinfo-bench.yaml --admin 127.0.0.1:0 \
    --mesh-listen 127.0.0.1:0 --workers 1 >/dev/null
declare -A PID=([nginx]=$PID_nginxp [weir]=$PID_weir)
[ "${TARGETS[1]}" = haproxy ] && PID[haproxy]=$PID_haproxyp
[ "${TARGETS[1]}" = haproxy ] || log "HAProxy left out: it needs $((2 * (N + 1000) + 100)) open files, the limit is $limit"
for t in "${TARGETS[@]}"; do wait_port "${PORT[$t]}" 20 || die "$t did not start"; done

cat >"$D/hold.py" <<'PY'
# hold.py PORT N SOURCE_IP: opens N keep-alive connections, one request each, prints "open N",
# keeps them until a line comes on stdin.
import asyncio, sys

async def one(port, src, held, sem):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
        w.write(b"GET / HTTP/1.1\r\nHost: idle.example\r\n\r\n")
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit("not 200: %r" % head[:40])
        await r.readexactly(length)
        held.append(w)

async def main():
    port, n, src = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    held, sem = [], asyncio.Semaphore(200)
    await asyncio.gather(*(one(port, src, held, sem) for _ in range(n)))
    print("open", len(held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in held:
        w.close()

asyncio.run(main())
PY
rss() { local k=0 p; for p in "$1" $(descendants "$1"); do k=$((k + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done; echo "$k"; }
echo "== $N idle keep-alive connections, one worker each"
printf '%-8s %-12s %-16s %s\n' target "RSS before" "RSS with $N" "per connection"
src=2
declare -A WITH
for t in "${TARGETS[@]}"; do
    # A warm-up request each, so that the backend connection exists before the baseline.
    curl -s -o /dev/null "http://127.0.0.1:${PORT[$t]}/"
    before=$(rss "${PID[$t]}")
    coproc HOLD { python3 "$D/hold.py" "${PORT[$t]}" "$N" "127.0.0.$src" 2>&1; }
    read -r word count <&"${HOLD[0]}" || die "$t: the clients did not connect"
    [ "$word $count" = "open $N" ] || die "$t: $word $count"
    sleep 1
    with=$(rss "${PID[$t]}")
    WITH[$t]=$with
    echo >&"${HOLD[1]}"
    wait "$HOLD_PID" 2>/dev/null || true
    printf '%-8s %-12s %-16s %s\n' "$t" "$((before / 1024)) MB" "$((with / 1024)) MB" \
        "$(( (with - before) * 1024 / N )) bytes"
    src=$((src + 1))
done
awk -v w="${WITH[weir]}" -v n="${WITH[nginx]}" -v h="${WITH[haproxy]:-0}" 'BEGIN {
    printf "RSS with the connections open: weir/nginx %.2f", w / n
    if (h > 0) printf ", weir/haproxy %.2f", w / h
    printf "\n" }'
