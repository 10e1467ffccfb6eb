package harness

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/raftstore"
)

// Options configures a Cluster. Zero fields take the defaults noted.
type Options struct {
	// Stores is the number of stores; the first region has a peer on each.
	// Default 3.
	Stores int
	// Seed drives every random choice of the harness. 0 means: from
	// REGIONKV_SEED if set, else from the clock. It is logged.
	Seed int64
	// Config is the raftstore configuration of every store. Zero fields take
	// harness defaults: 20ms ticks (an election timeout of 200-400ms).
	Config raftstore.Config
	// Engine sizes each store's DBs; zero means engine.SmallOptions().
	Engine engine.Options
	// AttemptTimeout bounds one client attempt against one store; after it
	// a read is retried and a write reports ErrUnknownOutcome. Default 1s.
	AttemptTimeout time.Duration
}

// ClusterID is the cluster id every harness store is bootstrapped with.
const ClusterID = 1

// The first region and its peers get fixed ids: region 1, peer 100+store id.
const (
	firstRegionID = 1
	firstPeerID   = 100
)

// Cluster is an in-process regionkv cluster for tests.
type Cluster struct {
	t    testing.TB
	opts Options
	seed int64
	net  *Network
	log  *slog.Logger

	sched *Scheduler

	mu     sync.Mutex
	rng    *rand.Rand
	stores map[uint64]*storeHandle
	// leaderHint is the store that last answered as leader, per region.
	leaderHint map[uint64]uint64
}

type storeHandle struct {
	id    uint64
	dir   string
	eng   *engine.Engines
	store *raftstore.Store // nil while stopped
}

// New builds and starts a cluster whose stores all hold region 1, covering
// the whole key space. It stops everything when the test ends.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Stores == 0 {
		opts.Stores = 3
	}
	seed := opts.Seed
	if seed == 0 {
		if v := os.Getenv("REGIONKV_SEED"); v != "" {
			s, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("harness: bad REGIONKV_SEED %q: %v", v, err)
			}
			seed = s
		} else {
			seed = time.Now().UnixNano()
		}
	}
	t.Logf("harness: seed %d (set REGIONKV_SEED=%d to replay)", seed, seed)
	if opts.AttemptTimeout == 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	if opts.Engine == (engine.Options{}) {
		opts.Engine = engine.SmallOptions()
	}
	log := newTestLogger(t)
	opts.Engine.Logger = log
	if opts.Config.RaftBaseTickInterval == 0 {
		opts.Config.RaftBaseTickInterval = 20 * time.Millisecond
	}
	// Two workers per store, whatever the machine, so that the scenarios
	// keep exercising peers moving between workers.
	setIfZero(&opts.Config.RaftWorkers, 2)
	setIfZero(&opts.Config.RegionHeartbeatTickTicks, 5)
	setIfZero(&opts.Config.SplitCheckTickTicks, 10)
	setIfZero(&opts.Config.StoreHeartbeatInterval, 200*time.Millisecond)
	if opts.Config.Logger == nil {
		opts.Config.Logger = log
	}
	c := &Cluster{
		t:          t,
		opts:       opts,
		seed:       seed,
		net:        NewNetwork(seed),
		log:        log,
		rng:        rand.New(rand.NewSource(seed)),
		stores:     make(map[uint64]*storeHandle),
		leaderHint: make(map[uint64]uint64),
	}
	c.sched = newScheduler(c)
	if opts.Config.Scheduler == nil {
		c.opts.Config.Scheduler = c.sched
	}
	region := &metapb.Region{Id: firstRegionID, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}}
	for id := uint64(1); id <= uint64(opts.Stores); id++ {
		region.Peers = append(region.Peers, &metapb.Peer{Id: firstPeerID + id, StoreId: id})
	}
	root := t.TempDir()
	for id := uint64(1); id <= uint64(opts.Stores); id++ {
		h := &storeHandle{id: id, dir: filepath.Join(root, fmt.Sprintf("store%d", id))}
		c.stores[id] = h
		eng, err := engine.Open(h.dir, opts.Engine)
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
		if err := raftstore.BootstrapStore(eng, ClusterID, id); err != nil {
			t.Fatalf("harness: %v", err)
		}
		if err := raftstore.BootstrapRegion(eng, region); err != nil {
			t.Fatalf("harness: %v", err)
		}
		if err := eng.Close(); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	t.Cleanup(c.shutdown)
	for _, id := range c.StoreIDs() {
		c.StartStore(id)
	}
	return c
}

// Scheduler is the cluster's in-process scheduler.
func (c *Cluster) Scheduler() *Scheduler { return c.sched }

// Seed is the seed of this cluster's randomness.
func (c *Cluster) Seed() int64 { return c.seed }

// Network is the simulated network between the stores.
func (c *Cluster) Network() *Network { return c.net }

// Logger is the cluster's test logger.
func (c *Cluster) Logger() *slog.Logger { return c.log }

// StoreIDs lists every store, running or not, in order.
func (c *Cluster) StoreIDs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, 0, len(c.stores))
	for id := range c.stores {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Store returns a running store, or nil if it is stopped.
func (c *Cluster) Store(id uint64) *raftstore.Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.stores[id]; h != nil {
		return h.store
	}
	return nil
}

