package harness

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/raftstore"
)

func lowGCConfig() raftstore.Config {
	return raftstore.Config{RaftLogGCCountLimit: 10, RaftLogGCThreshold: 5, RaftLogGCTickTicks: 2}
}

// TestOneSnapshot: a follower cut off while the leader writes far past its
// log GC limit can only catch up through a snapshot; it does, and it keeps
// the data across a restart.
func TestOneSnapshot(t *testing.T) {
	c := New(t, Options{Stores: 3, Config: lowGCConfig()})
	c.MustPut([]byte("k0"), []byte("v0"))
	leader := c.WaitLeader(firstRegionID)
	lagger := c.OtherStore(leader.StoreID)
	c.Network().Isolate(lagger)
	before, _ := c.PeerStatus(lagger, firstRegionID)
	for i := 1; i <= 100; i++ {
		c.MustPut([]byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("v%d", i)))
	}
	// The rest of the group compacted past everything the lagger has.
	c.Eventually(10*time.Second, func() error {
		for _, id := range c.StoreIDs() {
			if id == lagger {
				continue
			}
			if st, _ := c.PeerStatus(id, firstRegionID); st.TruncatedIndex <= before.LastIndex {
				return fmt.Errorf("store %d truncated only to %d; the lagger's log ends at %d", id, st.TruncatedIndex, before.LastIndex)
			}
		}
		return nil
	})
	c.Network().Heal()
	target, _ := c.PeerStatus(leader.StoreID, firstRegionID)
	c.Eventually(15*time.Second, func() error {
		st, _ := c.PeerStatus(lagger, firstRegionID)
		if st.AppliedIndex < target.AppliedIndex {
			return fmt.Errorf("lagger applied %d of %d", st.AppliedIndex, target.AppliedIndex)
		}
		return nil
	})
	after, _ := c.PeerStatus(lagger, firstRegionID)
	if after.TruncatedIndex <= before.LastIndex {
		t.Fatalf("lagger's log starts after %d, its old log ended at %d: it did not catch up by snapshot", after.TruncatedIndex, before.LastIndex)
	}
	for i := 0; i <= 100; i++ {
		if v, ok := c.EngineGet(lagger, []byte(fmt.Sprintf("k%d", i))); !ok || string(v) != fmt.Sprintf("v%d", i) {
			t.Fatalf("lagger has k%d = %q, %v", i, v, ok)
		}
	}
	c.StopStore(lagger)
	c.StartStore(lagger)
	for i := 0; i <= 100; i++ {
		if v, ok := c.EngineGet(lagger, []byte(fmt.Sprintf("k%d", i))); !ok || string(v) != fmt.Sprintf("v%d", i) {
			t.Fatalf("after restart the lagger has k%d = %q, %v", i, v, ok)
		}
	}
	c.CheckLogBounded(20)
}

// TestSnapshotApplyCrash kills a store in each window of applying a
// snapshot: after the region is marked Applying and before the raft state
// is at the snapshot (the old data still there), and after the old data is
// cleared and before the new is written. On restart the store must finish
// the job from the received files.
func TestSnapshotApplyCrash(t *testing.T) {
	for _, point := range []string{"snapshot-after-mark", "snapshot-after-clear"} {
		t.Run(point, func(t *testing.T) { testSnapshotApplyCrash(t, point) })
	}
}

