#!/usr/bin/env bash
# Datapath cost of trawl-agent (issue 11 part 4; DESIGN.md "Datapath cost").
#
# A routed test bed (internal/testbed: a node namespace, pod namespaces
# "client" and "server" routed through it). iperf3 client and server are
# pinned to separate CPUs (CLIENT_CPU, SERVER_CPU) at nice -20; the agent runs
# in the node namespace, unpinned, at nice 0 (as a DaemonSet would: it takes
# whatever CPU is left). PAIRS pairs of short runs, DUR seconds each, baseline
# (no agent) and agent in each pair, alternating which goes first; each arm
# measures
#   - TCP Gbit/s received;
#   - 64-byte UDP packets/s received by the server (the discriminating figure);
#   - overload: the same UDP flood with the server's receive buffer at
#     OVERLOAD_BUF (the kernel drops with SOCKET_RCVBUFF) while a process spins
#     on SPIN_CPU at nice 0;
# the second arm in the reverse order of the first, so the two UDP runs of a
# pair are back to back. The figure of merit is the median of the paired
# ratios (agent / baseline of the same pair: slow drift of the machine cancels
# out) with its distribution-free 95 % confidence interval (order statistics
# of the median); a goal is met when the whole interval meets it, not met when
# none of it does, else not resolved. Overload: the per-pair difference of the
# overload and idle UDP ratios, the same way. Then, with BPF run-time stats on
# (an fd from BPF_ENABLE_STATS; with STATS_SYSCTL=1,
# kernel.bpf_stats_enabled=1, restored on exit), one idle and one overload UDP
# run with the agent (STATS_DUR seconds each): run_cnt and run_time_ns of
# every BPF program the agent holds (found from its fds), ns per run, per
# forwarded packet and per drop; the agent's CPU seconds per million packets;
# its RSS at 10k and 100k live flows; the flow program under
# BPF_PROG_TEST_RUN.
#
# Progress goes to stderr; stdout is a markdown block for
# docs/benchmarks/datapath.md.
#
#   make bench-datapath      # or: PAIRS=30 DUR=3 bash bench/datapath.sh >result.md
#
# Knobs (environment): PAIRS (30), DUR (3 s), STATS_DUR (8 s), SETTLE (1 s
# between an agent's start or exit and the next test), CLIENT_CPU (0),
# SERVER_CPU (1), SPIN_CPU (0), OVERLOAD_BUF (4K, iperf3 -w), AGENT (a prebuilt
# binary), AGENT_REV (build the agent, test bed and BPF benchmark from this git
# revision in a temporary worktree instead of the working tree),
# STATS_SYSCTL=1, SKIP_RSS=1, SKIP_TESTRUN=1, TESTS (the tests of
# an arm, "tcp ovl udp"; e.g. TESTS=tcp spends every pair on TCP, whose
# interval needs more pairs than UDP's; a figure not run prints "not-run").
# Needs root, iperf3, jq, python3, bpftool, taskset, ip.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PAIRS=${PAIRS:-30}
DUR=${DUR:-3}
STATS_DUR=${STATS_DUR:-8}
SETTLE=${SETTLE:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
SPIN_CPU=${SPIN_CPU:-0}
OVERLOAD_BUF=${OVERLOAD_BUF:-4K}
TESTS=${TESTS:-tcp ovl udp}
AGENT_FLAGS=(--node-name bench --metrics-address "" --flush-interval 1s)

log() { echo "bench-datapath: $*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
[ "$PAIRS" -ge 1 ] 2>/dev/null || die "PAIRS must be a positive number, not '$PAIRS'"
for t in $TESTS; do
	case $t in tcp | udp | ovl) ;; *) die "TESTS: unknown test '$t' (tcp, udp, ovl)" ;; esac
done
[ -n "${TESTS// /}" ] || die "TESTS is empty"
# The second arm of a pair runs the tests in reverse.
TESTS_REV=$(echo $TESTS | tr ' ' '\n' | tac | tr '\n' ' ')
for t in iperf3 jq python3 bpftool taskset ip timeout; do
	command -v "$t" >/dev/null || die "$t not installed"
done
ncpu=$(nproc)
for c in "$CLIENT_CPU" "$SERVER_CPU" "$SPIN_CPU"; do
	[ "$c" -lt "$ncpu" ] || die "CPU $c does not exist ($ncpu CPUs)"
