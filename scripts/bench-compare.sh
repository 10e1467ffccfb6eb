#!/usr/bin/env bash
# bench-compare: regionkv against etcd 3.6 on this machine, on loopback, one
# system after the other (twice, see below), and one table of ratios.
#
# 1. Builds etcd (server v3.6.16) and etcd's benchmark tool (v3.6.8) into
#    $BENCH_TOOLS_DIR if they are missing (from throwaway wrapper modules in
#    $BENCH_TOOLS_DIR/src/, through the Go module proxy; kept for reruns), and
#    the regionkv binaries into $BIN.
# 2. A 3-member etcd cluster: puts with 64 clients, with 1 client, and
#    linearizable reads of one key with 64 clients, all against the leader
#    (etcd's best case). Each etcd run is sized (--total) from a short
#    calibration run so that it lasts about $BENCH_DURATION.
# 3. A regionkv scheduler and 3 stores: the same puts on one region, the
#    linearizable gets (after a preload of $GET_KEYS keys), then the region
#    split into $BENCH_REGIONS at key boundaries and the 64-client puts again.
#
# Everything listens on 127.0.0.1, on ports from $BENCH_PORT_BASE (default
# 31000): etcd clients +1..+3, peers +11..+13; regionkv scheduler +21 (status
# +22, embedded etcd +23/+24), stores +31..+33 (status +41..+43). Data, logs,
# the raw outputs and results.json / results.md go to $BENCH_DIR (default
# data/bench-compare); each system's data is wiped before its run. The exit
# code is 0 if every run completed, whether or not the targets were met.
#
# The VM's speed drifts by tens of percent within minutes, and one system
# runs after the other, so one pass of each can favour either. By default
# ($BENCH_PASSES=2) each system runs twice, in the order etcd, regionkv,
# regionkv, etcd, on fresh data each time, and the table gives the mean of
# the two passes (a drift that is steady over the run cancels out); the
# notes list every pass. BENCH_PASSES=1 is the quick single pass. Later etcd
# passes reuse the first pass's --total.
set -euo pipefail

bin=${BIN:-bin}
tools=${BENCH_TOOLS_DIR:-bin/bench-compare}
dir=${BENCH_DIR:-data/bench-compare}
base=${BENCH_PORT_BASE:-31000}
clients=${BENCH_CLIENTS:-64}
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
key_size=${KEY_SIZE:-16}
value_size=${VALUE_SIZE:-256}
keys=${KEYS:-100000}
get_keys=${GET_KEYS:-10000}
regions=${BENCH_REGIONS:-16}
etcd_conns=${ETCD_CONNS:-1}
# regionkv-bench's connections per store: by default as many as etcd's
# benchmark gets, so that both tools multiplex their clients over one
# connection per server.
rkv_conns=${RKV_CONNS:-$etcd_conns}
# etcd --total per workload: BENCH_TOTAL_{PUT,SINGLE,GET}, or BENCH_TOTAL for
# all three; unset, each comes from a calibration run of about
# $BENCH_CALIBRATE_SECS at a guessed rate (BENCH_RATE_*).
total_all=${BENCH_TOTAL:-}
total_put=${BENCH_TOTAL_PUT:-$total_all}
total_single=${BENCH_TOTAL_SINGLE:-$total_all}
total_get=${BENCH_TOTAL_GET:-$total_all}
rate_put=${BENCH_RATE_PUT:-6000}
rate_single=${BENCH_RATE_SINGLE:-600}
rate_get=${BENCH_RATE_GET:-17000}
calibrate_secs=${BENCH_CALIBRATE_SECS:-2}
passes=${BENCH_PASSES:-2}
[[ $passes =~ ^[1-9][0-9]*$ ]] || { echo "bench-compare: BENCH_PASSES must be a positive number" >&2; exit 2; }
# Targets: regionkv/etcd throughput, and for one client regionkv's mean
# latency at most this many times etcd's (the targets of issue 7).
target_put=${TARGET_PUT:-1.5}
target_split=${TARGET_SPLIT:-2}
target_get=${TARGET_GET:-1.5}
target_single=${TARGET_SINGLE_LATENCY:-1.2}

