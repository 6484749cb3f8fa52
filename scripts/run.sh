#!/usr/bin/env bash
# make run: the whole system on this machine (see deploy/run). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/trawl-run ./deploy/run
exec bin/trawl-run "$@"
