#!/usr/bin/env bash
# ab: compare two regionkv-server binaries by running a cluster of each AT
# THE SAME TIME on this machine, each under the same put load.
#
#   scripts/ab.sh OLD_SERVER NEW_SERVER
#
# On a shared VM, back-to-back runs of one binary differ by ±20% as the
# machine's speed drifts, which hides a change worth a few percent. Two
# clusters side by side share the drift: each gets about half the CPU, and the
# one that needs less CPU per put does more puts. Each round starts both
# clusters fresh (a scheduler and 3 stores each), splits each into $REGIONS,
# warms up, runs $CLIENTS clients against each for $DURATION seconds, and
# prints both clusters' puts/s, the CPU per put of their stores and of their
# load generators (from /proc), and the ratio new/old; the clusters swap port
# ranges every round ($ROUNDS, default 4). Same-binary runs
# (OLD = NEW) gave ratios of 1.00–1.01. The scheduler, ctl and bench come
# from $BIN; data and logs go to $AB_DIR.
#
# Both servers are run with the same flags: $SERVER_FLAGS (e.g.
# "--memtable-size 32MiB"); OLD_FLAGS and NEW_FLAGS add to them per side, so
# one binary can also be compared with itself under different flags.
# OLD_BENCH_FLAGS and NEW_BENCH_FLAGS go to each side's regionkv-bench (e.g.
# "--conns 1"), and OLD_BENCH and NEW_BENCH name each side's regionkv-bench
# binary (default $BIN/regionkv-bench), to compare client settings and code.
#
# PREFILL=N writes every key N times (unmeasured, batched) before the
# warm-up, so that each store's kv memtable holds N*100000 versions, as a
# store that has run for a while does (make bench-compare's 16-region run
# comes after ~250000 writes). Without it, the memtables are nearly empty.
set -euo pipefail

