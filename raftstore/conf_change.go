package raftstore

import (
	"errors"
	"fmt"

	"github.com/gogo/protobuf/proto"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// ErrPeerDestroyed: the peer was removed from its region (or found stale)
// while the command was pending; a write may or may not have been applied by
// the rest of the region.
var ErrPeerDestroyed = errors.New("raftstore: peer destroyed")

// onTransferLeader asks raft to hand leadership to a voter and answers at
// once; the transfer itself takes an election round. Proposals fail fast
// (ServerIsBusy) while it is pending.
func (p *peer) onTransferLeader(req *raft_cmdpb.RaftCmdRequest, cb Callback) {
	target := req.AdminRequest.TransferLeader.GetPeer()
	pr := findPeerByID(p.region(), target.GetId())
	switch {
	case pr == nil:
		cb(errResult(fmt.Errorf("region %d has no peer %d", p.regionID(), target.GetId())))
		return
	case pr.Role == metapb.PeerRole_Learner:
		cb(errResult(fmt.Errorf("region %d: peer %d is a learner and cannot lead", p.regionID(), pr.Id)))
		return
	}
	if pr.Id != p.meta.Id {
		p.log.Info("transferring leadership", "to", pr.Id)
		p.endLease(p.transferHoldOff())
		p.rn.TransferLeader(pr.Id)
	}
	cb(Result{Resp: &raft_cmdpb.RaftCmdResponse{
		Header: &raft_cmdpb.RaftResponseHeader{CurrentTerm: p.rn.BasicStatus().Term},
		AdminResponse: &raft_cmdpb.AdminResponse{
			CmdType:        raft_cmdpb.AdminCmdType_TransferLeader,
			TransferLeader: &raft_cmdpb.TransferLeaderResponse{},
		},
	}})
}

// proposeConfChange proposes adding or removing one peer. A leader asked to
// remove itself first hands leadership to another voter and answers
// NotLeader, so the caller retries the removal with the new leader.
func (p *peer) proposeConfChange(req *raft_cmdpb.RaftCmdRequest, cb Callback) {
	cp := req.AdminRequest.ChangePeer
	if cp == nil || cp.Peer == nil || cp.Peer.Id == 0 || cp.Peer.StoreId == 0 {
		cb(errResult(fmt.Errorf("region %d: malformed ChangePeer %v", p.regionID(), cp)))
		return
	}
	switch cp.ChangeType {
	case raft_cmdpb.ConfChangeType_AddNode, raft_cmdpb.ConfChangeType_AddLearnerNode, raft_cmdpb.ConfChangeType_RemoveNode:
	default:
		cb(errResult(fmt.Errorf("region %d: unknown conf change type %v", p.regionID(), cp.ChangeType)))
		return
	}
	if cp.ChangeType == raft_cmdpb.ConfChangeType_RemoveNode && cp.Peer.Id == p.meta.Id {
		if to := p.transferTarget(); to != 0 {
			p.log.Info("asked to remove the leader: transferring leadership first", "to", to)
			p.endLease(p.transferHoldOff())
			p.rn.TransferLeader(to)
		}
		cb(errResult(&NotLeaderError{RegionID: p.regionID()}))
		return
	}
	if err := checkConfChange(p.region(), cp); err != nil {
		cb(errResult(err))
		return
	}
	seq := p.seq()
	data, err := encodeProposal(p.meta.Id, seq, req)
	if err != nil {
		cb(errResult(err))
		return
	}
	cc := raftpb.ConfChange{Type: raftpb.ConfChangeType(cp.ChangeType), NodeID: cp.Peer.Id, Context: data}
	if err := p.rn.ProposeConfChange(cc); err != nil {
		cb(errResult(p.proposeDroppedError()))
		return
	}
	p.proposals.add(&proposal{seq: seq, tick: p.ticks, cb: cb})
}

// checkConfChange rejects a change that would give one store two peers of
// the region, or leave it without voters.
func checkConfChange(region *metapb.Region, cp *raft_cmdpb.ChangePeerRequest) error {
	switch cp.ChangeType {
	case raft_cmdpb.ConfChangeType_AddNode, raft_cmdpb.ConfChangeType_AddLearnerNode:
		for _, pr := range region.Peers {
			if pr.StoreId == cp.Peer.StoreId && pr.Id != cp.Peer.Id {
				return fmt.Errorf("region %d already has peer %d on store %d", region.Id, pr.Id, pr.StoreId)
			}
		}
	case raft_cmdpb.ConfChangeType_RemoveNode:
		voters := 0
		for _, pr := range region.Peers {
			if pr.Role == metapb.PeerRole_Voter && pr.Id != cp.Peer.Id {
				voters++
			}
		}
		if voters == 0 {
			return fmt.Errorf("region %d: removing peer %d would leave no voter", region.Id, cp.Peer.Id)
		}
	}
	return nil
}

// transferTarget picks the voter with the most of the log, other than self.
func (p *peer) transferTarget() uint64 {
	var best, bestMatch uint64
	p.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == p.meta.Id || pr.IsLearner {
			return
		}
		if best == 0 || pr.Match > bestMatch {
			best, bestMatch = id, pr.Match
		}
	})
	return best
}

