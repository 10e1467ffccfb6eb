package raftstore

import (
	"errors"
	"fmt"
	"log/slog"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// Bootstrap and split-created peers start their log at this index and term,
// as in TiKV: the log is empty, the truncated state says (5, 5), and the
// ConfState comes from the region. Peers created from a message start empty.
const (
	RaftInitLogIndex = 5
	RaftInitLogTerm  = 5
)

// PeerStorage is one peer's raft.Storage: the raft log and RaftLocalState in
// the raft log engine, RaftApplyState in the kv DB, with the states cached in
// memory.
//
// It is owned by the raft worker that holds the peer's mailbox: raft calls it
// only from inside RawNode methods, and the peer updates it while handling a
// Ready. No locks.
//
// Invariants: truncated index <= applied index <= commit index <= last index.
type PeerStorage struct {
	engines *engine.Engines
	snaps   *snapManager
	// genq is the snapshot worker's queue; gen receives the snapshot being
	// generated, nil when none is.
	genq chan<- genTask
	gen  <-chan genResult
	log  *slog.Logger
	// region is the peer's region; replaced (never mutated) on change.
	region *metapb.Region
	// raftState mirrors what is durable in the raft log once the current
	// round's raft batch has been written.
	raftState  rspb.RaftLocalState
	applyState rspb.RaftApplyState
	// persistedApplied and persistedTruncated are the applied and
	// truncated indexes of the RaftApplyState last written to the kv DB. Raw
	// writes leave them behind until a checkpoint, ckpt, is written
	// (kv_sync.go); a restart applies the entries past them again.
	persistedApplied, persistedTruncated uint64
	ckpt                                 checkpoint
	cache                                entryCache
	// logSize estimates the bytes of the log past the truncated index, for
	// the log GC size limit. It restarts from 0 after a restart.
	logSize uint64
	tag     string
}

var _ raft.Storage = (*PeerStorage)(nil)

func newPeerStorage(s *Store, region *metapb.Region, tag string, log *slog.Logger) (*PeerStorage, error) {
	engines := s.engines
	ps := &PeerStorage{engines: engines, snaps: s.snaps, genq: s.genq, log: log, region: region, tag: tag}
	if _, err := engines.Raft.State(region.Id, &ps.raftState); err != nil {
		return nil, fmt.Errorf("%s: load raft state: %w", tag, err)
	}
	if ps.raftState.HardState == nil {
		ps.raftState.HardState = &raftpb.HardState{}
	}
	err := engine.GetMsg(engines.KV, engine.ApplyStateKey(region.Id), &ps.applyState)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return nil, fmt.Errorf("%s: load apply state: %w", tag, err)
	}
	if ps.applyState.TruncatedState == nil {
		ps.applyState.TruncatedState = &rspb.RaftTruncatedState{}
	}
	ps.notePersisted(&ps.applyState)
	// A split-created region has only its apply state at (5, 5) (written in
	// the parent's apply batch); its raft state starts there too, keeping the
	// term and vote of an uninitialized peer it may replace (a vote must
	// never be forgotten).
	if len(region.Peers) > 0 && ps.raftState.LastIndex < ps.applyState.TruncatedState.Index && ps.raftState.LastIndex == 0 {
		tr := ps.applyState.TruncatedState
		hs := ps.raftState.HardState
		ps.raftState.LastIndex, ps.raftState.LastTerm = tr.Index, tr.Term
		hs.Term = max(hs.Term, tr.Term)
		hs.Commit = max(hs.Commit, tr.Index)
	}
	// Commit-only HardState changes are not persisted (saveReadyState), so
	// the durable commit index may trail the applied index. Every applied
	// entry was committed, and is durable in the raft log (entries are
	// synced before they can be applied), so the commit index moves up.
	if hs := ps.raftState.HardState; ps.applyState.AppliedIndex > hs.Commit && ps.applyState.AppliedIndex <= ps.raftState.LastIndex {
		hs.Commit = ps.applyState.AppliedIndex
	}
	if err := ps.validate(); err != nil {
		return nil, err
	}
	return ps, nil
}

// validate checks the invariants between the persisted states. A violation
// means the data dir is corrupt (or was written by a buggy version); raft
// would panic on it later with a less helpful message.
func (ps *PeerStorage) validate() error {
	hs, ap, tr := ps.raftState.HardState, ps.applyState.AppliedIndex, ps.applyState.TruncatedState
	switch {
	case tr.Index > ap:
		return fmt.Errorf("%s: corrupt state: truncated index %d > applied index %d", ps.tag, tr.Index, ap)
	case ap > hs.Commit:
		return fmt.Errorf("%s: corrupt state: applied index %d > commit index %d and last index %d", ps.tag, ap, hs.Commit, ps.raftState.LastIndex)
	case hs.Commit > ps.raftState.LastIndex:
		return fmt.Errorf("%s: corrupt state: commit index %d > last index %d", ps.tag, hs.Commit, ps.raftState.LastIndex)
	case ps.raftState.LastIndex < tr.Index:
		return fmt.Errorf("%s: corrupt state: last index %d < truncated index %d", ps.tag, ps.raftState.LastIndex, tr.Index)
	}
	return nil
}

func (ps *PeerStorage) isInitialized() bool { return len(ps.region.Peers) > 0 }

// InitialState implements raft.Storage.
func (ps *PeerStorage) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	if !ps.isInitialized() {
		return raftpb.HardState{}, raftpb.ConfState{}, nil
	}
	return *ps.raftState.HardState, confStateFromRegion(ps.region), nil
}

