#!/usr/bin/env bash
# make bench-relay: Trawl's ClickHouse write path and queries, measured in one
# run against an embedded ClickHouse (or $TRAWL_CLICKHOUSE_DSN):
#   1. raw clickhouse-go columnar insert of N realistic flows (baseline),
#   2. the same flows through relay/store's Writer,
#   3. the same flows from synthetic agents (agent/shipper) over gRPC into the
#      real bin/trawl-relay process (when built), with its CPU and peak RSS,
#   4. bytes per stored flow after OPTIMIZE FINAL,
#   5. query latency on a large data set (QUERY_FLOWS, default 50 M),
#   6. on that data set, an in-process relay: time to the first flow of
#      GetFlows number 20 on Trawl's observer API vs Hubble's observer.Observer
#      (issue 12), interleaved, HUBBLE_RUNS times each (0: skip).
# Sizes: FLOWS (default 1,000,000), RUNS (5), QUERY_FLOWS (50,000,000),
# QUERY_RUNS (5), HUBBLE_RUNS (11). RUNS=0 skips the insert runs (FLOWS=1000
# then saves generating them). Results: printed, and kept in $OUT (default
# /tmp/trawl-bench-relay.md) for docs/benchmarks/relay.md.
set -euo pipefail
cd "$(dirname "$0")/.."

FLOWS=${FLOWS:-1000000}
RUNS=${RUNS:-5}
QUERY_FLOWS=${QUERY_FLOWS:-50000000}
QUERY_RUNS=${QUERY_RUNS:-5}
HUBBLE_RUNS=${HUBBLE_RUNS:-11}
OUT=${OUT:-/tmp/trawl-bench-relay.md}

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/relay-bench" ./dev/cmd/bench-relay

relay=()
if [[ -x bin/trawl-relay ]]; then
  relay=(-relay bin/trawl-relay)
else
  echo "bin/trawl-relay not built: skipping the agents → gRPC → relay path (run make build)" >&2
fi

{
  echo "# make bench-relay, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Command: FLOWS=$FLOWS RUNS=$RUNS QUERY_FLOWS=$QUERY_FLOWS QUERY_RUNS=$QUERY_RUNS HUBBLE_RUNS=$HUBBLE_RUNS bash bench/relay.sh"
  echo
  "$bin/relay-bench" -flows "$FLOWS" -runs "$RUNS" -query-flows "$QUERY_FLOWS" -query-runs "$QUERY_RUNS" -hubble "$HUBBLE_RUNS" "${relay[@]}"
  echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT"
