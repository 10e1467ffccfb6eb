// Package schedulers holds the balance schedulers. Where a checker looks at
// one region as it reports, a scheduler looks at the whole cluster from a
// loop and proposes operators that even it out:
//
//   - balance-region moves peers from the store with the most regions to
//     the one with the fewest (add a learner, promote it, transfer
//     leadership away if the source led, remove the source's peer);
//   - balance-leader transfers leadership from the store that leads the
//     most regions to the one that leads the fewest.
//
// Both count regions (not bytes), act only when the gap between the two
// stores exceeds a tolerance, add what running operators will change to the
// counts the heartbeats show (operator.Controller.Influence), and bound how
// many of their operators run at once. They leave alone regions that are
// not healthy (a pending, down or learner peer, too few or too many
// replicas, a peer on a store that is down): the replica checker fixes
// those first.
//
// A Registry holds the schedulers that run; they can be listed, added and
// removed at run time.
package schedulers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/operator"
)

// Names of the schedulers.
const (
	BalanceRegionName = "balance-region"
	BalanceLeaderName = "balance-leader"
)

// Operator timeouts: a move waits for a snapshot; a transfer is quick.
const (
	MovePeerTimeout       = 3 * time.Minute
	TransferLeaderTimeout = 30 * time.Second
)

// Scheduler proposes operators for the whole cluster.
type Scheduler interface {
	// Name is the scheduler's name, also the Kind of its operators.
	Name() string
	// Schedule adds the operators it wants to ops (as many as its limit
	// allows) and returns how many it added. It may fail only when ids
	// cannot be allocated.
	Schedule(ctx context.Context, c *cluster.Cluster, ops *operator.Controller) (int, error)
}

// Config tunes the schedulers. The zero value of each field means its
// default.
type Config struct {
	// Tolerance: a scheduler acts only when the source store's count
	// exceeds the target's by more than this (default 1, so that one move
	// never just swaps which store has one more).
	Tolerance int
	// Limit bounds the running operators of each scheduler (default 4).
	Limit int
	// Now defaults to time.Now.
	Now func() time.Time
	// Seed seeds the choice among candidate regions (0: random).
	Seed uint64
}

func (c Config) withDefaults() Config {
	if c.Tolerance <= 0 {
		c.Tolerance = 1
	}
	if c.Limit <= 0 {
		c.Limit = 4
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	return c
}

// New returns the scheduler called name.
func New(name string, cfg Config) (Scheduler, error) {
	cfg = cfg.withDefaults()
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(len(name))))
	switch name {
	case BalanceRegionName:
		return &balanceRegion{cfg: cfg, rng: rng}, nil
	case BalanceLeaderName:
		return &balanceLeader{cfg: cfg, rng: rng}, nil
	}
	return nil, fmt.Errorf("%w: %q (known: %v)", ErrUnknownScheduler, name, Known())
}

// Known returns the names of every scheduler New can make.
func Known() []string { return []string{BalanceLeaderName, BalanceRegionName} }

// Registry errors.
var (
	ErrUnknownScheduler = errors.New("unknown scheduler")
	ErrNotRunning       = errors.New("scheduler not running")
)

// Registry holds the schedulers that run. It is safe for concurrent use;
// RunOnce runs them one after the other, holding the registry's lock.
type Registry struct {
	cfg Config

	mu      sync.Mutex
	running map[string]Scheduler
}

// NewRegistry returns a registry running the named schedulers.
func NewRegistry(cfg Config, names ...string) (*Registry, error) {
	r := &Registry{cfg: cfg, running: make(map[string]Scheduler)}
	for _, n := range names {
		if err := r.Add(n); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Names returns the running schedulers' names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.running))
	for n := range r.running {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Add starts the scheduler called name; adding a running one does nothing.
func (r *Registry) Add(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[name] != nil {
		return nil
	}
	s, err := New(name, r.cfg)
	if err != nil {
		return err
	}
	r.running[name] = s
	return nil
}

// Remove stops the scheduler called name. Its running operators finish.
func (r *Registry) Remove(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[name] == nil {
		return fmt.Errorf("%w: %q", ErrNotRunning, name)
	}
	delete(r.running, name)
	return nil
}

// RunOnce runs every scheduler once and returns the operators they added,
// by scheduler name. A failing scheduler's error is returned after the
// others ran.
func (r *Registry) RunOnce(ctx context.Context, c *cluster.Cluster, ops *operator.Controller) (map[string]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	added := make(map[string]int)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(r.running)) {
		n, err := r.running[name].Schedule(ctx, c, ops)
		if n > 0 {
			added[name] = n
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return added, errors.Join(errs...)
}

// storeScore is a store and its count plus the running operators' influence.
type storeScore struct {
	id    uint64
	score int
}

// rankStores returns the stores that are Up and not down, most loaded
// first (ties by id).
func rankStores(loads map[uint64]cluster.StoreLoad, score func(id uint64, l cluster.StoreLoad) int) []storeScore {
	var res []storeScore
	for id, l := range loads {
		if l.Store.State() != metapb.StoreState_Up || l.Down {
			continue
		}
		res = append(res, storeScore{id: id, score: score(id, l)})
	}
	slices.SortFunc(res, func(a, b storeScore) int { return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.id, b.id)) })
	return res
}

// pairs calls try for every (source, target) pair of ranked stores whose
// gap exceeds tolerance, the widest gaps first for each source, until try
// returns an operator.
func pairs(ranked []storeScore, tolerance int, try func(src, dst uint64) (*operator.Operator, error)) (*operator.Operator, error) {
	for i, src := range ranked {
		for j := len(ranked) - 1; j > i; j-- {
			dst := ranked[j]
			if src.score-dst.score <= tolerance {
				break // the remaining targets are even closer
			}
			op, err := try(src.id, dst.id)
			if op != nil || err != nil {
				return op, err
			}
		}
	}
	return nil, nil
}

// healthy reports whether a region may be rebalanced: it has a leader,
// exactly maxReplicas voters and nothing else, no pending or down peer, and
// all its peers are on stores that are Up and not down.
func healthy(r *cluster.RegionInfo, maxReplicas int, loads map[uint64]cluster.StoreLoad) bool {
	if r.Leader() == nil || len(r.PendingPeers()) > 0 || len(r.DownPeers()) > 0 || len(r.Peers()) != maxReplicas {
		return false
	}
	for _, p := range r.Peers() {
		l, ok := loads[p.StoreId]
		if p.Role != metapb.PeerRole_Voter || !ok || l.Store.State() != metapb.StoreState_Up || l.Down {
			return false
		}
	}
	return true
}

// schedule adds operators from next until limit of kind run or next has
// none.
func schedule(kind string, limit int, ops *operator.Controller, next func() (*operator.Operator, error)) (int, error) {
	added := 0
	for ops.RunningKind(kind) < limit {
		op, err := next()
		if err != nil || op == nil {
			return added, err
		}
		if !ops.Add(op) {
			return added, nil
		}
		added++
	}
	return added, nil
}
