#!/usr/bin/env bash
# make bench-scale: two trawl-relay processes behind one address (a
# round-robin TCP balancer, per connection) vs one relay, ClickHouse as two
# shards (two embedded servers, the relay's Distributed tables), synthetic
# agents (agent/shipper) at full speed; runs interleaved, medians. Then a
# relay is killed mid-load: flows sent and acked vs rows stored (by uuid),
# duplicates. Follow through each relay (--peers) is checked on every run.
# Sizes: FLOWS (300,000 per run), RUNS (5 of each), AGENTS (4),
# KILL_FLOWS (300,000; 0 skips). Results: printed, and kept in $OUT (default
# /tmp/trawl-bench-scale.md) for docs/benchmarks/relay.md.
set -euo pipefail
cd "$(dirname "$0")/.."

FLOWS=${FLOWS:-300000}
RUNS=${RUNS:-5}
AGENTS=${AGENTS:-4}
KILL_FLOWS=${KILL_FLOWS:-300000}
OUT=${OUT:-/tmp/trawl-bench-scale.md}

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/trawl-relay" ./relay/cmd/trawl-relay
go build -o "$bin/trawl-load" ./dev/cmd/trawl-load

{
  echo "# make bench-scale, $(date -u '+%Y-%m-%d %H:%M UTC') (commit $(git rev-parse --short HEAD))"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Command: FLOWS=$FLOWS RUNS=$RUNS AGENTS=$AGENTS KILL_FLOWS=$KILL_FLOWS bash bench/scale.sh"
  echo
  "$bin/trawl-load" scale -relay "$bin/trawl-relay" -flows "$FLOWS" -runs "$RUNS" -agents "$AGENTS" -kill-flows "$KILL_FLOWS"
  echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT"
