package harness

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/raftstore"
)

// Scheduler is the harness's in-process scheduler: it allocates ids, keeps
// the regions leaders report, and runs operators, one step per heartbeat,
// like regionkv-scheduler. It implements raftstore.SchedulerClient for every
// store of a Cluster.
type Scheduler struct {
	c  *Cluster
	mu sync.Mutex
	// Protected by mu.
	nextID    uint64
	regions   map[uint64]*metapb.Region
	leaders   map[uint64]*metapb.Peer
	operators map[uint64]*Operator
	stores    map[uint64]*schedulerpb.StoreStats
}

// Operator is one scheduling step a region's leader must carry out; it is
// resent with every heartbeat until the heartbeat shows it done.
type Operator struct {
	ChangePeer     *schedulerpb.ChangePeer
	TransferLeader *schedulerpb.TransferLeader
}

func newScheduler(c *Cluster) *Scheduler {
	return &Scheduler{
		c:         c,
		nextID:    1000,
		regions:   make(map[uint64]*metapb.Region),
		leaders:   make(map[uint64]*metapb.Peer),
		operators: make(map[uint64]*Operator),
		stores:    make(map[uint64]*schedulerpb.StoreStats),
	}
}

// AllocID returns a fresh id.
func (s *Scheduler) AllocID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	return s.nextID
}

// AskSplit implements raftstore.SchedulerClient.
func (s *Scheduler) AskSplit(_ context.Context, region *metapb.Region) (uint64, []uint64, error) {
	newID := s.AllocID()
	ids := make([]uint64, len(region.Peers))
	for i := range ids {
		ids[i] = s.AllocID()
	}
	return newID, ids, nil
}

// ReportSplit implements raftstore.SchedulerClient.
func (s *Scheduler) ReportSplit(_ context.Context, left, right *metapb.Region) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putRegionLocked(left)
	s.putRegionLocked(right)
	return nil
}

func (s *Scheduler) putRegionLocked(r *metapb.Region) bool {
	if old, ok := s.regions[r.Id]; ok {
		o, n := old.RegionEpoch, r.RegionEpoch
		if n.Version < o.Version || n.ConfVer < o.ConfVer {
			return false // stale
		}
	}
	s.regions[r.Id] = r
	return true
}

// StoreHeartbeat implements raftstore.SchedulerClient.
func (s *Scheduler) StoreHeartbeat(_ context.Context, stats *schedulerpb.StoreStats) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stores[stats.StoreId] = stats
	return nil
}

// RegionHeartbeat implements raftstore.SchedulerClient: it records the
// region and its leader, retires an operator the region shows done, and
// sends the leader the step of one still running.
func (s *Scheduler) RegionHeartbeat(_ context.Context, req *schedulerpb.RegionHeartbeatRequest) error {
	region := req.Region
	s.mu.Lock()
	if !s.putRegionLocked(region) {
		s.mu.Unlock()
		return fmt.Errorf("stale heartbeat for region %d", region.Id)
	}
	s.leaders[region.Id] = req.Leader
	op := s.operators[region.Id]
	if op != nil && op.done(region, req.Leader) {
		delete(s.operators, region.Id)
		op = nil
	}
	s.mu.Unlock()
	if op == nil {
		return nil
	}
	store := s.c.Store(req.Leader.StoreId)
	if store == nil {
		return nil
	}
	store.HandleRegionHeartbeatResponse(&schedulerpb.RegionHeartbeatResponse{
		RegionId:       region.Id,
		RegionEpoch:    region.RegionEpoch,
		TargetPeer:     req.Leader,
		ChangePeer:     op.ChangePeer,
		TransferLeader: op.TransferLeader,
	})
	return nil
}

func (op *Operator) done(region *metapb.Region, leader *metapb.Peer) bool {
	switch {
	case op.ChangePeer != nil:
		has := false
		for _, p := range region.Peers {
			if p.Id == op.ChangePeer.Peer.Id {
				has = true
			}
		}
		return has == (op.ChangePeer.ChangeType != raft_cmdpb.ConfChangeType_RemoveNode)
	case op.TransferLeader != nil:
		return leader.Id == op.TransferLeader.Peer.Id
	}
	return true
}

// AddOperator sets the operator of a region, replacing any other.
func (s *Scheduler) AddOperator(regionID uint64, op *Operator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.operators[regionID] = op
}

// Region returns the region as last reported, and its leader.
func (s *Scheduler) Region(regionID uint64) (*metapb.Region, *metapb.Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.regions[regionID], s.leaders[regionID]
}

// RegionByKey returns the reported region containing key.
func (s *Scheduler) RegionByKey(key []byte) *metapb.Region {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.regions {
		if bytes.Compare(key, r.StartKey) >= 0 && (len(r.EndKey) == 0 || bytes.Compare(key, r.EndKey) < 0) {
			return r
		}
	}
	return nil
}

var _ raftstore.SchedulerClient = (*Scheduler)(nil)
