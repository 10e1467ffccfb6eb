package harness

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regionkv/regionkv/raftstore"
)

// readOn reads key on one store's peer of region 1; ok is false when the
// store did not serve the read.
func readOn(t *testing.T, c *Cluster, storeID uint64, key string, timeout time.Duration) (value string, ok bool) {
	t.Helper()
	res, err := execOn(t, c, storeID, timeout, snapReq)
	if err != nil || res.RegionError() != nil {
		return "", false
	}
	defer res.Snap.Close()
	v, _, err := res.Snap.Get("", []byte(key))
	if err != nil {
		t.Fatalf("read %q on store %d: %v", key, storeID, err)
	}
	return string(v), true
}

func localReads(c *Cluster, storeID uint64) uint64 { return c.Store(storeID).Stats().LocalReads }

// TestLeaseRead: a leader answers reads from its lease, sees every write it
// acknowledged, and stops the moment it starts handing leadership over;
// followers never read locally; DisableLeaseRead turns it off.
func TestLeaseRead(t *testing.T) {
	c := New(t, Options{Stores: 3})
	c.MustPut([]byte("k"), []byte("v1"))
	leader := c.WaitLeader(firstRegionID)
	c.Eventually(5*time.Second, func() error {
		if v, ok := readOn(t, c, leader.StoreID, "k", time.Second); !ok || v != "v1" {
			t.Fatalf("leader read k = %q (served %v), want v1", v, ok)
		}
		if localReads(c, leader.StoreID) == 0 {
			return fmt.Errorf("no read was answered from the lease yet")
		}
		return nil
	})
	// Read your writes: the ack and the local read see the same kv DB.
	for i := range 50 {
		want := "w" + strconv.Itoa(i)
		if res, err := execOn(t, c, leader.StoreID, 5*time.Second, putReq("k", want)); err != nil || res.RegionError() != nil {
			t.Fatalf("put: %v %v", err, res.RegionError())
		}
		if v, ok := readOn(t, c, leader.StoreID, "k", time.Second); !ok || v != want {
			t.Fatalf("read after put = %q (served %v), want %q", v, ok, want)
		}
	}
	for _, id := range c.StoreIDs() {
		if id != leader.StoreID && localReads(c, id) != 0 {
			t.Errorf("follower store %d answered %d reads locally", id, localReads(c, id))
		}
	}

	// Hand leadership over: the old leader must not answer locally after.
	var to uint64
	for _, pr := range leader.Region.Peers {
		if pr.StoreId != leader.StoreID {
			to = pr.StoreId
			c.MustTransferLeader(firstRegionID, pr)
			break
		}
	}
	before := localReads(c, leader.StoreID)
	c.MustPut([]byte("k"), []byte("v2"))
	if v, ok := readOn(t, c, leader.StoreID, "k", time.Second); ok {
		t.Errorf("the old leader served a read after the transfer (k=%q)", v)
	}
	if n := localReads(c, leader.StoreID); n != before {
		t.Errorf("the old leader answered %d reads from a lease after the transfer", n-before)
	}
	c.Eventually(5*time.Second, func() error {
		if v, ok := readOn(t, c, to, "k", time.Second); !ok || v != "v2" {
			return fmt.Errorf("new leader read k = %q (served %v)", v, ok)
		}
		if localReads(c, to) == 0 {
			return fmt.Errorf("the new leader has no lease yet")
		}
		return nil
	})

	off := New(t, Options{Stores: 3, Config: raftstore.Config{DisableLeaseRead: true}})
	off.MustPut([]byte("k"), []byte("v"))
	for range 20 {
		off.MustGetEqual([]byte("k"), []byte("v"))
	}
	for _, id := range off.StoreIDs() {
		if n := localReads(off, id); n != 0 {
			t.Errorf("with DisableLeaseRead store %d answered %d reads locally", id, n)
		}
	}
}

// TestLeaseFollowerRestart: the leader holds a lease and is isolated; at the
// same moment one follower restarts and the other starts an election.
// Having forgotten the leader, the restarted follower would vote at once and
// a new leader would commit writes while the old one still answers reads
// from its lease, unless restarted peers hold their votes for an election
// timeout. A read on the old leader that misses a write acknowledged before
// it began fails the test.
func TestLeaseFollowerRestart(t *testing.T) {
	// A long election timeout, so the lease outlasts the restart by far.
	c := New(t, Options{Stores: 3, Config: raftstore.Config{RaftElectionTicks: 30}})
	c.MustPut([]byte("k"), []byte("0"))
	for trial := 1; trial <= 5; trial++ {
		leaseTrial(t, c, trial)
	}
	c.Network().Heal()
	c.MustGetEqual([]byte("k"), []byte("5"))
}

func leaseTrial(t *testing.T, c *Cluster, trial int) {
	c.Network().Heal()
	// Wait for one leader that every store follows: a deposed leader may
	// still call itself leader for a moment after the heal.
	var old *raftstore.PeerStatus
	c.Eventually(10*time.Second, func() error {
		c.MustPut([]byte("sync"), []byte(strconv.Itoa(trial)))
		var leaders []*raftstore.PeerStatus
		for _, id := range c.StoreIDs() {
			if st, ok := c.PeerStatus(id, firstRegionID); ok && st.IsLeader() {
				leaders = append(leaders, st)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("%d stores lead region 1", len(leaders))
		}
		old = leaders[0]
		return nil
	})
	var loyal, other uint64
	for _, id := range c.StoreIDs() {
		switch {
		case id == old.StoreID:
		case loyal == 0:
			loyal = id
		default:
			other = id
		}
	}

	var acked atomic.Int64 // the newest value whose write was acknowledged
	acked.Store(int64(trial - 1))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	var served, stale atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			floor := acked.Load()
			v, ok := readOn(t, c, old.StoreID, "k", 50*time.Millisecond)
			if !ok {
				time.Sleep(time.Millisecond)
				continue
			}
			served.Add(1)
			if n, _ := strconv.ParseInt(v, 10, 64); n < floor && stale.Add(1) == 1 {
				t.Errorf("trial %d: stale read on the old leader: k=%d after %d was acknowledged", trial, n, floor)
			}
		}
	})
	c.Eventually(5*time.Second, func() error {
		if served.Load() == 0 {
			return fmt.Errorf("the leader serves no reads")
		}
		return nil
	})
	c.Network().Isolate(old.StoreID)
	c.StopStore(loyal)
	c.StartStore(loyal)
	if err := c.Store(other).Campaign(firstRegionID); err != nil {
		t.Fatal(err)
	}
	value := strconv.Itoa(trial)
	deadline := time.Now().Add(10 * time.Second)
write:
	for time.Now().Before(deadline) {
		for _, id := range []uint64{other, loyal} {
			if _, ok := c.PeerStatus(id, firstRegionID); !ok {
				continue
			}
			res, err := execOn(t, c, id, 100*time.Millisecond, putReq("k", value))
			if err == nil && res.RegionError() == nil {
				acked.Store(int64(trial))
				break write
			}
		}
	}
	if acked.Load() != int64(trial) {
		t.Fatalf("trial %d: the majority never accepted a write", trial)
	}
	time.Sleep(300 * time.Millisecond)
	t.Logf("trial %d: the old leader on store %d served %d reads, %d stale", trial, old.StoreID, served.Load(), stale.Load())
}
