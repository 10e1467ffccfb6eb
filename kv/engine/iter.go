package engine

import (
	"bytes"

	"github.com/dgraph-io/badger/v4"
)

// RangeIter iterates the keys of a transaction in [lo, hi), forward or in
// reverse. An empty hi means no upper bound. Keys and values it returns are
// valid only until the next call to Next; copy them to keep them.
type RangeIter struct {
	it      *badger.Iterator
	lo, hi  []byte
	reverse bool
}

// NewRangeIter opens an iterator over [lo, hi) in txn. Close it when done.
// keyOnly is a hint that values will not be read.
func NewRangeIter(txn *badger.Txn, lo, hi []byte, reverse, keyOnly bool) *RangeIter {
	opts := badger.DefaultIteratorOptions
	opts.Reverse = reverse
	// Badger's prefetch starts a goroutine per item; for values kept in the
	// LSM tree, reading them lazily is 4-5x faster (BenchmarkRangeIter).
	opts.PrefetchValues = false
	r := &RangeIter{it: txn.NewIterator(opts), lo: lo, hi: hi, reverse: reverse}
	if reverse {
		if len(hi) == 0 {
			// No upper bound: in reverse, Rewind goes to the largest key. (A
			// Seek to some "big" key such as 64 0xff bytes would skip every key
			// above it.)
			r.it.Rewind()
		} else {
			r.it.Seek(hi)
			if r.it.Valid() && bytes.Equal(r.it.Item().Key(), hi) {
				r.it.Next()
			}
		}
	} else {
		r.it.Seek(lo)
	}
	return r
}

// Valid reports whether the iterator is at a key inside the range.
func (r *RangeIter) Valid() bool {
	if !r.it.Valid() {
		return false
	}
	k := r.it.Item().Key()
	if r.reverse {
		return bytes.Compare(k, r.lo) >= 0
	}
	return len(r.hi) == 0 || bytes.Compare(k, r.hi) < 0
}

// Key is the current key.
func (r *RangeIter) Key() []byte { return r.it.Item().Key() }

// Value is the current value.
func (r *RangeIter) Value() ([]byte, error) { return r.it.Item().ValueCopy(nil) }

// Item exposes the Badger item for zero-copy access.
func (r *RangeIter) Item() *badger.Item { return r.it.Item() }

// Next moves to the next key in iteration order.
func (r *RangeIter) Next() { r.it.Next() }

// Close releases the iterator.
func (r *RangeIter) Close() { r.it.Close() }
