#!/usr/bin/env bash
# Install the Debian packages a make target needs, when they are missing.
#   scripts/system-deps.sh test    nginx, Chromium + ChromeDriver, Node.js + npm (gitlab-ci-local),
#                                  PostgreSQL (the monitor's multi-replica database), wrk (load tests)
#   scripts/system-deps.sh demo    nginx (optional: without it the page is served by a Python stand-in)
#   scripts/system-deps.sh bench   wrk (the HTTP load generator of `python -m bench serve|monitor|load`), nginx (load),
#                                  PostgreSQL (`python -m bench monitor` measures it too)
# As root, or through sudo without a password; where there is no apt-get (or no way to be root),
# one line names what to install and, for `test`, the command fails.
set -euo pipefail

target=${1:-test}
# command:package pairs
case "$target" in
    test) needs=(nginx:nginx-light chromium:chromium chromedriver:chromium-driver node:nodejs npm:npm initdb:postgresql wrk:wrk) ;;
    demo) needs=(nginx:nginx-light) ;;
    bench) needs=(wrk:wrk initdb:postgresql nginx:nginx-light) ;;
    *) echo "usage: $0 test|demo|bench" >&2; exit 2 ;;
esac

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ] \
        || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
for pair in "${needs[@]}"; do
    have "${pair%%:*}" || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        as_root=(none)
    fi
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "${as_root[*]}" = none ]; then
    why=$(command -v apt-get >/dev/null 2>&1 && echo "not root and no passwordless sudo" || echo "no apt-get here")
    echo "system packages missing for 'make $target' ($why): install ${missing[*]} (Debian names), then run it again" >&2
    [ "$target" = demo ] && exit 0 || exit 1
fi

echo "==> apt-get install ${missing[*]} (needed by 'make $target')"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
    | grep -E '^(Setting up|Unpacking) ' || true
