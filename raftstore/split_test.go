package raftstore

import (
	"testing"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// TestReplaceBySplitAfterStop: a split that replaces an uninitialized peer
// while its store stops (the router already stopped) leaves the split peer to
// the store's next start, which loads it from the kv DB, instead of stopping
// the process. Clean-clone CI once died here with "register split peer of
// region 1103: router: stopped".
func TestReplaceBySplitAfterStop(t *testing.T) {
	eng, region := bootstrapOneRegion(t)
	s := startOneStore(t, testConfig(), eng, region.Id)
	meta := &metapb.Peer{Id: 20, StoreId: 1}
	// An uninitialized peer of region 2, as its leader's heartbeat makes one.
	p, err := newPeer(s, &metapb.Region{Id: 2, RegionEpoch: &metapb.RegionEpoch{}}, meta)
	if err != nil {
		t.Fatal(err)
	}
	// What the parent's split wrote for region 2 in its apply batch.
	w := newKVWriter(eng.KV, &s.stats)
	w.setMsg(engine.ApplyStateKey(2), &rspb.RaftApplyState{AppliedIndex: RaftInitLogIndex,
		TruncatedState: &rspb.RaftTruncatedState{Index: RaftInitLogIndex, Term: RaftInitLogTerm}})
	w.commit()
	s.Stop()

	p.replaceBySplit(&metapb.Region{Id: 2, StartKey: []byte("m"), EndKey: []byte("z"),
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 2}, Peers: []*metapb.Peer{meta}}, false)
	if _, ok := s.PeerStatus(2); ok {
		t.Errorf("a split peer was registered with a stopped router")
	}
}
