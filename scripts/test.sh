#!/usr/bin/env bash
# The tests, on a fresh Debian machine as on a developer's: installs what they need and is
# missing (Debian's prometheus package: a real Prometheus server and promtool; etcd-server: the
# fleet tests start their own etcd on loopback; chromium, and playwright-core from npm to drive
# it: the dashboard's browser test), then runs `cargo test` with any arguments given. Needs Rust 1.95 or newer; installing needs root or
# sudo (nothing is installed when everything is there).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "scripts/test.sh: the tests need Debian's packages ${need[*]}; install them as root" >&2
            exit 1
        }
        sudo=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    # A previously interrupted install leaves dpkg needing this before apt works again.
    $sudo dpkg --configure -a >/dev/null 2>&1 || true
    $sudo apt-get update -q >/dev/null
    # apt's docker-clean hook can break large installs: retry once.
    $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
        || $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    # The package starts a system etcd on 2379; the tests start their own on free ports.
    if [[ " ${need[*]} " == *" etcd-server "* ]]; then
        $sudo systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi

# The browser test's driver (tests/browser/package-lock.json pins it; no browser is downloaded:
# it runs Debian's chromium).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
fi

exec cargo test "$@"
