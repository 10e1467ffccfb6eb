// Package engine owns a store's two Badger databases and the layout of every
// key regionkv writes into them.
//
// A store keeps two DBs under its data directory:
//
//   - raft/ holds each region's raft log and RaftLocalState. It is opened with
//     SyncWrites, so a committed batch is durable when Commit returns.
//   - kv/ holds user data, RaftApplyState, RegionLocalState and the StoreIdent.
//     It is not synced on every write: it can always be rebuilt from the raft
//     log, as long as the log is never truncated past a durable applied index.
//
// Keys (big-endian u64 ids and indexes):
//
//	raft log entry   0x01 0x02 region_id 0x01 log_idx   raft DB
//	raft state       0x01 0x02 region_id 0x02           raft DB
//	apply state      0x01 0x02 region_id 0x03           kv DB
//	region state     0x01 0x03 region_id 0x01           kv DB
//	store ident      0x01 0x01                          kv DB
//	user data        'z' cf_byte user_key               kv DB
//
// Local keys (0x01...) sort below every data key ('z'...), so a scan of user
// data never meets metadata.
package engine
