#!/usr/bin/env bash
# What access control costs, all in one run: weir on the bench config without access control,
# with a JWT policy (Istio's sample RS256 token checked against its key set, and an
# AuthorizationPolicy requiring it on the gateway) and with Kong's key-auth on the route, beside
# nginx proxying to the same backend; interleaved rounds of wrk, medians with min-max, CPU per
# request of each target's process tree. The backend, the nginx peer, wrk and the CPU
# accounting are ../shared/bench/compare.sh's own (sourced). Every target gets the same
# requests: wrk sends the token and the key to all of them.
#
#   bench/access-control-compare.sh [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS]
#                                                          (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source "${COMPARE:-../shared/bench/compare.sh}"
RATE=0
while getopts ":r:d:c:" opt; do
    case $opt in
        r) ROUNDS=$OPTARG ;; d) DUR=$OPTARG ;; c) CONNS=$OPTARG ;;
        *) echo "usage: $0 [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS]" >&2; exit 2 ;;
    esac
done
weir=$PWD/target/release/weir
[ -x "$weir" ] || die "build first: cargo build --release"
ensure_tools
WORKDIR=$(mktemp -d)
trap 'set +e; cleanup' EXIT # compare.sh's cleanup is written for a shell without -e
trap 'exit 130' INT TERM

token=$(tr -d '\n' <tests/data/istio-jwt/demo.jwt)
jwks=$(tr -d '\n' <tests/data/istio-jwt/jwks.json)
real_wrk=$(command -v wrk)
mkdir -p "$WORKDIR/bin"
cat >"$WORKDIR/bin/wrk" <<SHIM
#!/bin/sh
exec "$real_wrk" -H "authorization: Bearer $token" -H "apikey: bench-key" "\$@"
SHIM
chmod +x "$WORKDIR/bin/wrk"
export PATH="$WORKDIR/bin:$PATH"

# The three weir configurations, each on its own port.
declare -A PORT=([nginx]=$NGINX_PORT [plain]=26085 [jwt]=26086 [key]=26087)
base() { sed "s/number: $CAND_PORT,/number: ${PORT[$1]},/" bench/bookinfo-bench.yaml; }
base plain >"$WORKDIR/plain.yaml"
{
    base jwt
    cat <<YAML
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  targetRef: {kind: Gateway, name: bench}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '$jwks'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: default}
spec:
  targetRef: {kind: Gateway, name: bench}
  rules:
  - from:
    - source: {requestPrincipals: [testing@secure.istio.io/testing@secure.istio.io]}
YAML
} >"$WORKDIR/jwt.yaml"
base key | sed 's/^  - route:$/  - accessPlugins: [{name: key-auth}]\n    route:/' >"$WORKDIR/key.yaml"
cat >>"$WORKDIR/key.yaml" <<'YAML'
---
_format_version: "3.0"
consumers:
- username: bench
  keyauth_credentials: [{key: bench-key}]
YAML

write_backend_conf "$WORKDIR" "$BACKEND_PORT"
write_nginx_conf "$WORKDIR" nginxp "$NGINX_PORT" 1 "$BACKEND_PORT"
start_nginx backend "$WORKDIR/backend.conf"
wait_port "$BACKEND_PORT" 10 || die "backend did not start"
start_nginx nginxp "$WORKDIR/nginxp.conf"
declare -A PID=([nginx]=$PID_nginxp)
for c in plain jwt key; do
    "$weir" validate "$WORKDIR/$c.yaml" >/dev/null || die "$c.yaml does not validate"
    start_bg "weir_$c" "$weir" run --config "$WORKDIR/$c.yaml" --admin 127.0.0.1:0 \
        --mesh-listen 127.0.0.1:0 --workers 1 >/dev/null
    pid_var=PID_weir_$c
    PID[$c]=${!pid_var}
done
for t in nginx plain jwt key; do
    wait_port "${PORT[$t]}" 20 || die "$t did not listen on ${PORT[$t]}"
done
# Each target answers 200 with the credentials; access control refuses without them.
check() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
for t in nginx plain jwt key; do
    code=$(check -H "authorization: Bearer $token" -H "apikey: bench-key" "http://127.0.0.1:${PORT[$t]}/")
    [ "$code" = 200 ] || die "$t answered $code with the credentials"
done
[ "$(check "http://127.0.0.1:${PORT[jwt]}/")" = 403 ] || die "the JWT policy let a request without a token in"
[ "$(check "http://127.0.0.1:${PORT[key]}/")" = 401 ] || die "key-auth let a request without a key in"

TARGETS=(nginx plain jwt key)
declare -A RPS CPU
for t in "${TARGETS[@]}"; do run_wrk "${PORT[$t]}" "${PID[$t]}" >/dev/null; done # warm-up
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
        t=${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}
        read -r rps _ _ err cpu <<<"$(run_wrk "${PORT[$t]}" "${PID[$t]}")"
        [ "$err" = 0 ] || die "$t: errors under load"
        log "round $((r + 1))/$ROUNDS $t: $rps req/s, $cpu us/req"
        RPS[$t]="${RPS[$t]:-} $rps"
        CPU[$t]="${CPU[$t]:-} $cpu"
    done
done

echo
echo "== access control: wrk -t$WRK_THREADS -c$CONNS -d${DUR}s, $ROUNDS interleaved rounds, one worker each; $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-28s %-22s %s\n' target "req/s median (min-max)" "CPU us/req med (min-max)" "RSS MB"
declare -A MR MC
for t in "${TARGETS[@]}"; do
    read -r m lo hi <<<"$(stats ${RPS[$t]})"
    read -r cm clo chi <<<"$(stats ${CPU[$t]})"
    MR[$t]=$m MC[$t]=$cm
    rss=0
    for p in "${PID[$t]}" $(descendants "${PID[$t]}"); do
        rss=$((rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
    done
    rss=$((rss / 1024))
    printf '%-8s %-28s %-22s %s\n' "$t" "$m ($lo-$hi)" "$cm ($clo-$chi)" "$rss"
done
echo
for t in plain jwt key; do
    awk -v t="$t" -v r="${MR[$t]}" -v n="${MR[nginx]}" -v c="${MC[$t]}" -v nc="${MC[nginx]}" \
        -v pc="${MC[plain]}" 'BEGIN {
        printf "weir %-5s /nginx: req/s %.2f, CPU/req %.2f", t, r / n, c / nc
        if (t != "plain") printf ";  against weir plain: CPU/req %.2f (%+.1f us)", c / pc, c - pc
        printf "\n" }'
done
