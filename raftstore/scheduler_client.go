package raftstore

import (
	"context"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// SchedulerClient is how a store talks to the scheduler. The gRPC client of
// regionkv-scheduler and the harness's in-process scheduler implement it.
// Operators come back asynchronously: the client hands every region
// heartbeat response to Store.HandleRegionHeartbeatResponse.
type SchedulerClient interface {
	// AskSplit allocates the id of the region a split of region creates and
	// one new peer id per peer of region, in order.
	AskSplit(ctx context.Context, region *metapb.Region) (newRegionID uint64, newPeerIDs []uint64, err error)
	// ReportSplit tells the scheduler about the two halves of a split.
	ReportSplit(ctx context.Context, left, right *metapb.Region) error
	// RegionHeartbeat reports a region this store's peer leads.
	RegionHeartbeat(ctx context.Context, req *schedulerpb.RegionHeartbeatRequest) error
	// StoreHeartbeat reports the store's statistics.
	StoreHeartbeat(ctx context.Context, stats *schedulerpb.StoreStats) error
}

// RegionError is a region error that came back from raftstore as errorpb.
type RegionError struct{ PB *errorpb.Error }

func (e *RegionError) Error() string { return "region error: " + e.PB.GetMessage() }

func regionErrorFromPB(pb *errorpb.Error) error { return &RegionError{PB: pb} }

// schedulerCallTimeout bounds one call to the scheduler.
const schedulerCallTimeout = 10 * time.Second

// runSchedulerWorker runs scheduler calls queued by peers (heartbeats,
// split id requests) one at a time, off the raft workers.
func (s *Store) runSchedulerWorker() {
	for {
		select {
		case <-s.stopc:
			return
		case f := <-s.schedq:
			f(s.ctx)
		}
	}
}

// schedule queues a scheduler call; if the queue is full the call is
// dropped (a later tick will try again).
func (s *Store) schedule(f func(ctx context.Context)) {
	if s.cfg.Scheduler == nil {
		return
	}
	select {
	case s.schedq <- f:
	default:
		s.log.Warn("scheduler worker busy; dropping a call")
	}
}

// onRegionHeartbeatTick sends a leader's region heartbeat.
func (p *peer) onRegionHeartbeatTick() {
	if !p.isLeader || p.store.cfg.Scheduler == nil {
		return
	}
	region := p.region()
	st := p.rn.BasicStatus()
	req := &schedulerpb.RegionHeartbeatRequest{
		Region:          region,
		Leader:          p.meta,
		ApproximateSize: p.approxSize,
		ApproximateKeys: p.approxKeys,
		Term:            st.Term,
	}
	tick := p.store.cfg.RaftBaseTickInterval
	p.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == p.meta.Id {
			return
		}
		peer := p.peerCache[id]
		if peer == nil {
			return
		}
		if pr.State == tracker.StateSnapshot || pr.Match < p.ps.truncatedIndex() {
			req.PendingPeers = append(req.PendingPeers, peer)
		}
		if last, ok := p.lastActive[id]; ok && p.ticks-last > uint64(2*p.store.cfg.RaftElectionTicks) {
			req.DownPeers = append(req.DownPeers, &schedulerpb.PeerStats{
				Peer: peer, DownSeconds: uint64(time.Duration(p.ticks-last) * tick / time.Second),
			})
		}
	})
	p.store.schedule(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, schedulerCallTimeout)
		defer cancel()
		if err := p.store.cfg.Scheduler.RegionHeartbeat(ctx, req); err != nil {
			p.store.log.Debug("region heartbeat", "region_id", region.Id, "err", err)
		}
	})
}

// trackActivity records, every tick on a leader, which followers raft
// still hears from; a follower silent for long is reported down.
func (p *peer) trackActivity() {
	if !p.isLeader {
		return
	}
	if p.lastActive == nil {
		p.lastActive = make(map[uint64]uint64)
	}
	p.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pr.RecentActive || p.lastActive[id] == 0 {
			p.lastActive[id] = p.ticks
		}
	})
}

