#!/usr/bin/env bash
# Datapath cost of trawl-agent: TCP throughput and 64-byte UDP packets/s
# between two pod namespaces routed through a node namespace, without and
# with the agent (medians of RUNS runs, interleaved in alternating order), the in-kernel cost per
# packet from BPF run-time stats, the agent's CPU seconds per million
# packets, and its RSS at 10k and 100k concurrent flows.
#
#   make bench-datapath            # or: RUNS=5 DUR=10 bash bench/datapath.sh
# Needs root, iperf3, jq, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DUR=${DUR:-5}
[ "$(id -u)" = 0 ] || { echo "bench-datapath: needs root" >&2; exit 1; }
for t in iperf3 jq python3 bpftool; do
	command -v "$t" >/dev/null || { echo "bench-datapath: $t not installed" >&2; exit 1; }
done

work=$(mktemp -d)
mkdir -p bin
[ -x bin/trawl-agent ] || go build -o bin/trawl-agent ./agent/cmd/trawl-agent
go build -o "$work/trawl-testbed" ./internal/testbed/cmd/trawl-testbed
AGENT=$PWD/bin/trawl-agent

bed_pid= agent_pid= iperf_pid=
stats_orig=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
	[ -n "$iperf_pid" ] && kill "$iperf_pid" 2>/dev/null || true
	[ -n "$bed_pid" ] && kill "$bed_pid" 2>/dev/null && wait "$bed_pid" 2>/dev/null || true
	sysctl -qw kernel.bpf_stats_enabled="$stats_orig"
	rm -rf "$work"
}
trap cleanup EXIT

"$work/trawl-testbed" --pods client,server >"$work/bed.json" &
bed_pid=$!
for _ in $(seq 100); do [ -s "$work/bed.json" ] && break; sleep 0.1; done
NODE=$(jq -r .node "$work/bed.json")
CLIENT=$(jq -r '.pods[0].netns' "$work/bed.json")
SERVER=$(jq -r '.pods[1].netns' "$work/bed.json")
SERVER_IP=$(jq -r '.pods[1].ip' "$work/bed.json")
CLIENT_VETH=$(jq -r '.pods[0].host_veth' "$work/bed.json")

ip netns exec "$SERVER" iperf3 -s -p 5201 >/dev/null 2>&1 &
iperf_pid=$!
sleep 0.5

start_agent() { # extra agent flags...
	ip netns exec "$NODE" "$AGENT" --node-name bench --metrics-addr "" --flush-interval 1s "$@" \
		>/dev/null 2>"$work/agent.log" &
	agent_pid=$!
	for _ in $(seq 100); do grep -q "trawl-agent running" "$work/agent.log" 2>/dev/null && return; sleep 0.1; done
	echo "agent did not start:" >&2; cat "$work/agent.log" >&2; exit 1
}
stop_agent() { kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=; }

tcp_gbps() {
	ip netns exec "$CLIENT" iperf3 -c "$SERVER_IP" -p 5201 -t "$DUR" -J |
		jq '.end.sum_received.bits_per_second / 1e9 * 1000 | round / 1000'
}
# Received packets and packets/s of a 64-byte UDP flood.
udp_run() {
	ip netns exec "$CLIENT" iperf3 -c "$SERVER_IP" -p 5201 -u -l 64 -b 0 -t "$DUR" -J |
		jq -r '.end.sum | "\(.packets - .lost_packets) \((.packets - .lost_packets) / .seconds | round)"'
}
median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}' | sed 's/\.000$//'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
prog_ids() { grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u; }
# Sum of run_time_ns and run_cnt of a named program among the agent's.
prog_stats() { # pid name
	local ids; ids=$(prog_ids "$1" | paste -sd, -)
	bpftool prog show -j | jq -r --arg n "$2" "[.[] | select(.name==\$n and ([.id] | inside([${ids}])))] |
		\"\(map(.run_time_ns // 0) | add // 0) \(map(.run_cnt // 0) | add // 0)\""
}

echo "bench-datapath: $RUNS runs of ${DUR}s each, $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
declare -a base_tcp agent_tcp base_udp agent_udp
base_once() { base_tcp+=("$(tcp_gbps)"); base_udp+=("$(udp_run | awk '{print $2}')"); }
agent_once() {
	start_agent
	agent_tcp+=("$(tcp_gbps)")
	agent_udp+=("$(udp_run | awk '{print $2}')")
	stop_agent
}
for i in $(seq "$RUNS"); do
	# Alternate which goes first, so warm-up and drift favour neither.
	if ((i % 2)); then base_once; agent_once; else agent_once; base_once; fi
	echo "run $i: tcp ${base_tcp[-1]} / ${agent_tcp[-1]} Gbit/s, udp ${base_udp[-1]} / ${agent_udp[-1]} pps (without / with agent)"
