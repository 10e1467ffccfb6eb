package engine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWritebackCleansLogs: a writeback round leaves no dirty pages in the
// mappings of the kv DB's logs, so the next sync has nothing to write but
// the flush (writeback.go).
func TestWritebackCleansLogs(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps"); err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil || fs.Type == unix.TMPFS_MAGIC {
		t.Skip("the temp dir is on tmpfs, which has no writeback")
	}
	e := openAt(t, dir, testOptions())
	defer e.Close()
	e.writeback.close() // the test runs the rounds itself
	value := bytes.Repeat([]byte{'v'}, 300)
	for round := range 100 {
		var wb WriteBatch
		for i := range 32 {
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
	e.writeback.start()
	if after := dirtyLogKiB(t, e.Dir); after > 8 {
		t.Fatalf("%d KiB of the logs still dirty after a writeback round (%d before)", after, before)
	}
}

// dirtyLogKiB sums the dirty KiB of the mappings of dir's kv DB logs in
// /proc/self/smaps.
func dirtyLogKiB(t *testing.T, dir string) int {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	total, inLog := 0, false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-"):
			inLog = false
			if len(f) >= 6 {
				ext, db := filepath.Ext(f[5]), filepath.Dir(f[5])
				inLog = (ext == ".mem" || ext == ".vlog") && db == filepath.Join(dir, "kv")
			}
		case inLog && len(f) == 3 && (f[0] == "Shared_Dirty:" || f[0] == "Private_Dirty:"):
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			total += n
		}
	}
	return total
}
