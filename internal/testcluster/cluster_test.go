package testcluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regionkv/regionkv/internal/testcluster"
	"github.com/regionkv/regionkv/proto/metapb"
)

// The integration tests of issue 5: real processes on loopback. Each logs
// how long it took; together they stay well under three minutes.

func TestMain(m *testing.M) { testcluster.Main(m) }

func integration(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a scheduler and store processes")
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("%s took %v", t.Name(), time.Since(start).Round(100*time.Millisecond)) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it returns nil, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// voterStores returns the stores of the region's voters, sorted.
func voterStores(r *metapb.Region) []uint64 {
	var ids []uint64
	for _, p := range r.GetPeers() {
		if p.Role == metapb.PeerRole_Voter {
			ids = append(ids, p.StoreId)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitReplicas waits until the region holding key has exactly the voters
// on stores (any order) and nothing else, and a known leader.
func waitReplicas(t *testing.T, ctx context.Context, c *testcluster.Cluster, key []byte, stores []uint64, timeout time.Duration) *metapb.Region {
	t.Helper()
	want := slices.Sorted(slices.Values(stores))
	var region *metapb.Region
	waitFor(t, timeout, fmt.Sprintf("voters of the region of %q on stores %v", key, want), func() error {
		r, leader, err := c.SchedulerClient().GetRegion(ctx, key)
		if err != nil {
			return err
		}
		if got := voterStores(r); !slices.Equal(got, want) || len(r.Peers) != len(want) || leader == nil {
			return fmt.Errorf("region %d has peers %v, leader %v", r.GetId(), r.GetPeers(), leader)
		}
		region = r
		return nil
	})
	return region
}

// threeStores starts a scheduler and three stores, and waits until the
// first region has a voter on each.
func threeStores(t *testing.T, ctx context.Context) (*testcluster.Cluster, []*testcluster.Store) {
	t.Helper()
	c := testcluster.New(t, testcluster.Options{})
	c.StartScheduler()
	stores := []*testcluster.Store{c.StartStore(), c.StartStore(), c.StartStore()}
	waitReplicas(t, ctx, c, nil, storeIDs(stores...), 30*time.Second)
	return c, stores
}

// byLeader returns the store of the first region's leader, as the
// scheduler knows it, and the others.
func byLeader(t *testing.T, ctx context.Context, c *testcluster.Cluster, stores []*testcluster.Store) (*testcluster.Store, []*testcluster.Store) {
	t.Helper()
	_, leader, err := c.SchedulerClient().GetRegion(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lead *testcluster.Store
	var others []*testcluster.Store
	for _, s := range stores {
		if s.ID == leader.StoreId {
			lead = s
		} else {
			others = append(others, s)
		}
	}
	if lead == nil {
		t.Fatalf("the leader's store %d is none of the stores", leader.StoreId)
	}
	return lead, others
}

func storeIDs(stores ...*testcluster.Store) []uint64 {
	var ids []uint64
	for _, s := range stores {
		ids = append(ids, s.ID)
	}
	return ids
}

func key(i int) []byte   { return fmt.Appendf(nil, "key-%05d", i) }
func value(i int) []byte { return fmt.Appendf(nil, "value-%d", i) }

// putSpread writes keys [lo, hi), each through the next of stores in turn.
func putSpread(ctx context.Context, stores []*testcluster.Store, lo, hi int) {
	for i := lo; i < hi; i++ {
		stores[i%len(stores)].MustPut(ctx, key(i), value(i))
	}
}

// TestThreeStores (issue 5, test 1): a scheduler and three stores; the
// replica checker grows the first region to three voters; requests without
// a region context work through every store (followers forward them).
func TestThreeStores(t *testing.T) {
	ctx := integration(t)
	_, stores := threeStores(t, ctx)

	for i, s := range stores {
		s.MustPut(ctx, key(i), value(i))
	}
	for _, s := range stores {
		for i := range stores {
			s.MustGetEqual(ctx, key(i), value(i))
		}
	}
	// Every store holds the region; two of them are followers, which
	// forwarded the requests above.
	leaders := 0
	for _, s := range stores {
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.RegionCount != 1 {
			t.Errorf("%s holds %d regions, want 1", s.Name, st.RegionCount)
		}
		leaders += st.LeaderCount
	}
	if leaders != 1 {
		t.Errorf("%d leaders, want 1", leaders)
	}
}

// TestKillStore (issue 5, test 2): kill -9 a store (the leader's): reads and
// writes keep working; with a short max-store-down-time the replica checker
// replaces its replica on a fourth store, and all the data is there.
func TestKillStore(t *testing.T) {
	ctx := integration(t)
	c, stores := threeStores(t, ctx)
	const n = 40
	putSpread(ctx, stores, 0, n/2)
	if _, err := c.SchedulerAPI(ctx, "PUT", "/api/v1/config", map[string]string{"max_store_down_time": "3s"}, nil); err != nil {
		t.Fatal(err)
	}

	victim, live := byLeader(t, ctx, c, stores)
	victim.Kill()
	t.Logf("killed %s (store %d), the leader", victim.Name, victim.ID)

	putSpread(ctx, live, n/2, n)
	for i := range n {
		live[i%2].MustGetEqual(ctx, key(i), value(i))
	}

	s4 := c.StartStore()
	waitReplicas(t, ctx, c, nil, storeIDs(live[0], live[1], s4), 60*time.Second)
	for _, s := range []*testcluster.Store{live[0], live[1], s4} {
		for i := range n {
			s.MustGetEqual(ctx, key(i), value(i))
		}
	}
	// The new replica has the data itself: it can lead.
	st, err := s4.Status(ctx)
	if err != nil || st.RegionCount != 1 || st.Regions[0].AppliedIndex < n {
		t.Fatalf("%s status %+v, %v: want the region, applied past the %d writes", s4.Name, st, err, n)
	}
}

// TestFrozenStore: the leader's store hangs (SIGSTOP) with its raft
// connections open. The other two elect a leader and keep serving; when it
// resumes, the messages it held and was sent are stale, and it must follow
// the new leader, catch up, and serve every write.
func TestFrozenStore(t *testing.T) {
	ctx := integration(t)
	c, stores := threeStores(t, ctx)
	const n = 40
	putSpread(ctx, stores, 0, n/2)
	victim, live := byLeader(t, ctx, c, stores)
	victim.Freeze()
	t.Cleanup(victim.Thaw) // a stopped process would not hear the cleanup's SIGTERM
	t.Logf("froze %s (store %d), the leader", victim.Name, victim.ID)
	putSpread(ctx, live, n/2, n)
	time.Sleep(2 * time.Second) // the live stores keep sending to it meanwhile
	victim.Thaw()

	// A deposed leader that had not followed the new one could not apply
	// the entries it committed.
	waitCaughtUp(t, ctx, victim, live[0])
	for i := range n {
		victim.MustGetEqual(ctx, key(i), value(i))
	}
}

// TestFrozenFollower: a follower's store hangs (SIGSTOP) while the leader
// streams it more than the sockets hold. The leader's store notices the
// stalled connection (a write that waits too long), drops what it queued
// for it, and keeps serving on the other quorum; once the follower resumes,
// its store reconnects and the follower catches up.
func TestFrozenFollower(t *testing.T) {
	ctx := integration(t)
	c, stores := threeStores(t, ctx)
	stores[0].MustPut(ctx, key(0), value(0))
	lead, followers := byLeader(t, ctx, c, stores)
	victim := followers[0]
	victim.Freeze()
	t.Cleanup(victim.Thaw)
	// 24 MiB, more than the loopback sockets' buffers hold.
	big := bytes.Repeat([]byte("v"), 512<<10)
	for i := 1; i <= 48; i++ {
		lead.MustPut(ctx, key(i), big)
	}
	waitFor(t, 60*time.Second, "the leader's store giving up on the frozen one", func() error {
		if n := metric(t, ctx, lead, "regionkv_store_raft_messages_dropped_total"); n == 0 {
			return errors.New("no raft message dropped yet")
		}
		// The write timed out: the frozen store's kernel still accepted
		// data, until its socket buffer was full.
		if log := lead.Log(); !strings.Contains(log, "store unreachable") || !strings.Contains(log, "i/o timeout") {
			return errors.New("the log tells of no write timeout to the frozen store")
		}
		return nil
	})
	victim.Thaw()
	waitCaughtUp(t, ctx, victim, lead)
	if n := metric(t, ctx, lead, "regionkv_store_transport_reconnects_total"); n == 0 {
		t.Errorf("%s never reconnected to the resumed store", lead.Name)
	}
	victim.MustGetEqual(ctx, key(48), big)
}

// waitCaughtUp waits until s, holding the one region, has applied what ref
// had.
func waitCaughtUp(t *testing.T, ctx context.Context, s, ref *testcluster.Store) {
	t.Helper()
	waitFor(t, 60*time.Second, s.Name+" catching up with "+ref.Name, func() error {
		rst, err := ref.Status(ctx)
		if err != nil || len(rst.Regions) != 1 {
			return fmt.Errorf("%s status: %+v, %v", ref.Name, rst, err)
		}
		st, err := s.Status(ctx)
		if err != nil || len(st.Regions) != 1 {
			return fmt.Errorf("%s status: %+v, %v", s.Name, st, err)
		}
		if r, want := st.Regions[0], rst.Regions[0].AppliedIndex; r.AppliedIndex < want {
			return fmt.Errorf("%s: %s in term %d, applied %d of %d", s.Name, r.RaftState, r.Term, r.AppliedIndex, want)
		}
		return nil
	})
}

// metric reads a counter or gauge without labels from a store's /metrics.
func metric(t *testing.T, ctx context.Context, s *testcluster.Store, name string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.StatusAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			return f
		}
	}
	t.Fatalf("%s has no metric %s", s.Name, name)
	return 0
}

// TestSchedulerRestart (issue 5, test 3): kill -9 the scheduler and start
// it again: the stores reconnect (heartbeats resume) and no metadata is
// lost. Stores keep serving while it is down. A store restarted gracefully
// reloads its regions from disk.
func TestSchedulerRestart(t *testing.T) {
	ctx := integration(t)
	c := testcluster.New(t, testcluster.Options{})
	sched := c.StartScheduler()
	stores := []*testcluster.Store{c.StartStore(), c.StartStore(), c.StartStore()}
	region := waitReplicas(t, ctx, c, nil, storeIDs(stores...), 30*time.Second)
	stores[0].MustPut(ctx, key(0), value(0))
	cli := c.SchedulerClient()
	before, err := cli.GetAllStores(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	lastID, err := cli.AllocID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	sched.Kill()
	// Raft needs no scheduler: writes go on.
	stores[1].MustPut(ctx, key(1), value(1))
	restarted := time.Now()
	sched.Restart()

	after, err := cli.GetAllStores(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("stores after restart %v, before %v", after, before)
	}
	for i := range before {
		if after[i].Id != before[i].Id || after[i].Address != before[i].Address {
			t.Errorf("store %v after restart, was %v", after[i], before[i])
		}
	}
	if id, err := cli.AllocID(ctx); err != nil || id <= lastID {
		t.Errorf("id %d, %v after restart; %d was handed out before", id, err, lastID)
	}
	// Region heartbeats resume (the leader is known again: it is not
	// persisted) and the region is the same.
	r := waitReplicas(t, ctx, c, nil, storeIDs(stores...), 30*time.Second)
	if r.Id != region.Id || r.RegionEpoch.ConfVer != region.RegionEpoch.ConfVer {
		t.Errorf("region after restart %v, before %v", r, region)
	}
	// Store heartbeats resume.
	waitFor(t, 10*time.Second, "store heartbeats after the restart", func() error {
		var resp struct {
			Stores []struct {
				ID            uint64     `json:"id"`
				LastHeartbeat *time.Time `json:"last_heartbeat"`
			} `json:"stores"`
		}
		if _, err := c.SchedulerAPI(ctx, "GET", "/api/v1/stores", nil, &resp); err != nil {
			return err
		}
		for _, s := range resp.Stores {
			if s.LastHeartbeat == nil || s.LastHeartbeat.Before(restarted) {
				return fmt.Errorf("store %d: last heartbeat %v", s.ID, s.LastHeartbeat)
			}
		}
		return nil
	})
	for _, s := range stores {
		s.MustGetEqual(ctx, key(0), value(0))
		s.MustGetEqual(ctx, key(1), value(1))
	}

	// A graceful stop exits 0 and a restart reloads the region from disk.
	s := stores[2]
	if !s.Stop(15 * time.Second) {
		t.Fatalf("%s did not stop within 15s of SIGTERM", s.Name)
	}
	if err := s.ExitErr(); err != nil {
		t.Fatalf("%s exited with %v after SIGTERM", s.Name, err)
	}
	s.Restart()
	st, err := s.Status(ctx)
	if err != nil || st.RegionCount != 1 || st.Regions[0].RegionID != region.Id {
		t.Fatalf("%s after restart: %+v, %v", s.Name, st, err)
	}
	s.MustPut(ctx, key(2), value(2))
	s.MustGetEqual(ctx, key(1), value(1))
}

// TestBalance (issue 5, test 4): with a small split size, writes make about
// 20 regions over 4 stores; balance-region and balance-leader bring every
// store's region and leader counts within ±25% of the mean.
func TestBalance(t *testing.T) {
	ctx := integration(t)
	c := testcluster.New(t, testcluster.Options{StoreArgs: []string{"--region-max-size", "64KiB", "--region-split-size", "48KiB"}})
	c.StartScheduler()
	stores := []*testcluster.Store{c.StartStore(), c.StartStore(), c.StartStore(), c.StartStore()}

	// About 1 MiB in 256 values of 4 KiB, in random order, from 4 writers.
	const n = 256
	val := func(i int) []byte { return append(value(i), make([]byte, 4<<10)...) }
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for j := w; j < n; j += 4 {
				i := order[j]
				if err := stores[j%4].Put(ctx, key(i), val(i)); err != nil {
					errs <- fmt.Errorf("put %s: %w", key(i), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("wrote %d keys", n)

	var regions int
	waitFor(t, 90*time.Second, "balanced region and leader counts", func() error {
		counts, err := storeCounts(ctx, c)
		if err != nil {
			return err
		}
		regions = counts.regions
		if regions < 15 {
			return fmt.Errorf("%d regions so far", regions)
		}
		if err := within25(counts.peers, 3*regions); err != nil {
			return fmt.Errorf("regions per store: %w", err)
		}
		if err := within25(counts.leaders, regions); err != nil {
			return fmt.Errorf("leaders per store: %w", err)
		}
		// What the stores themselves report agrees.
		for _, s := range stores {
			st, err := s.Status(ctx)
			if err != nil {
				return err
			}
			if st.RegionCount != counts.peers[s.ID] || st.LeaderCount != counts.leaders[s.ID] {
				return fmt.Errorf("%s reports %d regions and %d leaders, the scheduler %d and %d",
					s.Name, st.RegionCount, st.LeaderCount, counts.peers[s.ID], counts.leaders[s.ID])
			}
		}
		t.Logf("%d regions; regions per store %v, leaders per store %v", regions, counts.peers, counts.leaders)
		return nil
	})
	for i := 0; i < n; i += 7 {
		stores[i%4].MustGetEqual(ctx, key(i), val(i))
	}
}

type counts struct {
	regions        int
	peers, leaders map[uint64]int
}

// storeCounts returns the scheduler's region count and per-store counts of
// voters and leaders, from the regions themselves.
func storeCounts(ctx context.Context, c *testcluster.Cluster) (counts, error) {
	res := counts{peers: map[uint64]int{}, leaders: map[uint64]int{}}
	regions, err := c.SchedulerClient().ScanRegions(ctx, nil, nil, 0)
	if err != nil {
		return res, err
	}
	for _, r := range regions {
		res.regions++
		if len(r.Region.Peers) != 3 || len(voterStores(r.Region)) != 3 {
			return res, fmt.Errorf("region %d has peers %v", r.Region.Id, r.Region.Peers)
		}
		if r.Leader == nil {
			return res, fmt.Errorf("region %d has no known leader", r.Region.Id)
		}
		for _, p := range r.Region.Peers {
			res.peers[p.StoreId]++
		}
		res.leaders[r.Leader.StoreId]++
	}
	return res, nil
}

// within25 checks that each of the 4 stores' count is within 25% of
// total/4.
func within25(per map[uint64]int, total int) error {
	mean := float64(total) / 4
	if len(per) != 4 {
		return fmt.Errorf("%v: not on 4 stores", per)
	}
	for id, n := range per {
		if float64(n) < 0.75*mean || float64(n) > 1.25*mean {
			return fmt.Errorf("store %d has %d, mean %.2f: %v", id, n, mean, per)
		}
	}
	return nil
}

// TestStoreOfAnotherCluster (issue 5, bad input): a store whose data
// belongs to one cluster refuses to start against another cluster's
// scheduler, with a clear message.
func TestStoreOfAnotherCluster(t *testing.T) {
	ctx := integration(t)
	c := testcluster.New(t, testcluster.Options{})
	c.StartScheduler()
	s := c.StartStore()
	if !s.Stop(15 * time.Second) {
		t.Fatal("the store did not stop on SIGTERM")
	}
	other := testcluster.New(t, testcluster.Options{})
	sched2 := other.StartScheduler()

	port, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := port.Addr().String()
	port.Close()
	cmd := exec.CommandContext(ctx, testcluster.Build(t).Server,
		"--data-dir", s.DataDir, "--addr", addr, "--status-addr", "", "--scheduler", sched2.Addr)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("store against another cluster: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"refusing to start", "cluster id mismatch", filepath.Base(s.DataDir)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The data dir is intact: the store still starts in its own cluster.
	s.Restart()
}
