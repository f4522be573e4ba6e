#!/usr/bin/env bash
# Installs Autobahn|Testsuite's `wstest` (the independent WebSocket conformance suite that
# scripts/conformance.sh and tests/integration/test_conformance.py run) into a Python 2.7
# virtualenv, and prints the path of the `wstest` binary. Used by .ci/run; by hand:
#
#   WSTEST=$(scripts/install-wstest.sh) scripts/conformance.sh
#
# wstest runs on Python 2.7 only. Debian 12 has no python2.7 package; Debian 11's installs
# beside Debian 12's packages. Its suite is added to apt for that one install and removed
# again (also when the install fails), and nothing else is upgraded. The steps are those of
# docs/benchmarks.md, "Getting wstest on Debian 12".
#
# Argument: the virtualenv's folder (default: ~/.cache/pushwire/wstest). Exits non-zero,
# with the reason on stderr, when it cannot install; nothing else depends on it.
set -euo pipefail

prefix=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/pushwire/wstest}
say() { echo "install-wstest: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

if [ -x "$prefix/bin/wstest" ] && "$prefix/bin/wstest" --autobahnversion >/dev/null 2>&1; then
  echo "$prefix/bin/wstest"
  exit 0
fi

py27=/usr/bin/python2.7  # Debian's, not a version manager's shim that may not run
if [ ! -x "$py27" ]; then
  sources=/etc/apt/sources.list.d/debian.sources
  extra=/etc/apt/sources.list.d/pushwire-bullseye-py27.sources
  if [ ! -f "$sources" ] || ! grep -q '^Suites:' "$sources"; then
    say "no $sources to take the Debian 11 entry from; not installing python2.7"
    exit 1
  fi
  cleanup() {
    as_root rm -f "$extra"
    as_root apt-get update -qq >/dev/null 2>&1 || true
  }
  trap cleanup EXIT
  # The first entry of debian.sources with its suite changed to Debian 11's.
  awk 'NF==0{exit} /^Suites:/{print "Suites: bullseye"; next} /^#/{next} {print}' "$sources" |
    as_root tee "$extra" >/dev/null
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-upgrade \
    python2.7 python2.7-dev >/dev/null
  cleanup
  trap - EXIT
fi

# virtualenv before 20.22 is the last that makes Python 2.7 environments (it brings pip 20.3).
log=$(mktemp)
run() { "$@" >>"$log" 2>&1 || { say "failed: $* (its output follows)"; cat "$log" >&2; exit 1; }; }
tool="$prefix-tool"
run python3 -m venv "$tool"
run "$tool/bin/pip" install --disable-pip-version-check 'virtualenv<20.22'
run "$tool/bin/python" -m virtualenv -p "$py27" "$prefix"
run "$prefix/bin/pip" install --disable-pip-version-check autobahntestsuite
run "$prefix/bin/wstest" --autobahnversion
rm -f "$log"
echo "$prefix/bin/wstest"
