package raftstore

import (
	"sync/atomic"
	"time"
)

// Stats counts what the raft workers did; counters only grow. They answer
// the questions a benchmark raises: how many rounds, how many entries per
// fsync, how long the fsyncs and kv commits take.
type Stats struct {
	Rounds          uint64        // worker rounds that handled at least one peer
	ReadyPeers      uint64        // peers with a Ready, summed over rounds
	RaftSyncs       uint64        // raft log batch writes (each one fsync)
	RaftSyncTime    time.Duration // the whole write, the fdatasync included
	Fdatasyncs      uint64        // of the raft log's segments (engine.WriteRaft)
	FdatasyncTime   time.Duration
	EntriesAppended uint64        // log entries written to the raft log
	KVCommits       uint64        // kv-DB transactions of applied entries
	KVCommitTime    time.Duration // from handing each to Badger until it is written
	// KVSyncs are kv-DB syncs that let apply states be written: periodic,
	// before a split or conf change, and before the log GC (kv_sync.go).
	KVSyncs        uint64
	EntriesApplied uint64
	LocalReads     uint64 // reads answered from a leader lease (lease.go)
	// CommitAppendsHeld are a leader's commit-only appends held back, and
	// CommitAppendsDropped those of them a later append made needless
	// (held_appends.go).
	CommitAppendsHeld, CommitAppendsDropped uint64
}

// storeStats is the live form of Stats.
type storeStats struct {
	rounds, readyPeers                  atomic.Uint64
	raftSyncs, raftSyncNanos, entries   atomic.Uint64
	kvCommits, kvCommitNanos, appliedEn atomic.Uint64
	localReads, kvSyncs                 atomic.Uint64
	heldApps, droppedApps               atomic.Uint64
}

// Stats returns the store's raft worker counters.
func (s *Store) Stats() Stats {
	st := &s.stats
	syncs, syncTime := s.engines.Raft.SyncStats()
	return Stats{
		Fdatasyncs:      syncs,
		FdatasyncTime:   syncTime,
		Rounds:          st.rounds.Load(),
		ReadyPeers:      st.readyPeers.Load(),
		RaftSyncs:       st.raftSyncs.Load(),
		RaftSyncTime:    time.Duration(st.raftSyncNanos.Load()),
		EntriesAppended: st.entries.Load(),
		KVCommits:       st.kvCommits.Load(),
		KVCommitTime:    time.Duration(st.kvCommitNanos.Load()),
		EntriesApplied:  st.appliedEn.Load(),
		LocalReads:      st.localReads.Load(),
		KVSyncs:         st.kvSyncs.Load(),

		CommitAppendsHeld:    st.heldApps.Load(),
		CommitAppendsDropped: st.droppedApps.Load(),
	}
}
