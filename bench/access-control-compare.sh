#!/usr/bin/env bash
# What access control costs: ../shared/bench/compare.sh run for weir on the bench config
# without access control, with a JWT policy (Istio's sample RS256 token checked against its key
# set, and an AuthorizationPolicy requiring it on the gateway), and with Kong's key-auth on the
# route; each beside nginx and HAProxy in the same run. Every load generator sends the token
# and the key (a `wrk` shim on the PATH adds the headers), so the peers parse the same requests.
#
#   bench/access-control-compare.sh [compare.sh options...]      (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
weir=$PWD/target/release/weir
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
token=$(tr -d '\n' <tests/data/istio-jwt/demo.jwt)
# compare.sh's functional check (one raw GET per target) must carry the credentials too: a copy
# of it whose check sends them (nginx and HAProxy ignore the headers).
compare=$work/compare.sh
sed "s|Connection: close\\\\r\\\\n|&Authorization: Bearer $token\\\\r\\\\napikey: bench-key\\\\r\\\\n|" \
    "${COMPARE:-../shared/bench/compare.sh}" >"$compare"
chmod +x "$compare"
grep -q 'apikey: bench-key' "$compare" || { echo "compare.sh's functional check changed: update $0" >&2; exit 1; }
jwks=$(tr -d '\n' <tests/data/istio-jwt/jwks.json)
if ! command -v wrk >/dev/null; then
    # compare.sh installs its tools, but the shim below needs the real wrk first.
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
fi
real_wrk=$(command -v wrk)
mkdir -p "$work/bin"
cat >"$work/bin/wrk" <<SHIM
#!/bin/sh
exec "$real_wrk" -H "authorization: Bearer $token" -H "apikey: bench-key" "\$@"
SHIM
chmod +x "$work/bin/wrk"
export PATH="$work/bin:$PATH"

cp bench/bookinfo-bench.yaml "$work/plain.yaml"
{
    cat bench/bookinfo-bench.yaml
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
} >"$work/jwt.yaml"
sed 's/^  - route:$/  - accessPlugins: [{name: key-auth}]\n    route:/' bench/bookinfo-bench.yaml >"$work/key.yaml"
cat >>"$work/key.yaml" <<'YAML'
---
_format_version: "3.0"
consumers:
- username: bench
  keyauth_credentials: [{key: bench-key}]
YAML
for config in jwt key; do "$weir" validate "$work/$config.yaml" >/dev/null; done

for config in plain jwt key; do
    echo "== $config"
    "$compare" "$@" -- sh -c "exec $weir run --config $work/$config.yaml --admin 127.0.0.1:0 --mesh-listen 127.0.0.1:0 --workers 1"
done
