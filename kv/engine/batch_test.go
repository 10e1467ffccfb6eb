package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/gogo/protobuf/proto"

	"github.com/regionkv/regionkv/proto/metapb"
)

func testRegion(id uint64) *metapb.Region {
	return &metapb.Region{
		Id:          id,
		StartKey:    []byte("a"),
		EndKey:      []byte("m"),
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 2, Version: 3},
		Peers:       []*metapb.Peer{{Id: 10, StoreId: 1}, {Id: 11, StoreId: 2}},
	}
}

func TestWriteBatchCommit(t *testing.T) {
	e := newEngines(t)
	kA, kB, kGone := DataKey('d', []byte("a")), DataKey('d', []byte("b")), DataKey('d', []byte("gone"))
	region := testRegion(7)

	var wb WriteBatch
	wb.Set(kGone, []byte("old"))
	mustCommit(t, e.KV, &wb)

	// A reader that starts before the commit keeps its snapshot.
	before := e.KV.NewTransaction(false)
	defer before.Discard()

	wb.Set(kA, []byte("va"))
	wb.SetMsg(RegionStateKey(7), region)
	wb.Delete(kGone)
	wb.Set(kB, []byte("vb"))
	if _, ok := getValue(t, e.KV, kA); ok {
		t.Fatal("uncommitted write visible")
	}
	mustCommit(t, e.KV, &wb)

	if v, ok := getValue(t, e.KV, kA); !ok || string(v) != "va" {
		t.Fatalf("a = %q, %v", v, ok)
	}
	if v, ok := getValue(t, e.KV, kB); !ok || string(v) != "vb" {
		t.Fatalf("b = %q, %v", v, ok)
	}
	if _, ok := getValue(t, e.KV, kGone); ok {
		t.Fatal("deleted key still visible")
	}
	var got metapb.Region
	if err := GetMsg(e.KV, RegionStateKey(7), &got); err != nil {
		t.Fatalf("GetMsg: %v", err)
	}
	if !proto.Equal(&got, region) {
		t.Fatalf("GetMsg = %v, want %v", &got, region)
	}

	if _, err := GetValueTxn(before, kA); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old snapshot sees a: %v", err)
	}
	if v, err := GetValueTxn(before, kGone); err != nil || string(v) != "old" {
		t.Fatalf("old snapshot lost deleted key: %q, %v", v, err)
	}
}

// TestWriteBatchAtomicVisibility: concurrent readers never see half a batch.
func TestWriteBatchAtomicVisibility(t *testing.T) {
	e := newEngines(t)
	keys := [][]byte{RaftStateKey(1), RaftLogKey(1, 1), DataKey('d', []byte("x")), DataKey('w', []byte("y"))}
	const rounds = 200

	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := e.KV.View(func(txn *badger.Txn) error {
				var first []byte
				for i, k := range keys {
					v, err := GetValueTxn(txn, k)
					if errors.Is(err, ErrNotFound) {
						v = nil
					} else if err != nil {
						return err
					}
					if i == 0 {
						first = v
					} else if !bytes.Equal(v, first) {
						return fmt.Errorf("torn batch: %x=%x but %x=%x", keys[0], first, k, v)
					}
				}
				return nil
			})
			if err != nil {
				errc <- err
				return
			}
		}
	}()

	var wb WriteBatch
	for i := range uint64(rounds) {
		v := binary.BigEndian.AppendUint64(nil, i)
		for _, k := range keys {
			if i%5 == 4 {
				wb.Delete(k)
			} else {
				wb.Set(k, v)
			}
		}
		mustCommit(t, e.KV, &wb)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

func TestWriteBatchLastOpWins(t *testing.T) {
	type op struct {
		del bool
		val string
	}
	set := func(v string) op { return op{val: v} }
	del := op{del: true}
	tests := []struct {
		name     string
		existing string // "" means absent
		ops      []op
		want     string // "" means absent
	}{
		{"set set", "", []op{set("1"), set("2")}, "2"},
		{"set del", "", []op{set("1"), del}, ""},
		{"del set", "old", []op{del, set("2")}, "2"},
		{"set del set", "", []op{set("1"), del, set("3")}, "3"},
		{"del set del", "old", []op{del, set("2"), del}, ""},
		{"overwrite existing", "old", []op{set("1"), set("2"), set("3")}, "3"},
	}
	e := newEngines(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := DataKey('d', fmt.Appendf(nil, "key%d", i))
			var wb WriteBatch
			if tc.existing != "" {
				wb.Set(key, []byte(tc.existing))
				mustCommit(t, e.KV, &wb)
			}
			for _, o := range tc.ops {
				if o.del {
					wb.Delete(key)
				} else {
					wb.Set(key, []byte(o.val))
				}
			}
			mustCommit(t, e.KV, &wb)
			v, ok := getValue(t, e.KV, key)
			if tc.want == "" {
				if ok {
					t.Fatalf("got %q, want absent", v)
				}
			} else if !ok || string(v) != tc.want {
				t.Fatalf("got %q (present %v), want %q", v, ok, tc.want)
			}
		})
	}
}