done
[ "$CLIENT_CPU" != "$SERVER_CPU" ] || die "CLIENT_CPU and SERVER_CPU must differ"

work=$(mktemp -d)
bed_pid= agent_pid= spin_pid= stats_pid= stats_sysctl= worktree= NODE= CLIENT= SERVER=
stats_orig=$(sysctl -n kernel.bpf_stats_enabled)
descendants() { # pid
	local c
	for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done
}
cleanup() {
	trap - ERR INT TERM
	set +e
	# Our own descendants first: a subshell still running a test would retry
	# it. The test bed is stopped below, once nothing uses it.
	local ns p
	for p in $(descendants $$); do [ "$p" = "$bed_pid" ] || kill "$p" 2>/dev/null; done
	[ -n "$stats_pid" ] && kill "$stats_pid" 2>/dev/null && wait "$stats_pid" 2>/dev/null
	[ -n "$spin_pid" ] && kill "$spin_pid" 2>/dev/null && wait "$spin_pid" 2>/dev/null
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	# Everything still running in the bed's namespaces is ours (iperf3
	# server, a client cut short).
	for ns in $CLIENT $SERVER $NODE; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
	done
	[ -n "$bed_pid" ] && kill "$bed_pid" 2>/dev/null && wait "$bed_pid" 2>/dev/null
	for ns in $CLIENT $SERVER $NODE; do # the bed removes them; in case it could not
		ip netns list | grep -qw "^$ns" && ip netns del "$ns"
	done
	[ -n "$stats_sysctl" ] && sysctl -qw kernel.bpf_stats_enabled="$stats_orig"
	[ -n "$worktree" ] && git -C "$REPO" worktree remove --force "$worktree" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
on_err() { # status line
	[ "$BASHPID" = $$ ] || return 0 # a subshell's failure shows in the main shell
	[ -e "$work/interrupted" ] && exit 130
	log "failed (exit $1) at line $2: $BASH_COMMAND"
}
trap 'on_err $? $LINENO' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# nice -n takes an increment; these are absolute niceness values.
nice_to() { echo $(($1 - $(nice))); }

SRC=$REPO
src_desc="working tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- agent internal 2>/dev/null || echo ' + local changes')"
if [ -n "${AGENT_REV:-}" ]; then
	worktree=$work/src
	git worktree add --detach "$worktree" "$AGENT_REV" >/dev/null 2>&1 || die "git worktree add $AGENT_REV failed"
	SRC=$worktree
	src_desc="$AGENT_REV ($(git -C "$SRC" rev-parse --short HEAD))"
fi
(cd "$SRC" && go build -o "$work/trawl-testbed" ./dev/cmd/trawl-testbed) || die "test bed does not build"
if [ -n "${AGENT:-}" ]; then
	src_desc="prebuilt $AGENT"
	cp "$AGENT" "$work/trawl-agent"
else
	(cd "$SRC" && go build -o "$work/trawl-agent" ./agent/cmd/trawl-agent) ||
		die "agent does not build from $SRC (try AGENT_REV=HEAD)"
fi
AGENT_BIN=$work/trawl-agent

"$work/trawl-testbed" --pods client,server >"$work/bed.json" &
bed_pid=$!
for _ in $(seq 100); do [ -s "$work/bed.json" ] && break; sleep 0.1; done
[ -s "$work/bed.json" ] || die "test bed did not start"
NODE=$(jq -r .node "$work/bed.json")
CLIENT=$(jq -r '.pods[0].netns' "$work/bed.json")
SERVER=$(jq -r '.pods[1].netns' "$work/bed.json")
SERVER_IP=$(jq -r '.pods[1].ip' "$work/bed.json")

start_server() {
	ip netns exec "$SERVER" nice -n "$(nice_to -20)" taskset -c "$SERVER_CPU" \
		iperf3 -s -p 5201 >"$work/server.log" 2>&1 &
	for _ in $(seq 50); do
		ip netns exec "$SERVER" ss -Hltn 'sport = :5201' | grep -q . && return
		sleep 0.1
	done
	die "iperf3 server did not start: $(cat "$work/server.log")"
}
# Called from subshells too: the server is whatever runs in its namespace.
restart_server() {
	local p
	for p in $(ip netns pids "$SERVER"); do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do [ -z "$(ip netns pids "$SERVER")" ] && break; sleep 0.1; done
	start_server
}
start_server

dur=$DUR # of each iperf3 run; STATS_DUR for the stats runs
# iperf3 client, JSON on stdout; on an iperf3 error (e.g. a server left busy
# by a cut-short test) the server is restarted and the test retried twice.
iperf_json() { # iperf3 client args...
	local try out err
	for try in 1 2 3; do
		out=$(timeout --foreground -k 5 $((dur + 30)) ip netns exec "$CLIENT" \
			nice -n "$(nice_to -20)" taskset -c "$CLIENT_CPU" \
			iperf3 -c "$SERVER_IP" -p 5201 -t "$dur" -J "$@" 2>&1) || true
		if jq -e '.end.sum_received and (.error | not)' <<<"$out" >/dev/null 2>&1; then
			echo "$out"
			return
		fi
		err=$(jq -r '.error // empty' <<<"$out" 2>/dev/null || echo "$out" | tail -1)
		case $err in *interrupt*) touch "$work/interrupted"; exit 130 ;; esac # iperf3 got our Ctrl-C
		log "iperf3 $* failed (try $try): $err"
		restart_server
	done
	die "iperf3 keeps failing"
}
tcp_gbps() { iperf_json | jq '.end.sum_received.bits_per_second / 1e9 * 1000 | round / 1000'; }
# 64-byte UDP flood: "received/s sent/s received lost%"; received = sent -
# lost as the server counts them.
udp_run() { # extra iperf3 args...
	iperf_json -u -l 64 -b 0 "$@" | jq -r '.end |
		(.sum_received.packets - .sum_received.lost_packets) as $r |
		"\($r / .sum_received.seconds | round) \(.sum_sent.packets / .sum_sent.seconds | round) \($r) \(.sum_received.lost_percent * 10 | round / 10)"'
}
spin_start() {
	taskset -c "$SPIN_CPU" nice -n "$(nice_to 0)" sh -c 'while :; do :; done' &
	spin_pid=$!
}
spin_stop() { kill "$spin_pid"; wait "$spin_pid" 2>/dev/null || true; spin_pid=; }
overload_run() { spin_start; udp_run -w "$OVERLOAD_BUF"; spin_stop; }

