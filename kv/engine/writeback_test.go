package engine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestWritebackCleansLogs: writeOut leaves no dirty pages in the
// mappings of the kv DB's logs, so the next sync has nothing to write but
// the flush (writeback.go).
func TestWritebackCleansLogs(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps"); err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	opts := testOptions()
	opts.ValueThreshold = 256 // the large values go to the value log
	e := openAt(t, t.TempDir(), opts)
	defer e.Close()
	e.writeback.close() // the test writes out itself
	// ~700 KB to the memtable's log and 480 KB to the value log: neither
	// rotates (a rotated log is mapped again, and smaps no longer sees its
	// dirty pages).
	small, large := bytes.Repeat([]byte{'v'}, 100), bytes.Repeat([]byte{'v'}, 300)
	for round := range 100 {
		var wb WriteBatch
		for i := range 32 {
			value := small
			if i%2 == 0 {
				value = large
			}
			wb.Set(DataKey('d', fmt.Appendf(nil, "k%08d", round*32+i)), value)
		}
		if err := wb.Commit(e.KV); err != nil {
			t.Fatal(err)
		}
	}
	before := dirtyLogKiB(t, e.Dir)
	if before < 256 {
		t.Fatalf("%d KiB of the logs dirty after ~1 MB of writes: the test proves nothing", before)
	}
	writeOut(filepath.Join(e.Dir, "kv"))
	after := dirtyLogKiB(t, e.Dir)
	if after <= 8 {
		return
	}
	// Some file systems (tmpfs, or an overlay on it) never write pages
	// back: then a sync leaves them dirty too, and there is nothing to test.
	if err := e.SyncKV(); err != nil {
		t.Fatal(err)
	}
	if dirtyLogKiB(t, e.Dir) > 8 {
		t.Skip("the logs' pages stay dirty after a sync: this file system has no writeback")
	}
	t.Fatalf("%d KiB of the logs still dirty after writeOut (%d before)", after, before)
}

// dirtyLogKiB sums the dirty KiB of the mappings of dir's kv DB logs in
// /proc/self/smaps.
func dirtyLogKiB(t *testing.T, dir string) int {
	t.Helper()
	total := 0
	for _, m := range kvLogSmaps(t, dir) {
		for _, f := range m.lines {
			if len(f) == 3 && (f[0] == "Shared_Dirty:" || f[0] == "Private_Dirty:") {
				n, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("%s: smaps line %q: %v", m.path, f, err)
				}
				total += n
			}
		}
	}
	return total
}
