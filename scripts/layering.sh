#!/usr/bin/env bash
# The agent and the relay share only proto/ and internal/: no product package
# of one imports the other (tests may drive the relay with the agent's real
# shipper), and nothing that ships imports dev/.
set -euo pipefail
fail=0
while read -r pkg deps; do
  case "$pkg" in
    */trawl/relay*) bad=$(tr ' ' '\n' <<<"$deps" | grep -E '/trawl/(agent|dev)(/|$)' || true) ;;
    */trawl/agent*) bad=$(tr ' ' '\n' <<<"$deps" | grep -E '/trawl/(relay|dev)(/|$)' || true) ;;
    */trawl/cli*|*/trawl/internal*) bad=$(tr ' ' '\n' <<<"$deps" | grep -E '/trawl/dev(/|$)' || true) ;;
    *) bad= ;;
  esac
  if [ -n "$bad" ]; then
    echo "layering: $pkg imports $(echo $bad)" >&2
    fail=1
  fi
done < <(go list -f '{{.ImportPath}} {{join .Deps " "}}' ./agent/... ./relay/... ./cli/... ./internal/...)
exit $fail