[[ $# -eq 2 ]] || { sed -n '2,/^set -e/p' "$0" | sed -n 's/^# \{0,1\}//p' >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2")
bin=${BIN:-bin}
dir=${AB_DIR:-data/ab}
rounds=${ROUNDS:-4}
regions=${REGIONS:-16}
clients=${CLIENTS:-64}
duration=${DURATION:-10}
keys=100000
old_bench=$(realpath "${OLD_BENCH:-$bin/regionkv-bench}") new_bench=$(realpath "${NEW_BENCH:-$bin/regionkv-bench}")

pids=()
cleanup() {
	((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
	wait 2>/dev/null || true
	pids=()
}
trap cleanup EXIT

# start SIDE SERVER PORTBASE [FLAGS...]: a scheduler on PORTBASE+1..4 and
# stores on PORTBASE+11..13 (status +21..23). The port bases (27000, 28000)
# are below Linux's ephemeral range (32768 up), where an outgoing
# connection's port could take one.
start() {
	local side=$1 server=$2 p=$3 d=$dir/$1
	shift 3
	rm -rf "$d" && mkdir -p "$d"
	"$bin/regionkv-scheduler" --data-dir "$d/sched" --addr "127.0.0.1:$((p + 1))" \
		--status-addr "127.0.0.1:$((p + 2))" --etcd-client-url "http://127.0.0.1:$((p + 3))" \
		--etcd-peer-url "http://127.0.0.1:$((p + 4))" >"$d/sched.log" 2>&1 &
	pids+=($!)
	for i in 0 1 2; do
		# shellcheck disable=SC2086 # SERVER_FLAGS is a list of flags
		"$server" --data-dir "$d/store$i" --addr "127.0.0.1:$((p + 11 + i))" \
			--status-addr "127.0.0.1:$((p + 21 + i))" --scheduler "127.0.0.1:$((p + 1))" \
			--region-heartbeat-ticks 10 ${SERVER_FLAGS:-} "$@" >"$d/store$i.log" 2>&1 &
		pids+=($!)
		echo $! >>"$d/store.pids"
	done
	"$bin/regionkv-ctl" --scheduler "127.0.0.1:$((p + 1))" health --wait --timeout 60s >/dev/null
}

# split PORTBASE: split the cluster into $regions (split-regions.sh).
split() {
	BIN=$bin "$(dirname "$0")/split-regions.sh" "127.0.0.1:$(($1 + 1))" "$regions" "$keys" >/dev/null
}

# bench BINARY PORTBASE SECONDS [FLAGS...]: puts/s of a put run.
bench() {
	local b=$1 p=$2 secs=$3
	shift 3
	"$b" --scheduler "127.0.0.1:$((p + 1))" --clients "$clients" --duration "${secs}s" \
		--warmup 1s --key-size 16 --value-size 256 --workload put --keys "$keys" "$@" 2>&1 |
		awk '$1 == "put" {print $3}'
}

# ticks PID...: CPU ticks of the processes so far.
ticks() {
	local sum=0 p
	for p in "$@"; do
		sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo $sum
}

hz=$(getconf CLK_TCK)
mkdir -p "$dir"
for ((r = 1; r <= rounds; r++)); do
	if ((r % 2)); then po=27000 pn=28000; else po=28000 pn=27000; fi
	start old "$old" $po ${OLD_FLAGS:-}
	start new "$new" $pn ${NEW_FLAGS:-}
	if ((regions > 1)); then
		split $po & s1=$!
		split $pn & s2=$!
		wait $s1 $s2
	fi
	for ((i = 0; i < ${PREFILL:-0}; i++)); do
		bench "$old_bench" $po 1 --count 1 --preload >/dev/null & s1=$!
		bench "$new_bench" $pn 1 --count 1 --preload >/dev/null & s2=$!
		wait $s1 $s2
	done
	# shellcheck disable=SC2086 # the *_BENCH_FLAGS are lists of flags
	{
		bench "$old_bench" $po 3 ${OLD_BENCH_FLAGS:-} >/dev/null & s1=$!
		bench "$new_bench" $pn 3 ${NEW_BENCH_FLAGS:-} >/dev/null & s2=$!
		wait $s1 $s2
		bench "$old_bench" $po "$duration" ${OLD_BENCH_FLAGS:-} >"$dir/old.out" & s1=$!
		bench "$new_bench" $pn "$duration" ${NEW_BENCH_FLAGS:-} >"$dir/new.out" & s2=$!
	}
	# CPU is sampled over the middle of the run, past the warm-up.
	sleep 1.5
	so=($(cat "$dir/old/store.pids")) sn=($(cat "$dir/new/store.pids"))
	bo=$(pgrep -f -- "--scheduler 127.0.0.1:$((po + 1)) --clients") bn=$(pgrep -f -- "--scheduler 127.0.0.1:$((pn + 1)) --clients")
	t0=($(ticks "${so[@]}") $(ticks "${sn[@]}") $(ticks $bo) $(ticks $bn))
	sleep $((duration - 2))
	t1=($(ticks "${so[@]}") $(ticks "${sn[@]}") $(ticks $bo) $(ticks $bn))
	wait $s1 $s2
	awk -v r="$r" -v o="$(cat "$dir/old.out")" -v n="$(cat "$dir/new.out")" -v t0="${t0[*]}" -v t1="${t1[*]}" \
		-v secs=$((duration - 2)) -v hz="$hz" 'BEGIN {
		split(t0, a); split(t1, b); for (i = 1; i <= 4; i++) us[i] = (b[i] - a[i]) / hz * 1e6 / secs
		printf "round %d: old %6d puts/s, CPU/put %5.1f µs stores + %4.1f client | new %6d puts/s, %5.1f + %4.1f µs | new/old %.3f\n",
			r, o, us[1] / o, us[3] / o, n, us[2] / n, us[4] / n, n / o }'
	cleanup
done