etcd_server_module=go.etcd.io/etcd/server/v3
etcd_server_version=v3.6.16
etcd_bench_module=go.etcd.io/etcd/v3
etcd_bench_version=v3.6.8
etcd_bench_pkg=go.etcd.io/etcd/v3/tools/benchmark

log() { echo "bench-compare: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# dur_secs turns a Go duration (10s, 1m30s, 500ms) into seconds.
dur_secs() {
	awk -v d="$1" 'BEGIN {
		t = 0; s = d
		while (match(s, /^[0-9.]+(ms|s|m|h)/)) {
			tok = substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1)
			u = tok; sub(/^[0-9.]+/, "", u)
			t += (tok + 0) * (u == "ms" ? 0.001 : u == "s" ? 1 : u == "m" ? 60 : 3600)
		}
		if (s != "" || d == "") exit 1
		print t
	}'
}
dur_s=$(dur_secs "$duration") || die "BENCH_DURATION=$duration: want a Go duration, e.g. 10s"
dur_secs "$warmup" >/dev/null || die "BENCH_WARMUP=$warmup: want a Go duration, e.g. 2s"
for v in base clients key_size value_size keys get_keys regions etcd_conns rkv_conns calibrate_secs; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v=${!v}: want a positive integer"
done
((get_keys <= keys)) || die "GET_KEYS ($get_keys) must not exceed KEYS ($keys)"
# key returns regionkv-bench's i-th key: "k" and i zero-padded to KEY_SIZE.
key() { printf 'k%0*d' $((key_size - 1)) "$1"; }

# --- Tools -------------------------------------------------------------------

# build_tool name module version package out: go build the package from a
# wrapper module that requires module@version (go install refuses these).
build_tool() {
	local name=$1 module=$2 version=$3 pkg=$4 out=$5
	local src=$tools/src/$name
	log "building $pkg ($module@$version) into $out (about a minute the first time)..."
	mkdir -p "$src"
	if [[ ! -f $src/go.mod ]]; then
		printf 'module %s\n\ngo 1.26\n' "$name" >"$src/go.mod"
	fi
	printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$src/tools.go"
	(
		cd "$src"
		export GOFLAGS=-mod=mod GOWORK=off
		go get "$module@$version"
		go build -o "$out" "$pkg"
	) >"$src/build.log" 2>&1 || {
		tail -n 20 "$src/build.log" >&2
		die "building $pkg failed; the whole log is $src/build.log"
	}
}

mkdir -p "$tools" "$bin"
tools=$(cd "$tools" && pwd)
etcd_bin=$tools/etcd
bench_bin=$tools/etcd-benchmark
[[ -x $etcd_bin ]] || build_tool etcd "$etcd_server_module" "$etcd_server_version" "$etcd_server_module" "$etcd_bin"
[[ -x $bench_bin ]] || build_tool etcd-benchmark "$etcd_bench_module" "$etcd_bench_version" "$etcd_bench_pkg" "$bench_bin"
log "building regionkv into $bin/..."
go build -o "$bin/" ./cmd/regionkv-server ./cmd/regionkv-scheduler ./cmd/regionkv-ctl ./cmd/regionkv-bench

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
raw=$dir/raw
rm -rf "$raw" "$dir/results.json" "$dir/results.md"
mkdir -p "$raw"

# --- Processes ---------------------------------------------------------------

pids=()
names=()
logs=()
stopping=0

# start name logfile command...: a server in the background, in its own
# process group, so that Ctrl-C reaches only this script (which stops it).
start() {
	local name=$1 logfile=$2
	shift 2
	set -m
	"$@" >>"$logfile" 2>&1 &
	pids+=($!)
	set +m
	names+=("$name")
	logs+=("$logfile")
}

# stop_all stops every server started, the last first: SIGTERM, up to 20 s,
# then SIGKILL.
stop_all() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
		for _ in $(seq 200); do
			kill -0 "${pids[$i]}" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			log "${names[$i]} did not stop in 20s; killing it"
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		wait "${pids[$i]}" 2>/dev/null || true
	done
	pids=()
	names=()
	logs=()
}

# check_alive fails, with the end of its log, if a server has exited.
check_alive() {
	local i
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			log "${names[$i]} exited; the end of ${logs[$i]}:"
			tail -n 15 "${logs[$i]}" >&2
			die "a server exited (ports $((base + 1))-$((base + 43)) in use? BENCH_PORT_BASE moves them)"
		fi
	done
}

