package cluster

import (
	"github.com/regionkv/regionkv/proto/metapb"
)

// RegionsInfo is the scheduler's region index: the range tree, the regions
// by id, and per store the regions it holds a peer of, leads, or has a
// pending peer of.
//
// It is not safe for concurrent use: Cluster guards it with its lock.
// Invariant: byID and tree hold the same regions, and the per-store indexes
// are derived from exactly those regions.
type RegionsInfo struct {
	tree    *regionTree
	byID    map[uint64]*RegionInfo
	peers   map[uint64]map[uint64]*RegionInfo // store id → region id → region
	leaders map[uint64]map[uint64]*RegionInfo
	pending map[uint64]map[uint64]*RegionInfo
}

// NewRegionsInfo returns an empty index.
func NewRegionsInfo() *RegionsInfo {
	return &RegionsInfo{
		tree:    newRegionTree(),
		byID:    make(map[uint64]*RegionInfo),
		peers:   make(map[uint64]map[uint64]*RegionInfo),
		leaders: make(map[uint64]map[uint64]*RegionInfo),
		pending: make(map[uint64]map[uint64]*RegionInfo),
	}
}

func regionWithStart(key []byte) *metapb.Region { return &metapb.Region{StartKey: key} }

// Len returns the number of regions.
func (ri *RegionsInfo) Len() int { return len(ri.byID) }

// Get returns the region with id, or nil.
func (ri *RegionsInfo) Get(id uint64) *RegionInfo { return ri.byID[id] }

// GetByKey returns the region containing key, or nil.
func (ri *RegionsInfo) GetByKey(key []byte) *RegionInfo { return ri.tree.search(key) }

// GetPrevByKey returns the region before the one containing key, or nil.
func (ri *RegionsInfo) GetPrevByKey(key []byte) *RegionInfo { return ri.tree.prev(key) }

// Overlaps returns the regions overlapping r's range (which may include a
// region with r's id).
func (ri *RegionsInfo) Overlaps(r *RegionInfo) []*RegionInfo { return ri.tree.overlaps(r) }

// Scan returns up to limit regions (limit <= 0: all) overlapping
// [start, end), in key order; end empty means +infinity.
func (ri *RegionsInfo) Scan(start, end []byte, limit int) []*RegionInfo {
	var res []*RegionInfo
	ri.tree.scan(start, end, func(r *RegionInfo) bool {
		res = append(res, r)
		return limit <= 0 || len(res) < limit
	})
	return res
}

// Ascend calls fn for every region in key order until fn returns false.
func (ri *RegionsInfo) Ascend(fn func(*RegionInfo) bool) { ri.tree.ascend(fn) }

// Set inserts r, replacing the region with r's id and removing every region
// overlapping r's range. It returns the regions removed for overlapping r
// (not the one r replaces by id).
func (ri *RegionsInfo) Set(r *RegionInfo) (removed []*RegionInfo) {
	if old := ri.byID[r.ID()]; old != nil {
		ri.remove(old)
	}
	for _, o := range ri.tree.overlaps(r) {
		ri.remove(o)
		removed = append(removed, o)
	}
	ri.byID[r.ID()] = r
	ri.tree.insert(r)
	for _, p := range r.Peers() {
		addTo(ri.peers, p.StoreId, r)
	}
	if l := r.Leader(); l != nil {
		addTo(ri.leaders, l.StoreId, r)
	}
	for _, p := range r.PendingPeers() {
		addTo(ri.pending, p.StoreId, r)
	}
	return removed
}

// Remove deletes r (matched by id) from the index.
func (ri *RegionsInfo) Remove(r *RegionInfo) {
	if old := ri.byID[r.ID()]; old != nil {
		ri.remove(old)
	}
}

// remove deletes r, which is the indexed region with its id.
func (ri *RegionsInfo) remove(r *RegionInfo) {
	delete(ri.byID, r.ID())
	ri.tree.remove(r)
	for _, p := range r.Peers() {
		removeFrom(ri.peers, p.StoreId, r.ID())
	}
	if l := r.Leader(); l != nil {
		removeFrom(ri.leaders, l.StoreId, r.ID())
	}
	for _, p := range r.PendingPeers() {
		removeFrom(ri.pending, p.StoreId, r.ID())
	}
}

func addTo(idx map[uint64]map[uint64]*RegionInfo, store uint64, r *RegionInfo) {
	m := idx[store]
	if m == nil {
		m = make(map[uint64]*RegionInfo)
		idx[store] = m
	}
	m[r.ID()] = r
}

func removeFrom(idx map[uint64]map[uint64]*RegionInfo, store, region uint64) {
	if m := idx[store]; m != nil {
		delete(m, region)
		if len(m) == 0 {
			delete(idx, store)
		}
	}
}

// StoreRegionCount returns how many regions have a peer on store.
func (ri *RegionsInfo) StoreRegionCount(store uint64) int { return len(ri.peers[store]) }

// StoreLeaderCount returns how many regions store leads.
func (ri *RegionsInfo) StoreLeaderCount(store uint64) int { return len(ri.leaders[store]) }

// StorePendingPeerCount returns how many pending peers store holds.
func (ri *RegionsInfo) StorePendingPeerCount(store uint64) int { return len(ri.pending[store]) }

// StoreRegionSize returns the summed approximate size of the regions with a
// peer on store.
func (ri *RegionsInfo) StoreRegionSize(store uint64) uint64 { return sumSize(ri.peers[store]) }

// StoreLeaderSize returns the summed approximate size of the regions store leads.
func (ri *RegionsInfo) StoreLeaderSize(store uint64) uint64 { return sumSize(ri.leaders[store]) }

// StoreRegions returns the regions with a peer on store, in no order.
func (ri *RegionsInfo) StoreRegions(store uint64) []*RegionInfo { return values(ri.peers[store]) }

// StoreLeaderRegions returns the regions store leads, in no order.
func (ri *RegionsInfo) StoreLeaderRegions(store uint64) []*RegionInfo {
	return values(ri.leaders[store])
}

func sumSize(m map[uint64]*RegionInfo) uint64 {
	var n uint64
	for _, r := range m {
		n += r.ApproximateSize()
	}
	return n
}

func values(m map[uint64]*RegionInfo) []*RegionInfo {
	res := make([]*RegionInfo, 0, len(m))
	for _, r := range m {
		res = append(res, r)
	}
	return res
}
