#!/usr/bin/env bash
# make run: the whole system on this machine (see dev/cmd/trawl-run). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/trawl-run ./dev/cmd/trawl-run
exec bin/trawl-run "$@"
