// Package operator describes what the scheduler wants done to a region: an
// Operator is a short list of Steps (add a learner, promote it, remove a
// peer, transfer leadership), sent one at a time to the region's leader in
// RegionHeartbeat responses. A step is finished when a heartbeat shows its
// effect; the operator then moves to the next step. An operator whose
// region split (version changed) is cancelled, and one that does not finish
// in time times out.
//
// The Controller holds at most one operator per region.
package operator

import (
	"fmt"
	"strings"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/cluster"
)

// Step is one change to a region. A split (SplitRegion) may only be an
// operator's last step: any other step still to do when the region's
// version changes cancels the operator.
type Step interface {
	fmt.Stringer
	// IsFinished reports whether region shows the step's effect.
	IsFinished(region *cluster.RegionInfo) bool
	// Response is the heartbeat response that asks the leader to do it.
	Response(region *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse
}

// AddLearner adds a learner (non-voting) peer on a store.
type AddLearner struct {
	ToStore, PeerID uint64
}

func (s AddLearner) String() string {
	return fmt.Sprintf("add learner %d on store %d", s.PeerID, s.ToStore)
}

// IsFinished implements Step: the peer exists (a later promotion counts too).
func (s AddLearner) IsFinished(r *cluster.RegionInfo) bool {
	p := r.StorePeer(s.ToStore)
	return p != nil && p.Id == s.PeerID
}

// Response implements Step.
func (s AddLearner) Response(r *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	return changePeer(r, raft_cmdpb.ConfChangeType_AddLearnerNode,
		&metapb.Peer{Id: s.PeerID, StoreId: s.ToStore, Role: metapb.PeerRole_Learner})
}

// PromoteLearner turns a learner into a voter.
type PromoteLearner struct {
	ToStore, PeerID uint64
}

func (s PromoteLearner) String() string {
	return fmt.Sprintf("promote learner %d on store %d", s.PeerID, s.ToStore)
}

// IsFinished implements Step.
func (s PromoteLearner) IsFinished(r *cluster.RegionInfo) bool {
	p := r.StorePeer(s.ToStore)
	return p != nil && p.Id == s.PeerID && p.Role == metapb.PeerRole_Voter
}

// Response implements Step: AddNode for an existing learner promotes it.
func (s PromoteLearner) Response(r *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	return changePeer(r, raft_cmdpb.ConfChangeType_AddNode,
		&metapb.Peer{Id: s.PeerID, StoreId: s.ToStore, Role: metapb.PeerRole_Voter})
}

// RemovePeer removes the region's peer on a store.
type RemovePeer struct {
	FromStore, PeerID uint64
}

func (s RemovePeer) String() string {
	return fmt.Sprintf("remove peer %d on store %d", s.PeerID, s.FromStore)
}

// IsFinished implements Step.
func (s RemovePeer) IsFinished(r *cluster.RegionInfo) bool { return r.Peer(s.PeerID) == nil }

// Response implements Step.
func (s RemovePeer) Response(r *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	p := r.Peer(s.PeerID)
	if p == nil {
		p = &metapb.Peer{Id: s.PeerID, StoreId: s.FromStore}
	}
	return changePeer(r, raft_cmdpb.ConfChangeType_RemoveNode, p)
}

// TransferLeader moves leadership to the region's peer on a store.
type TransferLeader struct {
	FromStore, ToStore uint64
}

func (s TransferLeader) String() string {
	return fmt.Sprintf("transfer leader from store %d to store %d", s.FromStore, s.ToStore)
}

// IsFinished implements Step.
func (s TransferLeader) IsFinished(r *cluster.RegionInfo) bool {
	return r.Leader().GetStoreId() == s.ToStore
}

// Response implements Step.
func (s TransferLeader) Response(r *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	resp := baseResponse(r)
	resp.TransferLeader = &schedulerpb.TransferLeader{Peer: r.StorePeer(s.ToStore)}
	return resp
}

// SplitRegion splits the region at Key, or, with no Key, where the store
// finds its middle. It is finished once the region's epoch version has moved
// past Version, the version the operator was created at.
type SplitRegion struct {
	Key     []byte
	Version uint64
}

func (s SplitRegion) String() string {
	if len(s.Key) == 0 {
		return "split in the middle"
	}
	return fmt.Sprintf("split at key %x", s.Key)
}

// IsFinished implements Step.
func (s SplitRegion) IsFinished(r *cluster.RegionInfo) bool {
	return r.Epoch().GetVersion() > s.Version
}

// Response implements Step.
func (s SplitRegion) Response(r *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	resp := baseResponse(r)
	resp.SplitRegion = &schedulerpb.SplitRegion{Policy: schedulerpb.SplitPolicy_SCAN}
	if len(s.Key) > 0 {
		resp.SplitRegion = &schedulerpb.SplitRegion{Policy: schedulerpb.SplitPolicy_USE_KEYS, Keys: [][]byte{s.Key}}
	}
	return resp
}

func baseResponse(r *cluster.RegionInfo) *schedulerpb.RegionHeartbeatResponse {
	return &schedulerpb.RegionHeartbeatResponse{RegionId: r.ID(), RegionEpoch: r.Epoch(), TargetPeer: r.Leader()}
}

func changePeer(r *cluster.RegionInfo, t raft_cmdpb.ConfChangeType, p *metapb.Peer) *schedulerpb.RegionHeartbeatResponse {
	resp := baseResponse(r)
	resp.ChangePeer = &schedulerpb.ChangePeer{ChangeType: t, Peer: p}
	return resp
}

// Status is where an operator is in its life.
type Status int

// Operator statuses.
const (
	Running Status = iota
	Finished
	TimedOut
	Cancelled // the region split or merged, or the operator was replaced
)

func (s Status) String() string {
	return [...]string{"running", "finished", "timed out", "cancelled"}[s]
}

// Operator is a sequence of steps for one region. It is not safe for
// concurrent use: the Controller serializes access.
type Operator struct {
	Desc string // what and why, e.g. "replace down peer"
	// Kind names what created the operator ("replica-checker",
	// "balance-region", ...), so that each creator can bound its own
	// running operators. Empty for operators made by hand.
	Kind     string
	RegionID uint64
	// Version is the region's epoch version at creation: a split cancels.
	Version uint64
	Steps   []Step
	Created time.Time
	Timeout time.Duration

	current int
	status  Status
	ended   time.Time
}

// New returns a running operator on region.
func New(desc string, region *cluster.RegionInfo, timeout time.Duration, now time.Time, steps ...Step) *Operator {
	return &Operator{Desc: desc, RegionID: region.ID(), Version: region.Epoch().GetVersion(),
		Steps: steps, Created: now, Timeout: timeout}
}

// Status returns the operator's status.
func (o *Operator) Status() Status { return o.status }

// CurrentStep returns the index of the step in progress.
func (o *Operator) CurrentStep() int { return o.current }

func (o *Operator) String() string {
	parts := make([]string, len(o.Steps))
	for i, s := range o.Steps {
		parts[i] = s.String()
	}
	return fmt.Sprintf("%s (region %d, step %d/%d, %s): %s", o.Desc, o.RegionID, min(o.current+1, len(o.Steps)), len(o.Steps), o.status, strings.Join(parts, ", "))
}

// check advances past the steps region shows finished and returns the step
// to do next, or nil once the operator has ended (see Status).
func (o *Operator) check(region *cluster.RegionInfo, now time.Time) Step {
	if o.status != Running {
		return nil
	}
	for o.current < len(o.Steps) && o.Steps[o.current].IsFinished(region) {
		o.current++
	}
	if region.Epoch().GetVersion() != o.Version && o.current < len(o.Steps) {
		// The region split under the operator (unless the split was the
		// operator's last step): its plan no longer fits.
		o.end(Cancelled, now)
		return nil
	}
	if o.current == len(o.Steps) {
		o.end(Finished, now)
		return nil
	}
	if now.Sub(o.Created) > o.Timeout {
		o.end(TimedOut, now)
		return nil
	}
	return o.Steps[o.current]
}

func (o *Operator) end(s Status, now time.Time) {
	o.status, o.ended = s, now
}

// Influence is how the unfinished steps of running operators will change a
// store's counts once they are done.
type Influence struct {
	Regions int // peers added minus peers removed
	Leaders int // leaderships gained minus leaderships lost
}

// influence adds the effect of the steps not yet done to m.
func (o *Operator) influence(m map[uint64]Influence) {
	if o.status != Running {
		return
	}
	for _, s := range o.Steps[o.current:] {
		switch s := s.(type) {
		case AddLearner:
			add(m, s.ToStore, Influence{Regions: 1})
		case RemovePeer:
			add(m, s.FromStore, Influence{Regions: -1})
		case TransferLeader:
			add(m, s.FromStore, Influence{Leaders: -1})
			add(m, s.ToStore, Influence{Leaders: 1})
		}
	}
}

func add(m map[uint64]Influence, store uint64, d Influence) {
	i := m[store]
	i.Regions += d.Regions
	i.Leaders += d.Leaders
	m[store] = i
}
