#!/usr/bin/env bash
# Policy verdicts and flow enrichment at 10,000 pods and 1,000 policies
# (internal/kube.Synthetic), each with a baseline measured in the same run.
# Prints a markdown report (medians of COUNT runs); `bench/policy.sh > docs/benchmarks/policy-run.md`
# to keep one. One core (-cpu 1), as the goal is stated per core.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-1s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench 'Evaluate|BaselineMapLookup|Compile' -benchtime "$BENCHTIME" -count "$COUNT" -cpu 1 ./internal/policy/ >>"$out"
go test -run '^$' -bench 'Enrich|BaselineParseAndLookup' -benchtime "$BENCHTIME" -count "$COUNT" -cpu 1 ./relay/enrich/ >>"$out"
go test -run '^$' -bench 'Rebuild' -benchtime 10x -count "$COUNT" -cpu 1 ./internal/kube/ >>"$out"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "# Policy and enrichment benchmark run"
echo
echo "- command: \`COUNT=$COUNT BENCHTIME=$BENCHTIME bench/policy.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))"
echo "- machine: $(nproc) CPUs, $cpu, $(go version | cut -d' ' -f3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- cluster: 100 namespaces x 100 pods = 10,000 pods, 1,000 NetworkPolicies; 4,096 distinct connections/flows"
echo
echo "| benchmark | wall ns/op | CPU ns/op | per second (wall) |"
echo "| --- | ---: | ---: | ---: |"
# median of a column (field after the unit name) per benchmark name
awk '
/^Benchmark/ {
  name=$1; sub(/-[0-9]+$/, "", name)
  for (i=3; i<=NF; i++) {
    if ($(i+1)=="ns/op") wall[name]=wall[name] " " $i
    if ($(i+1)=="cpu-ns/op") cpu[name]=cpu[name] " " $i
  }
  if (!(name in seen)) { seen[name]=1; order[++n]=name }
}
function median(s,   a, k, i, j, t) {
  k=split(s, a, " ")
  for (i=1;i<=k;i++) for (j=i+1;j<=k;j++) if (a[j]+0<a[i]+0) {t=a[i];a[i]=a[j];a[j]=t}
  return (k%2) ? a[(k+1)/2] : (a[k/2]+a[k/2+1])/2
}
END {
  for (i=1;i<=n;i++) {
    nm=order[i]; w=median(wall[nm]); c=median(cpu[nm])
    med[nm "w"]=w; med[nm "c"]=c
    printf "| %s | %.0f | %.0f | %.0f |\n", nm, w, c, 1e9/w
  }
  printf "\nRatios (CPU ns/op):\n\n"
  printf "- cached verdict / baseline map lookup: %.1fx\n", med["BenchmarkEvaluateCached" "c"]/med["BenchmarkBaselineMapLookup" "c"]
  printf "- uncached verdict / cached verdict: %.1fx\n", med["BenchmarkEvaluateUncached" "c"]/med["BenchmarkEvaluateCached" "c"]
  printf "- enrichment / baseline parse+lookup: %.1fx\n", med["BenchmarkEnrich" "c"]/med["BenchmarkBaselineParseAndLookup" "c"]
  printf "- cached verdicts per CPU-second: %.2f M (goal >= 1 M)\n", 1e3/med["BenchmarkEvaluateCached" "c"]
  printf "- enrichment CPU per flow: %.0f ns (goal <= 300 ns)\n", med["BenchmarkEnrich" "c"]
}' "$out"
echo
echo "Raw output:"
echo
echo '```'
grep '^Benchmark' "$out"
echo '```'
