package engine

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

const benchValueSize = 256

// benchEngines opens engines with SmallOptions (32 MB memtables) so that the
// largest benchmark batch (256 × ~270 B) is far below the transaction limit.
func benchEngines(b *testing.B) *Engines {
	b.Helper()
	opts := SmallOptions()
	opts.Logger = testOptions().Logger
	e := openAt(b, b.TempDir(), opts)
	b.Cleanup(func() { e.Close() })
	return e
}

// benchWriteBatch commits batches of n entries to db. key(i) is the i-th key
// written over the whole benchmark, so every write is a fresh key, as for
// raft log appends.
func benchWriteBatch(b *testing.B, commit func(*WriteBatch) error, key func(i uint64) []byte) {
	for _, n := range []int{1, 16, 256} {
		b.Run("entries="+strconv.Itoa(n), func(b *testing.B) {
			val := bytes.Repeat([]byte{'v'}, benchValueSize)
			b.SetBytes(int64(n * (len(key(0)) + benchValueSize)))
			b.ReportAllocs()
			var wb WriteBatch
			var next uint64
			for b.Loop() {
				wb.Reset()
				for range n {
					wb.Set(key(next), val)
					next++
				}
				if err := commit(&wb); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteBatchKVDB commits user data to the kv DB, which does not
// fsync.
func BenchmarkWriteBatchKVDB(b *testing.B) {
	e := benchEngines(b)
	benchWriteBatch(b, func(wb *WriteBatch) error { return wb.Commit(e.KV) }, func(i uint64) []byte {
		return DataKey('d', binary.BigEndian.AppendUint64([]byte("user"), i))
	})
}

// BenchmarkRangeIter scans 1000 keys of one column family, with other column
// families' keys on both sides.
func BenchmarkRangeIter(b *testing.B) {
	const n = 1000
	e := benchEngines(b)
	val := bytes.Repeat([]byte{'v'}, benchValueSize)
	var wb WriteBatch
	for _, cf := range []byte{'d', 'l', 'w'} {
		for i := range n {
			wb.Set(DataKey(cf, binary.BigEndian.AppendUint64([]byte("user"), uint64(i))), val)
		}
		if err := wb.Commit(e.KV); err != nil {
			b.Fatal(err)
		}
		wb.Reset()
	}
	lo, hi := DataRange('l', nil, nil)

	for _, bc := range []struct {
		name             string
		reverse, keyOnly bool
		readValues       bool
	}{
		{"forward", false, false, true},
		{"reverse", true, false, true},
		{"forward-keyOnly", false, true, false},
		// keyOnly turns off Badger's value prefetch (a goroutine per item);
		// Item().Value still reads values, lazily.
		{"forward-keyOnly-lazyValues", false, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.readValues {
				b.SetBytes(n * benchValueSize)
			}
			b.ReportAllocs()
			for b.Loop() {
				count := 0
				err := e.KV.View(func(txn *badger.Txn) error {
					it := NewRangeIter(txn, lo, hi, bc.reverse, bc.keyOnly)
					defer it.Close()
					for ; it.Valid(); it.Next() {
						if bc.readValues {
							// Zero-copy read, as a scan that streams values out would do.
							if err := it.Item().Value(func([]byte) error { return nil }); err != nil {
								return err
							}
						}
						count++
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if count != n {
					b.Fatalf("scanned %d keys, want %d", count, n)
				}
			}
		})
	}
}

var sinkKey []byte

func BenchmarkDataKey(b *testing.B) {
	user := []byte("user-key-0000000001")
	b.ReportAllocs()
	for b.Loop() {
		sinkKey = DataKey('d', user)
	}
}

func BenchmarkRaftLogKey(b *testing.B) {
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		sinkKey = RaftLogKey(1, i)
		i++
	}
}
