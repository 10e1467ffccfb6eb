package schedulers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/operator"
	"github.com/regionkv/regionkv/scheduler/storage"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// sim is a cluster whose regions do at once what operators ask: every
// round the schedulers run, then every region reports and applies the step
// it gets back.
type sim struct {
	t       *testing.T
	clock   *clock
	cluster *cluster.Cluster
	ops     *operator.Controller
	reg     *Registry
	regions []*simRegion
	stores  int
}

type simRegion struct {
	meta   *metapb.Region
	leader uint64 // store id
}

// newSim starts stores 1..stores and regions regions whose peers are on
// peerStores(i) and led by the first of them, running the named
// schedulers.
func newSim(t *testing.T, stores, regions int, peerStores func(i int) []uint64, names ...string) *sim {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	st := storage.NewMemory()
	if _, err := st.CASAllocID(ctx, 0, 10_000); err != nil {
		t.Fatal(err)
	}
	c := cluster.New(cluster.Options{Storage: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.now})
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	boot := &metapb.Region{Id: 1, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}, Peers: []*metapb.Peer{{Id: 1001, StoreId: 1}}}
	if err := c.Bootstrap(ctx, &metapb.Store{Id: 1, Address: "s1"}, boot); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= stores; i++ {
		if err := c.PutStore(ctx, &metapb.Store{Id: uint64(i), Address: fmt.Sprintf("s%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := NewRegistry(Config{Now: clk.now, Seed: 42}, names...)
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{t: t, clock: clk, cluster: c, ops: operator.NewController(clk.now), reg: reg, stores: stores}
	s.storeHeartbeats()
	for i := range regions {
		r := &metapb.Region{Id: uint64(i + 1), RegionEpoch: &metapb.RegionEpoch{ConfVer: 5, Version: 5}}
		if i > 0 {
			r.StartKey = fmt.Appendf(nil, "k%03d", i)
		}
		if i < regions-1 {
			r.EndKey = fmt.Appendf(nil, "k%03d", i+1)
		}
		ps := peerStores(i)
		for _, st := range ps {
			r.Peers = append(r.Peers, &metapb.Peer{Id: uint64(100*(i+1)) + st, StoreId: st})
		}
		s.regions = append(s.regions, &simRegion{meta: r, leader: ps[0]})
	}
	for _, r := range s.regions {
		s.report(r, false)
	}
	return s
}

func (s *sim) storeHeartbeats() {
	for i := 1; i <= s.stores; i++ {
		if err := s.cluster.HandleStoreHeartbeat(&schedulerpb.StoreStats{StoreId: uint64(i)}); err != nil {
			s.t.Fatal(err)
		}
	}
}

// report sends r's heartbeat and, with apply, does the step it gets back.
func (s *sim) report(r *simRegion, apply bool) {
	s.t.Helper()
	var leader *metapb.Peer
	for _, p := range r.meta.Peers {
		if p.StoreId == r.leader {
			leader = p
		}
	}
	m := r.meta
	cp := &metapb.Region{Id: m.Id, StartKey: m.StartKey, EndKey: m.EndKey,
		RegionEpoch: &metapb.RegionEpoch{ConfVer: m.RegionEpoch.ConfVer, Version: m.RegionEpoch.Version}}
	for _, p := range m.Peers {
		q := *p
		cp.Peers = append(cp.Peers, &q)
	}
	if err := s.cluster.HandleRegionHeartbeat(context.Background(), cluster.NewRegionInfo(cp, leader)); err != nil {
		s.t.Fatalf("heartbeat of region %d: %v", m.Id, err)
	}
	resp := s.ops.Dispatch(s.cluster.GetRegion(m.Id))
	if resp == nil || !apply {
		return
	}
	switch {
	case resp.ChangePeer != nil:
		p := resp.ChangePeer.Peer
		m.RegionEpoch.ConfVer++
		switch resp.ChangePeer.ChangeType {
		case raft_cmdpb.ConfChangeType_AddLearnerNode:
			m.Peers = append(m.Peers, &metapb.Peer{Id: p.Id, StoreId: p.StoreId, Role: metapb.PeerRole_Learner})
		case raft_cmdpb.ConfChangeType_AddNode:
			for _, q := range m.Peers {
				if q.Id == p.Id {
					q.Role = metapb.PeerRole_Voter
				}
			}
		case raft_cmdpb.ConfChangeType_RemoveNode:
			if p.StoreId == r.leader {
				s.t.Fatalf("region %d: the leader on store %d was asked to remove itself", m.Id, p.StoreId)
			}
			m.Peers = slices.DeleteFunc(m.Peers, func(q *metapb.Peer) bool { return q.Id == p.Id })
		}
	case resp.TransferLeader != nil:
		r.leader = resp.TransferLeader.Peer.StoreId
	}
}

// run does rounds until the schedulers have nothing left to do, and
// returns how many rounds that took.
func (s *sim) run() int {
	s.t.Helper()
	quiet := 0
	for round := 1; round <= 500; round++ {
		s.clock.t = s.clock.t.Add(time.Second)
		s.storeHeartbeats()
		added, err := s.reg.RunOnce(context.Background(), s.cluster, s.ops)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, r := range s.regions {
			s.report(r, true)
		}
		if len(added) == 0 && len(s.ops.Running()) == 0 {
			if quiet++; quiet == 2 {
				return round
			}
		} else {
			quiet = 0
		}
	}
	s.t.Fatalf("not balanced after 500 rounds: running %v", s.ops.Running())
	return 0
}

// counts returns the regions and leaders per store, from the simulated
// regions themselves.
func (s *sim) counts() (regions, leaders map[uint64]int) {
	regions, leaders = make(map[uint64]int), make(map[uint64]int)
	for _, r := range s.regions {
		for _, p := range r.meta.Peers {
			regions[p.StoreId]++
		}
		leaders[r.leader]++
	}
	return regions, leaders
}

// checkSpread fails unless every store's count is within 1 of the others.
func (s *sim) checkSpread(what string, counts map[uint64]int) {
	s.t.Helper()
	lo, hi := -1, 0
	for i := 1; i <= s.stores; i++ {
		n := counts[uint64(i)]
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	if hi-lo > 1 {
		s.t.Errorf("%s per store %v: spread %d, want at most 1", what, counts, hi-lo)
	}
}

// checkRegions fails unless every region has three voters and nothing else.
func (s *sim) checkRegions() {
	s.t.Helper()
	for _, r := range s.regions {
		stores := map[uint64]bool{}
		for _, p := range r.meta.Peers {
			if p.Role != metapb.PeerRole_Voter || stores[p.StoreId] {
				s.t.Errorf("region %d has peers %v", r.meta.Id, r.meta.Peers)
			}
			stores[p.StoreId] = true
		}
		if len(r.meta.Peers) != 3 {
			s.t.Errorf("region %d has %d peers", r.meta.Id, len(r.meta.Peers))
		}
	}
	for _, v := range s.ops.History() {
		if v.Status != operator.Finished.String() {
			s.t.Errorf("operator %+v did not finish", v)
		}
	}
}

func onStores(stores ...uint64) func(int) []uint64 { return func(int) []uint64 { return stores } }

func TestBalanceRegion(t *testing.T) {
	// 12 regions on stores 1-3 (all led by 1), store 4 empty.
	s := newSim(t, 4, 12, onStores(1, 2, 3), BalanceRegionName)
	rounds := s.run()
	regions, _ := s.counts()
	s.checkSpread("regions", regions)
	s.checkRegions()
	if regions[4] < 8 {
		t.Errorf("store 4 has %d regions, want about 9", regions[4])
	}
	t.Logf("balanced in %d rounds: %v", rounds, regions)
}

func TestBalanceLeader(t *testing.T) {
	// 12 regions, each on store 1 and two of 2-4, all led by store 1.
	rot := [][]uint64{{1, 2, 3}, {1, 3, 4}, {1, 2, 4}}
	s := newSim(t, 4, 12, func(i int) []uint64 { return rot[i%3] }, BalanceLeaderName)
	s.run()
	_, leaders := s.counts()
	s.checkSpread("leaders", leaders)
	s.checkRegions()
}

func TestBalanceBoth(t *testing.T) {
	s := newSim(t, 4, 20, onStores(1, 2, 3), BalanceRegionName, BalanceLeaderName)
	rounds := s.run()
	regions, leaders := s.counts()
	s.checkSpread("regions", regions)
	s.checkSpread("leaders", leaders)
	s.checkRegions()
	t.Logf("balanced in %d rounds: regions %v, leaders %v", rounds, regions, leaders)
}

func TestBalanceWithinTolerance(t *testing.T) {
	// One region on stores 1-3: counts 1, 1, 1, 0 and leaders 1, 0, 0, 0
	// differ by one at most, which is within the tolerance.
	s := newSim(t, 4, 1, onStores(1, 2, 3), BalanceRegionName, BalanceLeaderName)
	added, err := s.reg.RunOnce(context.Background(), s.cluster, s.ops)
	if err != nil || len(added) != 0 {
		t.Errorf("RunOnce added %v, %v; want nothing", added, err)
	}
}

func TestBalanceLimit(t *testing.T) {
	s := newSim(t, 4, 20, onStores(1, 2, 3), BalanceRegionName)
	added, err := s.reg.RunOnce(context.Background(), s.cluster, s.ops)
	if err != nil || added[BalanceRegionName] != 4 {
		t.Fatalf("RunOnce added %v, %v; want the limit of 4", added, err)
	}
	// The influence of the four running moves counts: store 4 is to get 4,
	// and the sources lose theirs.
	infl := s.ops.Influence()
	if infl[4].Regions != 4 {
		t.Errorf("influence on store 4: %+v, want 4 more regions", infl[4])
	}
	if added, _ := s.reg.RunOnce(context.Background(), s.cluster, s.ops); len(added) != 0 {
		t.Errorf("a second RunOnce at the limit added %v", added)
	}
	for _, v := range s.ops.Running() {
		if v.Kind != BalanceRegionName || v.Steps[0] == "" {
			t.Errorf("running operator %+v", v)
		}
	}
}

func TestBalanceSkipsUnhealthy(t *testing.T) {
	s := newSim(t, 4, 6, onStores(1, 2, 3), BalanceRegionName, BalanceLeaderName)
	// Store 4 falls silent past max_store_down_time: it is no target.
	s.clock.t = s.clock.t.Add(2 * cluster.DefaultMaxStoreDownTime)
	for i := 1; i <= 3; i++ {
		if err := s.cluster.HandleStoreHeartbeat(&schedulerpb.StoreStats{StoreId: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	added, err := s.reg.RunOnce(context.Background(), s.cluster, s.ops)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range s.ops.Running() {
		for _, st := range v.Steps {
			if st == "" || containsStore(st, 4) {
				t.Errorf("operator %+v involves the down store 4", v)
			}
		}
	}
	if added[BalanceRegionName] != 0 {
		t.Errorf("balance-region added %d operators with store 4 down", added[BalanceRegionName])
	}
}

func containsStore(step string, id int) bool { return slices.Contains(storesOf(step), id) }

// storesOf extracts the store ids a step's description mentions.
func storesOf(step string) []int {
	var ids []int
	words := splitWords(step)
	for i := 0; i+1 < len(words); i++ {
		if words[i] == "store" {
			var n int
			if _, err := fmt.Sscanf(words[i+1], "%d", &n); err == nil {
				ids = append(ids, n)
			}
		}
	}
	return ids
}

func splitWords(s string) []string {
	var words []string
	start := -1
	for i, c := range s + " " {
		if c == ' ' {
			if start >= 0 {
				words = append(words, s[start:i])
			}
			start = -1
		} else if start < 0 {
			start = i
		}
	}
	return words
}

func TestBalanceSkipsPendingPeers(t *testing.T) {
	// Store 1 leads all three regions, but their peers on 2 and 3 are
	// pending.
	s2 := newSim(t, 3, 3, onStores(1, 2, 3), BalanceLeaderName)
	for _, r := range s2.regions {
		m := r.meta
		info := cluster.RegionFromHeartbeat(&schedulerpb.RegionHeartbeatRequest{
			Region: m, Leader: m.Peers[0], PendingPeers: []*metapb.Peer{m.Peers[1], m.Peers[2]},
		})
		if err := s2.cluster.HandleRegionHeartbeat(context.Background(), info); err != nil {
			t.Fatal(err)
		}
	}
	added, err := s2.reg.RunOnce(context.Background(), s2.cluster, s2.ops)
	if err != nil || len(added) != 0 {
		t.Errorf("balance-leader added %v, %v with every target peer pending; want nothing", added, err)
	}
}

func TestRegistry(t *testing.T) {
	r, err := NewRegistry(Config{}, BalanceLeaderName)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(BalanceRegionName); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(BalanceRegionName); err != nil {
		t.Errorf("adding a running scheduler: %v", err)
	}
	if got := r.Names(); !slices.Equal(got, []string{BalanceLeaderName, BalanceRegionName}) {
		t.Errorf("names %v", got)
	}
	if err := r.Add("balance-hot-region"); !errors.Is(err, ErrUnknownScheduler) {
		t.Errorf("adding an unknown scheduler: %v", err)
	}
	if err := r.Remove(BalanceLeaderName); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(BalanceLeaderName); !errors.Is(err, ErrNotRunning) {
		t.Errorf("removing a stopped scheduler: %v", err)
	}
	if got := r.Names(); !slices.Equal(got, []string{BalanceRegionName}) {
		t.Errorf("names after remove %v", got)
	}
	if _, err := NewRegistry(Config{}, "nope"); err == nil {
		t.Error("a registry with an unknown scheduler")
	}
}
