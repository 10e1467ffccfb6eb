package harness

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/raftstore"
)

// adminTimeout bounds the Must admin helpers.
const adminTimeout = 30 * time.Second

// Leader returns the status of the region's leader with the highest term
// among running stores, if any.
func (c *Cluster) Leader(regionID uint64) (*raftstore.PeerStatus, bool) {
	var best *raftstore.PeerStatus
	for _, id := range c.StoreIDs() {
		if st, ok := c.PeerStatus(id, regionID); ok && st.IsLeader() && (best == nil || st.Term > best.Term) {
			best = st
		}
	}
	return best, best != nil
}

// RegionOf returns the newest region (by epoch) that some running store
// holds and that contains key.
func (c *Cluster) RegionOf(key []byte) *metapb.Region {
	var best *metapb.Region
	for _, id := range c.StoreIDs() {
		s := c.Store(id)
		if s == nil {
			continue
		}
		for _, st := range s.PeerStatuses() {
			r := st.Region
			if len(r.GetPeers()) == 0 || raftstore.CheckKeyInRegion(key, r) != nil {
				continue
			}
			if best == nil || r.RegionEpoch.Version > best.RegionEpoch.Version ||
				(r.RegionEpoch.Version == best.RegionEpoch.Version && r.RegionEpoch.ConfVer > best.RegionEpoch.ConfVer) {
				best = r
			}
		}
	}
	return best
}

// NewPeer allocates a new peer on a store.
func (c *Cluster) NewPeer(storeID uint64) *metapb.Peer {
	return &metapb.Peer{Id: c.sched.AllocID(), StoreId: storeID}
}

// MustAddPeer has the scheduler add peer to the region and waits until the
// leader's region includes it.
func (c *Cluster) MustAddPeer(regionID uint64, peer *metapb.Peer) {
	c.t.Helper()
	c.sched.AddOperator(regionID, &Operator{ChangePeer: &schedulerpb.ChangePeer{ChangeType: raft_cmdpb.ConfChangeType_AddNode, Peer: peer}})
	c.waitLeaderRegion(regionID, func(r *metapb.Region) bool { return hasPeer(r, peer.Id) }, "has peer %d", peer.Id)
}

// MustRemovePeer has the scheduler remove peer from the region and waits
// until the leader's region no longer includes it.
func (c *Cluster) MustRemovePeer(regionID uint64, peer *metapb.Peer) {
	c.t.Helper()
	c.sched.AddOperator(regionID, &Operator{ChangePeer: &schedulerpb.ChangePeer{ChangeType: raft_cmdpb.ConfChangeType_RemoveNode, Peer: peer}})
	c.waitLeaderRegion(regionID, func(r *metapb.Region) bool { return !hasPeer(r, peer.Id) }, "lost peer %d", peer.Id)
}

// MustTransferLeader has the scheduler move the region's leadership to peer
// and waits until peer leads.
func (c *Cluster) MustTransferLeader(regionID uint64, peer *metapb.Peer) {
	c.t.Helper()
	c.sched.AddOperator(regionID, &Operator{TransferLeader: &schedulerpb.TransferLeader{Peer: peer}})
	c.Eventually(adminTimeout, func() error {
		if l, ok := c.Leader(regionID); ok && l.PeerID == peer.Id {
			return nil
		}
		return fmt.Errorf("region %d: peer %d does not lead", regionID, peer.Id)
	})
}

func (c *Cluster) waitLeaderRegion(regionID uint64, ok func(*metapb.Region) bool, format string, args ...any) {
	c.t.Helper()
	c.Eventually(adminTimeout, func() error {
		if l, found := c.Leader(regionID); found && ok(l.Region) {
			return nil
		}
		return fmt.Errorf("region %d: leader's region never "+format, append([]any{regionID}, args...)...)
	})
}

func hasPeer(r *metapb.Region, id uint64) bool {
	for _, p := range r.GetPeers() {
		if p.Id == id {
			return true
		}
	}
	return false
}

// MustSplit splits the region holding key at key and waits until some store
// holds a region that starts there. It returns that region.
func (c *Cluster) MustSplit(key []byte) *metapb.Region {
	c.t.Helper()
	var right *metapb.Region
	c.Eventually(adminTimeout, func() error {
		if r := c.RegionOf(key); r != nil && bytes.Equal(r.StartKey, key) {
			right = r
			return nil
		}
		r := c.RegionOf(key)
		if r == nil {
			return fmt.Errorf("no region holds %q", key)
		}
		l, ok := c.Leader(r.Id)
		if !ok {
			return fmt.Errorf("region %d has no leader", r.Id)
		}
		s := c.Store(l.StoreID)
		if s == nil {
			return fmt.Errorf("leader store %d stopped", l.StoreID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.AttemptTimeout)
		defer cancel()
		_, err := s.SplitRegion(ctx, r.Id, key)
		return fmt.Errorf("split of region %d at %q pending (last: %v)", r.Id, key, err)
	})
	return right
}

// MustHavePeer waits until the store holds an initialized peer of the region.
func (c *Cluster) MustHavePeer(regionID, storeID uint64) {
	c.t.Helper()
	c.Eventually(adminTimeout, func() error {
		if st, ok := c.PeerStatus(storeID, regionID); ok && len(st.Region.GetPeers()) > 0 {
			return nil
		}
		return fmt.Errorf("store %d has no peer of region %d", storeID, regionID)
	})
}

// MustNonePeer waits until the store holds no peer of the region.
func (c *Cluster) MustNonePeer(regionID, storeID uint64) {
	c.t.Helper()
	c.Eventually(adminTimeout, func() error {
		if _, ok := c.PeerStatus(storeID, regionID); ok {
			return fmt.Errorf("store %d still has a peer of region %d", storeID, regionID)
		}
		return nil
	})
}