done
bt=$(printf '%s\n' "${base_tcp[@]}" | median); at=$(printf '%s\n' "${agent_tcp[@]}" | median)
bu=$(printf '%s\n' "${base_udp[@]}" | median); au=$(printf '%s\n' "${agent_udp[@]}" | median)

# In-kernel cost and agent CPU: one more UDP run with BPF stats on (the
# stats themselves add a little, so throughput runs above keep them off).
start_agent
sysctl -qw kernel.bpf_stats_enabled=1
read -r in_t0 in_c0 < <(prog_stats "$agent_pid" trawl_flow_ingress)
read -r eg_t0 eg_c0 < <(prog_stats "$agent_pid" trawl_flow_egress)
read -r dr_t0 dr_c0 < <(prog_stats "$agent_pid" trawl_drop_btf)
cpu0=$(cpu_ticks "$agent_pid")
read -r pkts _ < <(udp_run)
cpu1=$(cpu_ticks "$agent_pid")
read -r in_t1 in_c1 < <(prog_stats "$agent_pid" trawl_flow_ingress)
read -r eg_t1 eg_c1 < <(prog_stats "$agent_pid" trawl_flow_egress)
read -r dr_t1 dr_c1 < <(prog_stats "$agent_pid" trawl_drop_btf)
sysctl -qw kernel.bpf_stats_enabled="$stats_orig"
stop_agent
hz=$(getconf CLK_TCK)
ns_in=$(awk -v t=$((in_t1 - in_t0)) -v c=$((in_c1 - in_c0)) 'BEGIN {printf "%.0f", c ? t / c : 0}')
ns_eg=$(awk -v t=$((eg_t1 - eg_t0)) -v c=$((eg_c1 - eg_c0)) 'BEGIN {printf "%.0f", c ? t / c : 0}')
ns_dr=$(awk -v t=$((dr_t1 - dr_t0)) -v c=$((dr_c1 - dr_c0)) 'BEGIN {printf "%.0f", c ? t / c : 0}')
cpu_per_m=$(awk -v d=$((cpu1 - cpu0)) -v hz="$hz" -v p="$pkts" 'BEGIN {printf "%.3f", p ? (d / hz) / (p / 1e6) : 0}')

# RSS at N concurrent flows: one UDP packet to each of N (source, destination
# port) pairs; nothing listens, and NO_SOCKET drops are not reported here so
# only the flow path is measured.
rss_at() { # flows
	start_agent --drop-reasons NETFILTER_DROP --idle-timeout 120s --flow-map-size 262144
	ip netns exec "$CLIENT" python3 - "$SERVER_IP" "$1" <<'PY'
import socket, sys
dst, n = sys.argv[1], int(sys.argv[2])
socks, sent = [], 0
while sent < n:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    socks.append(s)
    for port in range(1024, 61024):
        if sent == n:
            break
        s.sendto(b"x", (dst, port))
        sent += 1
PY
	sleep 3 # three polls: every flow is in the agent's state
	local rss hwm
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$agent_pid/status")
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$agent_pid/status")
	stop_agent
	echo "$((rss / 1024)) $((hwm / 1024))"
}
read -r rss10 hwm10 < <(rss_at 10000)
read -r rss100 hwm100 < <(rss_at 100000)

# The flow program alone under BPF_PROG_TEST_RUN: no traffic noise.
testrun=$(go test -run '^$' -bench FlowProgram -benchtime 1000000x ./agent/bpf 2>/dev/null |
	awk '/^BenchmarkFlowProgram/ {n=$1; sub(/^BenchmarkFlowProgram\//, "", n); sub(/-[0-9]+$/, "", n); printf "%s%s %s ns", sep, n, $5; sep=", "}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b ? 100 * a / b : 0}'; }
cat <<OUT

| measure | without agent | with agent | ratio |
| --- | --- | --- | --- |
| TCP throughput, median of $RUNS (Gbit/s) | $bt | $at | $(ratio "$at" "$bt") % |
| UDP 64-byte packets/s, median of $RUNS | $bu | $au | $(ratio "$au" "$bu") % |

| agent cost | value |
| --- | --- |
| flow program at tcx ingress (ns/run, $((in_c1 - in_c0)) runs) | $ns_in |
| flow program at tcx egress, forwarded packets return early (ns/run, $((eg_c1 - eg_c0)) runs) | $ns_eg |
| in-kernel ns per forwarded packet (ingress + egress run) | $((ns_in + ns_eg)) |
| flow program per run under BPF_PROG_TEST_RUN, packet of an existing flow (1M runs) | $testrun |
| kfree_skb drop program (ns/run, $((dr_c1 - dr_c0)) runs) | $ns_dr |
| agent CPU seconds per million packets (UDP run, $pkts packets) | $cpu_per_m |
| agent RSS at 10k concurrent flows (MiB, peak) | $rss10 ($hwm10) |
| agent RSS at 100k concurrent flows (MiB, peak) | $rss100 ($hwm100) |
OUT
