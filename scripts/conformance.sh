#!/usr/bin/env bash
# RFC 6455 conformance of pushwire's WebSocket server, checked by the independent
# Autobahn|Testsuite (`wstest -m fuzzingclient`) against the /echo endpoint.
#
# Needs a wstest binary: $WSTEST, or `wstest` on PATH; scripts/install-wstest.sh installs one
# on Debian 12 (docs/benchmarks.md, "Conformance: Autobahn|Testsuite"). CI runs a subset of
# the cases through tests/integration/test_conformance.py.
#
# Environment:
#   WSTEST   the wstest binary (default: `wstest` on PATH)
#   CASES    comma-separated case patterns (default "*": all cases; e.g. "1.*,2.*,5.*")
#   EXCLUDE  comma-separated case patterns to leave out (default: none)
#   OUTDIR   where the report goes (default: a temporary directory, removed at the end)
#   PYTHON   the Python 3 that runs pushwire (default python3)
#   COMPRESSION  1: the server negotiates permessage-deflate (`websocket_compression`), so
#            the cases 12.* and 13.* run; default 0 (they come out UNIMPLEMENTED)
#
# Prints one line per behaviour field with its counts, and exits 1 when any case is FAILED
# or WRONG CODE (UNIMPLEMENTED is accepted: without COMPRESSION=1 pushwire negotiates no
# extension, so the permessage-deflate cases 12.* and 13.* come out that way).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

wstest=${WSTEST:-$(command -v wstest || true)}
if [ -z "$wstest" ] || [ ! -x "$wstest" ]; then
  echo "conformance: no wstest binary (set WSTEST or put wstest on PATH)" >&2
  exit 2
fi
python=${PYTHON:-python3}
cases=${CASES:-*}
exclude=${EXCLUDE:-}
compression=()
if [ "${COMPRESSION:-0}" = 1 ]; then
  compression=(--websocket-compression)
fi

work=$(mktemp -d)
outdir=${OUTDIR:-$work/report}
mkdir -p "$outdir"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The 9.* cases send messages of up to 16 MiB and read the echo back: the message limit and
# the per-connection write buffer are raised above that for this run only (the defaults are
# 1 MiB and 4 MiB; a bigger message would be closed with 1009, a bigger echo as a slow
# consumer with 4001).
PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" "$python" -m pushwire serve \
  --host 127.0.0.1 --port 0 --log-level warning \
  --set max_message=$((17 * 1024 * 1024)) \
  --set max_write_buffer=$((64 * 1024 * 1024)) \
  ${compression[@]+"${compression[@]}"} \
  >"$work/server.log" 2>&1 &
server_pid=$!

# Wait (at most 30 s) for the server to announce the free loopback port it took.
if ! port=$("$python" - "$work/server.log" "$server_pid" <<'EOF'
import os, re, sys, time
log, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    with open(log, "rb") as f:
        found = re.search(rb"pushwire listening on http://[^ ]+:(\d+)", f.read())
    if found:
        print(found.group(1).decode())
        sys.exit(0)
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("conformance: the pushwire server exited before it listened")
    time.sleep(0.1)
sys.exit("conformance: the pushwire server did not listen within 30 s")
EOF
); then
  cat "$work/server.log" >&2
  exit 2
fi

"$python" - "$work/spec.json" "$outdir" "$port" "$cases" "$exclude" <<'EOF'
import json, sys
path, outdir, port, cases, exclude = sys.argv[1:]
split = lambda s: [p.strip() for p in s.split(",") if p.strip()]
spec = {
    "outdir": outdir,
    "servers": [{"agent": "pushwire", "url": f"ws://127.0.0.1:{port}/echo"}],
    "cases": split(cases),
    "exclude-cases": split(exclude),
    "exclude-agent-cases": {},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
EOF

echo "conformance: $("$wstest" --autobahnversion 2>&1 | tr '\n' ' ')"
echo "conformance: testee ws://127.0.0.1:$port/echo, cases ${cases} excluding [${exclude}]," \
  "compression ${COMPRESSION:-0}"
(cd "$work" && "$wstest" -m fuzzingclient -s "$work/spec.json") >"$work/wstest.log" 2>&1 || {
  tail -n 30 "$work/wstest.log" >&2
  echo "conformance: wstest failed" >&2
  exit 2
}
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "conformance: the pushwire server died during the run" >&2
  cat "$work/server.log" >&2
  exit 1
fi

"$python" - "$outdir/index.json" <<'EOF'
import collections, json, sys
with open(sys.argv[1]) as f:
    index = json.load(f)
results = index["pushwire"]
bad = []
for field in ("behavior", "behaviorClose"):
    counts = collections.Counter(r[field] for r in results.values())
    order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "WRONG CODE"]
    names = order + sorted(set(counts) - set(order))
    print(f"{field}: " + ", ".join(f"{n}={counts.get(n, 0)}" for n in names)
          + f" ({len(results)} cases)")
    key = lambda case: [int(p) for p in case.split(".")]
    for case in sorted(results, key=key):
        if results[case][field] not in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"):
            bad.append(f"  {case}: {field} {results[case][field]}")
if bad:
    print("conformance: failing cases:")
    print("\n".join(bad))
    sys.exit(1)
print("conformance: no failure")
EOF