func TestWriteBatchLenSizeReset(t *testing.T) {
	e := newEngines(t)
	var wb WriteBatch
	if wb.Len() != 0 || wb.Size() != 0 {
		t.Fatalf("zero batch: Len %d Size %d", wb.Len(), wb.Size())
	}
	region := testRegion(1)
	msgLen := proto.Size(region)
	steps := []struct {
		name     string
		do       func()
		len      int
		wantSize int
	}{
		{"set", func() { wb.Set([]byte("zdk1"), []byte("value")) }, 1, 4 + 5},
		{"set empty value", func() { wb.Set([]byte("zdk2"), nil) }, 2, 9 + 4},
		{"delete", func() { wb.Delete([]byte("zdk3")) }, 3, 13 + 4},
		{"set msg", func() { wb.SetMsg(RegionStateKey(1), region) }, 4, 17 + 11 + msgLen},
		{"same key again", func() { wb.Set([]byte("zdk1"), []byte("v")) }, 5, 17 + 11 + msgLen + 5},
	}
	for _, s := range steps {
		s.do()
		if wb.Len() != s.len || wb.Size() != s.wantSize {
			t.Fatalf("after %s: Len %d Size %d, want %d %d", s.name, wb.Len(), wb.Size(), s.len, s.wantSize)
		}
	}

	capBefore := cap(wb.ops)
	wb.Reset()
	if wb.Len() != 0 || wb.Size() != 0 {
		t.Fatalf("after Reset: Len %d Size %d", wb.Len(), wb.Size())
	}
	if cap(wb.ops) != capBefore {
		t.Fatalf("Reset dropped the batch's memory: cap %d -> %d", capBefore, cap(wb.ops))
	}
	for _, op := range wb.ops[:capBefore] {
		if op.key != nil || op.val != nil {
			t.Fatal("Reset kept references to keys or values")
		}
	}
	// Nothing added before Reset is committed after it.
	wb.Set([]byte("zdk9"), []byte("9"))
	mustCommit(t, e.KV, &wb)
	keys := allKeys(t, e.KV)
	if len(keys) != 1 || string(keys[0]) != "zdk9" {
		t.Fatalf("keys after Reset+Commit = %q", keys)
	}
}

func TestWriteBatchEmptyCommit(t *testing.T) {
	e := newEngines(t)
	var wb WriteBatch
	// An empty commit must not touch the DB at all, not even a nil one.
	if err := wb.Commit(nil); err != nil {
		t.Fatalf("empty Commit(nil) = %v", err)
	}
	v0 := e.KV.MaxVersion()
	if err := wb.Commit(e.KV); err != nil {
		t.Fatalf("empty Commit = %v", err)
	}
	wb.Set([]byte("zdx"), []byte("x"))
	wb.Reset()
	if err := wb.Commit(e.KV); err != nil {
		t.Fatalf("Commit after Reset = %v", err)
	}
	if v := e.KV.MaxVersion(); v != v0 {
		t.Fatalf("empty commits advanced the DB version %d -> %d", v0, v)
	}
	if keys := allKeys(t, e.KV); len(keys) != 0 {
		t.Fatalf("empty commits wrote %q", keys)
	}
}

