package raftstore

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

// A worker handles the Ready of every peer it touched in a round in three
// phases, so that all of them share one raft-DB fsync and one kv commit:
//
//  1. collectReady: take the Ready, let a leader send at once, and add the
//     entries, HardState and RaftLocalState to the round's raft batch.
//  2. (the worker commits the raft batch: one fsync for all peers)
//     While the fsync runs, applyEarly applies the committed entries that
//     earlier rounds already made durable here, and the worker commits
//     them and answers their proposals: a client's answer never waits for
//     the fsync of entries proposed after its own.
//     afterPersist: send the remaining messages (a follower's acks), apply
//     the rest of the committed entries, note read states.
//  3. (the worker commits the kv writer)
//     finishReady: fire callbacks, serve reads, Advance.

// collectReady is phase 1. It reports whether the peer has a Ready.
func (p *peer) collectReady(raftWB *raftlog.Batch) bool {
	if p.dead || !p.rn.HasReady() {
		return false
	}
	p.ready = p.rn.Ready()
	p.hasReady = true
	rd := &p.ready
	if rd.SoftState != nil {
		p.onSoftState(rd.SoftState)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		p.prepareSnapshot(&rd.Snapshot, raftWB)
		if p.dead { // a fail point
			return false
		}
	}
	if p.isLeader {
		// A leader may send before its own append is durable (raft thesis
		// §10.2.1): its self-acknowledgement is stepped only at Advance.
		p.holdCommitOnly(rd.Messages)
		rd.Messages = nil
	}
	p.ps.saveReadyState(raftWB, rd)
	for i := range rd.Entries {
		e := &rd.Entries[i]
		data := e.Data
		switch e.Type {
		case raftpb.EntryNormal:
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if cc.Unmarshal(e.Data) != nil {
				continue
			}
			data = cc.Context
		default:
			continue
		}
		if seq, ok := proposalSeq(data, p.meta.Id); ok {
			p.proposals.assign(seq, e.Index, e.Term)
		}
	}
	return true
}

// applyEarly applies, before the round's raft batch is durable, the
// committed entries that are already durable in this store's log: those
// below the first entry of this Ready. Committed entries are durable on a
// quorum, and these are in the local log too, so a crash cannot leave the
// applied index past the log.
func (p *peer) applyEarly(w *kvWriter, done []appliedCallback) []appliedCallback {
	n := p.earlyApplyCount()
	if n == 0 {
		return done
	}
	rd := &p.ready
	p.appliedEarly = n
	return p.applyEntries(w, rd.CommittedEntries[:n], done)
}

// earlyApplyCount is how many of the Ready's committed entries applyEarly
// may apply.
func (p *peer) earlyApplyCount() int {
	rd := &p.ready
	if !p.hasReady || p.dead || p.pendingSnap != nil || len(rd.CommittedEntries) == 0 {
		return 0
	}
	n := len(rd.CommittedEntries)
	if len(rd.Entries) > 0 {
		first := rd.Entries[0].Index
		n = 0
		for n < len(rd.CommittedEntries) && rd.CommittedEntries[n].Index < first {
			n++
		}
	}
	return n
}

// afterPersist is phase 2, run once the raft batch is durable.
func (p *peer) afterPersist(w *kvWriter, done []appliedCallback) []appliedCallback {
	rd := &p.ready
	if p.pendingSnap != nil {
		p.finishSnapshot()
		if p.dead {
			return done
		}
	}
	p.send(rd.Messages)
	done = p.applyEntries(w, rd.CommittedEntries[p.appliedEarly:], done)
	p.appliedEarly = 0
	for _, rs := range rd.ReadStates {
		// A quorum answered a heartbeat sent after the read was issued.
		p.renewLease(p.reads.onReadState(rs.RequestCtx, rs.Index))
	}
	return done
}

// finishReady is phase 3, run once the kv writes are visible. It reports
// whether raft has more to do (another Ready).
func (p *peer) finishReady() bool {
	if p.dead {
		return false
	}
	if p.hasReady {
		p.rn.Advance(p.ready)
		p.ready = raft.Ready{}
		p.hasReady = false
	}
	for _, id := range p.unreachable {
		p.rn.ReportUnreachable(id)
	}
	p.unreachable = p.unreachable[:0]
	if len(p.pendingSplits) > 0 {
		p.startSplitPeers()
	}
	if p.pendingDestroy {
		p.destroy("removed from the region")
		return false
	}
	p.serveReads()
	p.publishLease()
	p.ps.cache.compactTo(p.ps.appliedIndex() + 1)
	p.publishStatus()
	return p.rn.HasReady() || len(p.deferred) > 0 || len(p.held) > 0
}

// serveReads answers every read whose read index has been applied, with a
// snapshot of the kv DB taken now. The epoch is checked again: a split may
// have been applied since the read was accepted.
func (p *peer) serveReads() {
	if len(p.reads.batches) == 0 {
		return
	}
	ready := p.reads.takeReady(p.ps.appliedIndex(), nil)
	region := p.region()
	for _, r := range ready {
		if err := checkEpoch(r.req, region); err != nil {
			r.cb(errResult(err))
			continue
		}
		resp := &raft_cmdpb.RaftCmdResponse{
			Header: &raft_cmdpb.RaftResponseHeader{CurrentTerm: p.rn.BasicStatus().Term},
		}
		for _, req := range r.req.Requests {
			resp.Responses = append(resp.Responses, &raft_cmdpb.Response{
				CmdType: req.CmdType,
				Snap:    &raft_cmdpb.SnapResponse{Region: region},
			})
		}
		r.cb(Result{Resp: resp, Snap: NewRegionSnapshot(p.store.engines.KV, region)})
	}
}
