package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// ScenarioOptions shapes RunScenario. Zero fields take the defaults noted.
type ScenarioOptions struct {
	Cluster Options
	// Clients run concurrently; each owns KeysPerClient keys. Default 1 and 4.
	Clients       int
	KeysPerClient int
	// Rounds of RoundDuration each. Default 3 rounds of 2s.
	Rounds        int
	RoundDuration time.Duration
	// Unreliable drops 10% of messages and delays the rest by up to 5ms.
	Unreliable bool
	// Partitions repartitions the stores at random every 200-600ms.
	Partitions bool
	// CrashRestart stops and restarts every store between rounds, and during
	// each round keeps crashing one random store and restarting it a little
	// later.
	CrashRestart bool
	// ConfChange keeps adding and removing peers of random regions (between
	// 3 and all stores) during rounds.
	ConfChange bool
	// Split makes regions tiny (200 bytes), so the data splits into many
	// regions as it is written.
	Split bool
	// MaxRaftLog, if set, makes the stores compact their raft logs past this
	// many entries (so lagging and restarted followers catch up through
	// snapshots) and checks after every round that no store keeps more than
	// twice as many applied entries in its log.
	MaxRaftLog uint64
	// CheckTimeout bounds the linearizability check. Default 60s.
	CheckTimeout time.Duration
	// AfterRound, if set, runs after each round's faults are healed and
	// before the read-back, with the round number from 0.
	AfterRound func(c *Cluster, round int)
}

func (o *ScenarioOptions) defaults() {
	setIfZero(&o.Clients, 1)
	setIfZero(&o.KeysPerClient, 4)
	setIfZero(&o.Rounds, 3)
	setIfZero(&o.RoundDuration, 2*time.Second)
	setIfZero(&o.CheckTimeout, 60*time.Second)
}

func setIfZero[T comparable](f *T, v T) {
	var zero T
	if *f == zero {
		*f = v
	}
}

// keyState is what a key must hold as far as its owning client knows.
type keyState struct {
	value   string
	exists  bool
	certain bool // false after a write with an unknown outcome
}

// RunScenario runs the classic randomized raftstore test: clients issue
// puts, gets and deletes on their own keys for several rounds while the
// chosen faults play out; after each round the faults heal (and with
// CrashRestart every store restarts) and every key is read back. The whole
// history is checked for linearizability, and every key whose last write
// was acknowledged must read back exactly.
func RunScenario(t *testing.T, opts ScenarioOptions) *Cluster {
	t.Helper()
	if opts.Split {
		// Enough keys that even one client's data splits several times.
		setIfZero(&opts.KeysPerClient, max(8, 40/max(opts.Clients, 1)))
		cfg := &opts.Cluster.Config
		cfg.RegionMaxSize, cfg.RegionSplitSize, cfg.SplitCheckTickTicks = 200, 120, 5
	}
	opts.defaults()
	if opts.MaxRaftLog > 0 {
		cfg := &opts.Cluster.Config
		cfg.RaftLogGCCountLimit = opts.MaxRaftLog
		cfg.RaftLogGCThreshold = max(1, opts.MaxRaftLog/2)
		cfg.RaftLogGCTickTicks = 2
	}
	c := New(t, opts.Cluster)
	rec := NewRecorder()
	states := make([][]keyState, opts.Clients)
	for i := range states {
		states[i] = make([]keyState, opts.KeysPerClient)
		for j := range states[i] {
			states[i][j].certain = true
		}
	}
	for round := range opts.Rounds {
		var acked atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for cl := range opts.Clients {
			wg.Go(func() { c.runClient(cl, round, opts.KeysPerClient, states[cl], rec, stop, &acked) })
		}
		if opts.Unreliable {
			c.net.Drop(0.1)
			c.net.Delay(5 * time.Millisecond)
		}
		if opts.Partitions {
			wg.Go(func() { c.partitionLoop(stop) })
		}
		if opts.CrashRestart {
			wg.Go(func() { c.crashLoop(stop) })
		}
		if opts.ConfChange {
			wg.Go(func() { c.confChangeLoop(stop, opts.Clients, opts.KeysPerClient) })
		}
		time.Sleep(opts.RoundDuration)
		close(stop)
		wg.Wait()
		c.net.ClearFilters()
		if acked.Load() == 0 {
			t.Errorf("round %d: no client operation succeeded", round)
		}
		if opts.CrashRestart {
			c.StopAll()
			c.StartAll()
		}
		if opts.AfterRound != nil {
			opts.AfterRound(c, round)
		}
		c.readBack(states, rec)
		if opts.MaxRaftLog > 0 {
			c.CheckLogBounded(2 * opts.MaxRaftLog)
		}
		t.Logf("round %d: %d ops acknowledged, %d regions, network %+v", round, acked.Load(), c.regionCount(), c.net.Stats())
	}
	rec.CheckLinearizable(t, opts.CheckTimeout)
	return c
}

func clientKey(client, key int) string { return fmt.Sprintf("client%02d-key%02d", client, key) }

