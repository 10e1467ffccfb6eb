package raftstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// loopTransport connects stores of one process directly, for the package's
// own tests; the region harness has the full simulated network.
type loopTransport struct {
	mu     sync.Mutex
	stores map[uint64]*Store
}

func (t *loopTransport) Send(msg *rspb.RaftMessage) error {
	t.mu.Lock()
	s := t.stores[msg.ToPeer.StoreId]
	t.mu.Unlock()
	if s == nil {
		return fmt.Errorf("store %d unreachable", msg.ToPeer.StoreId)
	}
	data, err := msg.Marshal()
	if err != nil {
		return err
	}
	var cp rspb.RaftMessage
	if err := cp.Unmarshal(data); err != nil {
		return err
	}
	_ = s.OnRaftMessage(&cp)
	return nil
}

func (t *loopTransport) SendSnapshot(ctx context.Context, msg *rspb.RaftMessage, data io.Reader) error {
	t.mu.Lock()
	s := t.stores[msg.ToPeer.StoreId]
	t.mu.Unlock()
	if s == nil {
		return fmt.Errorf("store %d unreachable", msg.ToPeer.StoreId)
	}
	buf, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	return s.ReceiveSnapshot(msg, bytes.NewReader(buf))
}

func (t *loopTransport) Flush() {}

func testConfig() Config {
	c := DefaultConfig()
	c.RaftBaseTickInterval = 10 * time.Millisecond
	c.Logger = slog.New(slog.DiscardHandler)
	return c
}

