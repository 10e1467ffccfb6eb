package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
)

func peerOn(c *Cluster, regionID, storeID uint64) *metapb.Peer {
	for _, p := range c.WaitLeader(regionID).Region.GetPeers() {
		if p.StoreId == storeID {
			return p
		}
	}
	return nil
}

// TestTransferLeader moves the leadership of region 1 to each of 5 peers in
// turn; writes keep working after every move.
func TestTransferLeader(t *testing.T) {
	c := New(t, Options{Stores: 5})
	c.MustPut([]byte("k"), []byte("v"))
	for _, id := range append(c.StoreIDs(), c.StoreIDs()[0]) {
		c.MustTransferLeader(firstRegionID, peerOn(c, firstRegionID, id))
		c.MustPut([]byte(fmt.Sprintf("k%d", id)), []byte("v"))
	}
}

// TestBasicConfChange is TinyKV's basic conf change sequence: shrink to one
// peer, keep writing, grow back (new peers get the data by snapshot), remove
// the leader, and re-add a store with a new peer id.
func TestBasicConfChange(t *testing.T) {
	c := New(t, Options{Stores: 5, Config: lowGCConfig()})
	c.MustPut([]byte("k0"), []byte("v0"))
	for _, id := range []uint64{2, 3, 4, 5} {
		c.MustRemovePeer(firstRegionID, peerOn(c, firstRegionID, id))
	}
	for _, id := range []uint64{2, 3, 4, 5} {
		c.MustNonePeer(firstRegionID, id)
		if _, ok := c.EngineGet(id, []byte("k0")); ok {
			t.Fatalf("store %d kept the data of the region it left", id)
		}
	}
	for i := 1; i <= 30; i++ {
		c.MustPut([]byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("v%d", i)))
	}

	p2 := c.NewPeer(2)
	c.MustAddPeer(firstRegionID, p2)
	c.MustHavePeer(firstRegionID, 2)
	waitEngine(t, c, 2, "k30", "v30")

	// Remove the leader (store 1's peer): it hands leadership over first.
	c.MustRemovePeer(firstRegionID, peerOn(c, firstRegionID, 1))
	c.MustNonePeer(firstRegionID, 1)
	if _, ok := c.EngineGet(1, []byte("k0")); ok {
		t.Fatalf("store 1 kept the data of the region it left")
	}
	c.MustPut([]byte("after-leader-removal"), []byte("x"))

	c.MustAddPeer(firstRegionID, c.NewPeer(3))
	c.MustAddPeer(firstRegionID, c.NewPeer(4))
	c.MustRemovePeer(firstRegionID, p2)
	c.MustNonePeer(firstRegionID, 2)
	c.MustPut([]byte("k-final"), []byte("v"))
	// Store 2 comes back with a new peer id; its old incarnation stays dead.
	c.MustAddPeer(firstRegionID, c.NewPeer(2))
	c.MustHavePeer(firstRegionID, 2)
	waitEngine(t, c, 2, "k-final", "v")
	waitEngine(t, c, 2, "after-leader-removal", "x")
}

// TestStaleMemberElectsNewPeer: a member cut off while the region changed
// around it comes back knowing none of the region's other members. Its
// region still lists the peers that were removed; the one other member,
// added meanwhile, needs its vote. The stale member must take the new
// peer's messages (they carry a newer conf version) rather than drop them
// as coming from a stranger, or neither can ever lead.
func TestStaleMemberElectsNewPeer(t *testing.T) {
	c := New(t, Options{Stores: 4})
	c.MustPut([]byte("k0"), []byte("v0"))
	c.MustRemovePeer(firstRegionID, peerOn(c, firstRegionID, 4))
	c.MustNonePeer(firstRegionID, 4)
	c.MustTransferLeader(firstRegionID, peerOn(c, firstRegionID, 1))

	// Store 3 sees none of what follows: a peer added on store 4, and
	// stores 1 and 2 removed, leaving {store 3, store 4}.
	c.Network().Isolate(3)
	p4 := c.NewPeer(4)
	c.MustAddPeer(firstRegionID, p4)
	c.MustHavePeer(firstRegionID, 4)
	c.MustTransferLeader(firstRegionID, p4)
	for _, id := range []uint64{1, 2} {
		c.MustRemovePeer(firstRegionID, peerOn(c, firstRegionID, id))
		c.MustNonePeer(firstRegionID, id)
	}
	if st, ok := c.PeerStatus(3, firstRegionID); !ok || hasPeer(st.Region, p4.Id) {
		t.Fatalf("store 3's region should not know peer %d yet: %+v", p4.Id, st)
	}

	c.Network().Heal()
	c.MustPut([]byte("k1"), []byte("v1"))
	waitEngine(t, c, 3, "k1", "v1")
	if st, _ := c.PeerStatus(3, firstRegionID); !hasPeer(st.Region, p4.Id) || hasPeer(st.Region, firstPeerID+1) {
		t.Fatalf("store 3's region after healing: %v", st.Region)
	}
}

func waitEngine(t *testing.T, c *Cluster, storeID uint64, key, want string) {
	t.Helper()
	c.Eventually(15*time.Second, func() error {
		if v, _ := c.EngineGet(storeID, []byte(key)); string(v) != want {
			return fmt.Errorf("store %d has %s=%q, want %q", storeID, key, v, want)
		}
		return nil
	})
}

