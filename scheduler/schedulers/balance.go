package schedulers

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/scheduler/cluster"
	"github.com/regionkv/regionkv/scheduler/operator"
)

// balanceRegion evens out the number of region peers per store.
type balanceRegion struct {
	cfg Config
	rng *rand.Rand // used under the Registry's lock only
}

func (b *balanceRegion) Name() string { return BalanceRegionName }

// Schedule implements Scheduler.
func (b *balanceRegion) Schedule(ctx context.Context, c *cluster.Cluster, ops *operator.Controller) (int, error) {
	return schedule(b.Name(), b.cfg.Limit, ops, func() (*operator.Operator, error) { return b.next(ctx, c, ops) })
}

// next returns one move from a store with more regions to one with fewer,
// or nil.
func (b *balanceRegion) next(ctx context.Context, c *cluster.Cluster, ops *operator.Controller) (*operator.Operator, error) {
	loads := c.StoreLoads()
	infl := ops.Influence()
	maxReplicas := int(c.Config().MaxReplicas)
	ranked := rankStores(loads, func(id uint64, l cluster.StoreLoad) int { return l.RegionCount + infl[id].Regions })
	return pairs(ranked, b.cfg.Tolerance, func(src, dst uint64) (*operator.Operator, error) {
		if !loads[dst].Schedulable() {
			return nil, nil
		}
		region := b.pickRegion(c, ops, src, dst, maxReplicas, loads)
		if region == nil {
			return nil, nil
		}
		return b.movePeer(ctx, c, region, src, dst, loads, infl)
	})
}

// pickRegion returns a healthy region with a peer on src and none on dst,
// without a running operator; a region src does not lead if there is one
// (no leader transfer needed), chosen at random among the candidates.
func (b *balanceRegion) pickRegion(c *cluster.Cluster, ops *operator.Controller, src, dst uint64, maxReplicas int, loads map[uint64]cluster.StoreLoad) *cluster.RegionInfo {
	var followers, leaders []*cluster.RegionInfo
	for _, r := range c.StoreRegions(src) {
		if r.StorePeer(dst) != nil || ops.Has(r.ID()) || !healthy(r, maxReplicas, loads) {
			continue
		}
		if r.Leader().GetStoreId() == src {
			leaders = append(leaders, r)
		} else {
			followers = append(followers, r)
		}
	}
	switch {
	case len(followers) > 0:
		return followers[b.rng.IntN(len(followers))]
	case len(leaders) > 0:
		return leaders[b.rng.IntN(len(leaders))]
	}
	return nil
}

// movePeer builds the operator that moves region's peer from src to dst.
func (b *balanceRegion) movePeer(ctx context.Context, c *cluster.Cluster, region *cluster.RegionInfo, src, dst uint64, loads map[uint64]cluster.StoreLoad, infl map[uint64]operator.Influence) (*operator.Operator, error) {
	id, err := c.AllocID(ctx)
	if err != nil {
		return nil, err
	}
	old := region.StorePeer(src)
	steps := []operator.Step{
		operator.AddLearner{ToStore: dst, PeerID: id},
		operator.PromoteLearner{ToStore: dst, PeerID: id},
	}
	if region.Leader().GetStoreId() == src {
		// Hand leadership to the voter whose store leads the fewest regions,
		// the new one included.
		to := dst
		best := loads[dst].LeaderCount + infl[dst].Leaders
		for _, p := range region.Peers() {
			if p.StoreId == src {
				continue
			}
			if n := loads[p.StoreId].LeaderCount + infl[p.StoreId].Leaders; n < best {
				to, best = p.StoreId, n
			}
		}
		steps = append(steps, operator.TransferLeader{FromStore: src, ToStore: to})
	}
	steps = append(steps, operator.RemovePeer{FromStore: src, PeerID: old.Id})
	op := operator.New(fmt.Sprintf("balance region: move peer from store %d to store %d", src, dst),
		region, MovePeerTimeout, b.cfg.Now(), steps...)
	op.Kind = b.Name()
	return op, nil
}

// balanceLeader evens out the number of regions each store leads.
type balanceLeader struct {
	cfg Config
	rng *rand.Rand // used under the Registry's lock only
}

func (b *balanceLeader) Name() string { return BalanceLeaderName }

// Schedule implements Scheduler.
func (b *balanceLeader) Schedule(ctx context.Context, c *cluster.Cluster, ops *operator.Controller) (int, error) {
	return schedule(b.Name(), b.cfg.Limit, ops, func() (*operator.Operator, error) { return b.next(c, ops), nil })
}

// next returns one leader transfer from a store that leads more regions to
// one that leads fewer, or nil.
func (b *balanceLeader) next(c *cluster.Cluster, ops *operator.Controller) *operator.Operator {
	loads := c.StoreLoads()
	infl := ops.Influence()
	ranked := rankStores(loads, func(id uint64, l cluster.StoreLoad) int { return l.LeaderCount + infl[id].Leaders })
	op, _ := pairs(ranked, b.cfg.Tolerance, func(src, dst uint64) (*operator.Operator, error) {
		region := b.pickRegion(c, ops, src, dst)
		if region == nil {
			return nil, nil
		}
		op := operator.New(fmt.Sprintf("balance leader: transfer from store %d to store %d", src, dst),
			region, TransferLeaderTimeout, b.cfg.Now(), operator.TransferLeader{FromStore: src, ToStore: dst})
		op.Kind = b.Name()
		return op, nil
	})
	return op
}

// pickRegion returns, at random, a region src leads without a running
// operator whose peer on dst is a voter that is neither pending nor down.
func (b *balanceLeader) pickRegion(c *cluster.Cluster, ops *operator.Controller, src, dst uint64) *cluster.RegionInfo {
	var cands []*cluster.RegionInfo
	for _, r := range c.StoreLeaderRegions(src) {
		p := r.StorePeer(dst)
		if p == nil || p.Role != metapb.PeerRole_Voter || ops.Has(r.ID()) || lagging(r, p.Id) {
			continue
		}
		cands = append(cands, r)
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[b.rng.IntN(len(cands))]
}

// lagging reports whether the leader reported peer id pending or down.
func lagging(r *cluster.RegionInfo, id uint64) bool {
	for _, p := range r.PendingPeers() {
		if p.Id == id {
			return true
		}
	}
	for _, d := range r.DownPeers() {
		if d.GetPeer().GetId() == id {
			return true
		}
	}
	return false
}
