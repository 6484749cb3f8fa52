#!/usr/bin/env bash
# Runs every test package and prints a summary. eBPF and network-namespace
# tests need root; run as root (CI does).
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || echo "test: not root: eBPF and network-namespace tests will fail" >&2
mkdir -p .cache
log=.cache/test.log
# -p 2: two cores; the network-namespace tests take locks where they share state.
go test -count=1 -p 2 -timeout 25m ./... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=$(grep -c '^--- PASS' "$log" || true)
failed=$(grep -c '^--- FAIL' "$log" || true)
pkgfail=$(grep -cE '^(FAIL|---.*FAIL)\s' "$log" || true)
echo
echo "test summary: $(grep -c '^ok ' "$log") packages ok, $(grep -c '^FAIL	' "$log") packages failed"
exit $rc
