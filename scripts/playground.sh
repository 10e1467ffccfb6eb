#!/usr/bin/env bash
# regionkv playground: a scheduler and three stores on loopback, as child
# processes in the foreground. It waits until the cluster is ready (the first
# region has three voters and a leader), prints the endpoints and commands to
# try, and runs until Ctrl-C, which stops every child gracefully.
#
# Data and logs live under $PLAYGROUND_DIR (default ./data/playground); run it
# again to restart the same cluster with its data. BIN (default bin) is where
# the binaries are (make playground builds them first).
set -euo pipefail

bin=${BIN:-bin}
dir=${PLAYGROUND_DIR:-data/playground}
ready_timeout=${PLAYGROUND_READY_TIMEOUT:-60s}

for b in regionkv-scheduler regionkv-server regionkv-ctl; do
	if [[ ! -x "$bin/$b" ]]; then
		echo "playground: $bin/$b not found; run 'make build' (or 'make playground')" >&2
		exit 1
	fi
done
mkdir -p "$dir"
if [[ -n "$(ls -A "$dir/scheduler" 2>/dev/null)" ]]; then
	echo "playground: reusing the cluster in $dir"
else
	echo "playground: starting a new cluster in $dir"
fi

pids=()
names=()
stopping=0
stop() {
	[[ $stopping == 1 ]] && return
	stopping=1
	trap - INT TERM
	echo
	echo "playground: stopping..."
	if [[ -n ${ready_pid:-} ]]; then
		kill "$ready_pid" 2>/dev/null || true
		wait "$ready_pid" 2>/dev/null || true
	fi
	# Stores first, then the scheduler: each gets SIGTERM and up to 20 s.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
		for _ in $(seq 200); do
			kill -0 "${pids[$i]}" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "playground: ${names[$i]} did not stop in 20s; killing it" >&2
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		wait "${pids[$i]}" 2>/dev/null || true
	done
	echo "playground: stopped; data and logs are in $dir"
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# Job control puts every child in its own process group, so that the
# terminal's Ctrl-C reaches only this script, which then stops the stores
# before the scheduler, each with SIGTERM.
set -m

start() { # name, command...
	local name=$1
	shift
	"$@" >>"$dir/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

start scheduler "$bin/regionkv-scheduler" --data-dir "$dir/scheduler"
for i in 0 1 2; do
	# Region heartbeats every second (default 10 s), so that operators
	# (regionkv-ctl operator add ...) take effect quickly.
	start "store$((i + 1))" "$bin/regionkv-server" --data-dir "$dir/store$((i + 1))" \
		--addr "127.0.0.1:2016$i" --status-addr "127.0.0.1:2018$i" \
		--scheduler 127.0.0.1:2379 --region-heartbeat-ticks 10
done

ctl="$bin/regionkv-ctl"
echo "playground: waiting for the cluster to be ready (up to $ready_timeout)..."
# In the background, so that Ctrl-C reaches this script (and its trap) at once.
"$ctl" health --wait --timeout "$ready_timeout" >"$dir/ready.txt" 2>&1 &
ready_pid=$!
if ! wait "$ready_pid"; then
	cat "$dir/ready.txt" >&2
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "playground: ${names[$i]} exited; the end of $dir/${names[$i]}.log:" >&2
			tail -n 15 "$dir/${names[$i]}.log" >&2
		fi
	done
	echo "playground: the cluster did not become ready (ports 2379-2390, 20160-20162, 20180-20182 in use?)" >&2
	exit 1
fi

cat <<MSG

regionkv playground is ready.

  scheduler  gRPC 127.0.0.1:2379   status and admin API http://127.0.0.1:2381/api/v1/stores
  store 1    gRPC 127.0.0.1:20160  status http://127.0.0.1:20180/status  /metrics  /debug/pprof/
  store 2    gRPC 127.0.0.1:20161  status http://127.0.0.1:20181/status
  store 3    gRPC 127.0.0.1:20162  status http://127.0.0.1:20182/status
  data and logs in $dir/

Try, in another terminal:

  $ctl put hello world
  $ctl get hello
  $ctl scan --limit 10
  $ctl region list
  $ctl store list
  $ctl operator add transfer-leader <region-id> <store-id> --wait
  $bin/regionkv-bench --workload mixed --duration 10s

  grpcurl -plaintext 127.0.0.1:20160 list
  grpcurl -plaintext 127.0.0.1:20160 describe regionkv.kvpb.Kv
  grpcurl -plaintext -d '{"key": "aGVsbG8=", "value": "d29ybGQ="}' 127.0.0.1:20161 regionkv.kvpb.Kv/RawPut
  grpcurl -plaintext -d '{"key": "aGVsbG8="}' 127.0.0.1:20162 regionkv.kvpb.Kv/RawGet

(grpcurl sends bytes as base64: aGVsbG8= is "hello". Any store answers; the
others forward to the leader.)

Ctrl-C stops the cluster.
MSG

# Run until Ctrl-C, or until a child exits on its own.
set +e
wait -n "${pids[@]}"
set -e
if [[ $stopping == 0 ]]; then
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "playground: ${names[$i]} exited unexpectedly; the end of $dir/${names[$i]}.log:" >&2
			tail -n 15 "$dir/${names[$i]}.log" >&2
		fi
	done
	exit 1
fi
