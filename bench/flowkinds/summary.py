#!/usr/bin/env python3
"""Summarises rounds of BenchmarkFlowProgramLive/conn-per-request.

Usage: summary.py LOG BASE ARM [ARM...]. LOG holds "=== round I ARM ..." lines,
each followed by the benchmark's line. For every metric: each arm's median
(min-max) over the rounds, and ARM - BASE (and each later ARM - each earlier one) per round with the median of the
per-round differences and its distribution-free 95 % interval (order
statistics of the binomial(n, 1/2), coverage >= 95 %)."""
import re, sys, statistics as st
from math import comb

log, base, arms = sys.argv[1], sys.argv[2], sys.argv[3:]
R = {}
cur = None
for line in open(log):
    m = re.match(r'=== round (\d+) (\S+)', line)
    if m:
        cur = (int(m.group(1)), m.group(2))
        continue
    if 'ns/op' in line and cur:
        R.setdefault(cur[1], {})[cur[0]] = {u: float(v) for v, u in re.findall(r'([-\d.e+]+) ([a-z/-]+)', line)}

def interval(xs):
    xs = sorted(xs); n = len(xs)
    # largest k with P(B < k) <= 2.5 %: [x(k), x(n-k+1)] (1-based)
    k, acc = 0, 0.0
    while True:
        p = comb(n, k) / 2 ** n
        if acc + p > 0.025:
            break
        acc += p; k += 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k]

metrics = ['kernel-ns/packet', 'kernel-ns/conn', 'syn-new-ns', 'synack-new-ns', 'hs-ack-ns', 'ack-ns', 'data-ns', 'fin-ns',
           'syn-new/op', 'synack-new/op', 'hs-ack/op', 'ack/op', 'data/op', 'fin/op']
for m in metrics:
    if m not in next(iter(R[base].values())):
        continue
    print(m)
    for a in [base] + arms:
        xs = [R[a][r][m] for r in sorted(R[a]) if m in R[a][r]]
        print('   %-8s median %.1f (%.1f-%.1f), n=%d' % (a, st.median(xs), min(xs), max(xs), len(xs)))
    if m.endswith('/op'):
        continue
    pairs = [(a, base) for a in arms] + [(arms[j], arms[i]) for i in range(len(arms)) for j in range(i + 1, len(arms))]
    for a, b0 in pairs:
        rounds = sorted(set(R[a]) & set(R[b0]))
        ds = [R[a][r][m] - R[b0][r][m] for r in rounds if m in R[a][r] and m in R[b0][r]]
        iv = interval(ds)
        print('   %s - %s: median %+.1f, 95%% interval %s, positive %d/%d; per round: %s' % (
            a, b0, st.median(ds), '%+.1f to %+.1f' % iv if iv else 'n/a', sum(d > 0 for d in ds), len(ds),
            ' '.join('%.0f' % d for d in ds)))