// RaftLogSize returns the bytes of a running store's raft log segments, or
// -1 if it is stopped.
func (c *Cluster) RaftLogSize(id uint64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.stores[id]; h != nil && h.store != nil {
		return h.eng.Raft.Size()
	}
	return -1
}

// Rand returns a random int in [0, n) from the cluster's seeded source.
func (c *Cluster) Rand(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Intn(n)
}

// Float returns a random float in [0, 1) from the cluster's seeded source.
func (c *Cluster) Float() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Float64()
}

// StopStore stops a store as a crash would: its peers stop where they are,
// messages to it are dropped and its DBs are closed. Everything it
// acknowledged is on disk (the raft log syncs every write).
func (c *Cluster) StopStore(id uint64) {
	c.t.Helper()
	c.mu.Lock()
	h := c.stores[id]
	c.mu.Unlock()
	if h == nil || h.store == nil {
		return
	}
	c.net.Detach(id)
	h.store.Stop()
	if err := h.eng.Close(); err != nil {
		c.t.Errorf("harness: close store %d engines: %v", id, err)
	}
	c.mu.Lock()
	h.store, h.eng = nil, nil
	c.mu.Unlock()
}

// StartStore (re)starts a stopped store from its data dir.
func (c *Cluster) StartStore(id uint64) {
	c.t.Helper()
	c.mu.Lock()
	h := c.stores[id]
	c.mu.Unlock()
	if h == nil {
		c.t.Fatalf("harness: no store %d", id)
	}
	if h.store != nil {
		return
	}
	eng, err := engine.Open(h.dir, c.opts.Engine)
	if err != nil {
		c.t.Fatalf("harness: open store %d: %v", id, err)
	}
	s, err := raftstore.NewStore(c.opts.Config, eng, c.net.Transport(id))
	if err != nil {
		eng.Close()
		c.t.Fatalf("harness: load store %d: %v", id, err)
	}
	c.net.Attach(id, func(msg *raft_serverpb.RaftMessage) {
		if err := s.OnRaftMessage(msg); err != nil {
			c.log.Debug("harness: undeliverable raft message", "store_id", id, "err", err)
		}
	})
	c.net.AttachSnapshots(id, s.ReceiveSnapshot)
	if err := s.Start(); err != nil {
		c.t.Fatalf("harness: start store %d: %v", id, err)
	}
	c.mu.Lock()
	h.eng, h.store = eng, s
	c.mu.Unlock()
}

// StopAll stops every store; StartAll starts them again.
func (c *Cluster) StopAll() {
	for _, id := range c.StoreIDs() {
		c.StopStore(id)
	}
}

// StartAll starts every stopped store.
func (c *Cluster) StartAll() {
	for _, id := range c.StoreIDs() {
		c.StartStore(id)
	}
}

func (c *Cluster) shutdown() {
	c.StopAll()
	c.net.Close()
}

// PeerStatus returns the status of a store's peer of a region, if the store
// runs and has one.
func (c *Cluster) PeerStatus(storeID, regionID uint64) (*raftstore.PeerStatus, bool) {
	s := c.Store(storeID)
	if s == nil {
		return nil, false
	}
	return s.PeerStatus(regionID)
}

// WaitLeader waits until some running store's peer of the region leads and
// returns its status.
func (c *Cluster) WaitLeader(regionID uint64) *raftstore.PeerStatus {
	c.t.Helper()
	var st *raftstore.PeerStatus
	c.Eventually(10*time.Second, func() error {
		for _, id := range c.StoreIDs() {
			if s, ok := c.PeerStatus(id, regionID); ok && s.IsLeader() {
				st = s
				return nil
			}
		}
		return fmt.Errorf("region %d has no leader", regionID)
	})
	return st
}

// OtherStore returns the first store, in id order, that is not storeID: a
// follower's store, given the leader's.
func (c *Cluster) OtherStore(storeID uint64) uint64 {
	c.t.Helper()
	for _, id := range c.StoreIDs() {
		if id != storeID {
			return id
		}
	}
	c.t.Fatalf("harness: no store besides %d", storeID)
	return 0
}

// Eventually polls f every few milliseconds until it returns nil, failing
// the test with f's last error after timeout.
func (c *Cluster) Eventually(timeout time.Duration, f func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("harness: after %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// EngineGet reads a key straight from a running store's kv DB, bypassing
// raft: what that replica has applied, stale or not.
func (c *Cluster) EngineGet(storeID uint64, key []byte) (value []byte, found bool) {
	c.t.Helper()
	c.mu.Lock()
	h := c.stores[storeID]
	c.mu.Unlock()
	if h == nil || h.eng == nil {
		c.t.Fatalf("harness: store %d is not running", storeID)
	}
	cf, _ := engine.CFByte(engine.CFDefault)
	txn := h.eng.KV.NewTransaction(false)
	defer txn.Discard()
	v, err := engine.GetValueTxn(txn, engine.DataKey(cf, key))
	if errors.Is(err, engine.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		c.t.Fatalf("harness: engine get on store %d: %v", storeID, err)
	}
	return v, true
}
