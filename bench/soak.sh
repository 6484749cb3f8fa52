#!/usr/bin/env bash
# make soak: SOAK_MINUTES (30) of load through two relays behind one address
# and ClickHouse as two shards, at SOAK_RATE flows/s (default: half the
# maximum measured first through the same pair), from SOAK_AGENTS (4)
# synthetic agent processes (agent/shipper, SOAK_AGENT_BUFFER bytes each,
# default 16 MiB). During it: relay 0 killed (SIGKILL) and restarted at 20 %,
# ClickHouse shard 1 stopped for SOAK_CH_STOP (30s) at 45 %, agent 0
# restarted (SIGTERM, new boot id) at 70 %. SOAK_RELAY_ARGS adds relay flags.
# Reports flows sent vs stored (lost of those acked, duplicates), lost-event
# records vs what the agents dropped, and relay and agent RSS every minute
# with a flat-within-10 % verdict per process (how it is read:
# dev/cmd/trawl-load/rss.go); exits 1 when a check fails.
# Results: printed, and kept in $OUT (default /tmp/trawl-soak.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_MINUTES=${SOAK_MINUTES:-30}
SOAK_RATE=${SOAK_RATE:-0}
SOAK_AGENTS=${SOAK_AGENTS:-4}
SOAK_AGENT_BUFFER=${SOAK_AGENT_BUFFER:-16777216}
SOAK_CH_STOP=${SOAK_CH_STOP:-30s}
SOAK_RELAY_ARGS=${SOAK_RELAY_ARGS:-}
OUT=${OUT:-/tmp/trawl-soak.md}

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/trawl-relay" ./relay/cmd/trawl-relay
go build -o "$bin/trawl-load" ./dev/cmd/trawl-load

{
  echo "# make soak, $(date -u '+%Y-%m-%d %H:%M UTC') (commit $(git rev-parse --short HEAD))"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "Command: SOAK_MINUTES=$SOAK_MINUTES SOAK_RATE=$SOAK_RATE SOAK_AGENTS=$SOAK_AGENTS SOAK_AGENT_BUFFER=$SOAK_AGENT_BUFFER SOAK_CH_STOP=$SOAK_CH_STOP SOAK_RELAY_ARGS='$SOAK_RELAY_ARGS' bash bench/soak.sh"
  echo
  "$bin/trawl-load" soak -relay "$bin/trawl-relay" -minutes "$SOAK_MINUTES" -rate "$SOAK_RATE" -agents "$SOAK_AGENTS" \
    -agent-buffer "$SOAK_AGENT_BUFFER" -clickhouse-stop "$SOAK_CH_STOP" -relay-args "$SOAK_RELAY_ARGS"
  echo
  echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT"
