package engine

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/raftlog"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// testOptions are small engines for tests. The kv DB keeps Badger's default
// 1 MB value threshold, which must not exceed 15% of MemTableSize, so 8 MB is
// about the smallest memtable it accepts; it caps one transaction at ~1.2 MB.
func testOptions() Options {
	return Options{
		MemTableSize:     8 << 20,
		BlockCacheSize:   1 << 20,
		ValueLogFileSize: 1 << 20,
		RaftSegmentSize:  1 << 20,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// openAt opens engines in dir; the caller closes them.
func openAt(tb testing.TB, dir string, opts Options) *Engines {
	tb.Helper()
	e, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", dir, err)
	}
	return e
}

// newEngines opens engines in a fresh temp dir and closes them at cleanup.
func newEngines(tb testing.TB) *Engines {
	tb.Helper()
	e := openAt(tb, tb.TempDir(), testOptions())
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return e
}

// mustCommit commits wb to db and resets it.
func mustCommit(tb testing.TB, db *badger.DB, wb *WriteBatch) {
	tb.Helper()
	if err := wb.Commit(db); err != nil {
		tb.Fatalf("Commit: %v", err)
	}
	wb.Reset()
}

// getValue reads key from db; ok is false if it is absent.
func getValue(tb testing.TB, db *badger.DB, key []byte) (val []byte, ok bool) {
	tb.Helper()
	err := db.View(func(txn *badger.Txn) error {
		var err error
		val, err = GetValueTxn(txn, key)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, false
	}
	if err != nil {
		tb.Fatalf("get %x: %v", key, err)
	}
	return val, true
}

// allKeys lists every live key of db in order.
func allKeys(tb testing.TB, db *badger.DB) [][]byte {
	tb.Helper()
	var keys [][]byte
	err := db.View(func(txn *badger.Txn) error {
		it := NewRangeIter(txn, nil, nil, false, true)
		defer it.Close()
		for ; it.Valid(); it.Next() {
			keys = append(keys, bytes.Clone(it.Key()))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

func TestOpenCreatesBoth(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet", "there")
	e := openAt(t, dir, testOptions())
	defer e.Close()
	if e.Dir != dir {
		t.Fatalf("Dir = %q, want %q", e.Dir, dir)
	}
	if got, want := e.KV.Opts().Dir, filepath.Join(dir, "kv"); got != want {
		t.Fatalf("kv dir = %q, want %q", got, want)
	}
	for _, sub := range []string{"raftlog", "kv"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v", sub, err)
		}
	}
}

func TestDBOptions(t *testing.T) {
	e := newEngines(t)
	opts := testOptions()
	kv := e.KV.Opts()

	tests := []struct {
		name      string
		got, want any
	}{
		// The kv DB is synced when it must be (SyncKV), not on every write.
		{"kv SyncWrites", kv.SyncWrites, false},
		{"kv MemTableSize", kv.MemTableSize, opts.MemTableSize},
		{"kv ValueLogFileSize", kv.ValueLogFileSize, opts.ValueLogFileSize},
		{"kv BlockCacheSize", kv.BlockCacheSize, opts.BlockCacheSize},
		{"kv DetectConflicts", kv.DetectConflicts, false},
		{"kv NumVersionsToKeep", kv.NumVersionsToKeep, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	d := Options{}.withDefaults()
	if d.MemTableSize != 128<<20 || d.BlockCacheSize != 256<<20 || d.ValueLogFileSize != 256<<20 ||
		d.ValueThreshold != DefaultValueThreshold || d.RaftSegmentSize != raftlog.DefaultSegmentSize || d.Logger == nil {
		t.Fatalf("zero Options defaults = %+v", d)
	}
	s := SmallOptions()
	if got := s.withDefaults(); got.MemTableSize != s.MemTableSize || got.BlockCacheSize != s.BlockCacheSize ||
		got.ValueLogFileSize != s.ValueLogFileSize || got.RaftSegmentSize != s.RaftSegmentSize {
		t.Fatalf("withDefaults overrode set fields: %+v -> %+v", s, got)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	region := []byte("region-1")
	kvKeys := [][]byte{StoreIdentKey, ApplyStateKey(1), RegionStateKey(1), DataKey('d', []byte("k")), DataKey('w', []byte("k"))}

	e := openAt(t, dir, testOptions())
	var rb raftlog.Batch
	rb.Append(1, []raftpb.Entry{{Term: 5, Index: 6, Data: []byte("six")}, {Term: 5, Index: 7, Data: []byte("seven")}})
	rb.SetState(1, &rspb.RaftLocalState{LastIndex: 7, LastTerm: 5})
	if err := e.WriteRaft(&rb); err != nil {
		t.Fatal(err)
	}
	var wb WriteBatch
	for _, k := range kvKeys {
		wb.Set(k, append([]byte("kv:"), k...))
	}
	wb.Set(DataKey('d', []byte("gone")), region)
	mustCommit(t, e.KV, &wb)
	wb.Delete(DataKey('d', []byte("gone")))
	mustCommit(t, e.KV, &wb)
	if err := e.SyncKV(); err != nil {
		t.Fatalf("SyncKV: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for round := range 2 { // reopen twice: a reopened store must reopen too
		e = openAt(t, dir, testOptions())
		ents, err := e.Raft.Entries(1, 6, 8, 1<<20)
		if err != nil || len(ents) != 2 || string(ents[1].Data) != "seven" {
			t.Fatalf("round %d: raft log entries %v, %v", round, ents, err)
		}
		var st rspb.RaftLocalState
		if ok, err := e.Raft.State(1, &st); !ok || err != nil || st.LastIndex != 7 {
			t.Fatalf("round %d: raft state %v, %v, %v", round, &st, ok, err)
		}
		for _, k := range kvKeys {
			if v, ok := getValue(t, e.KV, k); !ok || !bytes.Equal(v, append([]byte("kv:"), k...)) {
				t.Fatalf("round %d: kv %x = %q, %v", round, k, v, ok)
			}
		}
		if _, ok := getValue(t, e.KV, DataKey('d', []byte("gone"))); ok {
			t.Fatalf("round %d: deleted key came back", round)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	t.Run("dir is a file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "raftlog"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if e, err := Open(dir, testOptions()); err == nil {
			e.Close()
			t.Fatal("Open succeeded with raftlog/ a regular file")
		}
	})

	t.Run("already open", func(t *testing.T) {
		dir := t.TempDir()
		e := openAt(t, dir, testOptions())
		defer e.Close()
		if e2, err := Open(dir, testOptions()); err == nil {
			e2.Close()
			t.Fatal("second Open of the same dir succeeded")
		}
	})

	t.Run("kv db fails: raft log is released", func(t *testing.T) {
		dir := t.TempDir()
		// Hold the kv DB's directory lock so that Open gets the raft log and
		// then fails on the kv DB.
		holder, err := badger.Open(badgerOptions(filepath.Join(dir, "kv"), testOptions().withDefaults()))
		if err != nil {
			t.Fatal(err)
		}
		if e, err := Open(dir, testOptions()); err == nil {
			e.Close()
			holder.Close()
			t.Fatal("Open succeeded with the kv DB locked")
		}
		if err := holder.Close(); err != nil {
			t.Fatal(err)
		}
		// If the failed Open leaked the raft log, its lock would still be held.
		e := openAt(t, dir, testOptions())
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSyncKV(t *testing.T) {
	e := newEngines(t)
	var wb WriteBatch
	val := bytes.Repeat([]byte{'v'}, 512)
	// Enough data to rotate the 8 MB memtable at least once, so that SyncKV
	// meets more than one .mem file.
	for i := range 40 {
		for j := range 500 {
			wb.Set(DataKey('d', []byte{byte(i), byte(j >> 8), byte(j)}), val)
		}
		mustCommit(t, e.KV, &wb)
		if i%10 == 9 {
			if err := e.SyncKV(); err != nil {
				t.Fatalf("SyncKV: %v", err)
			}
		}
	}
	if _, ok := getValue(t, e.KV, DataKey('d', []byte{39, 1, 243})); !ok {
		t.Fatal("last write missing")
	}
}

// TestImportLegacyRaftDB: a data dir written by a version that kept the raft
// log in a Badger DB opens with that log and those states in the raft log,
// and the old DB is gone.
func TestImportLegacyRaftDB(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions().withDefaults()
	old, err := badger.Open(badgerOptions(filepath.Join(dir, "raft"), opts))
	if err != nil {
		t.Fatal(err)
	}
	var wb WriteBatch
	entry := func(region, idx uint64) {
		wb.SetMsg(RaftLogKey(region, idx), &raftpb.Entry{Term: 3, Index: idx, Data: fmt.Appendf(nil, "%d/%d", region, idx)})
	}
	// Region 1: a leftover that log GC had not deleted yet, a gap, then the
	// live log 10..12. Region 2: a state only.
	entry(1, 3)
	for i := uint64(10); i <= 12; i++ {
		entry(1, i)
	}
	wb.SetMsg(RaftStateKey(1), &rspb.RaftLocalState{LastIndex: 12, LastTerm: 3})
	wb.SetMsg(RaftStateKey(2), &rspb.RaftLocalState{LastIndex: 5, LastTerm: 5})
	mustCommit(t, old, &wb)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		e := openAt(t, dir, testOptions())
		if first, last, ok := e.Raft.Bounds(1); !ok || first != 10 || last != 12 {
			t.Fatalf("round %d: region 1 log %d..%d (%v), want 10..12", round, first, last, ok)
		}
		ents, err := e.Raft.Entries(1, 10, 13, 1<<20)
		if err != nil || len(ents) != 3 || string(ents[2].Data) != "1/12" {
			t.Fatalf("round %d: entries %v, %v", round, ents, err)
		}
		for region, last := range map[uint64]uint64{1: 12, 2: 5} {
			var st rspb.RaftLocalState
			if ok, err := e.Raft.State(region, &st); !ok || err != nil || st.LastIndex != last {
				t.Fatalf("round %d: region %d state %v, %v, %v", round, region, &st, ok, err)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "raft")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("round %d: the old raft DB is still there: %v", round, err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		// As if the removal of the imported DB had been cut short: a
		// partial Badger dir, which must not be imported again.
		if round == 0 {
			if err := os.MkdirAll(filepath.Join(dir, "raft.imported"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "raft.imported", "000001.vlog"), []byte("partial"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "raft.imported")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the half-removed imported DB is still there: %v", err)
	}
}

// TestCompression: the kv DB's tables are uncompressed by default, a DB
// whose tables were compressed opens and reads back under the default, and
// an unknown compression is refused before anything is opened.
func TestCompression(t *testing.T) {
	dir := t.TempDir()
	value := bytes.Repeat([]byte("regionkv "), 100) // compresses well
	// The values stay in the tables, not in the value log.
	testOptions := func() Options { o := testOptions(); o.ValueThreshold = MaxValueThreshold; return o }
	write := func(opts Options, prefix string) {
		t.Helper()
		e, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		var wb WriteBatch
		for i := range 2000 {
			wb.Set(fmt.Appendf(nil, "%s%05d", prefix, i), value)
			if wb.Len() == 100 {
				if err := wb.Commit(e.KV); err != nil {
					t.Fatal(err)
				}
				wb.Reset()
			}
		}
		if err := e.Close(); err != nil { // flushes the memtable to a table
			t.Fatal(err)
		}
	}
	snappy := testOptions()
	snappy.Compression = "snappy"
	write(snappy, "a")
	write(testOptions(), "b")

	e, err := Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tables := e.KV.Tables()
	if len(tables) != 2 {
		t.Fatalf("%d tables, want one per Open: %+v", len(tables), tables)
	}
	slices.SortFunc(tables, func(a, b badger.TableInfo) int { return cmp.Compare(a.ID, b.ID) })
	if first := tables[0]; first.OnDiskSize*4 > first.UncompressedSize {
		t.Errorf("the snappy table takes %d bytes for %d: not compressed", first.OnDiskSize, first.UncompressedSize)
	}
	if second := tables[1]; second.OnDiskSize < second.UncompressedSize {
		t.Errorf("the default's table takes %d bytes for %d: compressed", second.OnDiskSize, second.UncompressedSize)
	}
	err = e.KV.View(func(txn *badger.Txn) error {
		for _, k := range []string{"a00000", "a01999", "b00000", "b01999"} {
			item, err := txn.Get([]byte(k))
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if v, err := item.ValueCopy(nil); err != nil || !bytes.Equal(v, value) {
				return fmt.Errorf("%s: %d bytes, %v", k, len(v), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	bad := testOptions()
	bad.Compression = "lz4"
	other := t.TempDir()
	if e, err := Open(other, bad); err == nil {
		e.Close()
		t.Fatal("Open took compression lz4")
	}
	if ents, _ := os.ReadDir(other); len(ents) != 0 {
		t.Errorf("a refused Open left %d files behind", len(ents))
	}
}

// TestCommitWithVisibleToLaterTxns: the raftstore answers a write once its
// commit is handed to Badger (Txn.CommitWith), not once it is written, so
// it relies on every transaction begun after CommitWith returns seeing the
// write (WaitCommitted's doc). Each round overwrites one key and writes a
// new one, then reads both back at once.
func TestCommitWithVisibleToLaterTxns(t *testing.T) {
	e := newEngines(t)
	hot := DataKey('d', []byte("hot"))
	var failed atomic.Int32
	var done sync.WaitGroup
	const rounds = 2000
	for i := range rounds {
		val := fmt.Appendf(nil, "v%d", i)
		key := DataKey('d', fmt.Appendf(nil, "k%05d", i))
		txn := e.KV.NewTransaction(true)
		if err := txn.Set(hot, val); err != nil {
			t.Fatal(err)
		}
		if err := txn.Set(key, val); err != nil {
			t.Fatal(err)
		}
		done.Add(1)
		txn.CommitWith(func(err error) {
			if err != nil {
				failed.Add(1)
			}
			done.Done()
		})
		for _, k := range [][]byte{hot, key} {
			if got, ok := getValue(t, e.KV, k); !ok || !bytes.Equal(got, val) {
				t.Fatalf("round %d: %q = %q (found %v) right after CommitWith, want %q", i, k, got, ok, val)
			}
		}
	}
	// And a sync waits for what is still being written.
	if err := e.SyncKV(); err != nil {
		t.Fatalf("SyncKV: %v", err)
	}
	done.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d commits failed", n)
	}
	if got := len(allKeys(t, e.KV)); got != rounds+1 {
		t.Fatalf("%d keys, want %d", got, rounds+1)
	}
}
