// Package engine owns a store's two engines and the layout of every key
// regionkv writes into its kv DB.
//
// A store keeps, under its data directory:
//
//   - raftlog/: each region's raft log and RaftLocalState, in the raft log
//     engine (package raftlog). Every WriteRaft is durable when it returns.
//   - kv/: a Badger DB with user data, RaftApplyState, RegionLocalState and
//     the StoreIdent. It is not synced on every write: it can always be
//     rebuilt from the raft log, as long as the log is never truncated past
//     a durable applied index.
//
// Keys of the kv DB (big-endian u64 ids and indexes):
//
//	apply state      0x01 0x02 region_id 0x03
//	region state     0x01 0x03 region_id 0x01
//	store ident      0x01 0x01
//	user data        'z' cf_byte user_key
//
// Local keys (0x01...) sort below every data key ('z'...), so a scan of user
// data never meets metadata. RaftLogKey and RaftStateKey are the keys of the
// raft DB of earlier versions (a Badger DB in raft/), which Open imports into
// the raft log:
//
//	raft log entry   0x01 0x02 region_id 0x01 log_idx
//	raft state       0x01 0x02 region_id 0x02
package engine
