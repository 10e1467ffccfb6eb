package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// Badger writes its memtable logs and value logs through shared memory
// mappings. A store write faults each new page of a log in through the
// kernel's mmap read-ahead, and on recent kernels (page-cache large folios,
// ext4 since Linux 6.16) read-ahead grows the folios it allocates as the
// sequential faults go on, up to 2 MiB. A folio is dirtied and written back
// whole, so once a log had ramped up, every raft round's fdatasync wrote the
// whole 2 MiB folio holding the few KiB the round appended: on the
// development VM the stores wrote 700 MB/s to disk for 1.2 MB/s of user data
// (perf's ext4:ext4_writepages_result: 512 pages per sync of the raft value
// log), the syncs took 4 ms instead of 1, and a fresh cluster's put
// throughput halved within 30 seconds (docs/BENCHMARKS.md).
//
// MADV_RANDOM turns read-ahead off for a mapping, so its pages are faulted in
// one at a time and a sync writes only the pages a round touched. Badger does
// not expose its mappings, so the engines' advisor finds them in
// /proc/self/maps: once at Open, then every adviseInterval for the logs
// Badger creates as it rotates them (a new log is written for at most that
// long before the advice, too short for read-ahead to ramp up far). The
// advice is only a hint: failing to give it costs speed, not correctness, so
// errors are ignored.

const adviseInterval = 200 * time.Millisecond

// advisor gives MADV_RANDOM to the mappings of the log files in its dirs.
type advisor struct {
	dirs []string        // absolute, symlinks resolved, as the maps file names them
	seen map[string]bool // the maps lines already advised
	loop *periodic
}

func startAdvisor(dirs ...string) *advisor {
	a := &advisor{seen: map[string]bool{}}
	for _, d := range dirs {
		if abs, err := filepath.Abs(d); err == nil {
			d = abs
		}
		if real, err := filepath.EvalSymlinks(d); err == nil {
			d = real
		}
		a.dirs = append(a.dirs, d)
	}
	a.advise()
	a.loop = runEvery(adviseInterval, func(<-chan struct{}) { a.advise() })
	return a
}

func (a *advisor) close() { a.loop.close() }

// advise reads the maps file once and advises the log mappings not seen yet.
func (a *advisor) advise() {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	seen := make(map[string]bool, len(a.seen))
	for _, m := range logMappings(maps, a.dirs) {
		seen[m.line] = true
		if a.seen[m.line] {
			continue
		}
		// If the mapping went away meanwhile the call fails or advises
		// whatever took its place, which a read-ahead hint cannot harm.
		adviseRandom(m.start, m.end-m.start)
	}
	a.seen = seen
}

type mapping struct {
	start, end uintptr
	line       string
}

// isBadgerLog reports whether name is one of Badger's logs: a memtable's
// write-ahead log (*.mem) or a value log (*.vlog).
func isBadgerLog(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".mem" || ext == ".vlog"
}

// logMappings parses /proc/self/maps ("start-end perms offset dev inode
// path") for the mappings of Badger logs (*.mem, *.vlog) directly in dirs.
func logMappings(maps []byte, dirs []string) []mapping {
	var out []mapping
	for len(maps) > 0 {
		line := maps
		if i := bytes.IndexByte(maps, '\n'); i >= 0 {
			line, maps = maps[:i], maps[i+1:]
		} else {
			maps = nil
		}
		i := bytes.IndexByte(line, '/')
		if i < 0 {
			continue
		}
		path := string(line[i:])
		if !isBadgerLog(path) || !slices.Contains(dirs, filepath.Dir(path)) {
			continue
		}
		addrs, _, _ := bytes.Cut(line, []byte{' '})
		lo, hi, ok := bytes.Cut(addrs, []byte{'-'})
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 == nil && err2 == nil && end > start {
			out = append(out, mapping{uintptr(start), uintptr(end), string(line)})
		}
	}
	return out
}
