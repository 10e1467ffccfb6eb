package harness

import (
	"fmt"
	"testing"
	"time"
)

// TestQuiesce: an idle region stops ticking and heartbeating (only the
// per-store liveness pings remain), wakes for a write, and still fails over
// when its leader's store dies while it sleeps.
func TestQuiesce(t *testing.T) {
	c := New(t, Options{Stores: 3})
	for i := 0; i < 4; i++ {
		c.MustSplit([]byte(fmt.Sprintf("k%d", i)))
	}
	c.MustPut([]byte("k1x"), []byte("v"))
	// Idle: after a few election timeouts every region sleeps.
	c.Eventually(10*time.Second, func() error {
		before := c.Network().Stats().Sent
		time.Sleep(400 * time.Millisecond) // 20 ticks
		// Pings: each store pings 2 others every heartbeat (2 ticks).
		if sent := c.Network().Stats().Sent - before; sent > 3*2*10+10 {
			return fmt.Errorf("%d messages in 20 ticks: regions still heartbeat", sent)
		}
		return nil
	})
	c.MustPut([]byte("k2x"), []byte("v"))
	c.MustGetEqual([]byte("k2x"), []byte("v"))

	// Let everything fall asleep again, then kill the store leading k3's region.
	time.Sleep(time.Second)
	r := c.RegionOf([]byte("k3x"))
	l := c.WaitLeader(r.Id)
	c.StopStore(l.StoreID)
	c.Eventually(10*time.Second, func() error {
		if nl, ok := c.Leader(r.Id); !ok || nl.StoreID == l.StoreID {
			return fmt.Errorf("region %d has no new leader", r.Id)
		}
		return nil
	})
	c.MustPut([]byte("k3x"), []byte("after failover"))
	c.MustGetEqual([]byte("k3x"), []byte("after failover"))
}
