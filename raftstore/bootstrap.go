package raftstore

import (
	"errors"
	"fmt"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// ErrNotBootstrapped: the data dir has no StoreIdent yet.
var ErrNotBootstrapped = errors.New("raftstore: store is not bootstrapped")

// LoadStoreIdent reads the store's identity.
func LoadStoreIdent(engines *engine.Engines) (*rspb.StoreIdent, error) {
	var ident rspb.StoreIdent
	err := engine.GetMsg(engines.KV, engine.StoreIdentKey, &ident)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, ErrNotBootstrapped
	}
	if err != nil {
		return nil, fmt.Errorf("load store ident: %w", err)
	}
	return &ident, nil
}

// BootstrapStore gives an empty data dir its identity.
func BootstrapStore(engines *engine.Engines, clusterID, storeID uint64) error {
	if clusterID == 0 || storeID == 0 {
		return fmt.Errorf("bootstrap store: cluster id %d and store id %d must be non-zero", clusterID, storeID)
	}
	ident, err := LoadStoreIdent(engines)
	switch {
	case err == nil:
		return fmt.Errorf("bootstrap store: already bootstrapped as store %d of cluster %d", ident.StoreId, ident.ClusterId)
	case !errors.Is(err, ErrNotBootstrapped):
		return err
	}
	var wb engine.WriteBatch
	wb.SetMsg(engine.StoreIdentKey, &rspb.StoreIdent{ClusterId: clusterID, StoreId: storeID})
	if err := wb.Commit(engines.KV); err != nil {
		return err
	}
	return engines.SyncKV()
}

// BootstrapRegion writes the initial state of a region that this store holds
// a peer of: an empty raft log at (RaftInitLogIndex, RaftInitLogTerm) and a
// Normal RegionLocalState. It is how the first region of a cluster is born.
func BootstrapRegion(engines *engine.Engines, region *metapb.Region) error {
	if region.GetId() == 0 || region.RegionEpoch == nil || len(region.Peers) == 0 {
		return fmt.Errorf("bootstrap region: incomplete region %v", region)
	}
	var raftWB raftlog.Batch
	var kvWB engine.WriteBatch
	initRaftState(&raftWB, &kvWB, region.Id)
	kvWB.SetMsg(engine.RegionStateKey(region.Id), &rspb.RegionLocalState{State: rspb.PeerState_Normal, Region: region})
	// The raft state first: a region state without it would not load.
	if err := engines.WriteRaft(&raftWB); err != nil {
		return err
	}
	if err := kvWB.Commit(engines.KV); err != nil {
		return err
	}
	return engines.SyncKV()
}

// ClearBootstrapRegion removes what BootstrapRegion wrote for a region. A
// store calls it when the scheduler refuses the first region it prepared
// because another store bootstrapped the cluster first. The region's peer
// must never have been started (its raft log is still empty).
func ClearBootstrapRegion(engines *engine.Engines, regionID uint64) error {
	var raftWB raftlog.Batch
	var kvWB engine.WriteBatch
	kvWB.Delete(engine.RegionStateKey(regionID))
	kvWB.Delete(engine.ApplyStateKey(regionID))
	raftWB.Clean(regionID)
	// The region state first: a raft state without it is never loaded.
	if err := kvWB.Commit(engines.KV); err != nil {
		return err
	}
	if err := engines.SyncKV(); err != nil {
		return err
	}
	return engines.WriteRaft(&raftWB)
}
