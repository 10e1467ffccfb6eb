package hugepage

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mode is the kernel's THP mode: "always", "madvise", "never", or "" if
// the kernel has no THP.
func mode() string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return ""
	}
	// "always [madvise] never": the selected mode is bracketed.
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return ""
	}
	return s[i+1 : j]
}

func disabledByGODEBUG() bool {
	for _, kv := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if strings.TrimSpace(kv) == "disablethp=1" {
			return true
		}
	}
	return false
}

// vma is one line of /proc/self/maps.
type vma struct {
	start, end uintptr
	perms      string
	anon       bool // private, not backed by a file, not [heap] or [stack]
}

// probeSink keeps a probe object on the heap (escape analysis would put an
// unshared one on the stack).
var probeSink *[64]byte

// advisor advises the heap's mappings, remembering what it advised last so
// that an unchanged heap costs only the read of /proc/self/maps.
type advisor struct {
	advised [][2]uintptr
}

// advise finds the heap: the mapping holding a fresh heap object and the
// anonymous mappings next to it on either side (the runtime maps the heap's
// arenas one after the other, and a mapping split by this advice or by a
// protection change stays contiguous). It advises the readable and writable
// ones with MADV_HUGEPAGE. The runtime maps new arenas over reserved
// (inaccessible) ones with mmap, which drops any advice, so it must run
// again as the heap grows.
func (a *advisor) advise() error {
	probeSink = new([64]byte)
	probe := uintptr(unsafe.Pointer(probeSink))
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	vmas, err := parseMaps(b)
	if err != nil {
		return err
	}
	ranges := heapRanges(vmas, probe)
	if ranges == nil {
		return fmt.Errorf("no anonymous mapping holds the heap object at %#x", probe)
	}
	if slices.Equal(ranges, a.advised) {
		return nil
	}
	for _, r := range ranges {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_HUGEPAGE); errno != 0 {
			return fmt.Errorf("madvise(%#x, %d, MADV_HUGEPAGE): %w", r[0], r[1]-r[0], errno)
		}
		// The advice holds for pages faulted in from now on. Pages the heap
		// touched before it (the runtime zeroes a span as it hands it out)
		// are left to khugepaged, which collapses them in the background.
		// Not MADV_COLLAPSE here: it copies them at once and stalled the
		// store's requests (a put took 240 ms while it collapsed a new part
		// of the heap).
	}
	a.advised = ranges
	return nil
}

// heapRanges returns the readable and writable ranges of the run of
// adjacent anonymous mappings that holds addr, or nil if no anonymous
// mapping does.
func heapRanges(vmas []vma, addr uintptr) [][2]uintptr {
	i := slices.IndexFunc(vmas, func(v vma) bool { return v.start <= addr && addr < v.end })
	if i < 0 || !vmas[i].anon {
		return nil
	}
	lo, hi := i, i
	for lo > 0 && vmas[lo-1].anon && vmas[lo-1].end == vmas[lo].start {
		lo--
	}
	for hi+1 < len(vmas) && vmas[hi+1].anon && vmas[hi+1].start == vmas[hi].end {
		hi++
	}
	var ranges [][2]uintptr
	for _, v := range vmas[lo : hi+1] {
		if !strings.HasPrefix(v.perms, "rw") {
			continue
		}
		if n := len(ranges); n > 0 && ranges[n-1][1] == v.start {
			ranges[n-1][1] = v.end
		} else {
			ranges = append(ranges, [2]uintptr{v.start, v.end})
		}
	}
	return ranges
}

// parseMaps parses /proc/self/maps: "start-end perms offset dev inode
// [path]".
func parseMaps(b []byte) ([]vma, error) {
	var vmas []vma
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 5 {
			return nil, fmt.Errorf("/proc/self/maps: bad line %q", line)
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || len(f[1]) != 4 {
			return nil, fmt.Errorf("/proc/self/maps: bad line %q", line)
		}
		path := ""
		if len(f) > 5 {
			path = f[5]
		}
		anon := f[1][3] == 'p' && f[4] == "0" && (path == "" || strings.HasPrefix(path, "[anon:"))
		vmas = append(vmas, vma{start: uintptr(start), end: uintptr(end), perms: f[1], anon: anon})
	}
	return vmas, nil
}
