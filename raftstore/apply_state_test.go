package raftstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/router"
)

// TestApplyStateTrailsAndReplays: a region applying raw writes leaves its
// durable RaftApplyState behind until a kv sync has covered them; with no
// sync at all it stays where it was. A restart applies those entries again,
// on top of data that already has them, and ends in the same state. The log
// GC never deletes an entry a restart would need.
func TestApplyStateTrailsAndReplays(t *testing.T) {
	eng, region := bootstrapOneRegion(t)
	cfg := testConfig()
	cfg.RaftLogGCThreshold = 1 << 20 // no CompactLog in the first part
	cfg.RaftLogGCCountLimit = 1 << 20
	cfg.KVSyncTickTicks = 1 << 30 // and no kv sync
	before := loadApplyState(t, eng, region.Id).AppliedIndex

	// Overwrites, deletes and a DeleteRange, one entry each: replaying them
	// from an older applied index over the newer data must end where the
	// first application did.
	want := map[string]string{}
	var reqs []*raft_cmdpb.Request
	for i := range 100 {
		key := fmt.Sprintf("b%02d", i%12)
		switch {
		case i == 77:
			reqs = append(reqs, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_DeleteRange,
				DeleteRange: &raft_cmdpb.DeleteRangeRequest{StartKey: []byte("b03"), EndKey: []byte("b07")}})
			for k := range want {
				if k >= "b03" && k < "b07" {
					delete(want, k)
				}
			}
		case i%9 == 4:
			reqs = append(reqs, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Delete,
				Delete: &raft_cmdpb.DeleteRequest{Key: []byte(key)}})
			delete(want, key)
		default:
			v := fmt.Sprintf("v%d", i)
			reqs = append(reqs, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put,
				Put: &raft_cmdpb.PutRequest{Key: []byte(key), Value: []byte(v)}})
			want[key] = v
		}
	}

	s := startOneStore(t, cfg, eng, region.Id)
	for i, r := range reqs {
		mustExecute(t, s, region.Id, r, fmt.Sprintf("write %d", i))
	}
	// A write is answered in its round before the round publishes the
	// peer's status: wait for the status to show the last one (after the
	// leader's empty entry and the writes).
	waitApplied(t, s, region.Id, before+uint64(len(reqs))+1)
	st, _ := s.PeerStatus(region.Id)
	applied := st.AppliedIndex
	s.Stop()

	durable := loadApplyState(t, eng, region.Id)
	if durable.AppliedIndex != before || applied <= before+uint64(len(reqs)) {
		t.Fatalf("written applied index %d, applied %d after %d writes: want it still at %d, the writes applied", durable.AppliedIndex, applied, len(reqs), before)
	}
	if n := s.Stats().KVSyncs; n != 0 {
		t.Fatalf("%d kv syncs, want none", n)
	}

	// The restart applies the trailing entries again.
	cfg.RaftLogGCThreshold, cfg.RaftLogGCTickTicks = 10, 1
	cfg.KVSyncTickTicks = 2
	s = startOneStore(t, cfg, eng, region.Id)
	waitApplied(t, s, region.Id, applied)
	checkData(t, s, region, want)

	// Log GC now compacts the log of more than 10 entries.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if first, _, ok := eng.Raft.Bounds(region.Id); ok && first > durable.AppliedIndex {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("log GC deleted no entries")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Stop()
	first, _, _ := eng.Raft.Bounds(region.Id)
	durable = loadApplyState(t, eng, region.Id)
	if tr := durable.TruncatedState.GetIndex(); tr+1 < first || durable.AppliedIndex < tr {
		t.Fatalf("raft log starts at %d, durable truncated index %d, applied %d", first, tr, durable.AppliedIndex)
	}
	s = startOneStore(t, cfg, eng, region.Id)
	defer s.Stop()
	checkData(t, s, region, want)
	mustExecute(t, s, region.Id, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put,
		Put: &raft_cmdpb.PutRequest{Key: []byte("c"), Value: []byte("after")}}, "write after the restarts")
}

