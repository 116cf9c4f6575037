#!/usr/bin/env bash
# What the size of the route table costs: weir with 10 routes and with 10,000 (a tenth exact,
# prefix and regex rules on each of many hosts), beside nginx as the run's reference, one worker
# each, in front of compare.sh's backend, in one run with interleaved rounds. Every request is
# for the last rule of the last host (a regex), so the table is searched as far as it goes.
# Reports requests per second and CPU per request of each, the ratio of 10,000 routes to 10,
# and the memory a route takes (RSS difference over the routes added).
#
#   bench/routes-compare.sh [-r ROUNDS] [-d SECONDS] [-n ROUTES]     (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source "${COMPARE:-../shared/bench/compare.sh}"
RATE=0
DUR=8
MANY=10000
weir=$PWD/target/release/weir
while getopts ":r:d:n:" opt; do
    case $opt in
        r) ROUNDS=$OPTARG ;; d) DUR=$OPTARG ;; n) MANY=$OPTARG ;;
        *) echo "usage: $0 [-r ROUNDS] [-d SECONDS] [-n ROUTES]" >&2; exit 2 ;;
    esac
done
[ -x "$weir" ] || die "build first: cargo build --release"
ensure_tools
WORKDIR=$(mktemp -d)
trap 'set +e; cleanup' EXIT # compare.sh's cleanup is written for a shell without -e
trap 'exit 130' INT TERM
D=$WORKDIR

# routes N PORT: the bench backend behind a Gateway on PORT with N rules, ten per host:
# four exact paths, three prefixes, three regexes.
routes() {
    local n=$1 port=$2 hosts=$(( ($1 + 9) / 10 ))
    sed -n '1,/^kind: Gateway/p' bench/bookinfo-bench.yaml | head -n -2
    cat <<EOF
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  servers:
  - port: {number: $port, name: http, protocol: HTTP}
    bind: 127.0.0.1
    hosts: ["*"]
EOF
    awk -v hosts="$hosts" -v n="$n" 'BEGIN {
        k = 0
        for (h = 0; h < hosts; h++) {
            printf "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h%d}\nspec:\n  hosts: [h%d.bench.example]\n  gateways: [bench]\n  http:\n", h, h
            for (j = 0; j < 10 && k < n; j++) {
                if (j < 4) m = sprintf("{uri: {exact: /exact/%d/%d}}", h, j)
                else if (j < 7) m = sprintf("{uri: {prefix: /prefix/%d/%d/}}", h, j)
                else m = sprintf("{uri: {regex: \"/regex/[0-9]+/k%d\"}}", j)
                printf "  - match: [%s]\n    route: [{destination: {host: backend, subset: v1}}]\n", m
                k++
            }
        }
    }'
}
declare -A PORT=([nginx]=$NGINX_PORT [few]=26097 [many]=26098)
declare -A COUNT=([few]=10 [many]=$MANY)
declare -A HOST=([few]=h0.bench.example [many]=h$(( (MANY + 9) / 10 - 1 )).bench.example)
for t in few many; do
    routes "${COUNT[$t]}" "${PORT[$t]}" >"$D/$t.yaml"
    "$weir" validate "$D/$t.yaml" >/dev/null || die "$t.yaml does not validate"
done

write_backend_conf "$D" "$BACKEND_PORT"
write_nginx_conf "$D" nginxp "$NGINX_PORT" 1 "$BACKEND_PORT"
start_nginx backend "$D/backend.conf"
wait_port "$BACKEND_PORT" 10 || die "backend did not start"
start_nginx nginxp "$D/nginxp.conf"
declare -A PID=([nginx]=$PID_nginxp)
for t in few many; do
    start_bg "weir_$t" "$weir" run --config "$D/$t.yaml" --admin 127.0.0.1:0 \
        --mesh-listen 127.0.0.1:0 --workers 1 >/dev/null
    v=PID_weir_$t
    PID[$t]=${!v}
done
TARGETS=(nginx few many)
PATH_OF=/regex/42/k9
for t in "${TARGETS[@]}"; do
    wait_port "${PORT[$t]}" 60 || die "$t did not listen on ${PORT[$t]}"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: ${HOST[$t]:-x}" "http://127.0.0.1:${PORT[$t]}$PATH_OF")
    [ "$code" = 200 ] || die "$t answered $code"
done
# A host with no such rule is not routed: the requests really go through the table.
code=$(curl -s -o /dev/null -w "%{http_code}" -H "Host: nobody.bench.example" "http://127.0.0.1:${PORT[many]}$PATH_OF")
[ "$code" = 404 ] || die "an unrouted request answered $code"
rss() { local k=0 p; for p in "$1" $(descendants "$1"); do k=$((k + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done; echo "$k"; }

measure() { # target -> "rps cpu"
    local t=$1 c0 c1 out reqs rps
    c0=$(cpu_ticks "${PID[$t]}")
    out=$(timeout $((DUR + 20)) wrk -t1 -c50 -d"${DUR}s" -H "Host: ${HOST[$t]:-x}" "http://127.0.0.1:${PORT[$t]}$PATH_OF" 2>&1)
    c1=$(cpu_ticks "${PID[$t]}")
    grep -q 'Non-2xx' <<<"$out" && die "$t: non-2xx answers under load"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v r="$rps" -v a="$c0" -v b="$c1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%s %.1f\n", r, (b-a)/hz*1e6/n}'
}
declare -A RPS CPU
for t in "${TARGETS[@]}"; do measure "$t" >/dev/null; done # warm-up
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
        t=${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}
        read -r rps cpu <<<"$(measure "$t")"
        log "round $((r + 1))/$ROUNDS $t: $rps req/s, $cpu us/req"
        RPS[$t]="${RPS[$t]:-} $rps"
        CPU[$t]="${CPU[$t]:-} $cpu"
    done
done
echo
echo "== route table size: wrk -t1 -c50 -d${DUR}s, $ROUNDS interleaved rounds, one worker each; $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %-28s %-26s %s\n' target "req/s median (min-max)" "CPU us/req median (min-max)" "RSS KB"
declare -A MR MC KB
for t in "${TARGETS[@]}"; do
    read -r m lo hi <<<"$(stats ${RPS[$t]})"
    read -r cm clo chi <<<"$(stats ${CPU[$t]})"
    MR[$t]=$m MC[$t]=$cm KB[$t]=$(rss "${PID[$t]}")
    name=$t; [ "$t" != nginx ] && name="weir ${COUNT[$t]}"
    printf '%-14s %-28s %-26s %s\n' "$name" "$m ($lo-$hi)" "$cm ($clo-$chi)" "${KB[$t]}"
done
awk -v n="$MANY" -v fr="${MR[few]}" -v mr="${MR[many]}" -v fc="${MC[few]}" -v mc="${MC[many]}" \
    -v nr="${MR[nginx]}" -v nc="${MC[nginx]}" -v fk="${KB[few]}" -v mk="${KB[many]}" 'BEGIN {
    printf "weir %d routes / 10 routes: req/s %.2f, CPU/req %.2f\n", n, mr / fr, mc / fc
    printf "against nginx: 10 routes req/s %.2f CPU %.2f; %d routes req/s %.2f CPU %.2f\n", fr / nr, fc / nc, n, mr / nr, mc / nc
    printf "memory per route: %.0f bytes ((%d - %d) KB over %d routes)\n", (mk - fk) * 1024 / (n - 10), mk, fk, n - 10 }'