func confStateFromRegion(region *metapb.Region) raftpb.ConfState {
	var cs raftpb.ConfState
	for _, p := range region.Peers {
		if p.Role == metapb.PeerRole_Learner {
			cs.Learners = append(cs.Learners, p.Id)
		} else {
			cs.Voters = append(cs.Voters, p.Id)
		}
	}
	return cs
}

func (ps *PeerStorage) truncatedIndex() uint64 { return ps.applyState.TruncatedState.Index }
func (ps *PeerStorage) truncatedTerm() uint64  { return ps.applyState.TruncatedState.Term }

// notePersisted records that st was written to the kv DB.
func (ps *PeerStorage) notePersisted(st *rspb.RaftApplyState) {
	ps.persistedApplied = st.AppliedIndex
	ps.persistedTruncated = st.TruncatedState.GetIndex()
}

func (ps *PeerStorage) appliedIndex() uint64 { return ps.applyState.AppliedIndex }

// FirstIndex implements raft.Storage.
func (ps *PeerStorage) FirstIndex() (uint64, error) { return ps.truncatedIndex() + 1, nil }

// LastIndex implements raft.Storage.
func (ps *PeerStorage) LastIndex() (uint64, error) { return ps.raftState.LastIndex, nil }

// Term implements raft.Storage. It answers for [FirstIndex()-1, LastIndex()].
func (ps *PeerStorage) Term(i uint64) (uint64, error) {
	switch {
	case i == ps.truncatedIndex():
		return ps.truncatedTerm(), nil
	case i < ps.truncatedIndex():
		return 0, raft.ErrCompacted
	case i > ps.raftState.LastIndex:
		return 0, raft.ErrUnavailable
	case i == ps.raftState.LastIndex:
		return ps.raftState.LastTerm, nil
	}
	if t, ok := ps.cache.term(i); ok {
		return t, nil
	}
	t, err := ps.engines.Raft.Term(ps.region.Id, i)
	if err != nil {
		// Entries past the truncated index up to the last index were
		// durable: the raft log lost data.
		panic(fmt.Sprintf("%s: raft log term of entry %d (truncated index %d, last index %d): %v",
			ps.tag, i, ps.truncatedIndex(), ps.raftState.LastIndex, err))
	}
	return t, nil
}

// Entries implements raft.Storage: it returns [lo, hi), at least one entry,
// and no more than maxSize bytes unless the first alone exceeds it (raft's
// limitSize rule). The returned slice is fresh.
func (ps *PeerStorage) Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	if lo <= ps.truncatedIndex() {
		return nil, raft.ErrCompacted
	}
	if hi > ps.raftState.LastIndex+1 || lo >= hi {
		// raft never asks for this; answering ErrUnavailable makes it panic
		// with a clear message, which is what a broken invariant deserves.
		return nil, raft.ErrUnavailable
	}
	if ents, ok := ps.cache.slice(lo, hi, maxSize); ok {
		return ents, nil
	}
	return ps.loadEntries(lo, hi, maxSize)
}

func (ps *PeerStorage) loadEntries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	ents, err := ps.engines.Raft.Entries(ps.region.Id, lo, hi, maxSize)
	if err != nil {
		// The entries past the truncated index up to the last index were
		// durable: the raft log lost data.
		panic(fmt.Sprintf("%s: raft log entries [%d, %d) (truncated index %d, last index %d): %v",
			ps.tag, lo, hi, ps.truncatedIndex(), ps.raftState.LastIndex, err))
	}
	return ents, nil // raftlog checked each entry's index and term
}

// appendEntries adds rd.Entries to the raft batch (they replace any persisted
// entries from the first on, a conflicting tail) and updates the cached last
// index and term.
func (ps *PeerStorage) appendEntries(wb *raftlog.Batch, ents []raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	ps.logSize += uint64(wb.Append(ps.region.Id, ents))
	last := ents[len(ents)-1]
	ps.raftState.LastIndex, ps.raftState.LastTerm = last.Index, last.Term
	ps.cache.append(ents)
}

// saveReadyState writes the raft side of a Ready into wb: entries, the
// conflicting tail deletion, HardState and RaftLocalState, all in one batch.
// It reports whether anything was written.
//
// A Ready that only moves the commit index (raft's MustSync is false) writes
// nothing: the raft log syncs every write, and that fsync would sit on every
// command's critical path twice more (leader and followers). The commit index
// is instead recovered on restart from the applied index, which can only be
// ahead of the durable commit index for entries that were committed (see
// newPeerStorage), as TiKV does with the commit index in its apply state.
func (ps *PeerStorage) saveReadyState(wb *raftlog.Batch, rd *raft.Ready) bool {
	if !raft.IsEmptyHardState(rd.HardState) {
		hs := rd.HardState
		ps.raftState.HardState = &hs
	}
	if !rd.MustSync && raft.IsEmptySnap(rd.Snapshot) {
		return false
	}
	ps.appendEntries(wb, rd.Entries)
	wb.SetState(ps.region.Id, &ps.raftState)
	return true
}

// initRaftState writes the initial raft and apply state of a bootstrapped or
// split-created region: an empty log truncated at (5, 5).
func initRaftState(raftWB *raftlog.Batch, kvWB *engine.WriteBatch, regionID uint64) {
	raftWB.SetState(regionID, &rspb.RaftLocalState{
		HardState: &raftpb.HardState{Term: RaftInitLogTerm, Commit: RaftInitLogIndex},
		LastIndex: RaftInitLogIndex,
		LastTerm:  RaftInitLogTerm,
	})
	kvWB.SetMsg(engine.ApplyStateKey(regionID), &rspb.RaftApplyState{
		AppliedIndex:   RaftInitLogIndex,
		TruncatedState: &rspb.RaftTruncatedState{Index: RaftInitLogIndex, Term: RaftInitLogTerm},
	})
}
