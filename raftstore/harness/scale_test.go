package harness

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/regionkv/regionkv/raftstore"
)

// TestScaleRegions grows one 3-store cluster to 1,000 regions by splitting
// and measures what a region costs: memory per region, the CPU of the idle
// cluster, and the time to split. It runs under `make test-long`
// (REGIONKV_LONG=1); the figures go to the test log.
func TestScaleRegions(t *testing.T) {
	if os.Getenv("REGIONKV_LONG") == "" {
		t.Skip("long test: set REGIONKV_LONG=1 (make test-long)")
	}
	const regions = 1000
	// Production tick settings, so the idle CPU figure means something.
	c := New(t, Options{Stores: 3, AttemptTimeout: 5 * time.Second, Config: raftstore.Config{
		RaftBaseTickInterval: 100 * time.Millisecond, RegionHeartbeatTickTicks: 100, SplitCheckTickTicks: 100,
	}})
	c.MustPut([]byte("k"), []byte("v"))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	start := time.Now()
	for i := 1; i < regions; i++ {
		key := []byte(fmt.Sprintf("r%06d", i))
		r := c.RegionOf(key)
		for {
			l, ok := c.Leader(r.Id)
			if ok {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.Store(l.StoreID).SplitRegion(ctx, r.Id, key)
				cancel()
				if err == nil {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			r = c.RegionOf(key)
		}
	}
	splitTime := time.Since(start)
	c.Eventually(60*time.Second, func() error {
		if n := c.regionCount(); n < regions {
			return fmt.Errorf("%d regions", n)
		}
		for i := 1; i < regions; i += 97 {
			if _, ok := c.Leader(c.RegionOf([]byte(fmt.Sprintf("r%06d", i))).Id); !ok {
				return fmt.Errorf("region of r%06d has no leader", i)
			}
		}
		return nil
	})
	t.Logf("split into %d regions in %v (%v per split)", regions, splitTime, splitTime/time.Duration(regions-1))

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("heap: %.1f MiB before, %.1f MiB after: %.1f KiB per region (3 peers)",
		float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20),
		float64(after.HeapAlloc-before.HeapAlloc)/1024/regions)

	const idle = 10 * time.Second
	cpu0 := cpuTime()
	net0 := c.Network().Stats()
	time.Sleep(idle)
	cpu := cpuTime() - cpu0
	net1 := c.Network().Stats()
	t.Logf("idle for %v: %.2f CPU seconds (%.0f%% of one core), %d raft messages/s",
		idle, cpu.Seconds(), 100*cpu.Seconds()/idle.Seconds(), (net1.Sent-net0.Sent)/uint64(idle.Seconds()))
	c.MustPut([]byte("r000500x"), []byte("still serving"))
	c.MustGetEqual([]byte("r000500x"), []byte("still serving"))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
