package raftstore

import (
	"bytes"
	"errors"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
)

// RegionSnapshot is a consistent, linearizable view of one region's data: it
// was opened after a ReadIndex round once the peer had applied up to the read
// index, and it sees nothing outside the region's range. It must be closed.
// It is safe for concurrent use.
type RegionSnapshot struct {
	region *metapb.Region
	mu     sync.Mutex
	txn    *badger.Txn // nil once closed
}

// ErrSnapshotClosed is returned by reads on a closed RegionSnapshot.
var ErrSnapshotClosed = errors.New("raftstore: region snapshot closed")

// NewRegionSnapshot opens a view of region's data in db as it is now. The
// raftstore opens one for each linearizable read; tests and tools may open
// their own (it is linearizable only if the caller made it so).
func NewRegionSnapshot(db *badger.DB, region *metapb.Region) *RegionSnapshot {
	return &RegionSnapshot{region: region, txn: db.NewTransaction(false)}
}

// Region is the region as it was when the snapshot was taken.
func (s *RegionSnapshot) Region() *metapb.Region { return s.region }

// Close releases the snapshot. It is idempotent and nil-safe.
func (s *RegionSnapshot) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txn != nil {
		s.txn.Discard()
		s.txn = nil
	}
}

// Get returns the value of key in column family cf. found is false when the
// key does not exist. The key must lie inside the region.
func (s *RegionSnapshot) Get(cf string, key []byte) (value []byte, found bool, err error) {
	cfb, err := engine.CFByte(cf)
	if err != nil {
		return nil, false, err
	}
	if err := CheckKeyInRegion(key, s.region); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txn == nil {
		return nil, false, ErrSnapshotClosed
	}
	v, err := engine.GetValueTxn(s.txn, engine.DataKey(cfb, key))
	if errors.Is(err, engine.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// KV is a key and its value.
type KV struct {
	Key, Value []byte
}

// Scan returns up to limit pairs of [start, end) in column family cf, clipped
// to the region; an empty end means the region's end. With reverse the pairs
// come from the largest key down. With keyOnly values are left nil.
func (s *RegionSnapshot) Scan(cf string, start, end []byte, limit int, keyOnly, reverse bool) ([]KV, error) {
	cfb, err := engine.CFByte(cf)
	if err != nil {
		return nil, err
	}
	start, end = clipToRegion(start, end, s.region)
	if len(end) > 0 && bytes.Compare(start, end) >= 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txn == nil {
		return nil, ErrSnapshotClosed
	}
	lo, hi := engine.DataRange(cfb, start, end)
	it := engine.NewRangeIter(s.txn, lo, hi, reverse, keyOnly)
	defer it.Close()
	var out []KV
	for ; it.Valid() && (limit <= 0 || len(out) < limit); it.Next() {
		kv := KV{Key: bytes.Clone(engine.UserKey(it.Key()))}
		if !keyOnly {
			if kv.Value, err = it.Value(); err != nil {
				return nil, err
			}
		}
		out = append(out, kv)
	}
	return out, nil
}

// clipToRegion narrows [start, end) to the region's range.
func clipToRegion(start, end []byte, region *metapb.Region) ([]byte, []byte) {
	if bytes.Compare(start, region.StartKey) < 0 {
		start = region.StartKey
	}
	if len(region.EndKey) > 0 && (len(end) == 0 || bytes.Compare(end, region.EndKey) > 0) {
		end = region.EndKey
	}
	return start, end
}
