package raftstore

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// genTask asks the snapshot worker to write a region's data into snapshot
// files. txn was opened on the raft worker at the moment the peer had applied
// exactly key.Index, so the files match the snapshot's metadata.
type genTask struct {
	key    SnapKey
	region *metapb.Region
	txn    *badger.Txn
	result chan<- genResult // capacity 1
}

type genResult struct {
	snap raftpb.Snapshot
	err  error
}

// Snapshot implements raft.Storage. The first call schedules generation in
// the background and, like every call until the files are ready, answers
// ErrSnapshotTemporarilyUnavailable (raft then retries later). It never
// returns another error: raft panics on any.
func (ps *PeerStorage) Snapshot() (raftpb.Snapshot, error) {
	if ps.gen != nil {
		select {
		case r := <-ps.gen:
			ps.gen = nil
			if r.err == nil && r.snap.Metadata.Index >= ps.truncatedIndex() {
				return r.snap, nil
			}
			if r.err != nil {
				ps.log.Warn("snapshot generation failed; retrying", "err", r.err)
			} else {
				ps.snaps.remove("gen", SnapKey{ps.region.Id, r.snap.Metadata.Term, r.snap.Metadata.Index})
			}
		default:
			return raftpb.Snapshot{}, raft.ErrSnapshotTemporarilyUnavailable
		}
	}
	ps.scheduleGen()
	return raftpb.Snapshot{}, raft.ErrSnapshotTemporarilyUnavailable
}

func (ps *PeerStorage) scheduleGen() {
	if ps.genq == nil {
		return
	}
	applied := ps.appliedIndex()
	term, err := ps.Term(applied)
	if err != nil {
		ps.log.Warn("no term for the applied index; snapshot postponed", "applied", applied, "err", err)
		return
	}
	result := make(chan genResult, 1)
	task := genTask{
		key:    SnapKey{RegionID: ps.region.Id, Term: term, Index: applied},
		region: ps.region,
		txn:    ps.engines.KV.NewTransaction(false),
		result: result,
	}
	select {
	case ps.genq <- task:
		ps.gen = result
	default:
		task.txn.Discard() // the worker is saturated; raft will ask again
	}
}

// runGen builds the snapshot of a genTask; it runs on the snapshot worker.
// It also returns the size of the snapshot's files.
func (m *snapManager) runGen(t genTask) (genResult, uint64) {
	defer t.txn.Discard()
	data, err := m.buildSnapshot(t.txn, t.key, t.region)
	if err != nil {
		return genResult{err: err}, 0
	}
	raw, err := data.Marshal()
	if err != nil {
		return genResult{err: err}, 0
	}
	return genResult{snap: raftpb.Snapshot{
		Data: raw,
		Metadata: raftpb.SnapshotMetadata{
			Index:     t.key.Index,
			Term:      t.key.Term,
			ConfState: confStateFromRegion(t.region),
		},
	}}, data.FileSize
}

// pendingSnapshot is a snapshot raft handed over in this round's Ready.
type pendingSnapshot struct {
	key  SnapKey
	data *rspb.RaftSnapshotData
}

func snapKeyOf(regionID uint64, s *raftpb.Snapshot) SnapKey {
	return SnapKey{RegionID: regionID, Term: s.Metadata.Term, Index: s.Metadata.Index}
}

// prepareSnapshot is the first half of applying a snapshot, in phase 1 of the
// round. It durably marks the region Applying (with the snapshot's
// description, so a restart can finish the job) and puts the raft state at
// the snapshot, with the old log deleted, into the round's raft batch.
func (p *peer) prepareSnapshot(snap *raftpb.Snapshot, raftWB *raftlog.Batch) {
	p.endLease(0) // only followers take snapshots; to be sure
	ps := p.ps
	var data rspb.RaftSnapshotData
	if err := data.Unmarshal(snap.Data); err != nil {
		// validateSnapshot accepted it, so this is memory corruption.
		panic(fmt.Sprintf("%s: undecodable snapshot data: %v", ps.tag, err))
	}
	key := snapKeyOf(ps.region.Id, snap)
	oldLast := ps.raftState.LastIndex

	ps.applyState.AppliedIndex = key.Index
	ps.applyState.TruncatedState = &rspb.RaftTruncatedState{Index: key.Index, Term: key.Term}
	var kvWB engine.WriteBatch
	kvWB.SetMsg(engine.RegionStateKey(ps.region.Id), &rspb.RegionLocalState{
		State: rspb.PeerState_Applying, Region: data.Region, ApplyingSnapshot: &data,
	})
	kvWB.SetMsg(engine.ApplyStateKey(ps.region.Id), &ps.applyState)
	if err := kvWB.Commit(ps.engines.KV); err != nil {
		fatalf("%s: mark snapshot %s applying: %v", ps.tag, key, err)
	}
	ps.notePersisted(&ps.applyState)
	if err := ps.engines.SyncKV(); err != nil {
		fatalf("%s: %v", ps.tag, err)
	}
	if p.store.cfg.failPoint("snapshot-after-mark") {
		// A crash here leaves the region Applying with the raft state
		// before the snapshot: recoverApplyingSnapshot moves it.
		p.log.Warn("fail point: stopping dead after marking a snapshot applying", "snapshot", key)
		p.dead = true
		return
	}

	raftWB.DeleteTo(ps.region.Id, max(oldLast, key.Index)+1)
	ps.raftState.LastIndex, ps.raftState.LastTerm = key.Index, key.Term
	ps.cache.reset()
	ps.logSize = 0
	p.pendingSnap = &pendingSnapshot{key: key, data: &data}
}

