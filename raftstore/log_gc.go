package raftstore

import (
	"bytes"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// onRaftLogGCTick lets a leader propose CompactLog. Below the count and size
// limits it compacts only entries every follower already has; past them it
// compacts up to its applied index, and a follower that still needed the
// entries catches up from a snapshot.
func (p *peer) onRaftLogGCTick() {
	st := p.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return
	}
	cfg := p.store.cfg
	ps := p.ps
	applied, first := ps.appliedIndex(), ps.truncatedIndex()+1
	if applied < first || applied-first+1 < cfg.RaftLogGCThreshold {
		return
	}
	replicated := applied
	p.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		replicated = min(replicated, pr.Match)
	})
	var compact uint64
	switch {
	case applied-first+1 > cfg.RaftLogGCCountLimit || ps.logSize > cfg.RaftLogGCSizeLimit:
		compact = applied
	case replicated >= first && replicated-first+1 >= cfg.RaftLogGCThreshold:
		compact = replicated
	default:
		return
	}
	term, err := ps.Term(compact)
	if err != nil {
		p.log.Warn("raft log gc: no term for compact index", "index", compact, "err", err)
		return
	}
	p.proposeAdmin(&raft_cmdpb.AdminRequest{
		CmdType:    raft_cmdpb.AdminCmdType_CompactLog,
		CompactLog: &raft_cmdpb.CompactLogRequest{CompactIndex: compact, CompactTerm: term},
	})
}

// proposeAdmin proposes an admin command of the peer's own making; nobody
// waits for its result.
func (p *peer) proposeAdmin(admin *raft_cmdpb.AdminRequest) {
	region := p.region()
	req := &raft_cmdpb.RaftCmdRequest{
		Header:       &raft_cmdpb.RaftRequestHeader{RegionId: region.Id, Peer: p.meta, RegionEpoch: region.RegionEpoch},
		AdminRequest: admin,
	}
	data, err := encodeProposal(p.meta.Id, p.seq(), req)
	if err != nil {
		p.log.Warn("encode admin command", "cmd", admin.CmdType, "err", err)
		return
	}
	p.flushProposals()
	if err := p.rn.Propose(data); err != nil {
		p.log.Debug("admin command dropped", "cmd", admin.CmdType, "err", err)
	}
}

// applyAdmin applies an admin command.
func (p *peer) applyAdmin(w *kvWriter, cmd *raft_cmdpb.RaftCmdRequest) *raft_cmdpb.RaftCmdResponse {
	admin := cmd.AdminRequest
	resp := &raft_cmdpb.RaftCmdResponse{
		Header:        &raft_cmdpb.RaftResponseHeader{CurrentTerm: p.rn.BasicStatus().Term},
		AdminResponse: &raft_cmdpb.AdminResponse{CmdType: admin.CmdType},
	}
	switch admin.CmdType {
	case raft_cmdpb.AdminCmdType_Split:
		return p.applySplit(w, cmd)
	case raft_cmdpb.AdminCmdType_CompactLog:
		if err := p.applyCompactLog(admin.CompactLog); err != nil {
			p.log.Warn("skipping CompactLog", "err", err)
			return errResult(err).Resp
		}
		resp.AdminResponse.CompactLog = &raft_cmdpb.CompactLogResponse{}
	default:
		return errResult(fmt.Errorf("admin command %v is not supported", admin.CmdType)).Resp
	}
	return resp
}

// applyCompactLog moves the truncated state; the entries themselves are
// deleted by the log GC worker once the kv DB is synced.
func (p *peer) applyCompactLog(c *raft_cmdpb.CompactLogRequest) error {
	ps := p.ps
	old := ps.truncatedIndex()
	switch {
	case c == nil || c.CompactTerm == 0:
		return fmt.Errorf("malformed CompactLog %v", c)
	case c.CompactIndex <= old:
		return nil // already compacted further, e.g. by a snapshot
	case c.CompactIndex > ps.appliedIndex():
		return fmt.Errorf("CompactLog to %d past the applied index %d", c.CompactIndex, ps.appliedIndex())
	}
	ps.applyState.TruncatedState = &rspb.RaftTruncatedState{Index: c.CompactIndex, Term: c.CompactTerm}
	if last := ps.raftState.LastIndex; last > old {
		ps.logSize = ps.logSize * (last - c.CompactIndex) / (last - old)
	}
	ps.cache.compactTo(c.CompactIndex + 1)
	p.compacted = append(p.compacted, gcTask{regionID: p.regionID(), end: c.CompactIndex + 1})
	return nil
}

// validateSnapshot checks a MsgSnap before raft sees it: the snapshot's
// region is this region and includes this peer, its files arrived intact,
// and its range overlaps no other region of this store. A rejected
// snapshot's files are removed.
func (p *peer) validateSnapshot(msg *rspb.RaftMessage) error {
	snap := msg.Message.Snapshot
	if snap == nil || raft.IsEmptySnap(*snap) {
		return fmt.Errorf("MsgSnap without a snapshot")
	}
	var data rspb.RaftSnapshotData
	if err := data.Unmarshal(snap.Data); err != nil {
		return fmt.Errorf("undecodable snapshot data: %w", err)
	}
	key := snapKeyOf(p.regionID(), snap)
	reject := func(format string, args ...any) error {
		p.store.snaps.remove("rcv", key)
		return fmt.Errorf("snapshot %s: "+format, append([]any{key}, args...)...)
	}
	region := data.Region
	switch {
	case region.GetId() != p.regionID():
		return reject("for region %d", region.GetId())
	case findPeerByID(region, p.meta.Id) == nil:
		return reject("its region does not include peer %d", p.meta.Id)
	case snap.Metadata.Index <= p.rn.BasicStatus().Commit:
		return reject("index %d is not past the commit index", snap.Metadata.Index)
	case !p.store.snaps.hasReceived(key, &data):
		return fmt.Errorf("snapshot %s: files missing", key)
	}
	if o := p.store.overlapping(region, p.regionID()); o != nil {
		return reject("range [%q, %q) overlaps region %d", region.StartKey, region.EndKey, o.Id)
	}
	if !bytes.Equal(region.StartKey, p.region().StartKey) || !bytes.Equal(region.EndKey, p.region().EndKey) {
		p.log.Info("snapshot changes the region's range", "from", p.region(), "to", region)
	}
	return nil
}

func findPeerByID(region *metapb.Region, id uint64) *metapb.Peer {
	for _, p := range region.GetPeers() {
		if p.Id == id {
			return p
		}
	}
	return nil
}
