package harness

import (
	"fmt"
	"testing"
	"time"
)

// The raftstore scenarios of TinyKV's project 2B, made stricter: every one
// ends with a linearizability check and a read-back of every key.
func TestScenarios(t *testing.T) {
	cases := []struct {
		name string
		opts ScenarioOptions
	}{
		{"Basic", ScenarioOptions{Clients: 1}},
		{"Concurrent", ScenarioOptions{Clients: 5}},
		{"Unreliable", ScenarioOptions{Clients: 5, Unreliable: true}},
		{"ManyPartitionsOneClient", ScenarioOptions{Clients: 1, Partitions: true, Cluster: Options{Stores: 5}}},
		{"ManyPartitionsManyClients", ScenarioOptions{Clients: 5, Partitions: true, Cluster: Options{Stores: 5}}},
		{"PersistOneClient", ScenarioOptions{Clients: 1, CrashRestart: true}},
		{"PersistConcurrent", ScenarioOptions{Clients: 5, CrashRestart: true}},
		{"PersistConcurrentUnreliable", ScenarioOptions{Clients: 5, CrashRestart: true, Unreliable: true}},
		{"PersistPartition", ScenarioOptions{Clients: 5, CrashRestart: true, Partitions: true, Cluster: Options{Stores: 5}}},
		{"PersistPartitionUnreliable", ScenarioOptions{Clients: 5, CrashRestart: true, Partitions: true, Unreliable: true, Cluster: Options{Stores: 5}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			RunScenario(t, tc.opts)
			t.Logf("%s took %v", tc.name, time.Since(start))
		})
	}
}

// TestDurability: every acknowledged write survives stopping and restarting
// every store.
func TestDurability(t *testing.T) {
	c := New(t, Options{Stores: 3})
	for i := range 100 {
		c.MustPut([]byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprintf("v%d", i)))
	}
	c.StopAll()
	c.StartAll()
	for i := range 100 {
		c.MustGetEqual([]byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprintf("v%d", i)))
	}
}