// applyConfChange applies a committed conf change: the region's peers and
// conf_ver change in the round's kv transaction (with the apply state), then
// raft's configuration. A stale or duplicate change is skipped entirely,
// raft included, so the two never disagree.
func (p *peer) applyConfChange(w *kvWriter, cc *raftpb.ConfChange, cmd *raft_cmdpb.RaftCmdRequest) *raft_cmdpb.RaftCmdResponse {
	region := p.region()
	if err := checkEpoch(cmd, region); err != nil {
		return errResult(err).Resp
	}
	p.endLease(0) // the quorums change
	cp := cmd.AdminRequest.ChangePeer
	next := proto.Clone(region).(*metapb.Region)
	existing := findPeerByID(region, cp.Peer.Id)
	switch cp.ChangeType {
	case raft_cmdpb.ConfChangeType_AddNode, raft_cmdpb.ConfChangeType_AddLearnerNode:
		role := metapb.PeerRole_Voter
		if cp.ChangeType == raft_cmdpb.ConfChangeType_AddLearnerNode {
			role = metapb.PeerRole_Learner
		}
		if existing != nil && existing.Role == role {
			return p.confChangeResponse(region) // already in place
		}
		if err := checkConfChange(region, cp); err != nil {
			return errResult(err).Resp
		}
		if existing != nil {
			findPeerByID(next, cp.Peer.Id).Role = role
		} else {
			next.Peers = append(next.Peers, &metapb.Peer{Id: cp.Peer.Id, StoreId: cp.Peer.StoreId, Role: role})
		}
	case raft_cmdpb.ConfChangeType_RemoveNode:
		if existing == nil {
			return p.confChangeResponse(region) // already gone
		}
		next.Peers = next.Peers[:0]
		for _, pr := range region.Peers {
			if pr.Id != cp.Peer.Id {
				next.Peers = append(next.Peers, proto.Clone(pr).(*metapb.Peer))
			}
		}
	}
	next.RegionEpoch.ConfVer++
	w.setMsg(engine.RegionStateKey(region.Id), &rspb.RegionLocalState{State: rspb.PeerState_Normal, Region: next})
	p.ps.region = next
	for _, pr := range next.Peers {
		p.peerCache[pr.Id] = pr
	}
	p.rn.ApplyConfChange(cc)
	p.store.updateRegion(next)
	p.log.Info("applied conf change", "type", cp.ChangeType, "peer", cp.Peer.Id, "store", cp.Peer.StoreId, "conf_ver", next.RegionEpoch.ConfVer)
	if cp.ChangeType == raft_cmdpb.ConfChangeType_RemoveNode && cp.Peer.Id == p.meta.Id {
		p.pendingDestroy = true
	}
	return p.confChangeResponse(next)
}

func (p *peer) confChangeResponse(region *metapb.Region) *raft_cmdpb.RaftCmdResponse {
	return &raft_cmdpb.RaftCmdResponse{
		Header: &raft_cmdpb.RaftResponseHeader{CurrentTerm: p.rn.BasicStatus().Term},
		AdminResponse: &raft_cmdpb.AdminResponse{
			CmdType:    raft_cmdpb.AdminCmdType_ChangePeer,
			ChangePeer: &raft_cmdpb.ChangePeerResponse{Region: region},
		},
	}
}

// destroy removes this peer from the store for good: a Tombstone
// RegionLocalState (synced first, so a crash cannot resurrect the peer), then
// its raft state and log and its data. Pending commands fail with
// ErrPeerDestroyed; the mailbox closes. It runs on the worker that holds the
// peer, outside a Ready.
func (p *peer) destroy(reason string) {
	if p.dead {
		return
	}
	p.dead = true
	p.endLease(0)
	region := p.region()
	p.log.Info("destroying peer", "reason", reason, "region", region)
	var wb engine.WriteBatch
	wb.SetMsg(engine.RegionStateKey(region.Id), &rspb.RegionLocalState{State: rspb.PeerState_Tombstone, Region: region})
	wb.Delete(engine.ApplyStateKey(region.Id))
	if err := wb.Commit(p.store.engines.KV); err != nil {
		fatalf("%s: write tombstone: %v", p.ps.tag, err)
	}
	if err := p.store.engines.SyncKV(); err != nil {
		fatalf("%s: %v", p.ps.tag, err)
	}
	var rwb raftlog.Batch
	rwb.Clean(region.Id)
	if err := p.store.engines.WriteRaft(&rwb); err != nil {
		fatalf("%s: delete raft log and state: %v", p.ps.tag, err)
	}
	if p.ps.isInitialized() && p.store.overlapping(region, region.Id) == nil {
		if err := clearRegionData(p.store.engines, region); err != nil {
			fatalf("%s: clear data: %v", p.ps.tag, err)
		}
	}
	p.stop(ErrPeerDestroyed)
	for _, m := range p.store.router.Close(region.Id) {
		if m.kind == peerMsgCommand {
			m.cb(noAnswer(ErrPeerDestroyed))
		}
	}
	p.store.removePeer(p)
}