func testSnapshotApplyCrash(t *testing.T, point string) {
	var crashed atomicFlag
	var lagger uint64
	cfg := lowGCConfig()
	cfg.FailPoint = func(name string) bool {
		return name == point && crashed.setOnce()
	}
	c := New(t, Options{Stores: 3, Config: cfg})
	leader := c.WaitLeader(firstRegionID)
	lagger = c.OtherStore(leader.StoreID)
	c.MustPut([]byte("old"), []byte("x"))
	c.Eventually(5*time.Second, func() error {
		if _, ok := c.EngineGet(lagger, []byte("old")); !ok {
			return fmt.Errorf("lagger has not applied the first write")
		}
		return nil
	})
	c.Network().Isolate(lagger)
	for i := range 60 {
		c.MustPut([]byte(fmt.Sprintf("k%02d", i)), []byte("v"))
	}
	c.MustDelete([]byte("old"))
	c.CheckLogBounded(20)
	c.Network().Heal()
	c.Eventually(15*time.Second, func() error {
		if !crashed.isSet() {
			return fmt.Errorf("no snapshot reached the fail point yet")
		}
		return nil
	})
	// Half-applied: the new data not written yet; the old cleared only at
	// the second point.
	if _, ok := c.EngineGet(lagger, []byte("old")); ok != (point == "snapshot-after-mark") {
		t.Fatalf("at %s the lagger has the old data: %v", point, ok)
	}
	if _, ok := c.EngineGet(lagger, []byte("k00")); ok {
		t.Fatalf("fail point fired after the new data was written")
	}
	c.StopStore(lagger)
	c.StartStore(lagger)
	for i := range 60 {
		if _, ok := c.EngineGet(lagger, []byte(fmt.Sprintf("k%02d", i))); !ok {
			t.Fatalf("after restart the lagger lacks k%02d", i)
		}
	}
	if _, ok := c.EngineGet(lagger, []byte("old")); ok {
		t.Fatalf("after restart the lagger still has the deleted key")
	}
	c.MustPut([]byte("after"), []byte("y"))
	c.Eventually(10*time.Second, func() error {
		if v, _ := c.EngineGet(lagger, []byte("after")); string(v) != "y" {
			return fmt.Errorf("restarted lagger does not replicate new writes")
		}
		return nil
	})
}

