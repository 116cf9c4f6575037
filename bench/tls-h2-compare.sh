#!/usr/bin/env bash
# TLS termination and HTTP/2 from the client: weir against nginx and HAProxy, one worker each,
# in front of compare.sh's backend (nginx, HTTP/1.1), in one run with interleaved rounds. The
# loads: HTTP/1.1 over TLS 1.3 with keep-alive (wrk), a TLS handshake per request (wrk,
# `Connection: close`), HTTP/2 over TLS with one and with 20 streams per connection, and h2c
# (prior knowledge) with one and with 20 (h2load). The same ECDSA P-256 certificate for all.
# Medians (min-max) of requests per second and CPU per request of each target's process tree;
# ratios against nginx. Re-run with every change to the data path.
#
#   bench/tls-h2-compare.sh [-r ROUNDS] [-d SECONDS] [-l LOAD,...] [-w WEIR_BINARY]
#                                                          (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source "${COMPARE:-../shared/bench/compare.sh}"
RATE=0
DUR=6
weir=$PWD/target/release/weir
LOADS=h1-tls,h1-tls-handshake,h2-tls-1,h2-tls-20,h2c-1,h2c-20
while getopts ":r:d:l:w:" opt; do
    case $opt in
        r) ROUNDS=$OPTARG ;; d) DUR=$OPTARG ;; l) LOADS=$OPTARG ;; w) weir=$OPTARG ;;
        *) echo "usage: $0 [-r ROUNDS] [-d SECONDS] [-l LOAD,...] [-w WEIR]" >&2; exit 2 ;;
    esac
done
[ -x "$weir" ] || die "build first: cargo build --release"
ensure_tools
command -v h2load >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q nghttp2-client >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q nghttp2-client >/dev/null; }
}
WORKDIR=$(mktemp -d)
trap 'set +e; cleanup' EXIT # compare.sh's cleanup is written for a shell without -e
trap 'exit 130' INT TERM
D=$WORKDIR

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.example -addext subjectAltName=DNS:bench.example,IP:127.0.0.1 \
    -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null
cat "$D/cert.pem" "$D/key.pem" >"$D/both.pem"

# Ports: TLS and h2c for each target.
declare -A TLS=([nginx]=26091 [haproxy]=26092 [weir]=26093)
declare -A H2C=([nginx]=26094 [haproxy]=26095 [weir]=26096)

write_backend_conf "$D" "$BACKEND_PORT"
mkdir -p "$D/tmp"
cat >"$D/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $D/nginx.pid;
error_log $D/nginx.err warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $D/tmp/n1; proxy_temp_path $D/tmp/n2;
    fastcgi_temp_path $D/tmp/n3; uwsgi_temp_path $D/tmp/n4; scgi_temp_path $D/tmp/n5;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    http2_max_requests 100000000;
    upstream be {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:${TLS[nginx]} ssl http2 backlog=4096;
        listen 127.0.0.1:${H2C[nginx]} http2 backlog=4096;
        ssl_certificate $D/cert.pem;
        ssl_certificate_key $D/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
cat >"$D/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8192
    tune.ssl.default-dh-param 2048
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:${TLS[haproxy]} ssl crt $D/both.pem alpn h2,http/1.1
    bind 127.0.0.1:${H2C[haproxy]} proto h2
    default_backend be
backend be
    server s1 127.0.0.1:$BACKEND_PORT
EOF
# weir: the bench config with its Gateway serving TLS and h2c instead.
sed -e "s|  - port: {number: $CAND_PORT, name: http, protocol: HTTP}|  - port: {number: ${TLS[weir]}, name: https, protocol: HTTPS}\n    bind: 127.0.0.1\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, serverCertificate: $D/cert.pem, privateKey: $D/key.pem}\n  - port: {number: ${H2C[weir]}, name: http, protocol: HTTP}|" \
    bench/bookinfo-bench.yaml >"$D/weir.yaml"
"$weir" validate "$D/weir.yaml" >/dev/null || die "weir.yaml does not validate"

start_nginx backend "$D/backend.conf"
wait_port "$BACKEND_PORT" 10 || die "backend did not start"
start_nginx nginx "$D/nginx.conf"
start_haproxy haproxy "$D/haproxy.cfg"
start_bg weir "$weir" run --config "$D/weir.yaml" --admin 127.0.0.1:0 --mesh-listen 127.0.0.1:0 \
    --workers 1 >/dev/null
declare -A PID=([nginx]=$PID_nginx [haproxy]=$PID_haproxy [weir]=$PID_weir)
TARGETS=(nginx haproxy weir)
for t in "${TARGETS[@]}"; do
    wait_port "${TLS[$t]}" 20 || die "$t did not listen on ${TLS[$t]}"
    wait_port "${H2C[$t]}" 20 || die "$t did not listen on ${H2C[$t]}"
    code=$(curl -sk --http2 -o /dev/null -w '%{http_code} %{http_version}' "https://127.0.0.1:${TLS[$t]}/")
    [ "$code" = "200 2" ] || die "$t over TLS answered '$code' (want 200 over HTTP/2)"
    code=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code} %{http_version}' "http://127.0.0.1:${H2C[$t]}/")
    [ "$code" = "200 2" ] || die "$t over h2c answered '$code'"
