#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need, then runs them.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k fanout`).
set -uo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm) # Debian's nodejs does not bring it
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# docs/deployment.md's nginx, HAProxy and Caddy configurations, run in front of pushwire and checked
# by `pushwire doctor` (tests/integration/test_doctor_real_proxies.py; skipped without them)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
if ((${#missing[@]})); then
  echo "installing system packages: ${missing[*]}"
  as_root apt-get update -qq || exit 1
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null || exit 1
fi

export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q -e ".[test]" || exit 1

# clients/js's devDependencies, pinned in its lock file, into clients/js/node_modules: esbuild
# (tests/test_js_build.py rebuilds the browser bundles; the example app is bundled with it) and
# typescript (tsc over the package's declarations and sources, tests/test_js_package.py and
# tests/integration/test_js_package_example.py, which also `npm pack` the package). Installed
# when missing or older than the lock file (npm writes node_modules/.package-lock.json last),
# from npm's cache when it has them, bounded in time. If npm ci fails, those tests fail and say
# why; the rest of the suite still runs.
js_lock=clients/js/package-lock.json
js_installed=clients/js/node_modules/.package-lock.json
if [ ! -f "$js_installed" ] || [ "$js_lock" -nt "$js_installed" ]; then
  (cd clients/js && timeout 600 npm ci --prefer-offline --no-audit --no-fund --loglevel=error) ||
    echo "npm ci failed in clients/js: the tests of pushwire.js and its npm package will fail" >&2
fi

python3 -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
