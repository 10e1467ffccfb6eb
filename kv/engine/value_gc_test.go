package engine

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// vlogFiles returns the kv DB's value log files.
func vlogFiles(t *testing.T, e *Engines) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(e.KV.Opts().Dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// valueLogDB returns a kv DB that keeps values from 128 bytes on in value
// logs of 1 MiB. Round r writes gcVal(i, r) at gcKey(i) for i below
// counts[r], 50 to a transaction, and closes the DB, which flushes its
// memtable to a table; the tables are then compacted to one level, so
// that the DB knows which values were overwritten.
func valueLogDB(t *testing.T, counts ...int) *Engines {
	t.Helper()
	dir := t.TempDir()
	opts := testOptions() // 1 MiB value logs
	opts.ValueThreshold = 128
	opts = opts.withDefaults()
	// One level-0 table is enough to compact, so that Flatten below moves
	// the tables down and finds the overwritten values.
	open := func() *Engines {
		db, err := badger.Open(badgerOptions(dir, opts).WithNumLevelZeroTables(1))
		if err != nil {
			t.Fatal(err)
		}
		return &Engines{KV: db, logger: opts.Logger}
	}
	var wb WriteBatch
	for round, n := range counts {
		e := open()
		for i := range n {
			wb.Set(gcKey(i), gcVal(i, round))
			if wb.Len() == 50 {
				mustCommit(t, e.KV, &wb)
			}
		}
		mustCommit(t, e.KV, &wb)
		if err := e.KV.Close(); err != nil {
			t.Fatal(err)
		}
	}
	e := open()
	if err := e.KV.Flatten(1); err != nil {
		e.KV.Close()
		t.Fatal(err)
	}
	return e
}

func gcKey(i int) []byte { return DataKey('d', fmt.Appendf(nil, "key-%05d", i)) }

func gcVal(i, round int) []byte { return bytes.Repeat([]byte{byte('a' + round)}, 1000+i%7) }

// TestValueLogGC overwrites values kept in the value log and checks that
// collecting the log removes files, and that every key still reads its
// newest value.
func TestValueLogGC(t *testing.T) {
	const keys, rounds = 1500, 3
	e := valueLogDB(t, keys, keys, keys)
	defer e.KV.Close()
	before := len(vlogFiles(t, e))
	if before < rounds*keys*1000/(1<<20) {
		t.Fatalf("%d value logs for %d MB of values: values are not in the value log", before, rounds*keys/1000)
	}
	kept := -1
	e.valueGCSynced = func() { kept = len(vlogFiles(t, e)) }
	e.collectValueLog(nil)
	after := len(vlogFiles(t, e))
	if kept < before {
		t.Fatalf("value logs deleted before the rewrite was synced: %d before the GC, %d when synced", before, kept)
	}
	t.Logf("value logs: %d before, %d after", before, after)
	if after >= before {
		t.Fatalf("value log GC removed no file: %d before, %d after", before, after)
	}
	for i := range keys {
		if v, ok := getValue(t, e.KV, gcKey(i)); !ok || !bytes.Equal(v, gcVal(i, rounds-1)) {
			t.Fatalf("key %d after GC: %d bytes %.8q, found %v", i, len(v), v, ok)
		}
	}
}

// TestValueReadDuringGC: a point read whose value's file the value-log GC
// deletes between the lookup and the read (the GC rewrote the value first)
// returns the value, not the empty value Badger gives for an unreadable one.
func TestValueReadDuringGC(t *testing.T) {
	// The first value log holds the first ~1000 values; overwriting the
	// first 750 leaves it mostly garbage, and the GC moves the rest.
	const keys, overwritten = 1500, 750
	e := valueLogDB(t, keys, overwritten)
	defer e.KV.Close()
	moved := gcKey(overwritten) // live, in the first value log
	txn := e.KV.NewTransaction(false)
	defer txn.Discard()
	stale, err := txn.Get(moved)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { afterValueLookup = nil }()
	afterValueLookup = func() {
		afterValueLookup = nil
		e.collectValueLog(nil)
		// The lookup's pointer now leads nowhere: Badger's empty value.
		if v, err := stale.ValueCopy(nil); err != nil || len(v) != 0 {
			t.Fatalf("the GC did not delete the value's file: %d bytes, %v", len(v), err)
		}
	}
	v, err := GetValueTxn(txn, moved)
	if err != nil || !bytes.Equal(v, gcVal(overwritten, 0)) {
		t.Fatalf("read during the GC: %d bytes %.8q, %v", len(v), v, err)
	}
}