cleanup() {
	[[ $stopping == 1 ]] && return
	stopping=1
	trap - INT TERM
	if ((${#pids[@]} > 0)); then
		log "stopping the servers..."
		stop_all
	fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

# --- Machine -----------------------------------------------------------------

machine_cpus=$(nproc)
machine_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
machine_kernel=$(uname -sr)
machine_fs=$(df -T "$dir" | awk 'NR == 2 {print $2 " (" $1 ", mounted on " $7 ")"}')
machine_mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || true)
ver_go=$(go env GOVERSION)
ver_etcd=$("$etcd_bin" --version | awk '/^etcd Version/ {print $3}')
ver_regionkv="$("$bin/regionkv-server" --version 2>&1 | head -n 1)"
ver_git=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	ver_git+="+dirty"
fi

# --- etcd --------------------------------------------------------------------

# etcd_stats file: "ops/s mean_ms p50_ms p99_ms" from a benchmark report.
etcd_stats() {
	awk '
		/Requests\/sec:/ {ops = $2}
		/Average:/ {mean = $2 * 1000}
		$1 == "50%" && $2 == "in" {p50 = $3 * 1000}
		$1 == "99%" && $2 == "in" {p99 = $3 * 1000}
		END {
			if (ops == "") exit 1
			printf "%.1f %.3f %.3f %.3f\n", ops, mean, p50, p99
		}' "$1"
}

# etcd_bench name total args...: one benchmark run against the leader, its
# report in $raw/etcd-<name>.txt.
etcd_bench() {
	local name=$1 total=$2
	shift 2
	local out=$raw/etcd-$name.txt
	"$bench_bin" --endpoints "$etcd_leader" --conns "$etcd_conns" --precise "$@" --total "$total" >"$out" 2>&1 ||
		{
			tail -n 20 "$out" >&2
			die "etcd benchmark $name failed (see $out)"
		}
	grep -q "Error distribution" "$out" && log "etcd benchmark $name had errors (see $out)"
	etcd_stats "$out" >/dev/null || die "no Requests/sec in $out"
}

# etcd_run name rate-guess total args...: sizes --total from a calibration
# run (unless total is given) so that the run lasts about BENCH_DURATION,
# then runs it. The figures are in the global stats.
etcd_run() {
	local name=$1 guess=$2 total=$3
	shift 3
	if [[ -z $total ]]; then
		etcd_bench "$name-calibrate" $((guess * calibrate_secs)) "$@"
		local rate
		rate=$(etcd_stats "$raw/etcd-$name-calibrate.txt" | awk '{print $1}')
		total=$(awk -v r="$rate" -v d="$dur_s" 'BEGIN {n = int(r * d); print (n < 1 ? 1 : n)}')
	fi
	log "etcd $name: --total $total"
	run_total=$total
	etcd_bench "$name" "$total" "$@"
	stats=$(etcd_stats "$raw/etcd-$name.txt")
	log "etcd $name: $(echo "$stats" | awk '{printf "%.0f ops/s, p50 %.2f ms, p99 %.2f ms", $1, $3, $4}')"
}

# etcd_pass: one pass over etcd (a fresh 3-member cluster, its three
# runs, stopped); the figures are appended to all_e_put, all_e_single and
# all_e_get.
etcd_pass() {
	etcd_dir=$dir/etcd
	rm -rf "$etcd_dir"
	mkdir -p "$etcd_dir"
	cluster=""
	for i in 1 2 3; do
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$((base + 10 + i))"
	done
	log "etcd $ver_etcd: 3 members on 127.0.0.1:$((base + 1))-$((base + 3)), data in $etcd_dir"
	for i in 1 2 3; do
		c=http://127.0.0.1:$((base + i))
		p=http://127.0.0.1:$((base + 10 + i))
		start "etcd e$i" "$etcd_dir/e$i.log" "$etcd_bin" --name "e$i" --data-dir "$etcd_dir/e$i" \
			--listen-client-urls "$c" --advertise-client-urls "$c" \
			--listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
			--initial-cluster "$cluster" --initial-cluster-state new \
			--log-level error --quota-backend-bytes 8589934592
	done
	etcd_leader=""
	for _ in $(seq 120); do
		check_alive
		healthy=0
		for i in 1 2 3; do
			if curl -s --max-time 2 "http://127.0.0.1:$((base + i))/health" | grep '"health":"true"' >/dev/null; then
				healthy=$((healthy + 1))
			fi
		done
		if ((healthy == 3)); then
			for i in 1 2 3; do
				if curl -s --max-time 2 "http://127.0.0.1:$((base + i))/metrics" | grep '^etcd_server_is_leader 1' >/dev/null; then
					etcd_leader=127.0.0.1:$((base + i))
				fi
			done
			[[ -n $etcd_leader ]] && break
		fi
		sleep 0.5
	done
	[[ -n $etcd_leader ]] || die "the etcd cluster did not become healthy in 60s (logs in $etcd_dir)"
	log "etcd is healthy; the leader is $etcd_leader"

	put_args=(put --key-size "$key_size" --val-size "$value_size" --key-space-size "$keys")
	etcd_run "put64$sfx" "$rate_put" "$total_put" --clients "$clients" "${put_args[@]}"
	all_e_put+=("$stats") total_put=$run_total
	etcd_run "put1$sfx" "$rate_single" "$total_single" --clients 1 "${put_args[@]}"
	all_e_single+=("$stats") total_single=$run_total
	# The key the reads get, written through etcd's JSON gateway (the benchmark's
	# own put writes binary keys).
	get_key=$(key 0)
	b64() { printf '%s' "$1" | base64 | tr -d '\n'; }
	value=$(printf '%*s' "$value_size" '' | tr ' ' v)
	curl -sf --max-time 10 -X POST "http://$etcd_leader/v3/kv/put" \
		-d "{\"key\":\"$(b64 "$get_key")\",\"value\":\"$(b64 "$value")\"}" >"$raw/etcd-get-key-put$sfx.json" ||
		die "could not put $get_key into etcd"
	etcd_run "get64$sfx" "$rate_get" "$total_get" --clients "$clients" range "$get_key" --consistency l
	all_e_get+=("$stats") total_get=$run_total
	log "stopping etcd..."
	stop_all
}

# --- regionkv ----------------------------------------------------------------

# json_get file block key: a number from regionkv-bench --json output; block
# is "" (top level), "errors" or "all" (latency of all operations).
json_get() {
	awk -v blk="$2" -v k="\"$3\":" '
		blk == "" && /^  "/ && $1 == k {v = $2; sub(/,$/, "", v); print v; exit}
		blk != "" && ($0 ~ "^  \"" blk "\": \\{" || $0 ~ "^    \"" blk "\": \\{") {inb = 1; next}
		inb && /^ *\}/ {exit}
		inb && $1 == k {v = $2; sub(/,$/, "", v); print v; exit}' "$1"
}

# rkv_run name args...: one regionkv-bench run; the figures ("ops/s mean_ms
# p50_ms p99_ms") are in the global stats.
rkv_run() {
	local name=$1
	shift
	local out=$raw/regionkv-$name.json
	log "regionkv $name..."
	local code=0
	"$bin/regionkv-bench" --scheduler "$sched" --clients "$clients" --duration "$duration" --warmup "$warmup" \
		--key-size "$key_size" --value-size "$value_size" --conns "$rkv_conns" --json "$@" >"$out" 2>"$raw/regionkv-$name.stderr" || code=$?
	local ops
	ops=$(json_get "$out" "" ops_per_s)
	if [[ -z $ops ]]; then
		tail -n 20 "$raw/regionkv-$name.stderr" >&2
		check_alive
		die "regionkv-bench $name failed (exit $code; see $raw/regionkv-$name.stderr)"
	fi
	local errs
	errs=$(json_get "$out" errors total)
	if [[ $errs != 0 ]]; then
		log "regionkv $name: $errs operations failed (see $out)"
		rkv_errors+=("$name: $errs failed")
	fi
	stats=$(awk -v o="$ops" -v m="$(json_get "$out" all mean_us)" -v a="$(json_get "$out" all p50_us)" \
		-v b="$(json_get "$out" all p99_us)" 'BEGIN {printf "%.1f %.3f %.3f %.3f\n", o, m / 1000, a / 1000, b / 1000}')
	log "regionkv $name: $(echo "$stats" | awk '{printf "%.0f ops/s, p50 %.2f ms, p99 %.2f ms", $1, $3, $4}')"
}
rkv_errors=()

# rkv_pass: one pass over regionkv (a fresh scheduler and 3 stores, its
# runs, stopped); the figures are appended to all_r_put, all_r_single,
# all_r_get and all_r_split.
rkv_pass() {
	rkv_dir=$dir/regionkv
	rm -rf "$rkv_dir"
	mkdir -p "$rkv_dir"
	sched=127.0.0.1:$((base + 21))
	ctl=("$bin/regionkv-ctl" --scheduler "$sched")
	log "regionkv ($ver_regionkv, $ver_git): a scheduler on $sched and 3 stores on 127.0.0.1:$((base + 31))-$((base + 33)), data in $rkv_dir"
	start scheduler "$rkv_dir/scheduler.log" "$bin/regionkv-scheduler" --data-dir "$rkv_dir/scheduler" \
		--addr "$sched" --status-addr "127.0.0.1:$((base + 22))" \
		--etcd-client-url "http://127.0.0.1:$((base + 23))" --etcd-peer-url "http://127.0.0.1:$((base + 24))"
	for i in 1 2 3; do
		# Region heartbeats every second (as in the playground), so that the
		# scheduler sees the splits quickly.
		start "store$i" "$rkv_dir/store$i.log" "$bin/regionkv-server" --data-dir "$rkv_dir/store$i" \
			--addr "127.0.0.1:$((base + 30 + i))" --status-addr "127.0.0.1:$((base + 40 + i))" \
			--scheduler "$sched" --region-heartbeat-ticks 10
	done
	if ! "${ctl[@]}" health --wait --timeout 60s >"$raw/regionkv-health$sfx.txt" 2>&1; then
		cat "$raw/regionkv-health$sfx.txt" >&2
		check_alive
		die "the regionkv cluster did not become ready in 60s (logs in $rkv_dir)"
	fi
	log "regionkv is ready"

	rkv_run "put64-1region$sfx" --workload put --keys "$keys"
	all_r_put+=("$stats")
	rkv_run "put1$sfx" --workload put --keys "$keys" --clients 1
	all_r_single+=("$stats")
	rkv_run "get64$sfx" --workload get --keys "$get_keys" --preload
	all_r_get+=("$stats")

	# Split the one region into $regions at keys i*KEYS/regions: each split
	# splits the region that holds its key, at that key.
	log "splitting into $regions regions..."
	BIN=$bin "$(dirname "$0")/split-regions.sh" "$sched" "$regions" "$keys" "$key_size" >"$raw/regionkv-regions$sfx.txt" ||
		die "splitting into $regions regions failed"
	log "$regions regions, each with a leader (leaders per store: $(awk 'NR > 1 {split($6, a, "@"); n[a[2]]++} END {for (s in n) printf "%s%s:%d", (c++ ? " " : ""), s, n[s]}' "$raw/regionkv-regions$sfx.txt"))"
	rkv_run "put64-${regions}regions$sfx" --workload put --keys "$keys"
	all_r_split+=("$stats")
	log "stopping regionkv..."
	stop_all
}

# --- Passes ------------------------------------------------------------------

all_e_put=() all_e_single=() all_e_get=() all_r_put=() all_r_single=() all_r_get=() all_r_split=()
order=()
for ((pass = 1; pass <= passes; pass++)); do
	# Raw outputs of a pass after the first are suffixed -pN.
	sfx=""
	((pass > 1)) && sfx=-p$pass
	if ((pass % 2 == 1)); then
		log "pass $pass of $passes: etcd, then regionkv"
		etcd_pass
		rkv_pass
		order+=(etcd regionkv)
	else
		log "pass $pass of $passes: regionkv, then etcd"
		rkv_pass
		etcd_pass
		order+=(regionkv etcd)
	fi
done

# mean_stats stats...: the column means of "ops mean p50 p99" lines.
mean_stats() {
	printf '%s\n' "$@" | awk '{for (i = 1; i <= 4; i++) s[i] += $i; n++}
		END {printf "%.1f %.3f %.3f %.3f\n", s[1] / n, s[2] / n, s[3] / n, s[4] / n}'
}
# each_ops stats...: the ops/s of each pass, "a / b / ...".
each_ops() {
	printf '%s\n' "$@" | awk '{printf "%s%.0f", (NR > 1 ? " / " : ""), $1}'
}
passes_note="passes (${order[*]}): etcd put $(each_ops "${all_e_put[@]}"), get $(each_ops "${all_e_get[@]}"), 1 client $(each_ops "${all_e_single[@]}") ops/s; regionkv put $(each_ops "${all_r_put[@]}"), $regions regions $(each_ops "${all_r_split[@]}"), get $(each_ops "${all_r_get[@]}"), 1 client $(each_ops "${all_r_single[@]}") ops/s."
e_put=$(mean_stats "${all_e_put[@]}") e_single=$(mean_stats "${all_e_single[@]}") e_get=$(mean_stats "${all_e_get[@]}")
r_put=$(mean_stats "${all_r_put[@]}") r_single=$(mean_stats "${all_r_single[@]}") r_get=$(mean_stats "${all_r_get[@]}")
r_split=$(mean_stats "${all_r_split[@]}")

# --- Report ------------------------------------------------------------------

f() { echo "$1" | awk -v i="$2" '{print $i}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f/%.2f", a, b}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
ok() { # value target: ok if value >= target, - without a target
	[[ -z $2 ]] && { echo -; return; }
	awk -v v="$1" -v t="$2" 'BEGIN {print (v + 0 >= t + 0 ? "ok" : "MISS")}'
}

rows=() # name|etcd ops|regionkv ops|ratio|target|result|etcd ms|regionkv ms|etcd ops num
add_row() {
	rows+=("$1|$2|$3|$4|$5|$6|$7|$8|$9")
}
row_tp() { # name estats rstats target [etcd ops label]
	local r
	r=$(ratio "$(f "$3" 1)" "$(f "$2" 1)")
	add_row "$1" "$(printf '%.0f' "$(f "$2" 1)")${5:+ $5}" "$(printf '%.0f' "$(f "$3" 1)")" "${r}x" \
		"${4:+>=${4}x}" "$(ok "$r" "$4")" "$(ms "$(f "$2" 3)" "$(f "$2" 4)")" "$(ms "$(f "$3" 3)" "$(f "$3" 4)")" "$r"
}
row_tp "put $clients clients, 1 region" "$e_put" "$r_put" "$target_put"
row_tp "put $clients clients, $regions regions" "$e_put" "$r_split" "$target_split" "(W1)"
row_tp "linearizable get $clients clients" "$e_get" "$r_get" "$target_get"
# One client: the ratio of mean latencies, etcd/regionkv; the target is
# regionkv's at most target_single times etcd's.
lr=$(ratio "$(f "$e_single" 2)" "$(f "$r_single" 2)")
lok=$(awk -v e="$(f "$e_single" 2)" -v r="$(f "$r_single" 2)" -v t="$target_single" 'BEGIN {print (r <= e * t ? "ok" : "MISS")}')
add_row "put 1 client (mean latency)" "$(printf '%.0f' "$(f "$e_single" 1)")" "$(printf '%.0f' "$(f "$r_single" 1)")" \
	"${lr}x" "lat<=${target_single}x" "$lok" "$(ms "$(f "$e_single" 3)" "$(f "$e_single" 4)")" \
	"$(ms "$(f "$r_single" 3)" "$(f "$r_single" 4)")" "$lr"

header=(workload "etcd ops/s" "regionkv ops/s" ratio target result "etcd p50/p99 ms" "regionkv p50/p99 ms")
fmt='%-34s %14s %14s %7s %11s %6s %16s %20s\n'
notes=(
	"ratio: regionkv/etcd ops/s; for 1 client, etcd/regionkv mean latency ($(f "$e_single" 2) ms / $(f "$r_single" 2) ms)."
	"etcd: 3 members, the benchmark (--conns $etcd_conns) against the leader only; gets are of one key, --consistency l."
	"regionkv: 3 stores, the bench with --conns $rkv_conns per store; runs of $duration after a $warmup warm-up; gets on 1 region over $get_keys keys (preloaded, GET_KEYS), puts over $keys keys."
	"keys $key_size B, values $value_size B; both systems' data in $dir."
	"$passes_note"
)
[[ ${#rkv_errors[@]} -gt 0 ]] && notes+=("regionkv-bench errors: ${rkv_errors[*]}.")
machine="$machine_cpus CPUs, ${machine_model:-unknown CPU}, $machine_mem, $machine_kernel, $machine_fs"
versions="etcd $ver_etcd (benchmark $etcd_bench_module $etcd_bench_version), regionkv $ver_git ($ver_regionkv), $ver_go"

{
	echo
	echo "machine:  $machine"
	echo "versions: $versions"
	echo
	# shellcheck disable=SC2059
	printf "$fmt" "${header[@]}"
	for r in "${rows[@]}"; do
		IFS='|' read -r -a c <<<"$r"
		# shellcheck disable=SC2059
		printf "$fmt" "${c[0]}" "${c[1]}" "${c[2]}" "${c[3]}" "${c[4]:--}" "${c[5]}" "${c[6]}" "${c[7]}"
	done
	echo
	printf '%s\n' "${notes[@]}"
	echo "raw outputs, results.json and results.md: $dir"
}

{
	echo "# regionkv vs etcd"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ). Machine: $machine. Versions: $versions."
	echo
	echo "| ${header[0]} | ${header[1]} | ${header[2]} | ${header[3]} | ${header[4]} | ${header[5]} | ${header[6]} | ${header[7]} |"
	echo "|---|--:|--:|--:|--:|---|--:|--:|"
	for r in "${rows[@]}"; do
		IFS='|' read -r -a c <<<"$r"
		echo "| ${c[0]} | ${c[1]} | ${c[2]} | ${c[3]} | ${c[4]:--} | ${c[5]} | ${c[6]} | ${c[7]} |"
	done
	echo
	printf -- '- %s\n' "${notes[@]}"
} >"$dir/results.md"

js() { # a JSON string
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}
jstats() { # "ops mean p50 p99" as a JSON object
	echo "$1" | awk '{printf "{\"ops_per_s\": %s, \"mean_ms\": %s, \"p50_ms\": %s, \"p99_ms\": %s}", $1, $2, $3, $4}'
}
jrow() { # name etcd-stats regionkv-stats row
	local c
	IFS='|' read -r -a c <<<"$4"
	printf '    {"workload": %s, "etcd": %s, "regionkv": %s, "ratio": %s, "target": %s, "result": %s}' \
		"$(js "$1")" "$(jstats "$2")" "$(jstats "$3")" "${c[8]}" "$(js "${c[4]}")" "$(js "${c[5]}")"
}
{
	echo "{"
	echo "  \"time\": $(js "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),"
	echo "  \"machine\": {\"cpus\": $machine_cpus, \"model\": $(js "$machine_model"), \"memory\": $(js "$machine_mem"), \"kernel\": $(js "$machine_kernel"), \"filesystem\": $(js "$machine_fs")},"
	echo "  \"versions\": {\"etcd\": $(js "$ver_etcd"), \"etcd_benchmark\": $(js "$etcd_bench_module $etcd_bench_version"), \"regionkv\": $(js "$ver_git $ver_regionkv"), \"go\": $(js "$ver_go")},"
	echo "  \"settings\": {\"clients\": $clients, \"duration\": $(js "$duration"), \"warmup\": $(js "$warmup"), \"key_size\": $key_size, \"value_size\": $value_size, \"keys\": $keys, \"get_keys\": $get_keys, \"regions\": $regions, \"etcd_conns\": $etcd_conns, \"rkv_conns\": $rkv_conns, \"passes\": $passes, \"order\": $(js "${order[*]}")},"
	echo "  \"ratio\": \"regionkv/etcd ops/s; for put1, etcd/regionkv mean latency\","
	echo "  \"results\": ["
	jrow "put${clients}-1region" "$e_put" "$r_put" "${rows[0]}"
	echo ","
	jrow "put${clients}-${regions}regions" "$e_put" "$r_split" "${rows[1]}"
	echo ","
	jrow "get${clients}" "$e_get" "$r_get" "${rows[2]}"
	echo ","
	jrow put1 "$e_single" "$r_single" "${rows[3]}"
	echo
	echo "  ]"
	echo "}"
} >"$dir/results.json"
