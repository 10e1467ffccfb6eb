package raftstore

import (
	"errors"
	"testing"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
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

// TestCheckSplitRejectsBadRequests: applySplit refuses, with an error and
// before it changes anything, a split request it could not apply; every
// replica refuses it alike, as the check depends only on the request and
// the region.
func TestCheckSplitRejectsBadRequests(t *testing.T) {
	region := &metapb.Region{Id: 1, StartKey: []byte("b"), EndKey: []byte("y"),
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
		Peers:       []*metapb.Peer{{Id: 11, StoreId: 1}, {Id: 12, StoreId: 2}}}
	ok := func() *raft_cmdpb.SplitRequest {
		return &raft_cmdpb.SplitRequest{SplitKey: []byte("m"), NewRegionId: 2, NewPeerIds: []uint64{21, 22}}
	}
	if err := (&peer{}).checkSplit(ok(), region); err != nil {
		t.Fatalf("a good split was refused: %v", err)
	}
	cases := []struct {
		name   string
		modify func(*raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest
	}{
		{"no request", func(*raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { return nil }},
		{"no split key", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.SplitKey = nil; return s }},
		{"no new region id", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.NewRegionId = 0; return s }},
		{"new region id is the region's", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.NewRegionId = 1; return s }},
		{"too few peer ids", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.NewPeerIds = s.NewPeerIds[:1]; return s }},
		{"too many peer ids", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest {
			s.NewPeerIds = append(s.NewPeerIds, 23)
			return s
		}},
		{"zero peer id", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.NewPeerIds[1] = 0; return s }},
		{"duplicate peer ids", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.NewPeerIds[1] = 21; return s }},
		{"key at the start", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.SplitKey = []byte("b"); return s }},
		{"key before the start", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.SplitKey = []byte("a"); return s }},
		{"key at the end", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.SplitKey = []byte("y"); return s }},
		{"key after the end", func(s *raft_cmdpb.SplitRequest) *raft_cmdpb.SplitRequest { s.SplitKey = []byte("z"); return s }},
	}
	for _, c := range cases {
		if err := (&peer{}).checkSplit(c.modify(ok()), region); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	// A key outside the region is the client-visible KeyNotInRegion.
	s := ok()
	s.SplitKey = []byte("z")
	var kerr *KeyNotInRegionError
	if err := (&peer{}).checkSplit(s, region); !errors.As(err, &kerr) {
		t.Errorf("key after the end: %T %v, want a KeyNotInRegionError", err, err)
	}
}
