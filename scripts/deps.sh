#!/usr/bin/env bash
# Installs what building and testing Trawl needs, only when missing:
# Debian packages (clang/llvm for eBPF, iptables/nftables, conntrack, iperf3,
# promtool, ...) and the embedded ClickHouse library. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# package:command-or-file that proves it is installed
need=(
  clang:clang llvm:llvm-strip libbpf-dev:/usr/include/bpf/bpf_helpers.h bpftool:bpftool
  iptables:iptables nftables:nft conntrack:conntrack iperf3:iperf3
  prometheus:promtool iputils-ping:ping iproute2:ip jq:jq npm:npm curl:curl xxd:xxd kubernetes-client:kubectl
)
missing=()
for p in "${need[@]}"; do
  pkg=${p%%:*} probe=${p#*:}
  if [[ $probe == /* ]]; then [ -e "$probe" ] || missing+=("$pkg")
  else command -v "$probe" >/dev/null || missing+=("$pkg"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The embedded ClickHouse library, fetched once into ~/.cache/trawl.
go run ./dev/cmd/trawl-clickhouse --fetch-only
