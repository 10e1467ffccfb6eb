package engine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLogMappings(t *testing.T) {
	maps := []byte(`7f00000000-7f10000000 rw-s 00000000 fe:00 123 /data/raft/00001.mem
7f20000000-7f30000000 rw-s 00000000 fe:00 124 /data/kv/000001.vlog
7f40000000-7f40001000 r--p 00000000 00:00 0 
7f50000000-7f60000000 rw-s 00000000 fe:00 125 /data/raft/00002.mem (deleted)
7f70000000-7f80000000 r--s 00000000 fe:00 126 /data/raft/000001.sst
7f90000000-7fa0000000 r--s 00000000 fe:00 127 /other/raft/00001.mem
7fb0000000-7fc0000000 rw-s 00000000 fe:00 123 /data/raft/00001.mem`)
	var got []addrRange
	for _, m := range logMappings(maps, []string{"/data/raft", "/data/kv"}) {
		got = append(got, addrRange{m.start, m.end})
	}
	want := []addrRange{{0x7f00000000, 0x7f10000000}, {0x7f20000000, 0x7f30000000}, {0x7fb0000000, 0x7fc0000000}}
	if !slices.Equal(got, want) {
		t.Fatalf("logMappings = %x, want %x", got, want)
	}
}

type addrRange struct{ start, end uintptr }

// TestLogsReadRandom: the mappings of the kv DB's logs carry MADV_RANDOM
// ("rr" in smaps), so a sync writes back only the pages a round touched,
// including the logs Badger creates after Open as it rotates them
// (advise.go).
func TestLogsReadRandom(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps"); err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	opts := testOptions()
	opts.ValueThreshold = 1 << 10 // the large values go to the value log
	e := openAt(t, t.TempDir(), opts)
	defer e.Close()
	firstMem := newestID(t, filepath.Join(e.Dir, "kv"), ".mem")
	// 8 MiB memtables and 1 MiB value logs: ~10 MiB of small values (kept
	// in the memtable) and 20 MiB of large ones (in the value log) rotate
	// both kinds of log.
	small, large := bytes.Repeat([]byte{'v'}, 120), bytes.Repeat([]byte{'v'}, 8<<10)
	for round := range 2500 {
		var wb WriteBatch
		for i := range 32 {
			k := DataKey('d', fmt.Appendf(nil, "k%08d", round*32+i))
			if i == 0 {
				wb.Set(k, large)
			} else {
				wb.Set(k, small)
			}
		}
		if err := wb.Commit(e.KV); err != nil {
			t.Fatal(err)
		}
	}
	if newestID(t, filepath.Join(e.Dir, "kv"), ".mem") <= firstMem {
		t.Fatal("no memtable rotation happened: the test proves nothing")
	}
	// The advisor polls: give it a few rounds.
	var missing []string
	for range 50 {
		time.Sleep(adviseInterval)
		if missing = unadvisedLogs(t, e.Dir); len(missing) == 0 {
			return
		}
	}
	t.Fatalf("log mappings without MADV_RANDOM: %v", missing)
}

// unadvisedLogs lists the mappings of the logs under dir's kv DB
// that lack the "rr" (random read) flag in /proc/self/smaps.
func unadvisedLogs(t *testing.T, dir string) []string {
	t.Helper()
	var missing []string
	for _, m := range kvLogSmaps(t, dir) {
		for _, f := range m.lines {
			if len(f) > 0 && f[0] == "VmFlags:" && !slices.Contains(f[1:], "rr") {
				missing = append(missing, m.path)
			}
		}
	}
	return missing
}

// logSmaps is one mapping's entry in /proc/self/smaps: the mapped file and
// the fields of each line after the header.
type logSmaps struct {
	path  string
	lines [][]string
}

// kvLogSmaps returns the smaps entries of the mappings of the logs (*.mem,
// *.vlog) of dir's kv DB.
func kvLogSmaps(t *testing.T, dir string) []logSmaps {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []logSmaps
	var cur *logSmaps
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-"): // a mapping's header
			cur = nil
			if len(f) >= 6 {
				if isBadgerLog(f[5]) && filepath.Dir(f[5]) == filepath.Join(dir, "kv") {
					out = append(out, logSmaps{path: f[5]})
					cur = &out[len(out)-1]
				}
			}
		case cur != nil:
			cur.lines = append(cur.lines, f)
		}
	}
	return out
}

// newestID returns the highest id among dir's Badger files named NNN<ext>.
func newestID(t *testing.T, dir, ext string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	best := -1
	for _, n := range names {
		if id, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(n), ext)); err == nil && id > best {
			best = id
		}
	}
	return best
}
