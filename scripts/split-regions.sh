#!/usr/bin/env bash
# split-regions: split a fresh cluster's one region into REGIONS at the keys
# regionkv-bench writes, and wait until every region has a leader.
#
#   scripts/split-regions.sh SCHEDULER REGIONS KEYS [KEY_SIZE]
#
# The i-th split is at bench key i*KEYS/REGIONS ("k" and the number
# zero-padded to KEY_SIZE, default 16 bytes) and splits the region holding
# it. On success it prints `regionkv-ctl region list` (LEADER is column 6);
# on failure it says why on stderr and exits 1. regionkv-ctl comes from $BIN.
# Used by bench-compare.sh and ab.sh.
set -euo pipefail

[[ $# -ge 3 ]] || { sed -n '2,/^set -e/p' "$0" | sed -n 's/^# \{0,1\}//p' >&2; exit 2; }
ctl=("${BIN:-bin}/regionkv-ctl" --scheduler "$1")
regions=$2 keys=$3 key_size=${4:-16}

for ((i = 1; i < regions; i++)); do
	k=$(printf 'k%0*d' $((key_size - 1)) $((i * keys / regions)))
	id=$("${ctl[@]}" region key "$k" | awk '$1 == "id:" {print $2; exit}')
	[[ -n $id ]] || { echo "split-regions: no region holds $k" >&2; exit 1; }
	# A region a split just made has no leader the scheduler knows of until
	# its first heartbeat: retry for a while.
	for try in $(seq 60); do
		out=$("${ctl[@]}" --timeout 30s operator add split-region "$id" "$k" --wait 2>&1) && break
		((try < 60)) || { echo "$out" | tail -n 5 >&2; echo "split-regions: splitting region $id at $k failed" >&2; exit 1; }
		sleep 0.5
	done
done
for _ in $(seq 120); do
	# One row per region after the header; LEADER (column 6) is ? until known.
	if list=$("${ctl[@]}" region list 2>&1) &&
		awk -v n="$regions" 'NR > 1 {r++; if ($6 == "?") bad++} END {exit !(r == n && !bad)}' <<<"$list"; then
		echo "$list"
		exit 0
	fi
	sleep 0.5
done
echo "$list" >&2
echo "split-regions: the $regions regions did not all show a leader in 60s" >&2
exit 1
