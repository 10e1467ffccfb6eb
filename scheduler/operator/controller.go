package operator

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/cluster"
)

// historySize bounds the ended operators kept for the API.
const historySize = 256

// Controller holds the running operators, at most one per region, and
// hands out their steps as regions report. It is safe for concurrent use.
type Controller struct {
	now func() time.Time

	mu      sync.Mutex
	running map[uint64]*Operator // region id → operator
	history []*Operator          // most recent last, at most historySize
}

// NewController returns an empty controller; now defaults to time.Now.
func NewController(now func() time.Time) *Controller {
	if now == nil {
		now = time.Now
	}
	return &Controller{now: now, running: make(map[uint64]*Operator)}
}

// Add starts op unless its region already has a running operator.
func (c *Controller) Add(op *Operator) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.running[op.RegionID]; busy {
		return false
	}
	c.running[op.RegionID] = op
	return true
}

// Has reports whether region has a running operator.
func (c *Controller) Has(regionID uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.running[regionID]
	return ok
}

// Cancel ends the region's running operator, if any.
func (c *Controller) Cancel(regionID uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if op := c.running[regionID]; op != nil {
		op.end(Cancelled, c.now())
		c.retireLocked(op)
	}
}

// Influence returns, per store, how the running operators will change its
// region and leader counts once they finish. Schedulers add it to the
// counts the heartbeats show, so that they do not pile operators onto a
// store that is already receiving (or losing) enough.
func (c *Controller) Influence() map[uint64]Influence {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[uint64]Influence)
	for _, op := range c.running {
		op.influence(m)
	}
	return m
}

// RunningKind returns how many operators of kind are running.
func (c *Controller) RunningKind(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, op := range c.running {
		if op.Kind == kind {
			n++
		}
	}
	return n
}

// Dispatch checks the region's operator against a heartbeat of region and
// returns the step to send back, or nil when there is none (no operator, or
// it just ended).
func (c *Controller) Dispatch(region *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	op := c.running[region.ID()]
	if op == nil {
		return nil
	}
	step := op.check(region, c.now())
	if step == nil {
		c.retireLocked(op)
		return nil
	}
	return step.Response(region)
}

func (c *Controller) retireLocked(op *Operator) {
	delete(c.running, op.RegionID)
	if len(c.history) == historySize {
		c.history = slices.Delete(c.history, 0, 1)
	}
	c.history = append(c.history, op)
}

// View is a snapshot of an operator for listing.
type View struct {
	RegionID    uint64    `json:"region_id"`
	Desc        string    `json:"desc"`
	Kind        string    `json:"kind,omitempty"`
	Steps       []string  `json:"steps"`
	CurrentStep int       `json:"current_step"`
	Status      string    `json:"status"`
	Created     time.Time `json:"created"`
	Ended       time.Time `json:"ended,omitzero"`
}

func view(op *Operator) View {
	v := View{RegionID: op.RegionID, Desc: op.Desc, Kind: op.Kind, CurrentStep: op.current, Status: op.status.String(),
		Created: op.Created, Ended: op.ended}
	for _, s := range op.Steps {
		v.Steps = append(v.Steps, s.String())
	}
	return v
}

// Running returns the running operators by region id.
func (c *Controller) Running() []View {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := make([]View, 0, len(c.running))
	for _, op := range c.running {
		res = append(res, view(op))
	}
	slices.SortFunc(res, func(a, b View) int { return cmp.Compare(a.RegionID, b.RegionID) })
	return res
}

// History returns recently ended operators, oldest first.
func (c *Controller) History() []View {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := make([]View, len(c.history))
	for i, op := range c.history {
		res[i] = view(op)
	}
	return res
}