// HandleRegionHeartbeatResponse carries out one operator step from the
// scheduler on the region's peer here (which must lead). Applying a step
// twice is harmless: a conf change already in place is skipped.
func (s *Store) HandleRegionHeartbeatResponse(resp *schedulerpb.RegionHeartbeatResponse) {
	if resp.GetRegionId() == 0 || resp.RegionEpoch == nil {
		return
	}
	header := &raft_cmdpb.RaftRequestHeader{RegionId: resp.RegionId, Peer: resp.TargetPeer, RegionEpoch: resp.RegionEpoch}
	var admin *raft_cmdpb.AdminRequest
	switch {
	case resp.ChangePeer != nil:
		admin = &raft_cmdpb.AdminRequest{
			CmdType:    raft_cmdpb.AdminCmdType_ChangePeer,
			ChangePeer: &raft_cmdpb.ChangePeerRequest{ChangeType: resp.ChangePeer.ChangeType, Peer: resp.ChangePeer.Peer},
		}
	case resp.TransferLeader != nil:
		admin = &raft_cmdpb.AdminRequest{
			CmdType:        raft_cmdpb.AdminCmdType_TransferLeader,
			TransferLeader: &raft_cmdpb.TransferLeaderRequest{Peer: resp.TransferLeader.Peer},
		}
	case resp.SplitRegion != nil:
		if keys := resp.SplitRegion.Keys; resp.SplitRegion.Policy == schedulerpb.SplitPolicy_USE_KEYS && len(keys) > 0 {
			s.schedule(func(ctx context.Context) {
				ctx, cancel := context.WithTimeout(ctx, schedulerCallTimeout)
				defer cancel()
				if _, err := s.SplitRegion(ctx, resp.RegionId, keys[0]); err != nil {
					s.log.Info("operator split", "region_id", resp.RegionId, "err", err)
				}
			})
		} else {
			_ = s.router.Send(resp.RegionId, peerMsg{kind: peerMsgForceSplitCheck})
		}
		return
	default:
		return
	}
	err := s.Propose(&raft_cmdpb.RaftCmdRequest{Header: header, AdminRequest: admin}, func(r Result) {
		if rerr := r.RegionError(); rerr != nil || r.Err != nil {
			s.log.Debug("operator step", "region_id", resp.RegionId, "cmd", admin.CmdType, "err", r.Err, "region_error", rerr.GetMessage())
		}
		r.Snap.Close()
	})
	if err != nil {
		s.log.Debug("operator step", "region_id", resp.RegionId, "err", err)
	}
}

// runStoreHeartbeat reports the store's statistics periodically.
func (s *Store) runStoreHeartbeat() {
	if s.cfg.Scheduler == nil {
		return
	}
	start := time.Now()
	t := time.NewTicker(s.cfg.StoreHeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		stats := s.storeStats(start)
		ctx, cancel := context.WithTimeout(s.ctx, schedulerCallTimeout)
		if err := s.cfg.Scheduler.StoreHeartbeat(ctx, stats); err != nil {
			s.log.Debug("store heartbeat", "err", err)
		}
		cancel()
	}
}

func (s *Store) storeStats(start time.Time) *schedulerpb.StoreStats {
	stats := &schedulerpb.StoreStats{
		StoreId:            s.ident.StoreId,
		StartTime:          uint64(start.Unix()),
		SendingSnapCount:   uint32(len(s.sendSem)),
		ReceivingSnapCount: uint32(len(s.recvSem)),
	}
	for _, st := range s.PeerStatuses() {
		stats.RegionCount++
		if st.IsLeader() {
			stats.LeaderCount++
		}
	}
	if capacity, available, ok := diskSpace(s.engines.Dir); ok {
		stats.Capacity, stats.Available = capacity, available
	}
	stats.UsedSize = engineSize(s.engines)
	return stats
}

func engineSize(e *engine.Engines) uint64 {
	lsm, vlog := e.KV.Size()
	return uint64(e.Raft.Size() + lsm + vlog)
}
