package client

import (
	"bytes"
	"sync"

	"github.com/google/btree"

	"github.com/regionkv/regionkv/proto/metapb"
)

// regionCache holds regions by start key, with their leaders. Regions come
// from the scheduler (on a miss) and from stores (EpochNotMatch names the
// current regions). Entries never overlap: inserting a region evicts the
// entries it overlaps, unless one of them is newer (a higher epoch version,
// or the same region with a higher conf_ver), in which case the insert is
// dropped as stale.
//
// It is safe for concurrent use.
type regionCache struct {
	mu struct {
		sync.RWMutex
		// tree orders the entries by start key.
		tree *btree.BTreeG[*cachedRegion]
		// byID indexes the same entries by region id.
		byID map[uint64]*cachedRegion
	}
}

// cachedRegion is one cache entry. region is immutable; leader is guarded by
// the cache's mutex (entries are replaced, never edited otherwise).
type cachedRegion struct {
	region *metapb.Region
	leader *metapb.Peer // nil: unknown
}

// location is what a request needs: the region and the peer to send to.
type location struct {
	region *metapb.Region
	peer   *metapb.Peer // the leader, or a voter to try
}

func newRegionCache() *regionCache {
	c := &regionCache{}
	c.mu.tree = btree.NewG(32, func(a, b *cachedRegion) bool { return bytes.Compare(a.region.StartKey, b.region.StartKey) < 0 })
	c.mu.byID = make(map[uint64]*cachedRegion)
	return c
}

// pivot returns a search key for the tree.
func pivot(start []byte) *cachedRegion {
	return &cachedRegion{region: &metapb.Region{StartKey: start}}
}

func contains(r *metapb.Region, key []byte) bool {
	return bytes.Compare(key, r.StartKey) >= 0 && (len(r.EndKey) == 0 || bytes.Compare(key, r.EndKey) < 0)
}

// holdsBelow reports whether r holds the keys just below upper (empty: no
// bound), which is where a reverse scan below upper starts.
func holdsBelow(r *metapb.Region, upper []byte) bool {
	if len(upper) == 0 {
		return len(r.EndKey) == 0
	}
	return bytes.Compare(r.StartKey, upper) < 0 && (len(r.EndKey) == 0 || bytes.Compare(upper, r.EndKey) <= 0)
}

// locate returns the cached region containing key.
func (c *regionCache) locate(key []byte) (location, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var found *cachedRegion
	c.mu.tree.DescendLessOrEqual(pivot(key), func(e *cachedRegion) bool {
		found = e
		return false
	})
	if found == nil || !contains(found.region, key) {
		return location{}, false
	}
	return found.locationLocked(), true
}

// locateBelow returns the cached region holding the keys just below upper.
func (c *regionCache) locateBelow(upper []byte) (location, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var found *cachedRegion
	if len(upper) == 0 {
		found, _ = c.mu.tree.Max()
	} else {
		c.mu.tree.DescendLessOrEqual(pivot(upper), func(e *cachedRegion) bool {
			if bytes.Equal(e.region.StartKey, upper) {
				return true // starts at upper: holds no key below it
			}
			found = e
			return false
		})
	}
	if found == nil || !holdsBelow(found.region, upper) {
		return location{}, false
	}
	return found.locationLocked(), true
}

// locationLocked picks the peer to send to: the leader, else the first
// voter. Callers hold mu.
func (e *cachedRegion) locationLocked() location {
	p := e.leader
	if p == nil {
		for _, v := range e.region.Peers {
			if v.Role == metapb.PeerRole_Voter {
				p = v
				break
			}
		}
	}
	return location{region: e.region, peer: p}
}

// newer reports whether a is a newer view than b of an overlapping range.
func newer(a, b *metapb.Region) bool {
	av, bv := a.GetRegionEpoch().GetVersion(), b.GetRegionEpoch().GetVersion()
	if av != bv {
		return av > bv
	}
	return a.Id == b.Id && a.GetRegionEpoch().GetConfVer() > b.GetRegionEpoch().GetConfVer()
}

