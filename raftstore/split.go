package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gogo/protobuf/proto"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/router"
)

// checkSplit validates a split request against the region: the key lies
// strictly inside it, and there is one new peer id per peer.
func (p *peer) checkSplit(split *raft_cmdpb.SplitRequest, region *metapb.Region) error {
	switch {
	case split == nil || len(split.SplitKey) == 0:
		return fmt.Errorf("region %d: split without a split key", region.Id)
	case split.NewRegionId == 0 || split.NewRegionId == region.Id:
		return fmt.Errorf("region %d: bad new region id %d", region.Id, split.NewRegionId)
	case len(split.NewPeerIds) != len(region.Peers):
		return fmt.Errorf("region %d has %d peers, split gives %d new peer ids", region.Id, len(region.Peers), len(split.NewPeerIds))
	case bytes.Equal(split.SplitKey, region.StartKey):
		return &KeyNotInRegionError{Key: split.SplitKey, Region: region}
	}
	seen := map[uint64]bool{}
	for _, id := range split.NewPeerIds {
		if id == 0 || seen[id] {
			return fmt.Errorf("region %d: bad new peer ids %v", region.Id, split.NewPeerIds)
		}
		seen[id] = true
	}
	return CheckKeyInRegion(split.SplitKey, region)
}

// applySplit splits the region at the split key: this region keeps
// [start, key), the new one takes [key, end), and both versions grow. Both
// RegionLocalStates and the new region's apply state (an empty log at
// (5, 5)) go into the round's kv transaction with the parent's apply state;
// the new peer starts once that has committed.
func (p *peer) applySplit(w *kvWriter, cmd *raft_cmdpb.RaftCmdRequest) *raft_cmdpb.RaftCmdResponse {
	region := p.region()
	split := cmd.AdminRequest.Split
	if err := checkEpoch(cmd, region); err != nil {
		return errResult(err).Resp
	}
	if err := p.checkSplit(split, region); err != nil {
		return errResult(err).Resp
	}
	p.endLease(0) // the range changes
	left := proto.Clone(region).(*metapb.Region)
	right := proto.Clone(region).(*metapb.Region)
	left.RegionEpoch.Version++
	left.EndKey = split.SplitKey
	right.Id = split.NewRegionId
	right.RegionEpoch.Version = left.RegionEpoch.Version
	right.StartKey = split.SplitKey
	for i, pr := range right.Peers {
		pr.Id = split.NewPeerIds[i]
	}
	w.setMsg(engine.RegionStateKey(left.Id), &rspb.RegionLocalState{State: rspb.PeerState_Normal, Region: left})
	if p.store.mayCreateSplitRegion(right) {
		w.setMsg(engine.RegionStateKey(right.Id), &rspb.RegionLocalState{State: rspb.PeerState_Normal, Region: right})
		w.setMsg(engine.ApplyStateKey(right.Id), &rspb.RaftApplyState{
			AppliedIndex:   RaftInitLogIndex,
			TruncatedState: &rspb.RaftTruncatedState{Index: RaftInitLogIndex, Term: RaftInitLogTerm},
		})
		p.pendingSplits = append(p.pendingSplits, right)
	}
	p.ps.region = left
	p.store.updateRegion(left)
	p.log.Info("applied split", "key", split.SplitKey, "new_region", right.Id, "version", left.RegionEpoch.Version)
	return &raft_cmdpb.RaftCmdResponse{
		Header: &raft_cmdpb.RaftResponseHeader{CurrentTerm: p.rn.BasicStatus().Term},
		AdminResponse: &raft_cmdpb.AdminResponse{
			CmdType: raft_cmdpb.AdminCmdType_Split,
			Split:   &raft_cmdpb.SplitResponse{Regions: []*metapb.Region{left, right}},
		},
	}
}

// mayCreateSplitRegion reports whether this store should create its peer of
// a region born from a split here. Not if it already holds an initialized
// peer of it (a snapshot from the faster peers got here first; its state is
// newer), nor if the region is a tombstone here (that peer was created and
// removed already).
func (s *Store) mayCreateSplitRegion(region *metapb.Region) bool {
	s.meta.RLock()
	p := s.meta.peers[region.Id]
	s.meta.RUnlock()
	if p != nil && p.status.Load().Region.GetPeers() != nil {
		return false
	}
	var st rspb.RegionLocalState
	if err := engine.GetMsg(s.engines.KV, engine.RegionStateKey(region.Id), &st); err == nil && st.State == rspb.PeerState_Tombstone {
		return false
	}
	return true
}

// startSplitPeers creates the peers of regions this round's splits made,
// once their state is committed. An uninitialized peer of such a region
// (created by a message from a faster replica) is asked to give way.
func (p *peer) startSplitPeers() {
	for _, region := range p.pendingSplits {
		p.store.startSplitPeer(region, p.isLeader)
	}
	p.pendingSplits = p.pendingSplits[:0]
}