// TestSnapshotApplyCrashLongerOldLog is the first window of
// TestSnapshotApplyCrash on a peer whose old log reaches past the
// snapshot: a leader cut off with entries nobody else has. On restart its
// raft state is left as it was (recoverApplyingSnapshot moves it only when
// the log ends before the snapshot), the commit index rises to the
// snapshot's, and the stale entries after it are overwritten by the new
// leader's: none of the cut-off leader's writes may ever be applied.
func TestSnapshotApplyCrashLongerOldLog(t *testing.T) {
	var crashed atomicFlag
	cfg := lowGCConfig()
	cfg.FailPoint = func(name string) bool {
		return name == "snapshot-after-mark" && crashed.setOnce()
	}
	c := New(t, Options{Stores: 3, Config: cfg})
	c.MustPut([]byte("old"), []byte("x"))
	leader := c.WaitLeader(firstRegionID)
	cut := leader.StoreID
	c.Eventually(5*time.Second, func() error {
		for _, id := range c.StoreIDs() {
			if _, ok := c.EngineGet(id, []byte("old")); !ok {
				return fmt.Errorf("store %d has not applied the first write", id)
			}
		}
		return nil
	})
	peer := peerOn(c, firstRegionID, cut)
	// Entries only the cut-off leader has: one proposal per round, until it
	// notices it lost its quorum and steps down.
	c.Network().Isolate(cut)
	const tries = 200
	var stale int
	for i := range tries {
		st, ok := c.PeerStatus(cut, firstRegionID)
		if !ok || st.LeaderID != peer.Id {
			break
		}
		req := &raft_cmdpb.RaftCmdRequest{Header: header(leader.Region, peer),
			Requests: []*raft_cmdpb.Request{putReq(fmt.Sprintf("stale%03d", i), "never")}}
		if c.Store(cut).Propose(req, func(raftstore.Result) {}) == nil {
			stale++
		}
		time.Sleep(2 * time.Millisecond)
	}
	before, _ := c.PeerStatus(cut, firstRegionID)
	// The others elect a leader and write fewer entries than the cut-off
	// leader appended, but enough for their log to be compacted past the
	// point where the logs part.
	puts := int(before.LastIndex-before.CommitIndex) / 2
	if puts < 12 {
		t.Fatalf("the cut-off leader appended only %d entries past its commit index (%d proposals)", before.LastIndex-before.CommitIndex, stale)
	}
	for i := range puts {
		c.MustPut([]byte(fmt.Sprintf("k%02d", i)), []byte("v"))
	}
	// Only a snapshot can catch the cut-off leader up once the others'
	// logs no longer hold the entry after its commit index.
	c.Eventually(10*time.Second, func() error {
		for _, id := range c.StoreIDs() {
			if st, ok := c.PeerStatus(id, firstRegionID); id != cut && (!ok || st.TruncatedIndex <= before.CommitIndex+1) {
				return fmt.Errorf("store %d's log is not compacted past index %d", id, before.CommitIndex+1)
			}
		}
		return nil
	})
	c.Network().Heal()
	c.Eventually(15*time.Second, func() error {
		if !crashed.isSet() {
			return fmt.Errorf("no snapshot reached the fail point yet")
		}
		return nil
	})
	// The window this test is for: the log reaches past the snapshot.
	var rs rspb.RaftLocalState
	if _, err := c.Store(cut).Engines().Raft.State(firstRegionID, &rs); err != nil {
		t.Fatal(err)
	}
	var apply rspb.RaftApplyState
	if err := engine.GetMsg(c.Store(cut).Engines().KV, engine.ApplyStateKey(firstRegionID), &apply); err != nil {
		t.Fatal(err)
	}
	t.Logf("stale proposals %d, cut-off leader commit %d last %d; at the crash: raft last %d commit %d, snapshot %d", stale, before.CommitIndex, before.LastIndex, rs.LastIndex, rs.HardState.Commit, apply.TruncatedState.GetIndex())
	if snap := apply.TruncatedState.GetIndex(); rs.LastIndex < snap {
		t.Fatalf("the old log ends at %d, before the snapshot at %d: not the window under test", rs.LastIndex, snap)
	}
	c.StopStore(cut)
	c.StartStore(cut)
	c.MustPut([]byte("after"), []byte("y"))
	c.Eventually(10*time.Second, func() error {
		if v, _ := c.EngineGet(cut, []byte("after")); string(v) != "y" {
			return fmt.Errorf("the restarted store does not replicate new writes")
		}
		return nil
	})
	for i := range puts {
		if _, ok := c.EngineGet(cut, []byte(fmt.Sprintf("k%02d", i))); !ok {
			t.Fatalf("after restart the store lacks k%02d", i)
		}
	}
	for i := range tries {
		key := []byte(fmt.Sprintf("stale%03d", i))
		for _, id := range c.StoreIDs() {
			if _, ok := c.EngineGet(id, key); ok {
				t.Fatalf("store %d applied %s, a write only the cut-off leader had", id, key)
			}
		}
	}
}

// The TinyKV project-2C scenarios: the log is compacted every few entries,
// so restarted and partitioned stores catch up through snapshots.
func TestSnapshotScenarios(t *testing.T) {
	cases := []struct {
		name string
		opts ScenarioOptions
	}{
		{"SnapshotRecover", ScenarioOptions{Clients: 1, CrashRestart: true}},
		{"SnapshotRecoverManyClients", ScenarioOptions{Clients: 20, CrashRestart: true}},
		{"SnapshotUnreliable", ScenarioOptions{Clients: 5, Unreliable: true}},
		{"SnapshotUnreliableRecover", ScenarioOptions{Clients: 5, Unreliable: true, CrashRestart: true}},
		{"SnapshotUnreliableRecoverPartition", ScenarioOptions{Clients: 5, Unreliable: true, CrashRestart: true, Partitions: true, Cluster: Options{Stores: 5}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.MaxRaftLog = 100
			start := time.Now()
			RunScenario(t, tc.opts)
			t.Logf("%s took %v", tc.name, time.Since(start))
		})
	}
}

// atomicFlag is set at most once.
type atomicFlag struct{ v atomic.Bool }

func (f *atomicFlag) setOnce() bool { return f.v.CompareAndSwap(false, true) }
func (f *atomicFlag) isSet() bool   { return f.v.Load() }
