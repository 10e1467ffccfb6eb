package node

import (
	"context"
	"fmt"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/raftstore"
	"github.com/regionkv/regionkv/scheduler/client"
)

// bootstrapCluster bootstraps the cluster with a first region on this
// store if nobody has yet.
//
// The region is written locally first (raftstore.BootstrapRegion), then
// offered to the scheduler. If the scheduler answers that the cluster is
// already bootstrapped (another store won the race), the local region is
// discarded. If the answer is lost, the prepared region stays and the next
// start resolves it: offered again while the cluster is not bootstrapped,
// kept if the scheduler knows it, discarded if not.
func (n *Node) bootstrapCluster(ctx context.Context) error {
	prepared, err := n.preparedRegion()
	if err != nil {
		return err
	}
	bootstrapped, err := n.sched.IsBootstrapped(ctx)
	if err != nil {
		return fmt.Errorf("ask whether the cluster is bootstrapped: %w", err)
	}
	if bootstrapped {
		if prepared == nil {
			return nil
		}
		_, _, err := n.sched.GetRegionByID(ctx, prepared.Id)
		switch {
		case err == nil:
			return nil // the cluster's first region, still unchanged
		case client.IsErrorType(err, schedulerpb.ErrorType_REGION_NOT_FOUND):
			return n.discardRegion(prepared, "left over from a bootstrap attempt the scheduler never recorded")
		}
		return fmt.Errorf("check region %d with the scheduler: %w", prepared.Id, err)
	}
	if prepared == nil {
		if prepared, err = n.prepareRegion(ctx); err != nil {
			return err
		}
	}
	err = n.sched.Bootstrap(ctx, &metapb.Store{Id: n.storeID, Address: n.advertise}, prepared)
	switch {
	case err == nil:
		n.log.Info("bootstrapped the cluster", "cluster_id", n.clusterID, "region_id", prepared.Id)
		return nil
	case client.IsErrorType(err, schedulerpb.ErrorType_ALREADY_BOOTSTRAPPED):
		return n.discardRegion(prepared, "another store bootstrapped the cluster first")
	}
	return fmt.Errorf("bootstrap the cluster: %w", err)
}

// prepareRegion writes the first region of a new cluster, ["", ""), epoch
// {1, 1}, with one voter on this store.
func (n *Node) prepareRegion(ctx context.Context) (*metapb.Region, error) {
	regionID, err := n.sched.AllocID(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocate the first region's id: %w", err)
	}
	peerID, err := n.sched.AllocID(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocate the first peer's id: %w", err)
	}
	region := &metapb.Region{
		Id:          regionID,
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
		Peers:       []*metapb.Peer{{Id: peerID, StoreId: n.storeID}},
	}
	if err := raftstore.BootstrapRegion(n.engines, region); err != nil {
		return nil, err
	}
	return region, nil
}

func (n *Node) discardRegion(region *metapb.Region, why string) error {
	n.log.Info("discarding the prepared first region", "region_id", region.Id, "why", why)
	return raftstore.ClearBootstrapRegion(n.engines, region.Id)
}

// preparedRegion returns the local region that looks like a first region
// this store prepared: ["", ""), epoch {1, 1}, one voter on this store. A
// store holds at most one such region (any other region's range or epoch
// differs).
func (n *Node) preparedRegion() (*metapb.Region, error) {
	txn := n.engines.KV.NewTransaction(false)
	defer txn.Discard()
	prefix := engine.RegionStatePrefix()
	it := engine.NewRangeIter(txn, prefix, []byte{prefix[0], prefix[1] + 1}, false, false)
	defer it.Close()
	for ; it.Valid(); it.Next() {
		var st rspb.RegionLocalState
		if err := it.Item().Value(st.Unmarshal); err != nil {
			return nil, fmt.Errorf("load region state %x: %w", it.Key(), err)
		}
		r := st.Region
		if st.State == rspb.PeerState_Normal && len(r.GetStartKey()) == 0 && len(r.GetEndKey()) == 0 &&
			r.GetRegionEpoch().GetConfVer() == 1 && r.GetRegionEpoch().GetVersion() == 1 &&
			len(r.GetPeers()) == 1 && r.Peers[0].StoreId == n.storeID {
			return r, nil
		}
	}
	return nil, nil
}
