package cluster

import (
	"fmt"
	"testing"

	"github.com/regionkv/regionkv/proto/metapb"
)

// mkRegion returns a region [start, end) with the given epoch and one peer
// per store (peer id = id*100 + store).
func mkRegion(id uint64, start, end string, confVer, version uint64, stores ...uint64) *metapb.Region {
	r := &metapb.Region{
		Id:          id,
		StartKey:    []byte(start),
		EndKey:      []byte(end),
		RegionEpoch: &metapb.RegionEpoch{ConfVer: confVer, Version: version},
	}
	if len(stores) == 0 {
		stores = []uint64{1}
	}
	for _, s := range stores {
		r.Peers = append(r.Peers, &metapb.Peer{Id: id*100 + s, StoreId: s})
	}
	return r
}

func ids(rs []*RegionInfo) string {
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprint(r.ID())
	}
	return out
}

func idOf(r *RegionInfo) uint64 {
	if r == nil {
		return 0
	}
	return r.ID()
}

func TestRegionTreeLookups(t *testing.T) {
	// Regions: 1 ["", "b"), 2 ["b", "d"), gap ["d", "f"), 3 ["f", "h"), 4 ["h", "").
	ri := NewRegionsInfo()
	for _, m := range []*metapb.Region{
		mkRegion(1, "", "b", 1, 1), mkRegion(2, "b", "d", 1, 1),
		mkRegion(3, "f", "h", 1, 1), mkRegion(4, "h", "", 1, 1),
	} {
		if removed := ri.Set(NewRegionInfo(m, nil)); len(removed) != 0 {
			t.Fatalf("Set(%d) removed %s", m.Id, ids(removed))
		}
	}
	for _, tc := range []struct {
		key        string
		region     uint64
		prevRegion uint64
	}{
		{"", 1, 0},
		{"a", 1, 0},
		{"b", 2, 1},
		{"c", 2, 1},
		{"d", 0, 2}, // in the gap: prev is the last region ending before it
		{"e", 0, 2},
		{"f", 3, 2},
		{"g", 3, 2},
		{"h", 4, 3},
		{"zzz", 4, 3},
	} {
		t.Run("key="+tc.key, func(t *testing.T) {
			if got := idOf(ri.GetByKey([]byte(tc.key))); got != tc.region {
				t.Errorf("GetByKey = %d, want %d", got, tc.region)
			}
			if got := idOf(ri.GetPrevByKey([]byte(tc.key))); got != tc.prevRegion {
				t.Errorf("GetPrevByKey = %d, want %d", got, tc.prevRegion)
			}
		})
	}
	for _, tc := range []struct {
		start, end string
		limit      int
		want       string
	}{
		{"", "", 0, "1,2,3,4"},
		{"", "", 2, "1,2"},
		{"a", "c", 0, "1,2"},
		{"b", "c", 0, "2"},
		{"c", "f", 0, "2"},
		{"c", "f\x00", 0, "2,3"},
		{"d", "e", 0, ""},
		{"e", "", 0, "3,4"},
		{"h", "", 0, "4"},
		{"z", "", 0, "4"},
	} {
		t.Run(fmt.Sprintf("scan[%q,%q)/%d", tc.start, tc.end, tc.limit), func(t *testing.T) {
			if got := ids(ri.Scan([]byte(tc.start), []byte(tc.end), tc.limit)); got != tc.want {
				t.Errorf("Scan = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestRegionsInfoSetReplacesOverlaps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		initial []*metapb.Region
		set     *metapb.Region
		removed string // overlapping regions removed (not the same id)
		after   string // all regions in key order
	}{
		{
			name:    "same id shrinks",
			initial: []*metapb.Region{mkRegion(1, "", "", 1, 1)},
			set:     mkRegion(1, "", "m", 1, 2),
			after:   "1",
		},
		{
			name:    "right half covers parent",
			initial: []*metapb.Region{mkRegion(1, "", "", 1, 1)},
			set:     mkRegion(2, "m", "", 1, 2),
			removed: "1",
			after:   "2",
		},
		{
			name:    "covers several",
			initial: []*metapb.Region{mkRegion(1, "", "c", 1, 2), mkRegion(2, "c", "e", 1, 2), mkRegion(3, "e", "g", 1, 2), mkRegion(4, "g", "", 1, 2)},
			set:     mkRegion(5, "b", "f", 1, 3),
			removed: "1,2,3",
			after:   "5,4",
		},
		{
			name:    "start key moves",
			initial: []*metapb.Region{mkRegion(1, "a", "m", 1, 1), mkRegion(2, "m", "", 1, 1)},
			set:     mkRegion(1, "c", "m", 1, 2),
			after:   "1,2",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ri := NewRegionsInfo()
			for _, m := range tc.initial {
				ri.Set(NewRegionInfo(m, nil))
			}
			if got := ids(ri.Set(NewRegionInfo(tc.set, nil))); got != tc.removed {
				t.Errorf("removed %s, want %s", got, tc.removed)
			}
			if got := ids(ri.Scan(nil, nil, 0)); got != tc.after {
				t.Errorf("regions %s, want %s", got, tc.after)
			}
			if ri.Len() != len(ri.Scan(nil, nil, 0)) {
				t.Errorf("Len %d != regions in tree %d", ri.Len(), len(ri.Scan(nil, nil, 0)))
			}
		})
	}
}

func TestRegionsInfoStoreIndexes(t *testing.T) {
	ri := NewRegionsInfo()
	r1 := mkRegion(1, "", "m", 1, 1, 1, 2, 3)
	r2 := mkRegion(2, "m", "", 1, 1, 1, 2)
	info1 := NewRegionInfo(r1, r1.Peers[0])
	info1.approximateSize = 10
	info1.pendingPeers = []*metapb.Peer{r1.Peers[2]}
	info2 := NewRegionInfo(r2, r2.Peers[1])
	info2.approximateSize = 5
	ri.Set(info1)
	ri.Set(info2)
	check := func(store uint64, regions, leaders, pending int, size, leaderSize uint64) {
		t.Helper()
		if got := ri.StoreRegionCount(store); got != regions {
			t.Errorf("store %d: region count %d, want %d", store, got, regions)
		}
		if got := ri.StoreLeaderCount(store); got != leaders {
			t.Errorf("store %d: leader count %d, want %d", store, got, leaders)
		}
		if got := ri.StorePendingPeerCount(store); got != pending {
			t.Errorf("store %d: pending count %d, want %d", store, got, pending)
		}
		if got := ri.StoreRegionSize(store); got != size {
			t.Errorf("store %d: region size %d, want %d", store, got, size)
		}
		if got := ri.StoreLeaderSize(store); got != leaderSize {
			t.Errorf("store %d: leader size %d, want %d", store, got, leaderSize)
		}
	}
	check(1, 2, 1, 0, 15, 10)
	check(2, 2, 1, 0, 15, 5)
	check(3, 1, 0, 1, 10, 0)

	// Leader of region 1 moves to store 3, its pending peer catches up.
	moved := NewRegionInfo(r1, r1.Peers[2])
	moved.approximateSize = 10
	ri.Set(moved)
	check(1, 2, 0, 0, 15, 0)
	check(3, 1, 1, 0, 10, 10)

	ri.Remove(info2)
	check(2, 1, 0, 0, 10, 0)
	if ri.Len() != 1 {
		t.Fatalf("Len = %d, want 1", ri.Len())
	}
}
