#!/usr/bin/env bash
# make run: the whole system on this machine. For now: the embedded ClickHouse
# in the foreground; relay, agent and demo cluster join as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./deploy/clickhouse --tcp-port 9000 --http-port 8123 --data-dir .cache/clickhouse