# BPF run-time stats on: preferably with BPF_ENABLE_STATS, whose fd a helper
# process holds (the kernel counts its holders and sysctl writers apart, so a
# concurrent benchmark toggling the sysctl neither stops our stats nor is
# left with ours on, and the stats go off when the helper dies, however it
# dies); else kernel.bpf_stats_enabled=1, restored to its previous value.
stats_how=
stats_on() {
	if [ -z "${STATS_SYSCTL:-}" ]; then
		python3 -c '
import ctypes, os, platform, sys, time
nr = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
attr = ctypes.create_string_buffer(8)  # BPF_ENABLE_STATS, type BPF_STATS_RUN_TIME
if not nr or ctypes.CDLL(None, use_errno=True).syscall(nr, 32, attr, 4) < 0:
    sys.exit(1)
print("on", flush=True)
parent = os.getppid()
while os.getppid() == parent:  # the fd closes when the script is gone
    time.sleep(0.5)' >"$work/stats.out" 2>/dev/null &
		stats_pid=$!
		for _ in $(seq 50); do
			[ -s "$work/stats.out" ] && { stats_how="BPF_ENABLE_STATS (an fd held during the runs)"; return; }
			kill -0 "$stats_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$stats_pid" 2>/dev/null; wait "$stats_pid" 2>/dev/null || true; stats_pid=
	fi
	stats_sysctl=1
	sysctl -qw kernel.bpf_stats_enabled=1
	stats_how="kernel.bpf_stats_enabled=1 (restored to $stats_orig after)"
}
stats_off() {
	if [ -n "$stats_pid" ]; then
		kill "$stats_pid"; wait "$stats_pid" 2>/dev/null || true; stats_pid=
	else
		sysctl -qw kernel.bpf_stats_enabled="$stats_orig"
		stats_sysctl=
	fi
}

