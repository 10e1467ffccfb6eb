package hugepage

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const sampleMaps = `00400000-00cda000 r-xp 00000000 fd:01 1234                               /usr/bin/regionkv-server
016fb000-01779000 rw-p 012fb000 fd:01 1234                               /usr/bin/regionkv-server
01779000-037c4000 rw-p 00000000 00:00 0 
21865000-21886000 rw-p 00000000 00:00 0                                  [heap]
c000000000-c000400000 ---p 00000000 00:00 0 
c000400000-c004000000 rw-p 00000000 00:00 0 
c004000000-c004400000 rw-p 00000000 00:00 0                              [anon: Go: heap]
c004400000-c008000000 ---p 00000000 00:00 0 
c008000000-c008400000 rw-p 00000000 00:00 0 
7f0000000000-7f0010000000 rw-s 00000000 fd:01 99                         /data/kv/00001.mem
7f0010000000-7f0010021000 rw-p 00000000 00:00 0 
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
`

func TestParseMaps(t *testing.T) {
	vmas, err := parseMaps([]byte(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		start uintptr
		perms string
		anon  bool
	}{
		{0x400000, "r-xp", false},
		{0x16fb000, "rw-p", false},
		{0x1779000, "rw-p", true},
		{0x21865000, "rw-p", false}, // [heap]: brk, not Go's
		{0xc000000000, "---p", true},
		{0xc000400000, "rw-p", true},
		{0xc004000000, "rw-p", true}, // named by the runtime
		{0xc004400000, "---p", true},
		{0xc008000000, "rw-p", true},
		{0x7f0000000000, "rw-s", false},
		{0x7f0010000000, "rw-p", true},
		{0x7ffc00000000, "rw-p", false},
	}
	if len(vmas) != len(want) {
		t.Fatalf("got %d mappings, want %d", len(vmas), len(want))
	}
	for i, w := range want {
		if v := vmas[i]; v.start != w.start || v.perms != w.perms || v.anon != w.anon {
			t.Errorf("mapping %d: got %#x %s anon=%v, want %#x %s anon=%v", i, v.start, v.perms, v.anon, w.start, w.perms, w.anon)
		}
	}
	if vmas[5].end != 0xc004000000 {
		t.Errorf("end of mapping 5: %#x", vmas[5].end)
	}

	for _, bad := range []string{"c000-c400 rw-p 0 00:00\n", "zz-c400 rw-p 0 00:00 0\n", "c000-c400 rw 0 00:00 0\n"} {
		if _, err := parseMaps([]byte(bad)); err == nil {
			t.Errorf("parseMaps(%q) took a bad line", bad)
		}
	}
}

func TestHeapRanges(t *testing.T) {
	vmas, err := parseMaps([]byte(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	// From any mapping of the run, the run's writable ranges, the adjacent
	// ones merged; the inaccessible reservations are skipped.
	want := [][2]uintptr{{0xc000400000, 0xc004400000}, {0xc008000000, 0xc008400000}}
	for _, addr := range []uintptr{0xc000500000, 0xc004000010, 0xc0083fffff} {
		got := heapRanges(vmas, addr)
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("heapRanges(%#x) = %#x, want %#x", addr, got, want)
		}
	}
	// A mapping not next to the run is not part of it.
	if got := heapRanges(vmas, 0x7f0010000010); len(got) != 1 || got[0] != [2]uintptr{0x7f0010000000, 0x7f0010021000} {
		t.Errorf("heapRanges of a lone mapping = %#x", got)
	}
	// Not anonymous, or not mapped at all: nothing.
	for _, addr := range []uintptr{0x500000, 0x21865010, 0x7ffc00000010, 0x1000} {
		if got := heapRanges(vmas, addr); got != nil {
			t.Errorf("heapRanges(%#x) = %#x, want nil", addr, got)
		}
	}
}

func TestDisabledByGODEBUG(t *testing.T) {
	for env, want := range map[string]bool{"": false, "disablethp=1": true, "madvdontneed=1, disablethp=1": true, "disablethp=0": false} {
		t.Setenv("GODEBUG", env)
		if got := disabledByGODEBUG(); got != want {
			t.Errorf("GODEBUG=%q: disabled %v, want %v", env, got, want)
		}
	}
}

// TestAdvise advises this test process's heap and checks the kernel's view
// of the mapping that holds a heap object.
func TestAdvise(t *testing.T) {
	if mode() == "" {
		t.Skip("this kernel has no transparent huge pages")
	}
	var a advisor
	if err := a.advise(); errors.Is(err, unix.EINVAL) {
		t.Skipf("this kernel refuses MADV_HUGEPAGE: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	obj := new([1 << 10]byte)
	probeSink = (*[64]byte)(obj[:64])
	if err := a.advise(); err != nil { // unchanged, or the heap grew
		t.Fatal(err)
	}
	flags := vmFlags(t, uintptr(unsafe.Pointer(obj)))
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("the heap mapping's VmFlags are %q, want hg (MADV_HUGEPAGE)", flags)
	}
	before := len(a.advised)
	if err := a.advise(); err != nil || len(a.advised) != before {
		t.Errorf("advising an unchanged heap again: %v, %d ranges → %d", err, before, len(a.advised))
	}
}

// vmFlags returns the VmFlags line of the mapping holding addr in
// /proc/self/smaps.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if lo, rest, ok := strings.Cut(line, "-"); ok && !strings.Contains(lo, " ") && !strings.Contains(lo, ":") {
			hi, _, _ := strings.Cut(rest, " ")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uintptr(start) <= addr && addr < uintptr(end)
			continue
		}
		if f, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.TrimSpace(f)
		}
	}
	t.Fatalf("no mapping in /proc/self/smaps holds %#x", addr)
	return ""
}
