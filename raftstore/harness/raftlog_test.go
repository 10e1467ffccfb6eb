package harness

import (
	"fmt"
	"testing"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
)

// TestRaftLogSegmentsScenario runs the stores on tiny raft log segments, so
// that every round rotates, checkpoints, rewrites and purges them many times
// while stores crash and restart (replaying what is left) and messages are
// lost; the history must stay linearizable and every acknowledged write
// readable, and each store's raft log must stay bounded as log GC compacts.
func TestRaftLogSegmentsScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("a multi-second scenario")
	}
	const segment = 8 << 10
	eng := engine.SmallOptions()
	eng.RaftSegmentSize = segment
	start := time.Now()
	RunScenario(t, ScenarioOptions{
		Clients:      5,
		CrashRestart: true,
		Unreliable:   true,
		MaxRaftLog:   100,
		Rounds:       4,
		Cluster:      Options{Engine: eng},
		AfterRound: func(c *Cluster, round int) {
			// Live logs are a few hundred entries; the segments holding
			// them, and the checkpoints, fit in a few segments.
			c.Eventually(10*time.Second, func() error {
				for _, id := range c.StoreIDs() {
					if n := c.RaftLogSize(id); n > 12*segment {
						return fmt.Errorf("store %d: raft log of %d bytes after round %d", id, n, round)
					}
				}
				return nil
			})
		},
	})
	t.Logf("took %v", time.Since(start))
}
