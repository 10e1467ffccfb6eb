package harness

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestFollowerCatchUpManySmallEntries: a follower cut off while the leader
// appends thousands of small entries catches up through MsgApps once healed.
// Its rounds step at most the append budget of them each (when the raft log
// was a Badger DB, one round stepping them all made a transaction too big
// to commit, and the store stopped).
func TestFollowerCatchUpManySmallEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("writes thousands of entries")
	}
	c := New(t, Options{Stores: 3})
	leader := c.WaitLeader(1)
	follower := c.OtherStore(leader.StoreID)
	c.Network().Isolate(follower)
	// ~8 MiB of ~2 KiB entries: twice the append budget, less than the
	// log-GC limits, so the follower catches up from the log, not a
	// snapshot.
	val := bytes.Repeat([]byte{'v'}, 2000)
	const n = 4000
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := c.Put(ctx, fmt.Appendf(nil, "k%05d", i), val); err != nil {
					t.Errorf("put %d: %v", i, err)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	c.Network().Heal()
	c.Eventually(time.Minute, func() error {
		for _, i := range []int{0, n / 2, n - 1} {
			if _, ok := c.EngineGet(follower, fmt.Appendf(nil, "k%05d", i)); !ok {
				return fmt.Errorf("store %d lacks k%05d", follower, i)
			}
		}
		return nil
	})
}
