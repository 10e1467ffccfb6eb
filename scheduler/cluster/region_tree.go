package cluster

import (
	"bytes"

	"github.com/google/btree"
)

// regionTree indexes regions by start key. Regions in the tree never
// overlap: inserting a region first removes every region overlapping it.
//
// It is not safe for concurrent use; RegionsInfo's owner locks it.
type regionTree struct {
	tree *btree.BTreeG[*RegionInfo]
}

const regionTreeDegree = 32

func lessByStartKey(a, b *RegionInfo) bool { return bytes.Compare(a.StartKey(), b.StartKey()) < 0 }

func newRegionTree() *regionTree {
	return &regionTree{tree: btree.NewG(regionTreeDegree, lessByStartKey)}
}

// pivot is a search key for the tree.
func pivot(key []byte) *RegionInfo { return &RegionInfo{meta: regionWithStart(key)} }

func (t *regionTree) len() int { return t.tree.Len() }

// search returns the region containing key, or nil.
func (t *regionTree) search(key []byte) *RegionInfo {
	r := t.atOrBefore(key)
	if r == nil || !r.Contains(key) {
		return nil
	}
	return r
}

// atOrBefore returns the region with the greatest start key <= key, or nil.
func (t *regionTree) atOrBefore(key []byte) *RegionInfo {
	var found *RegionInfo
	t.tree.DescendLessOrEqual(pivot(key), func(r *RegionInfo) bool {
		found = r
		return false
	})
	return found
}

// before returns the region with the greatest start key < key, or nil.
func (t *regionTree) before(key []byte) *RegionInfo {
	var found *RegionInfo
	t.tree.DescendLessOrEqual(pivot(key), func(r *RegionInfo) bool {
		if bytes.Equal(r.StartKey(), key) {
			return true
		}
		found = r
		return false
	})
	return found
}

// prev returns the region before the one containing key or, if no region
// contains key, the last region ending at or before key. Nil if none.
func (t *regionTree) prev(key []byte) *RegionInfo {
	if r := t.search(key); r != nil {
		return t.before(r.StartKey())
	}
	return t.atOrBefore(key)
}

// scan calls fn, in key order, for each region overlapping [start, end)
// (end empty = +infinity) until fn returns false.
func (t *regionTree) scan(start, end []byte, fn func(*RegionInfo) bool) {
	if first := t.atOrBefore(start); first != nil && first.Contains(start) {
		if !fn(first) {
			return
		}
	}
	t.tree.AscendGreaterOrEqual(pivot(start), func(r *RegionInfo) bool {
		if bytes.Equal(r.StartKey(), start) {
			return true // the region containing start, seen above
		}
		if len(end) > 0 && bytes.Compare(r.StartKey(), end) >= 0 {
			return false
		}
		return fn(r)
	})
}

// overlaps returns the regions overlapping r's range.
func (t *regionTree) overlaps(r *RegionInfo) []*RegionInfo {
	var res []*RegionInfo
	t.scan(r.StartKey(), r.EndKey(), func(o *RegionInfo) bool {
		res = append(res, o)
		return true
	})
	return res
}

// insert adds r, replacing a region with the same start key. The caller has
// removed every region overlapping r.
func (t *regionTree) insert(r *RegionInfo) { t.tree.ReplaceOrInsert(r) }

// remove deletes r if the region at r's start key is r (same id).
func (t *regionTree) remove(r *RegionInfo) {
	if cur, ok := t.tree.Get(r); ok && cur.ID() == r.ID() {
		t.tree.Delete(r)
	}
}

// ascend calls fn for every region in key order until fn returns false.
func (t *regionTree) ascend(fn func(*RegionInfo) bool) { t.tree.Ascend(fn) }