func TestGetters(t *testing.T) {
	e := newEngines(t)
	region := testRegion(3)
	var wb WriteBatch
	wb.SetMsg(RegionStateKey(3), region)
	wb.Set(DataKey('d', []byte("raw")), []byte("raw value"))
	wb.Set(DataKey('d', []byte("garbage")), []byte{0xff, 0xff, 0xff})
	wb.Set(DataKey('d', []byte("empty")), nil)
	mustCommit(t, e.KV, &wb)

	t.Run("GetMsg", func(t *testing.T) {
		var got metapb.Region
		if err := GetMsg(e.KV, RegionStateKey(3), &got); err != nil || !proto.Equal(&got, region) {
			t.Fatalf("GetMsg = %v, %v", &got, err)
		}
		if err := GetMsg(e.KV, RegionStateKey(4), &got); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetMsg of a missing key = %v, want ErrNotFound", err)
		}
		err := GetMsg(e.KV, DataKey('d', []byte("garbage")), &got)
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("GetMsg of a garbage value = %v, want an unmarshal error", err)
		}
	})

	t.Run("GetMsgTxn", func(t *testing.T) {
		err := e.KV.View(func(txn *badger.Txn) error {
			var got metapb.Region
			if err := GetMsgTxn(txn, RegionStateKey(3), &got); err != nil || !proto.Equal(&got, region) {
				t.Errorf("GetMsgTxn = %v, %v", &got, err)
			}
			if err := GetMsgTxn(txn, RegionStateKey(99), &got); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetMsgTxn of a missing key = %v, want ErrNotFound", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("GetMsgTxn sees own writes", func(t *testing.T) {
		txn := e.KV.NewTransaction(true)
		defer txn.Discard()
		r := testRegion(5)
		val, _ := proto.Marshal(r)
		if err := txn.Set(RegionStateKey(5), val); err != nil {
			t.Fatal(err)
		}
		var got metapb.Region
		if err := GetMsgTxn(txn, RegionStateKey(5), &got); err != nil || !proto.Equal(&got, r) {
			t.Fatalf("GetMsgTxn = %v, %v", &got, err)
		}
	})

	t.Run("GetValueTxn", func(t *testing.T) {
		var raw, empty []byte
		err := e.KV.View(func(txn *badger.Txn) error {
			var err error
			if raw, err = GetValueTxn(txn, DataKey('d', []byte("raw"))); err != nil {
				return err
			}
			if empty, err = GetValueTxn(txn, DataKey('d', []byte("empty"))); err != nil {
				return err
			}
			if v, err := GetValueTxn(txn, DataKey('d', []byte("missing"))); !errors.Is(err, ErrNotFound) || v != nil {
				t.Errorf("GetValueTxn of a missing key = %q, %v, want nil, ErrNotFound", v, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The value is a copy: still valid after the transaction.
		if string(raw) != "raw value" {
			t.Fatalf("raw = %q", raw)
		}
		if len(empty) != 0 {
			t.Fatalf("empty = %q", empty)
		}
	})
}

func TestWriteBatchTooLarge(t *testing.T) {
	opts := testOptions()
	opts.ValueThreshold = MaxValueThreshold // Badger counts a value log's values as their pointers
	e := openAt(t, t.TempDir(), opts)
	defer e.Close()
	// testOptions' 8 MB memtables limit one transaction to ~1.2 MB.
	const n, valSize = 2000, 1 << 10
	val := bytes.Repeat([]byte{'v'}, valSize)

	tests := []struct {
		name string
		db   *badger.DB
		key  func(i int) []byte
	}{
		{"kv", e.KV, func(i int) []byte { return DataKey('d', fmt.Appendf(nil, "big%06d", i)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := allKeys(t, tc.db)
			var wb WriteBatch
			for i := range n {
				wb.Set(tc.key(i), val)
			}
			err := wb.Commit(tc.db)
			if err == nil {
				t.Fatalf("Commit of %d bytes succeeded, want an error", wb.Size())
			}
			if !errors.Is(err, badger.ErrTxnTooBig) {
				t.Fatalf("Commit error = %v, want one wrapping badger.ErrTxnTooBig", err)
			}
			after := allKeys(t, tc.db)
			if len(after) != len(before) {
				t.Fatalf("failed batch left %d keys behind (first %x)", len(after)-len(before), after[len(before)])
			}
			// The DB is still usable, and the same writes fit in pieces.
			for start := 0; start < n; start += 500 {
				var part WriteBatch
				for i := start; i < start+500; i++ {
					part.Set(tc.key(i), val)
				}
				mustCommit(t, tc.db, &part)
			}
			if got := len(allKeys(t, tc.db)); got != len(before)+n {
				t.Fatalf("after split commits: %d keys, want %d", got, len(before)+n)
			}
		})
	}
}