// newTestCluster starts n stores holding one region [“”, “”) with a peer on each.
func newTestCluster(t testing.TB, n int) []*Store {
	t.Helper()
	trans := &loopTransport{stores: map[uint64]*Store{}}
	region := &metapb.Region{Id: 1, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}}
	for i := 1; i <= n; i++ {
		region.Peers = append(region.Peers, &metapb.Peer{Id: uint64(100 + i), StoreId: uint64(i)})
	}
	var stores []*Store
	for i := 1; i <= n; i++ {
		eng, err := engine.Open(t.TempDir(), engine.SmallOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := BootstrapStore(eng, 1, uint64(i)); err != nil {
			t.Fatal(err)
		}
		if err := BootstrapRegion(eng, region); err != nil {
			t.Fatal(err)
		}
		s, err := NewStore(testConfig(), eng, trans)
		if err != nil {
			t.Fatal(err)
		}
		trans.mu.Lock()
		trans.stores[uint64(i)] = s
		trans.mu.Unlock()
		stores = append(stores, s)
		t.Cleanup(func() { s.Stop(); eng.Close() })
	}
	for _, s := range stores {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return stores
}

func waitLeader(t testing.TB, stores []*Store, regionID uint64) *Store {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range stores {
			if st, ok := s.PeerStatus(regionID); ok && st.IsLeader() {
				return s
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no leader for region %d", regionID)
	return nil
}

func putCmd(s *Store, key, value string) *raft_cmdpb.RaftCmdRequest {
	st, _ := s.PeerStatus(1)
	return &raft_cmdpb.RaftCmdRequest{
		Header: &raft_cmdpb.RaftRequestHeader{RegionId: 1, RegionEpoch: st.Region.RegionEpoch},
		Requests: []*raft_cmdpb.Request{{
			CmdType: raft_cmdpb.CmdType_Put,
			Put:     &raft_cmdpb.PutRequest{Key: []byte(key), Value: []byte(value)},
		}},
	}
}

func snapCmd(s *Store) *raft_cmdpb.RaftCmdRequest {
	st, _ := s.PeerStatus(1)
	return &raft_cmdpb.RaftCmdRequest{
		Header:   &raft_cmdpb.RaftRequestHeader{RegionId: 1, RegionEpoch: st.Region.RegionEpoch},
		Requests: []*raft_cmdpb.Request{{CmdType: raft_cmdpb.CmdType_Snap, Snap: &raft_cmdpb.SnapRequest{}}},
	}
}

func TestPutGet(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("stores=%d", n), func(t *testing.T) {
			stores := newTestCluster(t, n)
			leader := waitLeader(t, stores, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for i := range 50 {
				res, err := leader.Execute(ctx, putCmd(leader, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)))
				if err != nil || res.RegionError() != nil {
					t.Fatalf("put %d: %v %v", i, err, res.RegionError())
				}
			}
			res, err := leader.Execute(ctx, snapCmd(leader))
			if err != nil || res.RegionError() != nil {
				t.Fatalf("snap: %v %v", err, res.RegionError())
			}
			defer res.Snap.Close()
			v, ok, err := res.Snap.Get("", []byte("k007"))
			if err != nil || !ok || string(v) != "v7" {
				t.Fatalf("get k007 = %q %v %v", v, ok, err)
			}
			kvs, err := res.Snap.Scan("", []byte("k010"), []byte("k020"), 5, false, false)
			if err != nil || len(kvs) != 5 || string(kvs[0].Key) != "k010" {
				t.Fatalf("scan = %v %v", kvs, err)
			}
			// A follower refuses with NotLeader naming the leader.
			for _, s := range stores {
				if s == leader {
					continue
				}
				res, err := s.Execute(ctx, putCmd(s, "x", "y"))
				if err != nil || res.RegionError().GetNotLeader() == nil {
					t.Fatalf("follower put: %v %v", err, res.RegionError())
				}
			}
		})
	}
}

// TestSweepTombstoneLeftovers: a peer whose store crashed after writing its
// tombstone but before removing its raft state, log and data has them
// removed on the next start.
func TestSweepTombstoneLeftovers(t *testing.T) {
	eng, region := bootstrapOneRegion(t)
	fillRegion(t, eng, "b", 10, 10)
	var raftWB raftlog.Batch
	var kvWB engine.WriteBatch
	raftWB.Append(region.Id, []raftpb.Entry{{Term: 6, Index: 6, Data: []byte("entry")}})
	kvWB.SetMsg(engine.RegionStateKey(region.Id), &rspb.RegionLocalState{State: rspb.PeerState_Tombstone, Region: region})
	if err := eng.WriteRaft(&raftWB); err != nil {
		t.Fatal(err)
	}
	if err := kvWB.Commit(eng.KV); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(testConfig(), eng, &loopTransport{stores: map[uint64]*Store{}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.PeerStatuses()); n != 0 {
		t.Fatalf("a tombstoned region came back: %d peers", n)
	}
	var rs rspb.RaftLocalState
	if found, err := eng.Raft.State(region.Id, &rs); found || err != nil {
		t.Fatalf("raft state left: %v, %v", found, err)
	}
	if first, last, ok := eng.Raft.Bounds(region.Id); ok {
		t.Fatalf("raft log [%d, %d] left", first, last)
	}
	snap := NewRegionSnapshot(eng.KV, &metapb.Region{})
	defer snap.Close()
	if kvs, _ := snap.Scan("", nil, nil, 0, true, false); len(kvs) != 0 {
		t.Fatalf("%d data keys left", len(kvs))
	}
}

// TestStartDeletesLeftoverEntries: raft log entries at or below the
// truncated index whose deletion a stop or crash cut short are deleted when
// the store starts, even if the region never compacts again.
func TestStartDeletesLeftoverEntries(t *testing.T) {
	eng, region := bootstrapOneRegion(t)
	// The bootstrap truncated the log at RaftInitLogIndex; entries up to it
	// are leftovers.
	var wb raftlog.Batch
	var ents []raftpb.Entry
	for i := uint64(1); i <= RaftInitLogIndex; i++ {
		ents = append(ents, raftpb.Entry{Term: 1, Index: i})
	}
	wb.Append(region.Id, ents)
	if err := eng.WriteRaft(&wb); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(testConfig(), eng, &loopTransport{stores: map[uint64]*Store{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		first, last, ok := eng.Raft.Bounds(region.Id)
		if !ok || first > RaftInitLogIndex {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leftover entries [%d, %d] still in the raft log", first, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bootstrapOneRegion opens engines for store 1 of cluster 1, bootstrapped
// with region [a, m) whose only peer is on it.
func bootstrapOneRegion(t *testing.T) (*engine.Engines, *metapb.Region) {
	t.Helper()
	eng := openTestEngines(t)
	return eng, bootstrapRegionIn(t, eng)
}

// bootstrapRegionIn bootstraps store 1 and region [a, m) in eng.
func bootstrapRegionIn(t *testing.T, eng *engine.Engines) *metapb.Region {
	t.Helper()
	if err := BootstrapStore(eng, 1, 1); err != nil {
		t.Fatal(err)
	}
	region := testRegion("a", "m")
	region.Peers[0].StoreId = 1
	if err := BootstrapRegion(eng, region); err != nil {
		t.Fatal(err)
	}
	return region
}