func startOneStore(t *testing.T, cfg Config, eng *engine.Engines, regionID uint64) *Store {
	t.Helper()
	s, err := NewStore(cfg, eng, &loopTransport{stores: map[uint64]*Store{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, []*Store{s}, regionID)
	return s
}

func mustExecute(t *testing.T, s *Store, regionID uint64, r *raft_cmdpb.Request, what string) {
	t.Helper()
	st, _ := s.PeerStatus(regionID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.Execute(ctx, &raft_cmdpb.RaftCmdRequest{
		Header:   &raft_cmdpb.RaftRequestHeader{RegionId: regionID, RegionEpoch: st.Region.RegionEpoch},
		Requests: []*raft_cmdpb.Request{r},
	})
	if err != nil || res.RegionError() != nil {
		t.Fatalf("%s: %v %v", what, err, res.RegionError())
	}
}

func loadApplyState(t *testing.T, eng *engine.Engines, regionID uint64) *rspb.RaftApplyState {
	t.Helper()
	var st rspb.RaftApplyState
	if err := engine.GetMsg(eng.KV, engine.ApplyStateKey(regionID), &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func waitApplied(t *testing.T, s *Store, regionID, index uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, ok := s.PeerStatus(regionID); ok && st.AppliedIndex >= index {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("region %d did not apply up to %d", regionID, index)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkData reads the whole region through the store and compares it with want.
func checkData(t *testing.T, s *Store, region *metapb.Region, want map[string]string) {
	t.Helper()
	snap := NewRegionSnapshot(s.engines.KV, region)
	defer snap.Close()
	kvs, err := snap.Scan("", nil, nil, 0, false, false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("data after restart:\n got %v\nwant %v", got, want)
	}
}

// TestCheckpointWaitsForSync: raw writes' apply state is written only after
// a kv sync begun after their commit, whatever their values' size (values
// from 64 KiB go to Badger's value log here); a split's is written with
// it, after a sync of what came before. Values survive a restart.
func TestCheckpointWaitsForSync(t *testing.T) {
	opts := engine.SmallOptions()
	opts.ValueThreshold = minKVValueThreshold
	dir := t.TempDir()
	eng, err := engine.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	region := bootstrapRegionIn(t, eng)
	cfg := testConfig()
	cfg.KVSyncTickTicks = 1 << 30 // syncs only when the test asks
	cfg.RaftLogGCThreshold = 1 << 20
	cfg.RaftLogGCCountLimit = 1 << 20
	put := func(s *Store, key, val string) {
		mustExecute(t, s, region.Id, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put,
			Put: &raft_cmdpb.PutRequest{Key: []byte(key), Value: []byte(val)}}, "put "+key)
	}
	written := func() uint64 { return loadApplyState(t, eng, region.Id).AppliedIndex }
	applied := func(s *Store) uint64 { st, _ := s.PeerStatus(region.Id); return st.AppliedIndex }
	big := strings.Repeat("v", minKVValueThreshold+100)
	s := startOneStore(t, cfg, eng, region.Id)
	before := written()
	put(s, "b", "small")
	put(s, "c", big)
	if w := written(); w != before {
		t.Fatalf("apply state written at %d before any sync (was %d)", w, before)
	}

	// The sync covers the writes; the region is told, and writes its
	// checkpoint though nothing else happens in it.
	// (A sync each try: the put's callback may fire before the checkpoint
	// is taken, which then waits for the next sync.)
	waitFor(t, "the checkpoint", func() bool { s.kvSync.sync(); return written() == applied(s) })

	// A split syncs what was applied before it and writes its apply state
	// with its effects.
	put(s, "d", big)
	syncs := s.Stats().KVSyncs
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, _ := s.PeerStatus(region.Id)
	res, err := s.Execute(ctx, &raft_cmdpb.RaftCmdRequest{
		Header: &raft_cmdpb.RaftRequestHeader{RegionId: region.Id, RegionEpoch: st.Region.RegionEpoch},
		AdminRequest: &raft_cmdpb.AdminRequest{CmdType: raft_cmdpb.AdminCmdType_Split,
			Split: &raft_cmdpb.SplitRequest{SplitKey: []byte("f"), NewRegionId: 100, NewPeerIds: []uint64{101}}},
	})
	if err != nil || res.RegionError() != nil {
		t.Fatalf("split: %v %v", err, res.RegionError())
	}
	if n := s.Stats().KVSyncs; n != syncs+1 {
		t.Fatalf("%d kv syncs for a split, want 1", n-syncs)
	}
	waitFor(t, "the split's apply state", func() bool { return written() == applied(s) })
	right := loadApplyState(t, eng, 100)
	if right.AppliedIndex != RaftInitLogIndex {
		t.Fatalf("new region's apply state %v", right)
	}

	want := map[string]string{"b": "small", "c": big, "d": big}
	st, _ = s.PeerStatus(region.Id)
	checkData(t, s, st.Region, want)
	s.Stop()
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}

	eng, err = engine.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	s = startOneStore(t, cfg, eng, region.Id)
	defer s.Stop()
	checkData(t, s, st.Region, want)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSmallValueThresholdRefused: a store will not run on a kv DB that would
// put region states in the value log.
func TestSmallValueThresholdRefused(t *testing.T) {
	opts := engine.SmallOptions()
	opts.ValueThreshold = 1 << 10
	eng, err := engine.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	bootstrapRegionIn(t, eng)
	if _, err := NewStore(testConfig(), eng, &loopTransport{stores: map[uint64]*Store{}}); err == nil || !strings.Contains(err.Error(), "value threshold") {
		t.Fatalf("NewStore with a 1 KiB value threshold: %v", err)
	}
}

// TestApplyStateNeverAheadOfSync checks the rule of kv_sync.go from outside:
// every RaftApplyState the kv DB holds, at any moment, covers only writes
// committed before a kv sync that has finished. One client puts keys in
// order, one entry each, so the key a put wrote says its log index; before
// each sync the test notes the highest key committed, and a watcher reads
// the apply state all along.
func TestApplyStateNeverAheadOfSync(t *testing.T) {
	eng, region := bootstrapOneRegion(t)
	cfg := testConfig()
	cfg.KVSyncTickTicks = 1 // a sync every 10ms while a checkpoint waits
	cfg.RaftLogGCThreshold = 1 << 20
	cfg.RaftLogGCCountLimit = 1 << 20
	s, err := NewStore(cfg, eng, &loopTransport{stores: map[uint64]*Store{}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	key := func(i int) string { return fmt.Sprintf("b%05d", i) }
	var base, covered atomic.Uint64 // the index before put 0; the highest index a finished sync covers
	syncKV := s.kvSync.syncKV
	s.kvSync.syncKV = func() error {
		var upTo uint64
		if b := base.Load(); b != 0 {
			snap := NewRegionSnapshot(eng.KV, region)
			kvs, err := snap.Scan("", []byte("b"), []byte("c"), 1, true, true)
			snap.Close()
			if err != nil {
				return err
			}
			if len(kvs) == 1 {
				i, _ := strconv.Atoi(string(kvs[0].Key[1:]))
				upTo = b + 1 + uint64(i)
			}
		}
		if err := syncKV(); err != nil {
			return err
		}
		if upTo > covered.Load() {
			covered.Store(upTo)
		}
		return nil
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitLeader(t, []*Store{s}, region.Id)
	// A first put, after the leader's no-op; once their apply state is
	// written, nothing else is in flight.
	mustExecute(t, s, region.Id, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put,
		Put: &raft_cmdpb.PutRequest{Key: []byte("a"), Value: []byte("v")}}, "the first put")
	var first uint64
	waitFor(t, "the first apply state", func() bool {
		// The status of the round that applied the put may not be out yet
		// (a write is answered first): it is once the applied index
		// reaches the put's, the last.
		st, _ := s.PeerStatus(region.Id)
		first = st.AppliedIndex
		return first == st.LastIndex && loadApplyState(t, eng, region.Id).AppliedIndex == first
	})
	base.Store(first)
	covered.Store(first)

	stop := make(chan struct{})
	watched := make(chan error, 1)
	seen := map[uint64]bool{} // the applied indexes the watcher read
	go func() {
		var err error
		for err == nil {
			select {
			case <-stop:
				watched <- nil
				return
			case <-time.After(100 * time.Microsecond):
			}
			var as rspb.RaftApplyState
			err = engine.GetMsg(eng.KV, engine.ApplyStateKey(region.Id), &as)
			// After the read: what covered the state when it was written
			// was in covered before (the sync sets it, then the state is
			// written), and covered only grows.
			if c := covered.Load(); err == nil && as.AppliedIndex > c {
				err = fmt.Errorf("apply state at %d; syncs cover up to %d", as.AppliedIndex, c)
			}
			seen[as.AppliedIndex] = true
		}
		watched <- err
	}()
	stopWatching := sync.OnceValue(func() error { close(stop); return <-watched })
	defer stopWatching() // before the store stops and the engines close
	for i := range n {
		mustExecute(t, s, region.Id, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put,
			Put: &raft_cmdpb.PutRequest{Key: []byte(key(i)), Value: []byte("v")}}, "put "+key(i))
	}
	last := base.Load() + n
	waitFor(t, "the last checkpoint", func() bool { return loadApplyState(t, eng, region.Id).AppliedIndex == last })
	if err := stopWatching(); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 3 {
		t.Fatalf("the watcher saw %d apply states, want the ones between the first and the last too", len(seen))
	}
	if st, _ := s.PeerStatus(region.Id); st.AppliedIndex != last {
		t.Fatalf("applied %d after %d puts from %d: something else was proposed", st.AppliedIndex, n, base.Load())
	}
}

// TestKVSyncerGenerations: a checkpoint waits for the first sync begun after
// it was taken. One taken while a sync runs waits for the next; one
// refreshed before its sync begins keeps that sync.
func TestKVSyncerGenerations(t *testing.T) {
	s := &Store{router: router.New[*peer, peerMsg, storeMsg]()}
	k := newKVSyncer(s)
	entered, release := make(chan struct{}), make(chan struct{})
	k.syncKV = func() error { entered <- struct{}{}; <-release; return nil }
	expect := func(what string, gen uint64, ok bool, wantGen uint64, wantOK bool) {
		t.Helper()
		if ok != wantOK || (ok && gen != wantGen) {
			t.Fatalf("%s: generation %d, %v; want %d, %v", what, gen, ok, wantGen, wantOK)
		}
	}
	gen, ok := k.wait(1, 0)
	expect("first checkpoint", gen, ok, 1, true)
	gen, ok = k.wait(1, gen)
	expect("refreshed before its sync", gen, ok, 1, true)

	synced := make(chan struct{})
	go func() { k.sync(); close(synced) }()
	<-entered // sync 1 has begun
	_, ok = k.wait(1, 1)
	expect("refreshed while its sync runs", 0, ok, 0, false)
	gen, ok = k.wait(2, 0)
	expect("taken while a sync runs", gen, ok, 2, true)
	if k.synced(1) {
		t.Fatal("sync 1 counted before it finished")
	}
	close(release)
	<-synced
	if !k.synced(1) || k.synced(2) {
		t.Fatalf("after sync 1: synced(1) %v, synced(2) %v", k.synced(1), k.synced(2))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if fmt.Sprint(k.waiting) != "map[2:2]" {
		t.Fatalf("waiting after sync 1: %v, want region 2 for sync 2", k.waiting)
	}
}
