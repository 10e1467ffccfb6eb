// Package checker holds the checkers: they look at one region and return
// the operator that fixes it, if it needs one.
package checker

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/operator"
)

// Operator timeouts: adding a peer waits for a snapshot to be sent and
// applied; removing one or moving leadership is quick.
const (
	AddPeerTimeout    = 10 * time.Minute
	RemovePeerTimeout = time.Minute
)

// Kind is the Kind of the operators the replica checker creates.
const Kind = "replica-checker"

// ReplicaChecker keeps every region at max_replicas voters on healthy
// stores: it adds missing voters, replaces voters on stores that are down
// (no heartbeat for max_store_down_time), offline or tombstone, and removes
// extra voters and stray learners. A new voter is added as a learner and
// then promoted, so that it catches up without counting in the quorum.
type ReplicaChecker struct {
	cluster *cluster.Cluster
	now     func() time.Time
}

// NewReplicaChecker returns a checker over c; now defaults to time.Now.
func NewReplicaChecker(c *cluster.Cluster, now func() time.Time) *ReplicaChecker {
	if now == nil {
		now = time.Now
	}
	return &ReplicaChecker{cluster: c, now: now}
}

// Check returns the operator region needs, or nil. It allocates the ids of
// new peers, so it may fail (when ids cannot be allocated).
func (rc *ReplicaChecker) Check(ctx context.Context, region *cluster.RegionInfo) (*operator.Operator, error) {
	if region.Leader() == nil {
		return nil, nil
	}
	loads := rc.cluster.StoreLoads()
	maxReplicas := int(rc.cluster.Config().MaxReplicas)
	healthy := func(storeID uint64) bool {
		l, ok := loads[storeID]
		return ok && l.Store.State() == metapb.StoreState_Up && !l.Down
	}
	var voters, learners []*metapb.Peer
	for _, p := range region.Peers() {
		if p.Role == metapb.PeerRole_Learner {
			learners = append(learners, p)
		} else {
			voters = append(voters, p)
		}
	}
	leaderStore := region.Leader().GetStoreId()

	// A learner left by an operator that did not finish: promote it if a
	// voter is missing, otherwise remove it.
	for _, l := range learners {
		if healthy(l.StoreId) && len(voters) < maxReplicas {
			return rc.op("promote learner", region, AddPeerTimeout, operator.PromoteLearner{ToStore: l.StoreId, PeerID: l.Id}), nil
		}
		return rc.op("remove learner", region, RemovePeerTimeout, operator.RemovePeer{FromStore: l.StoreId, PeerID: l.Id}), nil
	}

	// A voter on an unhealthy store: replace it.
	for _, v := range voters {
		if healthy(v.StoreId) {
			continue
		}
		if len(voters) > maxReplicas {
			return rc.removeVoter("remove unhealthy extra peer", region, v, voters, loads), nil
		}
		target := pickTarget(region, loads)
		if target == 0 {
			return nil, nil // nowhere to go; keep the replica
		}
		id, err := rc.cluster.AllocID(ctx)
		if err != nil {
			return nil, err
		}
		steps := []operator.Step{
			operator.AddLearner{ToStore: target, PeerID: id},
			operator.PromoteLearner{ToStore: target, PeerID: id},
		}
		if v.StoreId == leaderStore {
			to := otherVoter(voters, v.StoreId, loads, healthy)
			if to == 0 {
				return nil, nil
			}
			steps = append(steps, operator.TransferLeader{FromStore: v.StoreId, ToStore: to})
		}
		steps = append(steps, operator.RemovePeer{FromStore: v.StoreId, PeerID: v.Id})
		return rc.op("replace unhealthy peer", region, AddPeerTimeout, steps...), nil
	}

	switch {
	case len(voters) < maxReplicas:
		target := pickTarget(region, loads)
		if target == 0 {
			return nil, nil
		}
		id, err := rc.cluster.AllocID(ctx)
		if err != nil {
			return nil, err
		}
		return rc.op("add missing replica", region, AddPeerTimeout,
			operator.AddLearner{ToStore: target, PeerID: id},
			operator.PromoteLearner{ToStore: target, PeerID: id}), nil
	case len(voters) > maxReplicas:
		// Remove the voter on the most loaded store.
		victim := slices.MaxFunc(voters, func(a, b *metapb.Peer) int {
			return cmp.Or(cmp.Compare(loads[a.StoreId].RegionCount, loads[b.StoreId].RegionCount), cmp.Compare(a.StoreId, b.StoreId))
		})
		return rc.removeVoter("remove extra replica", region, victim, voters, loads), nil
	}
	return nil, nil
}

// removeVoter removes v, transferring leadership away from it first.
func (rc *ReplicaChecker) removeVoter(desc string, region *cluster.RegionInfo, v *metapb.Peer, voters []*metapb.Peer, loads map[uint64]cluster.StoreLoad) *operator.Operator {
	var steps []operator.Step
	if region.Leader().GetStoreId() == v.StoreId {
		to := otherVoter(voters, v.StoreId, loads, func(id uint64) bool { return loads[id].Schedulable() })
		if to == 0 {
			return nil
		}
		steps = append(steps, operator.TransferLeader{FromStore: v.StoreId, ToStore: to})
	}
	steps = append(steps, operator.RemovePeer{FromStore: v.StoreId, PeerID: v.Id})
	return rc.op(desc, region, RemovePeerTimeout, steps...)
}

func (rc *ReplicaChecker) op(desc string, region *cluster.RegionInfo, timeout time.Duration, steps ...operator.Step) *operator.Operator {
	op := operator.New(desc, region, timeout, rc.now(), steps...)
	op.Kind = Kind
	return op
}

// pickTarget returns the schedulable store without a peer of region that
// holds the fewest regions (lowest id on ties), or 0.
func pickTarget(region *cluster.RegionInfo, loads map[uint64]cluster.StoreLoad) uint64 {
	var best uint64
	for id, l := range loads {
		if !l.Schedulable() || region.StorePeer(id) != nil {
			continue
		}
		if best == 0 || l.RegionCount < loads[best].RegionCount || (l.RegionCount == loads[best].RegionCount && id < best) {
			best = id
		}
	}
	return best
}

// otherVoter returns the store of another voter that ok accepts, preferring
// the one with the fewest leaders, or 0.
func otherVoter(voters []*metapb.Peer, not uint64, loads map[uint64]cluster.StoreLoad, ok func(uint64) bool) uint64 {
	var best uint64
	for _, v := range voters {
		if v.StoreId == not || !ok(v.StoreId) {
			continue
		}
		if best == 0 || loads[v.StoreId].LeaderCount < loads[best].LeaderCount {
			best = v.StoreId
		}
	}
	return best
}
