#!/usr/bin/env bash
# A scheduler and three stores on loopback, in the foreground; Ctrl-C stops
# them all (gracefully). Data and logs go under $PLAYGROUND_DIR (default
# ./playground) and survive restarts: run it again to restart the cluster.
set -euo pipefail

bin=${BIN:-bin}
dir=${PLAYGROUND_DIR:-playground}
mkdir -p "$dir"

pids=()
stop() {
	trap - INT TERM EXIT
	echo "stopping..."
	kill -TERM "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin/regionkv-scheduler" --data-dir "$dir/scheduler" >>"$dir/scheduler.log" 2>&1 &
pids+=($!)
for i in 0 1 2; do
	"$bin/regionkv-server" --data-dir "$dir/store$((i + 1))" \
		--addr "127.0.0.1:2016$i" --status-addr "127.0.0.1:2018$i" \
		--scheduler 127.0.0.1:2379 >>"$dir/store$((i + 1)).log" 2>&1 &
	pids+=($!)
done

cat <<MSG
regionkv playground: scheduler 127.0.0.1:2379 (status http://127.0.0.1:2381/api/v1/stores),
stores 127.0.0.1:20160-20162 (status http://127.0.0.1:20180/status ...); logs in $dir/.
Try (any store works; followers forward to the leader):
  grpcurl -plaintext -import-path proto -import-path \$(go env GOMODCACHE)/go.etcd.io/raft/v3@v3.6.0/raftpb \\
    -import-path \$(go env GOMODCACHE)/github.com/gogo/protobuf@v1.3.2 -proto regionkv/kvpb.proto \\
    -d '{"key":"aGVsbG8=","value":"d29ybGQ="}' 127.0.0.1:20161 regionkv.kvpb.Kv/RawPut
Ctrl-C stops the cluster.
MSG
wait "${pids[@]}"