// runClient issues random operations on the client's own keys until stop.
func (c *Cluster) runClient(cl, round, nkeys int, states []keyState, rec *Recorder, stop <-chan struct{}, acked *atomic.Int64) {
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		k := c.Rand(nkeys)
		key := clientKey(cl, k)
		st := &states[k]
		ctx, cancel := context.WithTimeout(context.Background(), 3*c.opts.AttemptTimeout)
		switch r := c.Float(); {
		case r < 0.45:
			value := fmt.Sprintf("c%d-r%d-s%d", cl, round, seq)
			op := rec.Begin(cl, KVInput{Kind: OpPut, Key: key, Value: value})
			if err := c.Put(ctx, []byte(key), []byte(value)); err != nil {
				op.Unknown()
				*st = keyState{}
			} else {
				op.Done(KVOutput{})
				*st = keyState{value: value, exists: true, certain: true}
				acked.Add(1)
			}
		case r < 0.55:
			op := rec.Begin(cl, KVInput{Kind: OpDelete, Key: key})
			if err := c.Delete(ctx, []byte(key)); err != nil {
				op.Unknown()
				*st = keyState{}
			} else {
				op.Done(KVOutput{})
				*st = keyState{certain: true}
				acked.Add(1)
			}
		default:
			op := rec.Begin(cl, KVInput{Kind: OpGet, Key: key})
			v, found, err := c.Get(ctx, []byte(key))
			if err != nil {
				op.Unknown()
			} else {
				op.Done(KVOutput{Value: string(v), Found: found})
				acked.Add(1)
			}
		}
		cancel()
	}
}

// partitionLoop splits the stores into two random groups every 200-600ms.
func (c *Cluster) partitionLoop(stop <-chan struct{}) {
	for {
		ids := c.StoreIDs()
		for i := len(ids) - 1; i > 0; i-- {
			j := c.Rand(i + 1)
			ids[i], ids[j] = ids[j], ids[i]
		}
		cut := c.Rand(len(ids) + 1)
		c.net.Partition(slices.Clone(ids[:cut]), slices.Clone(ids[cut:]))
		t := time.NewTimer(time.Duration(200+c.Rand(400)) * time.Millisecond)
		select {
		case <-stop:
			t.Stop()
			c.net.Heal()
			return
		case <-t.C:
		}
	}
}

// crashLoop stops a random store every 300-700ms and restarts it 100-400ms
// later, until stop.
func (c *Cluster) crashLoop(stop <-chan struct{}) {
	wait := func(ms int) bool {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-stop:
			return false
		case <-t.C:
			return true
		}
	}
	for {
		if !wait(300 + c.Rand(400)) {
			return
		}
		ids := c.StoreIDs()
		id := ids[c.Rand(len(ids))]
		c.StopStore(id)
		ok := wait(100 + c.Rand(300))
		c.StartStore(id)
		if !ok {
			return
		}
	}
}

// readBack reads every client key (recording the reads) and checks the keys
// whose state is certain.
func (c *Cluster) readBack(states [][]keyState, rec *Recorder) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mustTimeout)
	defer cancel()
	for cl := range states {
		for k := range states[cl] {
			key := clientKey(cl, k)
			op := rec.Begin(cl, KVInput{Kind: OpGet, Key: key})
			v, found, err := c.Get(ctx, []byte(key))
			if err != nil {
				op.Unknown()
				if errors.Is(err, context.DeadlineExceeded) {
					c.t.Fatalf("read-back of %q: %v", key, err)
				}
				continue
			}
			op.Done(KVOutput{Value: string(v), Found: found})
			st := states[cl][k]
			if st.certain && (found != st.exists || string(v) != st.value) {
				c.t.Errorf("read-back of %q = (%q, found %v), want (%q, found %v)", key, v, found, st.value, st.exists)
			}
		}
	}
}

// CheckLogBounded waits (up to 10s) until every peer on every running store
// keeps at most limit applied entries in its raft log, i.e. log GC keeps up.
func (c *Cluster) CheckLogBounded(limit uint64) {
	c.t.Helper()
	c.Eventually(10*time.Second, func() error {
		for _, id := range c.StoreIDs() {
			s := c.Store(id)
			if s == nil {
				continue
			}
			for _, st := range s.PeerStatuses() {
				if st.AppliedIndex-st.TruncatedIndex > limit {
					return fmt.Errorf("store %d region %d keeps %d applied log entries (applied %d, truncated %d), limit %d",
						id, st.RegionID, st.AppliedIndex-st.TruncatedIndex, st.AppliedIndex, st.TruncatedIndex, limit)
				}
			}
		}
		return nil
	})
}

// regionCount is how many distinct initialized regions the stores hold.
func (c *Cluster) regionCount() int {
	ids := map[uint64]bool{}
	for _, id := range c.StoreIDs() {
		if s := c.Store(id); s != nil {
			for _, st := range s.PeerStatuses() {
				if len(st.Region.GetPeers()) > 0 {
					ids[st.RegionID] = true
				}
			}
		}
	}
	return len(ids)
}

// confChangeLoop adds or removes a peer of the region of a random client key
// every 200-500ms: it removes one while the region has more than 3 peers
// (and at random), else adds one on a store without.
func (c *Cluster) confChangeLoop(stop <-chan struct{}, clients, keys int) {
	for {
		t := time.NewTimer(time.Duration(200+c.Rand(300)) * time.Millisecond)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		r := c.RegionOf([]byte(clientKey(c.Rand(clients), c.Rand(keys))))
		if r == nil {
			continue
		}
		if len(r.Peers) > 3 && c.Rand(2) == 0 {
			p := r.Peers[c.Rand(len(r.Peers))]
			c.sched.AddOperator(r.Id, &Operator{ChangePeer: &schedulerpb.ChangePeer{ChangeType: raft_cmdpb.ConfChangeType_RemoveNode, Peer: p}})
			continue
		}
		var free []uint64
		for _, id := range c.StoreIDs() {
			if !hasStore(r, id) {
				free = append(free, id)
			}
		}
		if len(free) > 0 {
			p := c.NewPeer(free[c.Rand(len(free))])
			c.sched.AddOperator(r.Id, &Operator{ChangePeer: &schedulerpb.ChangePeer{ChangeType: raft_cmdpb.ConfChangeType_AddNode, Peer: p}})
		}
	}
}

func hasStore(r *metapb.Region, storeID uint64) bool {
	for _, p := range r.Peers {
		if p.StoreId == storeID {
			return true
		}
	}
	return false
}