// insert caches region with its leader (nil: unknown), replacing the entries
// it overlaps, unless one of them is newer. It reports whether the region was
// cached.
func (c *regionCache) insert(region *metapb.Region, leader *metapb.Peer) bool {
	if region == nil || region.RegionEpoch == nil {
		return false
	}
	if leader != nil && peerOf(region, leader.Id) == nil {
		leader = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var overlaps []*cachedRegion
	c.mu.tree.DescendLessOrEqual(pivot(region.StartKey), func(e *cachedRegion) bool {
		if len(e.region.EndKey) == 0 || bytes.Compare(e.region.EndKey, region.StartKey) > 0 {
			overlaps = append(overlaps, e)
		}
		return false
	})
	c.mu.tree.AscendGreaterOrEqual(pivot(region.StartKey), func(e *cachedRegion) bool {
		if len(region.EndKey) > 0 && bytes.Compare(e.region.StartKey, region.EndKey) >= 0 {
			return false
		}
		if len(overlaps) == 0 || overlaps[len(overlaps)-1] != e {
			overlaps = append(overlaps, e)
		}
		return true
	})
	if old := c.mu.byID[region.Id]; old != nil && !overlapsAny(overlaps, old) {
		overlaps = append(overlaps, old) // same id, moved range (cannot happen without merges)
	}
	for _, e := range overlaps {
		if newer(e.region, region) {
			return false
		}
	}
	for _, e := range overlaps {
		if e.region.Id == region.Id && leader == nil && e.leader != nil && peerOf(region, e.leader.Id) != nil {
			leader = e.leader // same region, still a member: keep what we knew
		}
		c.deleteLocked(e)
	}
	e := &cachedRegion{region: region, leader: leader}
	c.mu.tree.ReplaceOrInsert(e)
	c.mu.byID[region.Id] = e
	return true
}

func overlapsAny(es []*cachedRegion, e *cachedRegion) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}

func (c *regionCache) deleteLocked(e *cachedRegion) {
	if cur, ok := c.mu.tree.Get(e); ok && cur == e {
		c.mu.tree.Delete(e)
	}
	if c.mu.byID[e.region.Id] == e {
		delete(c.mu.byID, e.region.Id)
	}
}

// invalidate drops region id from the cache: the next request looks it up
// again.
func (c *regionCache) invalidate(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.mu.byID[id]; e != nil {
		c.deleteLocked(e)
	}
}

// setLeader records the leader of region id. It reports false when the
// region is not cached or the peer is not one of its members (the caller
// should look the region up again).
func (c *regionCache) setLeader(id uint64, leader *metapb.Peer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.mu.byID[id]
	if e == nil {
		return false
	}
	p := peerOf(e.region, leader.GetId())
	if p == nil || p.StoreId != leader.StoreId {
		return false
	}
	e.leader = p
	return true
}

// nextPeer moves region id's presumed leader from the peer on store
// failedStore to the next voter, in member order, so that retries walk
// through the voters.
func (c *regionCache) nextPeer(id, failedStore uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.mu.byID[id]
	if e == nil {
		return
	}
	var voters []*metapb.Peer
	for _, p := range e.region.Peers {
		if p.Role == metapb.PeerRole_Voter {
			voters = append(voters, p)
		}
	}
	if len(voters) == 0 {
		return
	}
	next := voters[0]
	for i, p := range voters {
		if p.StoreId == failedStore {
			next = voters[(i+1)%len(voters)]
		}
	}
	e.leader = next
}

// regions returns the cached regions in key order (for tests and tools).
func (c *regionCache) regions() []location {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var res []location
	c.mu.tree.Ascend(func(e *cachedRegion) bool {
		res = append(res, location{region: e.region, peer: e.leader})
		return true
	})
	return res
}

func peerOf(r *metapb.Region, peerID uint64) *metapb.Peer {
	for _, p := range r.GetPeers() {
		if p.Id == peerID {
			return p
		}
	}
	return nil
}
