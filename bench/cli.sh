#!/usr/bin/env bash
# CLI benchmarks (make bench-cli):
#  1. formatting throughput of `trawl observe --input-file F --all` to
#     /dev/null in compact and json on N (default 1 M) generated flows,
#     beside two baselines measured in the same run on the same file:
#     `cat F` (reading the bytes) and a plain protojson decode loop (what a
#     straightforward CLI spends before filtering or formatting anything);
#  2. time to the first line of `trawl observe --last 20` against a relay on
#     the embedded ClickHouse, beside a direct GetFlows call (no CLI process).
# Each figure is the median of RUNS (default 3) runs; wall time and CPU time
# (user+sys, which the other processes on a shared machine do not inflate).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
RUNS=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[ -x bin/trawl ] || go build -o bin/trawl ./cli/cmd/trawl
go build -o "$work/genflows" ./dev/cmd/bench-genflows
go build -o "$work/protojsonloop" ./dev/cmd/bench-protojsonloop
go build -o "$work/firstline" ./dev/cmd/bench-firstline

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "generating $N flows..."
"$work/genflows" -n "$N" -o "$work/flows.jsonl"
echo "input: $(du -h "$work/flows.jsonl" | cut -f1), $(wc -l <"$work/flows.jsonl") lines"

# measure NAME CMD...: runs CMD RUNS times with stdout to /dev/null and
# prints the medians of wall and CPU seconds and the flows/s they give.
measure() {
	local name=$1
	shift
	local walls=() cpus=()
	for _ in $(seq "$RUNS"); do
		local t
		t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null; } 2>&1 | tail -1)
		walls+=("$(echo "$t" | awk '{print $1}')")
		cpus+=("$(echo "$t" | awk '{print $2 + $3}')")
	done
	local mid=$(((RUNS + 1) / 2))
	local wall cpu
	wall=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n "${mid}p")
	cpu=$(printf '%s\n' "${cpus[@]}" | sort -g | sed -n "${mid}p")
	awk -v n="$N" -v name="$name" -v w="$wall" -v c="$cpu" -v all="${walls[*]}" 'BEGIN {
		printf "| %-28s | %8.2f | %8.2f | %10.0f | %10.0f | %s |\n", name, w, c, n / w, n / c, all }'
}

echo
echo "| command (on $N flows)        | wall s   | CPU s    | flows/s    | flows/CPU-s | wall s of each run |"
echo "|------------------------------|----------|----------|------------|-------------|--------------------|"
measure "baseline: cat" cat "$work/flows.jsonl"
measure "baseline: protojson decode" "$work/protojsonloop" "$work/flows.jsonl"
measure "observe -o compact" bin/trawl observe --input-file "$work/flows.jsonl" --all -o compact --color never
measure "observe -o json" bin/trawl observe --input-file "$work/flows.jsonl" --all -o json
measure "observe -o compact --verdict" bin/trawl observe --input-file "$work/flows.jsonl" --all -o compact --verdict DROPPED
echo
echo "time to first line of observe --last 20 (relay + embedded ClickHouse):"
"$work/firstline" -trawl bin/trawl -flows "${FIRSTLINE_FLOWS:-200000}" -runs "$((RUNS > 5 ? RUNS : 5))"