func (s *Store) startSplitPeer(region *metapb.Region, campaign bool) {
	meta := findPeer(region, s.ident.StoreId)
	if meta == nil {
		return
	}
	if s.router.Has(region.Id) {
		_ = s.router.Send(region.Id, peerMsg{kind: peerMsgReplaceBySplit, split: region, campaign: campaign})
		return
	}
	p, err := newPeer(s, region, meta)
	if err != nil {
		fatalf("create split peer of region %d: %v", region.Id, err)
	}
	if err := s.router.Register(region.Id, p); err != nil {
		// An uninitialized peer won the race; let it give way.
		_ = s.router.Send(region.Id, peerMsg{kind: peerMsgReplaceBySplit, split: region, campaign: campaign})
		return
	}
	s.addPeer(p)
	if campaign {
		_ = s.router.Send(region.Id, peerMsg{kind: peerMsgCampaign})
	}
	for _, m := range s.takeVotes(region.Id) {
		_ = s.router.Send(region.Id, peerMsg{kind: peerMsgRaft, raft: m})
	}
}

// replaceBySplit: this uninitialized peer's region was just created here by
// a split. It steps aside without a tombstone (the region lives on here) and
// without forgetting its raft state (its vote stays), and the split peer
// takes its place, inheriting the messages queued for it.
func (p *peer) replaceBySplit(region *metapb.Region, campaign bool) {
	if p.ps.isInitialized() {
		return // initialized meanwhile by a snapshot, which is newer
	}
	s := p.store
	// The uninitialized peer may have answered the new region's leader
	// (heartbeats, ReadIndex rounds); its successor must not vote inside
	// that leader's lease (lease.go).
	heardLeader := p.rn.BasicStatus().Lead != 0
	p.dead = true
	p.stop(ErrPeerDestroyed)
	queued := s.router.Close(p.regionID())
	s.removePeer(p)
	meta := findPeer(region, s.ident.StoreId)
	np, err := newPeer(s, region, meta)
	if err != nil {
		fatalf("create split peer of region %d: %v", region.Id, err)
	}
	if heardLeader {
		np.holdVotes()
	}
	if err := s.router.Register(region.Id, np); err != nil {
		if errors.Is(err, router.ErrStopped) {
			// The store is stopping. The split region's state is in the kv
			// DB (the parent's apply wrote it), so the next start loads it.
			p.log.Info("store stopping: the split-created peer starts with the store's next start")
			return
		}
		fatalf("register split peer of region %d: %v", region.Id, err)
	}
	s.addPeer(np)
	for _, m := range queued {
		_ = s.router.Send(region.Id, m)
	}
	for _, m := range s.takeVotes(region.Id) {
		_ = s.router.Send(region.Id, peerMsg{kind: peerMsgRaft, raft: m})
	}
	if campaign {
		_ = s.router.Send(region.Id, peerMsg{kind: peerMsgCampaign})
	}
	p.log.Info("uninitialized peer replaced by its split-created successor")
}

// SplitRegion splits a region at key: it asks the scheduler for the new
// region's ids and proposes the split to this store's peer, which must lead.
// It returns the two regions.
func (s *Store) SplitRegion(ctx context.Context, regionID uint64, key []byte) ([]*metapb.Region, error) {
	st, ok := s.PeerStatus(regionID)
	if !ok {
		return nil, &RegionNotFoundError{RegionID: regionID}
	}
	if s.cfg.Scheduler == nil {
		return nil, fmt.Errorf("split region %d: no scheduler", regionID)
	}
	newID, peerIDs, err := s.cfg.Scheduler.AskSplit(ctx, st.Region)
	if err != nil {
		return nil, fmt.Errorf("split region %d: ask scheduler: %w", regionID, err)
	}
	res, err := s.Execute(ctx, &raft_cmdpb.RaftCmdRequest{
		Header: &raft_cmdpb.RaftRequestHeader{RegionId: regionID, RegionEpoch: st.Region.RegionEpoch},
		AdminRequest: &raft_cmdpb.AdminRequest{
			CmdType: raft_cmdpb.AdminCmdType_Split,
			Split:   &raft_cmdpb.SplitRequest{SplitKey: key, NewRegionId: newID, NewPeerIds: peerIDs},
		},
	})
	if err != nil {
		return nil, err
	}
	if rerr := res.RegionError(); rerr != nil {
		return nil, regionErrorFromPB(rerr)
	}
	regions := res.Resp.GetAdminResponse().GetSplit().GetRegions()
	if len(regions) == 2 {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Scheduler.ReportSplit(rctx, regions[0], regions[1]); err != nil {
			s.log.Warn("report split", "region_id", regionID, "err", err)
		}
	}
	return regions, nil
}
