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

// TestValueLogGC overwrites values kept in the value log and checks that
// collecting the log removes files, and that every key still reads its
// newest value.
func TestValueLogGC(t *testing.T) {
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
	const keys, rounds = 1500, 3
	key := func(i int) []byte { return DataKey('d', fmt.Appendf(nil, "key-%05d", i)) }
	val := func(i, round int) []byte { return bytes.Repeat([]byte{byte('a' + round)}, 1000+i%7) }

	var wb WriteBatch
	for r := range rounds {
		e := open()
		for i := range keys {
			wb.Set(key(i), val(i, r))
			if wb.Len() == 50 {
				mustCommit(t, e.KV, &wb)
			}
		}
		mustCommit(t, e.KV, &wb)
		if err := e.KV.Close(); err != nil { // flushes the memtable into a table
			t.Fatal(err)
		}
	}
	e := open()
	defer e.KV.Close()
	if err := e.KV.Flatten(1); err != nil {
		t.Fatal(err)
	}
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
		if v, ok := getValue(t, e.KV, key(i)); !ok || !bytes.Equal(v, val(i, rounds-1)) {
			t.Fatalf("key %d after GC: %d bytes %.8q, found %v", i, len(v), v, ok)
		}
	}
}

// TestValueReadDuringGC: a point read whose value's file the value-log GC
// deletes between the lookup and the read (the GC rewrote the value first)
// returns the value, not the empty value Badger gives for an unreadable one.
func TestValueReadDuringGC(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions() // 1 MiB value logs
	opts.ValueThreshold = 128
	opts = opts.withDefaults()
	open := func() *Engines {
		db, err := badger.Open(badgerOptions(dir, opts).WithNumLevelZeroTables(1))
		if err != nil {
			t.Fatal(err)
		}
		return &Engines{KV: db, logger: opts.Logger}
	}
	// The first value log holds the first ~1000 values; overwriting the
	// first 750 leaves it mostly garbage, and the GC moves the rest.
	const keys, overwritten = 1500, 750
	key := func(i int) []byte { return DataKey('d', fmt.Appendf(nil, "key-%05d", i)) }
	val := func(i, round int) []byte { return bytes.Repeat([]byte{byte('a' + round)}, 1000+i%7) }
	var wb WriteBatch
	for round, n := range []int{keys, overwritten} {
		e := open()
		for i := range n {
			wb.Set(key(i), val(i, round))
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
	defer e.KV.Close()
	if err := e.KV.Flatten(1); err != nil {
		t.Fatal(err)
	}
	moved := key(overwritten) // live, in the first value log
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
	if err != nil || !bytes.Equal(v, val(overwritten, 0)) {
		t.Fatalf("read during the GC: %d bytes %.8q, %v", len(v), v, err)
	}
}