// finishSnapshot is the second half, in phase 2 once the raft state is
// durable: it replaces the region's data with the snapshot's and flips the
// region to Normal.
func (p *peer) finishSnapshot() {
	snap := p.pendingSnap
	p.pendingSnap = nil
	err := applySnapshotData(p.store.engines, p.store.snaps, snap.key, snap.data, p.region(), func() bool {
		return p.store.cfg.failPoint("snapshot-after-clear")
	})
	if errors.Is(err, errFailPoint) {
		p.log.Warn("fail point: stopping dead in the middle of applying a snapshot", "snapshot", snap.key)
		p.dead = true
		return
	}
	if err != nil {
		fatalf("%s: apply snapshot %s: %v", p.ps.tag, snap.key, err)
	}
	p.ps.region = snap.data.Region
	p.peerCache = make(map[uint64]*metapb.Peer)
	for _, pr := range snap.data.Region.Peers {
		p.peerCache[pr.Id] = pr
	}
	p.store.updateRegion(snap.data.Region)
	p.log.Info("applied snapshot", "index", snap.key.Index, "term", snap.key.Term, "bytes", snap.data.FileSize)
}

var errFailPoint = errors.New("raftstore: fail point")

// snapshotWriteBatchBytes bounds one kv batch while writing snapshot data.
const snapshotWriteBatchBytes = 4 << 20

// applySnapshotData clears the snapshot region's data range (and old's, if
// the peer had a region before) and writes the snapshot's records into it in
// bounded batches, then makes the region Normal. Every step can be redone, so
// a store that crashes half way finishes on restart.
func applySnapshotData(eng *engine.Engines, snaps *snapManager, key SnapKey, data *rspb.RaftSnapshotData, old *metapb.Region, failPoint func() bool) error {
	region := data.Region
	if !snaps.hasReceived(key, data) {
		return fmt.Errorf("snapshot %s: files missing or truncated", key)
	}
	for _, r := range []*metapb.Region{old, region} {
		if r == nil || len(r.Peers) == 0 {
			continue // an uninitialized peer has no data
		}
		if err := clearRegionData(eng, r); err != nil {
			return err
		}
	}
	if failPoint != nil && failPoint() {
		return errFailPoint
	}
	var wb engine.WriteBatch
	err := snaps.forEachRecord(key, data, func(k, v []byte) error {
		if engine.UserKey(k) == nil || CheckKeyInRegion(engine.UserKey(k), region) != nil {
			return fmt.Errorf("record %q outside the region", k)
		}
		wb.Set(append([]byte(nil), k...), append([]byte(nil), v...))
		if wb.Size() >= snapshotWriteBatchBytes {
			if err := wb.Commit(eng.KV); err != nil {
				return err
			}
			wb.Reset()
		}
		return nil
	})
	if err == nil {
		err = wb.Commit(eng.KV)
	}
	if err != nil {
		return err
	}
	// The data must be durable before the region says Normal.
	if err := eng.SyncKV(); err != nil {
		return err
	}
	var state engine.WriteBatch
	state.SetMsg(engine.RegionStateKey(region.Id), &rspb.RegionLocalState{State: rspb.PeerState_Normal, Region: region})
	if err := state.Commit(eng.KV); err != nil {
		return err
	}
	if err := eng.SyncKV(); err != nil {
		return err
	}
	snaps.remove("rcv", key)
	return nil
}

// clearRegionData deletes every data key of the region, in bounded batches.
func clearRegionData(eng *engine.Engines, region *metapb.Region) error {
	for _, cf := range engine.CFs {
		cfb, _ := engine.CFByte(cf)
		lo, hi := engine.DataRange(cfb, region.StartKey, region.EndKey)
		if err := engine.DeleteRange(eng.KV, lo, hi); err != nil {
			return err
		}
	}
	return nil
}

// recoverApplyingSnapshot finishes a snapshot apply that a crash interrupted:
// the raft state is put at the snapshot (if the crash came before that) and
// the data is written again.
func recoverApplyingSnapshot(eng *engine.Engines, snaps *snapManager, st *rspb.RegionLocalState) error {
	region, data := st.Region, st.ApplyingSnapshot
	if data == nil {
		return fmt.Errorf("region %d is Applying but records no snapshot", region.GetId())
	}
	var apply rspb.RaftApplyState
	if err := engine.GetMsg(eng.KV, engine.ApplyStateKey(region.Id), &apply); err != nil {
		return fmt.Errorf("region %d: apply state: %w", region.Id, err)
	}
	tr := apply.TruncatedState
	key := SnapKey{RegionID: region.Id, Term: tr.GetTerm(), Index: tr.GetIndex()}
	var rs rspb.RaftLocalState
	if _, err := eng.Raft.State(region.Id, &rs); err != nil {
		return fmt.Errorf("region %d: raft state: %w", region.Id, err)
	}
	if rs.LastIndex < key.Index {
		var wb raftlog.Batch
		if rs.HardState == nil {
			rs.HardState = &raftpb.HardState{}
		}
		rs.HardState.Commit = max(rs.HardState.Commit, key.Index)
		rs.HardState.Term = max(rs.HardState.Term, key.Term)
		rs.LastIndex, rs.LastTerm = key.Index, key.Term
		wb.DeleteTo(region.Id, key.Index+1)
		wb.SetState(region.Id, &rs)
		if err := eng.WriteRaft(&wb); err != nil {
			return err
		}
	}
	// The old range is unknown here; the snapshot's range is cleared.
	return applySnapshotData(eng, snaps, key, data, nil, nil)
}