start_agent() { # extra agent flags...
	# Emptied here, not by the redirection: the child opens the file after
	# the fork, and the loop below must not find the last agent's line.
	: >"$work/agent.log"
	ip netns exec "$NODE" nice -n "$(nice_to 0)" "$AGENT_BIN" "${AGENT_FLAGS[@]}" "$@" \
		>/dev/null 2>>"$work/agent.log" &
	agent_pid=$!
	for _ in $(seq 300); do
		grep -q "trawl-agent running" "$work/agent.log" 2>/dev/null && return
		kill -0 "$agent_pid" 2>/dev/null || break
		sleep 0.1
	done
	log "agent did not start:"; cat "$work/agent.log" >&2; exit 1
}
stop_agent() { kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=; }
# An arm's first test must not pay for the agent's start (loading and
# verifying its programs) or its exit (detaching, freeing the maps).
settle() { sleep "$SETTLE"; }

# The server namespace's UDP counters: "InDatagrams RcvbufErrors".
udp_snmp() {
	ip netns exec "$SERVER" awk '$1 == "Udp:" && $2 ~ /^[0-9]/ {print $2, $6}' /proc/net/snmp
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Ids of the BPF programs the agent holds (program fds and link fds).
prog_ids() { grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -un; }
# "id run_time_ns run_cnt name type" of each of the agent's programs.
prog_snap() { # pid
	local ids
	ids=$(prog_ids "$1" | paste -sd, -) || true
	[ -n "$ids" ] || die "the agent (pid $1) holds no BPF programs; its log: $(tail -5 "$work/agent.log")"
	bpftool prog show -j | jq -r --argjson ids "[$ids]" '.[] | select(.id | IN($ids[])) |
		"\(.id) \(.run_time_ns // 0) \(.run_cnt // 0) \(.name // "?") \(
		if .type == 32 then "netfilter" else .type end)"'
}
# "id<TAB>where" of each program: its links (fdinfo of link fds) and perf
# event attachments, grouped, e.g. "tcx ingress: veth1, veth2".
prog_attach() { # pid
	local f
	ip -n "$NODE" -o link show | awk -F': ' '{sub(/@.*/, "", $2); print "IF", $1, $2}' >"$work/ifnames"
	{
		for f in /proc/"$1"/fdinfo/*; do cat "$f" 2>/dev/null; echo "--"; done
		bpftool perf show -j 2>/dev/null | jq -r --argjson p "$1" '.[] | select(.pid == $p) |
			"PERF \(.prog_id) \(.fd_type) \(.tracepoint // .func // .filename // "?")"'
	} | awk -v ifs="$work/ifnames" '
	BEGIN {
		while ((getline l < ifs) > 0) { split(l, a, " "); ifn[a[2]] = a[3] }
		split("PRE_ROUTING LOCAL_IN FORWARD LOCAL_OUT POST_ROUTING", hook, " ")
	}
	function add(id, kind, what) {
		k = id SUBSEP kind
		if (!(k in seen)) { seen[k] = what; order[id] = order[id] (order[id] == "" ? "" : SUBSEP) kind }
		else if (index(", " seen[k] ", ", ", " what ", ") == 0) seen[k] = seen[k] ", " what
	}
	function flush() {
		if (lt == "tcx") add(pid, "tcx " at, (ifx in ifn) ? ifn[ifx] : "ifindex " ifx)
		else if (lt == "netfilter") add(pid, "netfilter " (pf == 2 ? "ipv4" : pf == 10 ? "ipv6" : "pf " pf), hook[hk + 1])
		else if (lt == "raw_tracepoint") add(pid, "raw_tracepoint", tp)
		else if (lt != "" && pid != "") add(pid, lt, at)
		lt = pid = at = ifx = tp = pf = hk = ""
	}
	$1 == "--" { flush(); next }
	$1 == "link_type:" { lt = $2 }
	$1 == "prog_id:" { pid = $2 }
	$1 == "attach_type:" { at = $NF; gsub(/[()]/, "", at) }
	$1 == "ifindex:" { ifx = $2 }
	$1 == "tp_name:" { tp = $2 }
	$1 == "pf:" { pf = $2; hk = $4 }
	$1 == "PERF" { add($2, $3, $4) }
	END {
		flush()
		for (id in order) {
			n = split(order[id], ks, SUBSEP); s = ""
			for (i = 1; i <= n; i++) s = s (i > 1 ? "; " : "") ks[i] ": " seen[id, ks[i]]
			print id "\t" s
		}
	}'
}

# Paired statistics (python3, one pair a line: "baseline agent"): the
# medians of each arm, the baseline's spread ((max - min) / median), and the
# paired ratios' median with its 95 % confidence interval from order
# statistics (distribution-free: the median lies between the k-th smallest
# and the k-th largest of n values with probability 1 - 2 P(Bin(n, 1/2) < k)).
# With "diff", the values are per-pair ratios and the figure is their
# difference (agent column - baseline column). Prints "bmed amed med lo hi
# coverage% spread% verdict-words..." for a goal "op g" (>= or <=): met when
# the whole interval meets it, not met when none of it does, else not
# resolved; fewer than 6 pairs give no 95 % interval.
cat >"$work/paired.py" <<'PY'
import math, statistics, sys
mode, op, goal = sys.argv[1], sys.argv[2], float(sys.argv[3])
pairs = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
b = [p[0] for p in pairs]; a = [p[1] for p in pairs]
if mode == "ratio":
    xs = sorted(y / x for x, y in pairs if x > 0)
else:
    xs = sorted(y - x for x, y in pairs)
n = len(xs)
med = statistics.median(xs)
bmed, amed = statistics.median(b), statistics.median(a)
spread = 100 * (max(b) - min(b)) / bmed if bmed else 0
k, cov = 0, 0.0
cdf = 0.0  # P(Bin(n, 1/2) <= j - 1) for candidate k = j
for j in range(1, n // 2 + 1):
    cdf += math.comb(n, j - 1) / 2 ** n
    if cdf > 0.025:
        break
    k, cov = j, 1 - 2 * cdf
if k == 0:
    lo = hi = None
    verdict = "not resolved (too few pairs for a 95 % interval)"
else:
    lo, hi = xs[k - 1], xs[n - k]
    ok = (lambda v: v >= goal) if op == ">=" else (lambda v: v <= goal)
    if ok(lo) and ok(hi):
        verdict = "met"
    elif not ok(lo) and not ok(hi):
        verdict = "not met"
    else:
        verdict = "not resolved (the interval spans the goal)"
ci = lambda v: "none" if v is None else f"{v:.3f}"
print(f"{bmed:.6g} {amed:.6g} {med:.3f} {ci(lo)} {ci(hi)} {100 * cov:.1f} {spread:.1f} {verdict}")
PY
paired() { python3 "$work/paired.py" "$@"; }

model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "$PAIRS pairs of ${DUR}s runs, $ncpu CPUs ($model), kernel $(uname -r), load $load; agent from $src_desc"

# One arm of a pair: the three tests in the order given ("tcp udp ovl" or its
# reverse), values into last_*.
arm() { # tests...
	local t r s n l
	for t in "$@"; do
		case $t in
		tcp) last_tcp=$(tcp_gbps) ;;
		udp) read -r r s n l < <(udp_run); last_udp=$r last_udp_lost=$l ;;
		ovl) read -r r s n l < <(overload_run); last_ovl=$r last_ovl_lost=$l ;;
		esac
	done
}
ran() { case " $TESTS " in *" $1 "*) return 0 ;; esac; return 1; }
last_tcp=- last_udp=- last_udp_lost=- last_ovl=- last_ovl_lost=-
ratio() { if [ "$1" = - ] || [ "$2" = - ]; then echo -; return; fi; awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b ? a / b : 0}'; }
: >"$work/tcp.pairs"; : >"$work/udp.pairs"; : >"$work/ovl.pairs"; : >"$work/ovlr.pairs"
declare -a run_lines
for i in $(seq "$PAIRS"); do
	# Odd pairs baseline first, even pairs agent first; the second arm in
	# reverse, so the UDP runs (the discriminating figure) are adjacent.
	if [ $((i % 2)) = 1 ]; then
		first=baseline
		settle # after the last pair's agent
		arm $TESTS
		bt=$last_tcp bu=$last_udp bul=$last_udp_lost bo=$last_ovl bol=$last_ovl_lost
		start_agent
		settle
		arm $TESTS_REV
		stop_agent
		at=$last_tcp au=$last_udp aul=$last_udp_lost ao=$last_ovl aol=$last_ovl_lost
	else
		first=agent
		start_agent
		settle
		arm $TESTS
		stop_agent
		settle
		at=$last_tcp au=$last_udp aul=$last_udp_lost ao=$last_ovl aol=$last_ovl_lost
		arm $TESTS_REV
		bt=$last_tcp bu=$last_udp bul=$last_udp_lost bo=$last_ovl bol=$last_ovl_lost
	fi
	if ran tcp; then echo "$bt $at" >>"$work/tcp.pairs"; fi
	if ran udp; then echo "$bu $au" >>"$work/udp.pairs"; fi
	if ran ovl; then echo "$bo $ao" >>"$work/ovl.pairs"; fi
	if ran udp && ran ovl; then echo "$(ratio "$au" "$bu") $(ratio "$ao" "$bo")" >>"$work/ovlr.pairs"; fi
	line="| $i | $first | $bt / $at ($(ratio "$at" "$bt")) | $bu / $au ($(ratio "$au" "$bu")) | $bul / $aul | $bo / $ao ($(ratio "$ao" "$bo")) | $bol / $aol |"
	run_lines+=("$line")
	log "pair $i: $line"
done
load_mid=$(cut -d' ' -f1-3 /proc/loadavg)
# paired_or_not: the paired figure of a pairs file, or "not-run" for a test
# that was not in TESTS.
paired_or_not() { # mode op goal file
	if [ -s "$4" ]; then paired "$1" "$2" "$3" <"$4"; else echo "- - - - - - - not-run"; fi
}
read -r tcp_bm tcp_am tcp_r tcp_lo tcp_hi tcp_cov tcp_sp tcp_res < <(paired_or_not ratio ">=" 0.95 "$work/tcp.pairs")
read -r udp_bm udp_am udp_r udp_lo udp_hi udp_cov udp_sp udp_res < <(paired_or_not ratio ">=" 0.95 "$work/udp.pairs")
read -r ovl_bm ovl_am ovl_r ovl_lo ovl_hi ovl_cov ovl_sp ovl_res < <(paired_or_not ratio ">=" 0.95 "$work/ovl.pairs")
read -r _ _ ovd_r ovd_lo ovd_hi ovd_cov _ ovd_res < <(paired_or_not diff ">=" -0.1 "$work/ovlr.pairs")

# In-kernel cost: one idle and one overload UDP run with the agent and BPF
# run-time stats on (they add two clock reads per run, so the throughput runs
# above keep them off).
log "BPF run-time stats: idle and overload UDP runs"
dur=$STATS_DUR
start_agent
stats_on
prog_snap "$agent_pid" >"$work/s0"
read -r in0 rb0 < <(udp_snmp)
cpu0=$(cpu_ticks "$agent_pid")
read -r idle_pps _ _ _ < <(udp_run)
cpu1=$(cpu_ticks "$agent_pid")
read -r in1 rb1 < <(udp_snmp)
prog_snap "$agent_pid" >"$work/s1"
spin_start
cpu2=$(cpu_ticks "$agent_pid")
read -r ovl_pps ovl_sent _ ovl_lost < <(udp_run -w "$OVERLOAD_BUF")
cpu3=$(cpu_ticks "$agent_pid")
spin_stop
read -r in2 rb2 < <(udp_snmp)
prog_snap "$agent_pid" >"$work/s2"
stats_off
prog_attach "$agent_pid" >"$work/attach"
stop_agent
hz=$(getconf CLK_TCK)
idle_fwd=$((in1 - in0)) idle_drops=$((rb1 - rb0))
ovl_recv=$((in2 - in1)) ovl_drops=$((rb2 - rb1))
cpu_idle=$(awk -v d=$((cpu1 - cpu0)) -v hz="$hz" -v p="$idle_fwd" 'BEGIN {printf "%.3f", p ? (d / hz) / (p / 1e6) : 0}')
cpu_ovl=$(awk -v d=$((cpu3 - cpu2)) -v hz="$hz" -v p=$((ovl_recv + ovl_drops)) 'BEGIN {printf "%.3f", p ? (d / hz) / (p / 1e6) : 0}')

# Program table over snapshots A -> B: one row per program, then the total;
# packets = the denominator of the per-packet columns. Also writes
# $work/sum.<tag>: "all-ns drop-runs drop-ns other-ns", the run time of all
# programs, the runs and run time of the kfree_skb program(s), the run time of
# the others.
prog_table() { # snapA snapB packets tag
	awk -v pk="$3" -v sumf="$work/sum.$4" -F'\t' '
	FILENAME == ARGV[1] { where[$1] = $2; next }
	FILENAME == ARGV[2] { split($0, f, " "); t0[f[1]] = f[2]; c0[f[1]] = f[3]; next }
	{
		split($0, f, " "); id = f[1]; dt = f[2] - t0[id]; dc = f[3] - c0[id]
		w = (id in where) ? where[id] : "(not attached by a link the agent holds)"
		tt += dt
		printf "| %s | %s | %s | %s | %d | %.2f | %.0f | %.0f |\n", f[4], id, f[5], w, dc,
			pk ? dc / pk : 0, dc ? dt / dc : 0, pk ? dt / pk : 0
		if (w ~ /kfree_skb/) { dr += dc; drt += dt } else ot += dt
	}
	END {
		printf "| **all programs** | | | | | | | **%.0f** |\n", pk ? tt / pk : 0
		printf "%.0f %d %.0f %.0f\n", tt, dr, drt, ot > sumf
	}' "$work/attach" "$1" "$2"
}
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", b ? a / b : 0}'; }
idle_arr=$((idle_fwd + idle_drops)) ovl_arr=$((ovl_recv + ovl_drops))
prog_table "$work/s0" "$work/s1" "$idle_fwd" idle >"$work/table.idle"
prog_table "$work/s1" "$work/s2" "$ovl_arr" ovl >"$work/table.ovl"
read -r idle_all idle_dr idle_drt idle_other <"$work/sum.idle"
read -r ovl_all ovl_dr ovl_drt ovl_other <"$work/sum.ovl"
idle_total=$(div "$idle_all" "$idle_fwd")      # the issue's figure: per packet received
idle_total_arr=$(div "$idle_all" "$idle_arr")  # per packet that reached the socket
ovl_total=$(div "$ovl_all" "$ovl_arr")
drop_ns=$(div "$ovl_drt" "$ovl_dr")            # kfree_skb program, per drop
ovl_fwd_ns=$(div "$ovl_other" "$ovl_arr")      # the other programs, per packet

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
	echo "$((rss / 1024)) ($((hwm / 1024)))"
}
rss10=skipped rss100=skipped
if [ -z "${SKIP_RSS:-}" ]; then
	log "RSS at 10k and 100k flows"
	rss10=$(rss_at 10000)
	rss100=$(rss_at 100000)
fi

# The flow program alone under BPF_PROG_TEST_RUN: no traffic noise.
testrun=skipped
if [ -z "${SKIP_TESTRUN:-}" ]; then
	log "flow program under BPF_PROG_TEST_RUN"
	testrun=$(cd "$SRC" && go test -run '^$' -bench 'FlowProgram$/^IPv[46]_(TCP|UDP)$' -benchtime 1000000x ./agent/bpf 2>/dev/null |
		awk '/^BenchmarkFlowProgram/ {n = $1; sub(/^BenchmarkFlowProgram\//, "", n); sub(/-[0-9]+$/, "", n); gsub(/_/, " ", n); printf "%s%s %s ns", sep, n, $5 + 0; sep = ", "}') || true
	[ -n "$testrun" ] || testrun="did not run"
fi

flags_shown=$(for f in "${AGENT_FLAGS[@]}"; do [ -n "$f" ] && printf '%s ' "$f" || printf '"" '; done | sed 's/ $//')
knobs="PAIRS=$PAIRS DUR=$DUR"
[ "$TESTS" = "tcp ovl udp" ] || knobs="$knobs TESTS=\"$TESTS\""
[ -z "${SKIP_RSS:-}" ] || knobs="$knobs SKIP_RSS=1"
[ -z "${SKIP_TESTRUN:-}" ] || knobs="$knobs SKIP_TESTRUN=1"
[ "$STATS_DUR" = 8 ] || knobs="$knobs STATS_DUR=$STATS_DUR"
[ "$SETTLE" = 1 ] || knobs="$knobs SETTLE=$SETTLE"
[ "$CLIENT_CPU$SERVER_CPU$SPIN_CPU" = 010 ] || knobs="$knobs CLIENT_CPU=$CLIENT_CPU SERVER_CPU=$SERVER_CPU SPIN_CPU=$SPIN_CPU"
[ "$OVERLOAD_BUF" = 4K ] || knobs="$knobs OVERLOAD_BUF=$OVERLOAD_BUF"
[ -z "${AGENT_REV:-}" ] || knobs="$knobs AGENT_REV=$AGENT_REV"
goal() { awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN {ok = (op == ">=") ? v >= g : v <= g; print ok ? "met" : "missed"}'; }
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
cat <<OUT
## Results ($(date -u +%Y-%m-%d))

Command: \`$knobs bash bench/datapath.sh\`; agent from $src_desc, flags \`$flags_shown\`.
Machine: $ncpu CPUs ($(nproc --all) online), \`$model\`, Linux $(uname -r); load average $load at start,
$load_mid after the pairs, $load_end at the end.
iperf3 client on CPU $CLIENT_CPU and server on CPU $SERVER_CPU at nice -20; agent unpinned at nice 0.
Overload: iperf3 \`-w $OVERLOAD_BUF\` (the server's receive buffer overflows: SOCKET_RCVBUFF drops)
and \`sh -c 'while :; do :; done'\` on CPU $SPIN_CPU at nice 0. $PAIRS pairs, ${DUR} s per test; in each pair
the first arm runs \`$TESTS\` and the second the same in reverse (the last test of the first arm and the first of the second back to back);
odd pairs start with the baseline, even pairs with the agent; ${SETTLE} s pause after an agent starts or exits.

| pair | first | TCP Gbit/s, baseline / agent (ratio) | UDP 64 B pkt/s received | UDP loss % | overload: pkt/s received | overload: loss % |
| --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${run_lines[@]}")

Figure of merit: the median of the paired ratios (agent / baseline within a pair) and its
distribution-free confidence interval (order statistics of the median, coverage as given). A goal is
met when the whole interval meets it, not met when none of it does, otherwise not resolved.

| figure | baseline median | agent median | median of paired ratios | 95 % interval (coverage) | baseline spread | goal (issue 11) |
| --- | --- | --- | --- | --- | --- | --- |
| UDP 64 B pkt/s received | $udp_bm | $udp_am | **$udp_r** | $udp_lo-$udp_hi ($udp_cov %) | $udp_sp % | >= 0.95: $udp_res |
| TCP Gbit/s | $tcp_bm | $tcp_am | **$tcp_r** | $tcp_lo-$tcp_hi ($tcp_cov %) | $tcp_sp % | >= 0.95: $tcp_res |
| UDP 64 B pkt/s received, overload | $ovl_bm | $ovl_am | **$ovl_r** | $ovl_lo-$ovl_hi ($ovl_cov %) | $ovl_sp % | (see next row) |
| overload ratio - idle UDP ratio, per pair | | | **$ovd_r** | $ovd_lo-$ovd_hi ($ovd_cov %) | | >= -0.1: $ovd_res |

In-kernel cost, idle: one ${STATS_DUR} s UDP 64 B run with the agent, BPF run-time stats on by $stats_how:
$idle_pps pkt/s, $idle_fwd packets received by the server (forwarded), $idle_drops dropped by its socket (RcvbufErrors).

| program | id | type | attached at | runs | runs per packet | ns per run | ns per forwarded packet |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(cat "$work/table.idle")

All programs: **$idle_total ns per forwarded packet** (goal <= 250: $(goal "$idle_total" "<=" 250));
$idle_total_arr ns per packet that reached the server's socket (received + dropped: the runs for packets dropped there
count in the first figure).

In-kernel cost, overload: one ${STATS_DUR} s run as above with \`-w $OVERLOAD_BUF\` and the spinning CPU: $ovl_pps pkt/s received,
$ovl_sent pkt/s sent, $ovl_lost % lost; $ovl_recv packets received and $ovl_drops dropped by the server's socket
(RcvbufErrors). Per packet = per packet that reached the server's socket (received + dropped).

| program | id | type | attached at | runs | runs per packet | ns per run | ns per packet |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(cat "$work/table.ovl")

All programs: $ovl_total ns per packet; the programs other than kfree_skb: $ovl_fwd_ns ns per packet.
kfree_skb program: **$drop_ns ns per drop** ($ovl_dr runs for $ovl_drops RcvbufErrors; it runs on every kfree_skb
of the machine, not only the bed's); goal: a drop costs no more than forwarding a packet ($ovl_fwd_ns ns):
$(goal "$drop_ns" "<=" "$ovl_fwd_ns").

| agent | value |
| --- | --- |
| agent CPU seconds per million packets (idle UDP run, $idle_fwd packets) | $cpu_idle |
| agent CPU seconds per million packets (overload run, received + dropped) | $cpu_ovl |
| agent RSS at 10k concurrent flows, MiB (peak) | $rss10 |
| agent RSS at 100k concurrent flows, MiB (peak) | $rss100 |
| flow program per run under BPF_PROG_TEST_RUN, packet of an existing flow (1M runs) | $testrun |
OUT
