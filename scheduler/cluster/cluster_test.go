package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/storage"
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestCluster returns a cluster bootstrapped with region 1 ["", "") on
// store 1 and stores 1..stores registered, over st.
func newTestCluster(t testing.TB, st storage.Storage, stores int) *Cluster {
	t.Helper()
	ctx := context.Background()
	// The tests pick small region and peer ids by hand: allocate above them.
	if _, err := st.CASAllocID(ctx, 0, 100000); err != nil {
		t.Fatal(err)
	}
	c := New(Options{ClusterID: 7, Storage: st, Logger: quietLogger})
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Bootstrap(ctx, &metapb.Store{Id: 1, Address: "s1"}, mkRegion(1, "", "", 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= stores; i++ {
		if err := c.PutStore(ctx, &metapb.Store{Id: uint64(i), Address: fmt.Sprintf("s%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// hb builds a heartbeat of m led by its peer on leaderStore.
func hb(m *metapb.Region, leaderStore uint64, opts ...func(*RegionInfo)) *RegionInfo {
	var leader *metapb.Peer
	for _, p := range m.Peers {
		if p.StoreId == leaderStore {
			leader = p
		}
	}
	r := NewRegionInfo(m, leader)
	for _, o := range opts {
		o(r)
	}
	return r
}

func withTerm(term uint64) func(*RegionInfo) { return func(r *RegionInfo) { r.term = term } }

func withPending(storeIDs ...uint64) func(*RegionInfo) {
	return func(r *RegionInfo) {
		for _, s := range storeIDs {
			r.pendingPeers = append(r.pendingPeers, r.StorePeer(s))
		}
	}
}

func withSize(size uint64) func(*RegionInfo) { return func(r *RegionInfo) { r.approximateSize = size } }

func mustHeartbeat(t *testing.T, c *Cluster, r *RegionInfo) {
	t.Helper()
	if err := c.HandleRegionHeartbeat(context.Background(), r); err != nil {
		t.Fatalf("heartbeat of region %d: %v", r.ID(), err)
	}
}

func isStale(err error) bool {
	var s *StaleRegionError
	return errors.As(err, &s)
}

// describe renders the cluster's regions as "id[start,end)v.c" for comparison.
func describe(c *Cluster) string {
	out := ""
	for _, r := range c.ScanRegions(nil, nil, 0) {
		out += fmt.Sprintf("%d[%s,%s)v%dc%d ", r.ID(), r.StartKey(), r.EndKey(), r.Epoch().GetVersion(), r.Epoch().GetConfVer())
	}
	return out
}

func TestRegionHeartbeatEpochRules(t *testing.T) {
	// Every case starts from region 1 ["", "") at conf_ver 2 / version 2 with
	// peers on stores 1, 2, 3, then applies the heartbeats in order.
	type step struct {
		r     *metapb.Region
		term  uint64
		stale bool // the heartbeat must be rejected as stale
	}
	base := func() *metapb.Region { return mkRegion(1, "", "", 2, 2, 1, 2, 3) }
	for _, tc := range []struct {
		name  string
		steps []step
		want  string
	}{
		{
			name:  "same epoch is accepted",
			steps: []step{{r: base()}},
			want:  "1[,)v2c2 ",
		},
		{
			name:  "stale version",
			steps: []step{{r: mkRegion(1, "", "", 2, 1, 1, 2, 3), stale: true}},
			want:  "1[,)v2c2 ",
		},
		{
			name:  "stale conf_ver",
			steps: []step{{r: mkRegion(1, "", "", 1, 2, 1, 2), stale: true}},
			want:  "1[,)v2c2 ",
		},
		{
			name:  "stale conf_ver with newer version",
			steps: []step{{r: mkRegion(1, "", "m", 1, 3, 1, 2), stale: true}},
			want:  "1[,)v2c2 ",
		},
		{
			name:  "newer conf_ver replaces peers",
			steps: []step{{r: mkRegion(1, "", "", 3, 2, 1, 2)}},
			want:  "1[,)v2c3 ",
		},
		{
			name: "split: left half first, then right",
			steps: []step{
				{r: mkRegion(1, "", "m", 2, 3, 1, 2, 3)},
				{r: mkRegion(2, "m", "", 2, 3, 1, 2, 3)},
			},
			want: "1[,m)v3c2 2[m,)v3c2 ",
		},
		{
			name: "split: right half first, then left",
			steps: []step{
				{r: mkRegion(2, "m", "", 2, 3, 1, 2, 3)},
				{r: mkRegion(1, "", "m", 2, 3, 1, 2, 3)},
			},
			want: "1[,m)v3c2 2[m,)v3c2 ",
		},
		{
			name: "split: parent's old heartbeat after the right half",
			steps: []step{
				{r: mkRegion(2, "m", "", 2, 3, 1, 2, 3)},
				{r: base(), stale: true}, // overlaps region 2, which is newer
			},
			want: "2[m,)v3c2 ",
		},
		{
			name: "split: parent's old heartbeat after both halves",
			steps: []step{
				{r: mkRegion(1, "", "m", 2, 3, 1, 2, 3)},
				{r: mkRegion(2, "m", "", 2, 3, 1, 2, 3)},
				{r: base(), stale: true},
			},
			want: "1[,m)v3c2 2[m,)v3c2 ",
		},
		{
			name: "three-way split in any order",
			steps: []step{
				{r: mkRegion(3, "t", "", 2, 4, 1, 2, 3)},
				{r: mkRegion(1, "", "g", 2, 4, 1, 2, 3)},
				{r: mkRegion(2, "g", "t", 2, 4, 1, 2, 3)},
			},
			want: "1[,g)v4c2 2[g,t)v4c2 3[t,)v4c2 ",
		},
		{
			name: "a newer region covers older split children",
			steps: []step{
				{r: mkRegion(1, "", "g", 2, 3, 1, 2, 3)},
				{r: mkRegion(2, "g", "", 2, 3, 1, 2, 3)},
				{r: mkRegion(4, "", "", 2, 5, 1, 2, 3)},
			},
			want: "4[,)v5c2 ",
		},
		{
			name: "deposed leader's lower term at the same epoch",
			steps: []step{
				{r: base(), term: 7},
				{r: base(), term: 6, stale: true},
				{r: base(), term: 8},
			},
			want: "1[,)v2c2 ",
		},
		{
			name: "lower term is fine at a newer epoch",
			steps: []step{
				{r: base(), term: 7},
				{r: mkRegion(1, "", "", 3, 2, 1, 2), term: 5},
			},
			want: "1[,)v2c3 ",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, storage.NewMemory(), 3)
			mustHeartbeat(t, c, hb(base(), 1))
			for i, s := range tc.steps {
				err := c.HandleRegionHeartbeat(context.Background(), hb(s.r, 1, withTerm(s.term)))
				if s.stale != isStale(err) || (!s.stale && err != nil) {
					t.Fatalf("step %d (region %d): err = %v, want stale=%v", i, s.r.Id, err, s.stale)
				}
			}
			if got := describe(c); got != tc.want {
				t.Errorf("regions = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRegionHeartbeatBadInput(t *testing.T) {
	c := newTestCluster(t, storage.NewMemory(), 2)
	ctx := context.Background()
	r := mkRegion(1, "", "", 1, 1, 1, 2)
	for _, tc := range []struct {
		name string
		hb   *RegionInfo
		want error
	}{
		{"no region", NewRegionInfo(nil, nil), ErrInvalidArgument},
		{"no epoch", NewRegionInfo(&metapb.Region{Id: 1, Peers: r.Peers}, r.Peers[0]), ErrInvalidArgument},
		{"no leader", NewRegionInfo(r, nil), ErrInvalidArgument},
		{"leader not a peer", NewRegionInfo(r, &metapb.Peer{Id: 99, StoreId: 1}), ErrInvalidArgument},
		{"start after end", hb(mkRegion(1, "z", "a", 1, 1, 1), 1), ErrInvalidArgument},
		{"two peers on a store", NewRegionInfo(&metapb.Region{Id: 1, RegionEpoch: &metapb.RegionEpoch{}, Peers: []*metapb.Peer{{Id: 1, StoreId: 1}, {Id: 2, StoreId: 1}}}, &metapb.Peer{Id: 1, StoreId: 1}), ErrInvalidArgument},
		{"unknown store", hb(mkRegion(1, "", "", 1, 1, 9), 9), ErrStoreNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.HandleRegionHeartbeat(ctx, tc.hb); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	fresh := New(Options{Storage: storage.NewMemory(), Logger: quietLogger})
	if err := fresh.HandleRegionHeartbeat(ctx, hb(r, 1)); !errors.Is(err, ErrNotBootstrapped) {
		t.Fatalf("heartbeat before bootstrap: err = %v, want ErrNotBootstrapped", err)
	}
}

func TestRegionHeartbeatLeaderAndPendingPeers(t *testing.T) {
	c := newTestCluster(t, storage.NewMemory(), 3)
	r := mkRegion(1, "", "", 3, 1, 1, 2, 3)
	counts := func() string {
		out := ""
		for _, s := range c.StoreStatuses() {
			out += fmt.Sprintf("s%d:r%d/l%d/p%d/size%d ", s.Store.ID(), s.RegionCount, s.LeaderCount, s.PendingPeerCount, s.RegionSize)
		}
		return out
	}
	mustHeartbeat(t, c, hb(r, 1, withPending(3), withSize(100)))
	if got, want := counts(), "s1:r1/l1/p0/size100 s2:r1/l0/p0/size100 s3:r1/l0/p1/size100 "; got != want {
		t.Fatalf("after first heartbeat: %s, want %s", got, want)
	}
	if p := c.GetRegion(1).PendingPeers(); len(p) != 1 || p[0].StoreId != 3 {
		t.Fatalf("pending peers %v, want the peer on store 3", p)
	}
	// Leadership moves to store 2; the pending peer caught up.
	mustHeartbeat(t, c, hb(r, 2, withSize(120)))
	if got, want := counts(), "s1:r1/l0/p0/size120 s2:r1/l1/p0/size120 s3:r1/l0/p0/size120 "; got != want {
		t.Fatalf("after leader change: %s, want %s", got, want)
	}
	if l := c.GetRegionByKey([]byte("k")).Leader(); l.StoreId != 2 {
		t.Fatalf("leader on store %d, want 2", l.StoreId)
	}
	// The region splits; both halves are led by store 2.
	mustHeartbeat(t, c, hb(mkRegion(5, "m", "", 3, 2, 1, 2, 3), 2, withSize(60)))
	mustHeartbeat(t, c, hb(mkRegion(1, "", "m", 3, 2, 1, 2, 3), 2, withSize(60)))
	if got, want := counts(), "s1:r2/l0/p0/size120 s2:r2/l2/p0/size120 s3:r2/l0/p0/size120 "; got != want {
		t.Fatalf("after split: %s, want %s", got, want)
	}
}

func TestBootstrapAndStores(t *testing.T) {
	ctx := context.Background()
	c := New(Options{Storage: storage.NewMemory(), Logger: quietLogger})
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if c.IsBootstrapped() {
		t.Fatal("new cluster is bootstrapped")
	}
	if err := c.PutStore(ctx, &metapb.Store{Id: 2, Address: "a2"}); !errors.Is(err, ErrNotBootstrapped) {
		t.Fatalf("PutStore before bootstrap: %v", err)
	}
	for _, bad := range []*metapb.Region{
		mkRegion(1, "a", "", 1, 1, 1),                      // does not cover all keys
		mkRegion(1, "", "", 1, 1, 1, 2),                    // two peers
		mkRegion(1, "", "", 1, 1, 2),                       // peer on another store
		{Id: 1, Peers: mkRegion(1, "", "", 1, 1, 1).Peers}, // no epoch
	} {
		if err := c.Bootstrap(ctx, &metapb.Store{Id: 1, Address: "a1"}, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Bootstrap(%v): err = %v, want invalid", bad, err)
		}
	}
	if err := c.Bootstrap(ctx, &metapb.Store{Id: 1, Address: "a1"}, mkRegion(1, "", "", 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Bootstrap(ctx, &metapb.Store{Id: 1, Address: "a1"}, mkRegion(1, "", "", 1, 1, 1)); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("second Bootstrap: err = %v", err)
	}
	if r := c.GetRegionByKey([]byte("any")); r == nil || r.ID() != 1 || r.Leader().GetStoreId() != 1 {
		t.Fatalf("bootstrap region = %v", r)
	}
	if err := c.PutStore(ctx, &metapb.Store{Id: 2, Address: "a1"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("PutStore with a taken address: %v", err)
	}
	if err := c.PutStore(ctx, &metapb.Store{Id: 2, Address: "a2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.HandleStoreHeartbeat(&schedulerpb.StoreStats{StoreId: 2, Capacity: 10}); err != nil {
		t.Fatal(err)
	}
	if err := c.HandleStoreHeartbeat(&schedulerpb.StoreStats{StoreId: 3}); !errors.Is(err, ErrStoreNotFound) {
		t.Fatalf("heartbeat of unknown store: %v", err)
	}
	// Store 2 changes its address; it keeps its stats.
	if err := c.PutStore(ctx, &metapb.Store{Id: 2, Address: "a2b", State: metapb.StoreState_Tombstone}); err != nil {
		t.Fatal(err)
	}
	s, err := c.GetStore(2)
	if err != nil || s.Address() != "a2b" || s.State() != metapb.StoreState_Up || s.Stats().GetCapacity() != 10 {
		t.Fatalf("store 2 = %v, %v", s, err)
	}
	if err := c.SetStoreState(ctx, 1, metapb.StoreState_Tombstone); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("tombstone of a store with peers: %v", err)
	}
	if err := c.SetStoreState(ctx, 2, metapb.StoreState_Tombstone); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetStore(2); !errors.Is(err, ErrStoreTombstone) {
		t.Fatalf("GetStore(tombstone) err = %v", err)
	}
	if err := c.PutStore(ctx, &metapb.Store{Id: 2, Address: "a2"}); !errors.Is(err, ErrStoreTombstone) {
		t.Fatalf("PutStore(tombstone): %v", err)
	}
	if err := c.HandleStoreHeartbeat(&schedulerpb.StoreStats{StoreId: 2}); !errors.Is(err, ErrStoreTombstone) {
		t.Fatalf("heartbeat of tombstone: %v", err)
	}
	// A tombstone's address is free again.
	if err := c.PutStore(ctx, &metapb.Store{Id: 3, Address: "a2b"}); err != nil {
		t.Fatal(err)
	}
}

func TestAskAndReportSplit(t *testing.T) {
	ctx := context.Background()
	c := newTestCluster(t, storage.NewMemory(), 3)
	r := mkRegion(1, "", "", 2, 1, 1, 2, 3)
	mustHeartbeat(t, c, hb(r, 1))
	splits, err := c.AskSplit(ctx, r, 2)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, s := range splits {
		if len(s.NewPeerIds) != 3 {
			t.Fatalf("split ids %v: want 3 peer ids", s)
		}
		for _, id := range append([]uint64{s.NewRegionId}, s.NewPeerIds...) {
			if seen[id] || id == 0 {
				t.Fatalf("id %d handed out twice (or zero)", id)
			}
			seen[id] = true
		}
	}
	if _, err := c.AskSplit(ctx, mkRegion(42, "", "", 1, 1, 1), 1); !errors.Is(err, ErrRegionNotFound) {
		t.Fatalf("AskSplit of unknown region: %v", err)
	}
	if _, err := c.AskSplit(ctx, mkRegion(1, "", "", 1, 1, 1, 2, 3), 1); !isStale(err) {
		t.Fatalf("AskSplit with stale epoch: %v", err)
	}
	left := mkRegion(1, "", "k", 2, 2, 1, 2, 3)
	right := mkRegion(splits[0].NewRegionId, "k", "", 2, 2, 1, 2, 3)
	if err := c.ReportSplit(ctx, []*metapb.Region{left, right}); err != nil {
		t.Fatal(err)
	}
	if got := c.GetRegionByKey([]byte("z")); got.ID() != right.Id || got.Leader() != nil {
		t.Fatalf("right half %v leader %v, want region %d without leader", got.Meta(), got.Leader(), right.Id)
	}
	if got := c.GetRegionByKey([]byte("a")); got.ID() != 1 || got.Leader().GetStoreId() != 1 {
		t.Fatalf("left half %v, want leader kept on store 1", got)
	}
	if err := c.ReportSplit(ctx, []*metapb.Region{right, left}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ReportSplit out of order: %v", err)
	}
}

func TestClusterReloadsPersistedState(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMemory()
	c := newTestCluster(t, st, 3)
	mustHeartbeat(t, c, hb(mkRegion(2, "m", "", 1, 2, 1, 2, 3), 2))
	mustHeartbeat(t, c, hb(mkRegion(1, "", "m", 1, 2, 1, 2, 3), 1))
	if err := c.PutConfig(ctx, &schedulerpb.ClusterConfig{MaxReplicas: 5, MaxStoreDownTimeMs: 1000}); err != nil {
		t.Fatal(err)
	}
	id, err := c.AllocID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := describe(c)

	c2 := New(Options{Storage: st, Logger: quietLogger})
	if err := c2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !c2.IsBootstrapped() {
		t.Fatal("reloaded cluster is not bootstrapped")
	}
	if got := describe(c2); got != before {
		t.Fatalf("regions after reload %q, want %q", got, before)
	}
	if got := len(c2.GetStores()); got != 3 {
		t.Fatalf("stores after reload: %d", got)
	}
	if got := c2.Config().MaxReplicas; got != 5 {
		t.Fatalf("max replicas after reload: %d", got)
	}
	id2, err := c2.AllocID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id2 <= id {
		t.Fatalf("id after reload %d <= id before %d", id2, id)
	}
}

// TestConcurrentRegionHeartbeats has many "stores" report many regions
// concurrently, each region going through splits and leader changes in its
// own order, and checks the indexes agree with a from-scratch rebuild.
func TestConcurrentRegionHeartbeats(t *testing.T) {
	const (
		streams = 16
		regions = 64 // regions each stream owns
		rounds  = 20
	)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	c := newTestCluster(t, storage.NewMemory(), 3)
	key := func(i int) string { return fmt.Sprintf("k%05d", i) }
	// Region i covers [key(i), key(i+1)); region 0 starts at "" and the last
	// ends at "". They all appear as splits of region 1 at version 2.
	total := streams * regions
	region := func(i int, confVer uint64) *metapb.Region {
		start, end := key(i), key(i+1)
		if i == 0 {
			start = ""
		}
		if i == total-1 {
			end = ""
		}
		id := uint64(i + 1)
		return mkRegion(id, start, end, confVer, 2, 1, 2, 3)
	}
	var wg sync.WaitGroup
	for s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(s)))
			for round := range rounds {
				for _, j := range rng.Perm(regions) {
					i := s*regions + j
					leader := uint64(1 + rng.IntN(3))
					r := region(i, uint64(1+round))
					err := c.HandleRegionHeartbeat(context.Background(), hb(r, leader, withSize(uint64(i)), withTerm(uint64(round+1))))
					if err != nil {
						t.Errorf("heartbeat %d round %d: %v", i, round, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	all := c.ScanRegions(nil, nil, 0)
	if len(all) != total {
		t.Fatalf("%d regions, want %d: %s", len(all), total, describe(c))
	}
	for i, r := range all {
		if r.ID() != uint64(i+1) || r.Epoch().GetConfVer() != rounds {
			t.Fatalf("region at %d = %d conf_ver %d", i, r.ID(), r.Epoch().GetConfVer())
		}
	}
	// Rebuild the per-store counts from the final regions and compare.
	rebuilt := NewRegionsInfo()
	for _, r := range all {
		rebuilt.Set(r)
	}
	for _, s := range c.StoreStatuses() {
		id := s.Store.ID()
		if s.RegionCount != rebuilt.StoreRegionCount(id) || s.LeaderCount != rebuilt.StoreLeaderCount(id) ||
			s.RegionSize != rebuilt.StoreRegionSize(id) || s.LeaderSize != rebuilt.StoreLeaderSize(id) {
			t.Errorf("store %d: %+v disagrees with a rebuild", id, s)
		}
	}
}