done

# One measurement: "req/s requests" of LOAD against target T.
measure() {
    local load=$1 t=$2 out rps reqs
    case $load in
        h1-tls | h1-tls-handshake)
            local extra=()
            [ "$load" = h1-tls-handshake ] && extra=(-H "Connection: close")
            out=$(timeout $((DUR + 20)) wrk -t1 -c50 -d"${DUR}s" "${extra[@]}" "https://127.0.0.1:${TLS[$t]}/" 2>&1)
            rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
            reqs=$(awk '/requests in/ {print $1}' <<<"$out")
            # Requests that failed (non-2xx, or a connection that broke mid-request).
            local bad
            bad=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/, ""); n+=$6+$8+$10} END {print n+0}' <<<"$out")
            ;;
        h2-tls-* | h2c-*)
            local m=${load##*-} c=50 url
            [ "$m" -gt 1 ] && c=10
            case $load in h2c-*) url="http://127.0.0.1:${H2C[$t]}/" ;; *) url="https://127.0.0.1:${TLS[$t]}/" ;; esac
            out=$(timeout $((DUR + 20)) h2load -t1 -c"$c" -m"$m" -D"$DUR" "$url" 2>&1)
            rps=$(awk '/^finished in/ {gsub(/,/, ""); print $4}' <<<"$out")
            reqs=$(awk '/^requests:/ {print $8}' <<<"$out")
            local bad
            bad=$(awk '/^requests:/ {print $10 + $12 + $14}' <<<"$out")
            ;;
    esac
    echo "$out" >>"$D/raw-$load-$t.txt"
    echo "${rps:-0} ${reqs:-0} ${bad:-0}"
}

IFS=, read -r -a LOADLIST <<<"$LOADS"
echo "== TLS and HTTP/2: $ROUNDS interleaved rounds of ${DUR}s, one worker each; $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
for load in "${LOADLIST[@]}"; do
    declare -A RPS=() CPU=()
    for t in "${TARGETS[@]}"; do measure "$load" "$t" >/dev/null; done # warm-up
    for ((r = 0; r < ROUNDS; r++)); do
        for ((i = 0; i < ${#TARGETS[@]}; i++)); do
            t=${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}
            c0=$(cpu_ticks "${PID[$t]}")
            read -r rps reqs bad <<<"$(measure "$load" "$t")"
            c1=$(cpu_ticks "${PID[$t]}")
            [ "$reqs" -gt 0 ] || die "$load $t: no requests (see $D/raw-$load-$t.txt)"
            [ "$bad" -le $((reqs / 1000)) ] || log "WARNING: $load $t: $bad failed requests of $reqs"
            cpu=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b-a)/hz*1e6/n}')
            log "$load round $((r + 1))/$ROUNDS $t: $rps req/s, $cpu us/req"
            RPS[$t]="${RPS[$t]:-} $rps"
            CPU[$t]="${CPU[$t]:-} $cpu"
        done
    done
    echo
    echo "-- $load"
    printf '%-8s %-30s %s\n' target "req/s median (min-max)" "CPU us/req median (min-max)"
    declare -A MR=() MC=()
    for t in "${TARGETS[@]}"; do
        read -r m lo hi <<<"$(stats ${RPS[$t]})"
        read -r cm clo chi <<<"$(stats ${CPU[$t]})"
        MR[$t]=$m MC[$t]=$cm
        printf '%-8s %-30s %s\n' "$t" "$m ($lo-$hi)" "$cm ($clo-$chi)"
    done
    awk -v l="$load" -v r="${MR[weir]}" -v n="${MR[nginx]}" -v h="${MR[haproxy]}" -v c="${MC[weir]}" \
        -v nc="${MC[nginx]}" -v hc="${MC[haproxy]}" 'BEGIN {
        printf "%s: weir/nginx req/s %.2f, CPU/req %.2f; weir/haproxy req/s %.2f, CPU/req %.2f\n", l, r/n, c/nc, r/h, c/hc }' | tee -a "$D/summary"
done
echo
echo "== summary (weir against its peers, medians)"
cat "$D/summary"
rss() { local k=0 p; for p in "$1" $(descendants "$1"); do k=$((k + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done; echo $((k / 1024)); }
echo "RSS after the run (MB): weir $(rss "$PID_weir"), nginx $(rss "$PID_nginx"), haproxy $(rss "$PID_haproxy")"