// TestOneSplit splits the one region; a request to the old region for a key
// that moved gets KeyNotInRegion, and a store cut off during the split
// catches up with both halves after healing.
func TestOneSplit(t *testing.T) {
	c := New(t, Options{Stores: 3})
	c.MustPut([]byte("a1"), []byte("v"))
	c.MustPut([]byte("b1"), []byte("v"))
	before := c.RegionOf([]byte("a1"))
	leader := c.WaitLeader(before.Id)
	cut := c.OtherStore(leader.StoreID)
	c.Network().Isolate(cut)
	right := c.MustSplit([]byte("b"))
	left := c.RegionOf([]byte("a1"))
	if left.Id != before.Id || right.Id == before.Id || string(left.EndKey) != "b" || string(right.StartKey) != "b" {
		t.Fatalf("split gave left %v and right %v", left, right)
	}
	if left.RegionEpoch.Version != before.RegionEpoch.Version+1 || right.RegionEpoch.Version != left.RegionEpoch.Version {
		t.Fatalf("versions after split: left %v right %v (before %v)", left.RegionEpoch, right.RegionEpoch, before.RegionEpoch)
	}
	c.MustPut([]byte("a2"), []byte("v2"))
	c.MustPut([]byte("b2"), []byte("v2"))

	// A key that moved, asked of the old region with its new epoch.
	l, _ := c.Leader(left.Id)
	res, err := c.Store(l.StoreID).Execute(context.Background(), &raft_cmdpb.RaftCmdRequest{
		Header: &raft_cmdpb.RaftRequestHeader{RegionId: left.Id, RegionEpoch: left.RegionEpoch},
		Requests: []*raft_cmdpb.Request{{CmdType: raft_cmdpb.CmdType_Put,
			Put: &raft_cmdpb.PutRequest{Key: []byte("b3"), Value: []byte("x")}}},
	})
	if err != nil || res.RegionError().GetKeyNotInRegion() == nil {
		t.Fatalf("put of a moved key to the old region: %v %v, want KeyNotInRegion", err, res.RegionError())
	}
	// With the old epoch: EpochNotMatch carrying the current regions.
	res, err = c.Store(l.StoreID).Execute(context.Background(), &raft_cmdpb.RaftCmdRequest{
		Header: &raft_cmdpb.RaftRequestHeader{RegionId: left.Id, RegionEpoch: before.RegionEpoch},
		Requests: []*raft_cmdpb.Request{{CmdType: raft_cmdpb.CmdType_Put,
			Put: &raft_cmdpb.PutRequest{Key: []byte("a3"), Value: []byte("x")}}},
	})
	if err != nil || res.RegionError().GetEpochNotMatch() == nil {
		t.Fatalf("put with a stale epoch: %v %v, want EpochNotMatch", err, res.RegionError())
	}
	if got := res.RegionError().GetEpochNotMatch().GetCurrentRegions(); len(got) != 2 {
		t.Errorf("EpochNotMatch carries %d regions, want both halves: %v", len(got), got)
	}

	c.Network().Heal()
	c.MustHavePeer(right.Id, cut)
	waitEngine(t, c, cut, "a2", "v2")
	waitEngine(t, c, cut, "b2", "v2")
	c.MustGetEqual([]byte("a1"), []byte("v"))
	c.MustGetEqual([]byte("b1"), []byte("v"))
}

// The TinyKV project-3B scenarios: membership changes and splits under
// clients, crashes, lossy networks and partitions.
func TestMultiRaftScenarios(t *testing.T) {
	cases := []struct {
		name string
		opts ScenarioOptions
	}{
		{"ConfChangeRecover", ScenarioOptions{Clients: 1, ConfChange: true, CrashRestart: true}},
		{"ConfChangeRecoverManyClients", ScenarioOptions{Clients: 20, ConfChange: true, CrashRestart: true}},
		{"ConfChangeUnreliable", ScenarioOptions{Clients: 5, ConfChange: true, Unreliable: true}},
		{"ConfChangeUnreliableRecover", ScenarioOptions{Clients: 5, ConfChange: true, Unreliable: true, CrashRestart: true}},
		{"ConfChangeSnapshotUnreliableRecover", ScenarioOptions{Clients: 5, ConfChange: true, Unreliable: true, CrashRestart: true, MaxRaftLog: 100}},
		{"ConfChangeSnapshotUnreliableRecoverPartition", ScenarioOptions{Clients: 5, ConfChange: true, Unreliable: true, CrashRestart: true, MaxRaftLog: 100, Partitions: true}},
		{"SplitRecover", ScenarioOptions{Clients: 1, Split: true, CrashRestart: true}},
		{"SplitRecoverManyClients", ScenarioOptions{Clients: 20, Split: true, CrashRestart: true}},
		{"SplitUnreliable", ScenarioOptions{Clients: 5, Split: true, Unreliable: true}},
		{"SplitUnreliableRecover", ScenarioOptions{Clients: 5, Split: true, Unreliable: true, CrashRestart: true}},
		{"SplitConfChangeSnapshotUnreliableRecover", ScenarioOptions{Clients: 5, Split: true, ConfChange: true, Unreliable: true, CrashRestart: true, MaxRaftLog: 100}},
		{"SplitConfChangeSnapshotUnreliableRecoverPartition", ScenarioOptions{Clients: 5, Split: true, ConfChange: true, Unreliable: true, CrashRestart: true, MaxRaftLog: 100, Partitions: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Cluster.Stores = 5
			start := time.Now()
			c := RunScenario(t, tc.opts)
			if tc.opts.Split && c.regionCount() < 2 {
				t.Errorf("the data never split: %d region", c.regionCount())
			}
			t.Logf("%s took %v", tc.name, time.Since(start))
		})
	}
}
