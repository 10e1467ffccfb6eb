package raftlog

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

func ents(term, lo, hi uint64) []raftpb.Entry {
	var es []raftpb.Entry
	for i := lo; i < hi; i++ {
		es = append(es, raftpb.Entry{Term: term, Index: i, Data: fmt.Appendf(nil, "entry %d term %d", i, term)})
	}
	return es
}

// open opens the log in dir with seg-byte segments; 0 means 1 MiB.
func open(t *testing.T, dir string, seg int64) *Log {
	t.Helper()
	if seg == 0 {
		seg = 1 << 20
	}
	l, err := Open(dir, Options{SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func write(t *testing.T, l *Log, fill func(b *Batch)) {
	t.Helper()
	var b Batch
	fill(&b)
	if err := l.Write(&b, true); err != nil {
		t.Fatal(err)
	}
}

// churn writes rounds batches to busy region 1: 10 entries at term 2 and
// the state each, deleting all but the last 50 entries once there are
// more. It returns the index after the last entry written.
func churn(t *testing.T, l *Log, rounds int) uint64 {
	t.Helper()
	var next uint64 = 1
	for range rounds {
		write(t, l, func(b *Batch) {
			b.Append(1, ents(2, next, next+10))
			b.SetState(1, &rspb.RaftLocalState{LastIndex: next + 9})
			if next > 50 {
				b.DeleteTo(1, next-40)
			}
		})
		next += 10
	}
	return next
}

// checkLog asserts region's entries are exactly [lo, hi) at term for each
// index given by termAt.
func checkLog(t *testing.T, l *Log, region, lo, hi uint64, termAt func(uint64) uint64) {
	t.Helper()
	first, last, ok := l.Bounds(region)
	if lo == hi {
		if ok {
			t.Fatalf("region %d: want no entries, have [%d, %d]", region, first, last)
		}
		return
	}
	if !ok || first != lo || last != hi-1 {
		t.Fatalf("region %d: bounds %d..%d (%v), want %d..%d", region, first, last, ok, lo, hi-1)
	}
	got, err := l.Entries(region, lo, hi, ^uint64(0))
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(got)) != hi-lo {
		t.Fatalf("region %d: %d entries, want %d", region, len(got), hi-lo)
	}
	for i, e := range got {
		idx := lo + uint64(i)
		want := fmt.Sprintf("entry %d term %d", idx, termAt(idx))
		if e.Index != idx || e.Term != termAt(idx) || string(e.Data) != want {
			t.Fatalf("region %d: entry %d is (%d, %d, %q), want term %d %q", region, idx, e.Index, e.Term, e.Data, termAt(idx), want)
		}
	}
}

func term(t uint64) func(uint64) uint64 { return func(uint64) uint64 { return t } }

func checkState(t *testing.T, l *Log, region, want uint64) {
	t.Helper()
	var st rspb.RaftLocalState
	ok, err := l.State(region, &st)
	if err != nil {
		t.Fatal(err)
	}
	if want == 0 {
		if ok {
			t.Fatalf("region %d: has state %v, want none", region, st)
		}
		return
	}
	if !ok || st.LastIndex != want {
		t.Fatalf("region %d: state %v (%v), want last index %d", region, st, ok, want)
	}
}

func TestWriteReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	write(t, l, func(b *Batch) {
		b.Append(1, ents(5, 6, 20))
		b.SetState(1, &rspb.RaftLocalState{LastIndex: 19})
		b.Append(2, ents(1, 1, 4))
		b.SetState(2, &rspb.RaftLocalState{LastIndex: 3})
	})
	// A conflict: region 1's entries from 15 are replaced at term 6.
	write(t, l, func(b *Batch) {
		b.Append(1, ents(6, 15, 17))
		b.SetState(1, &rspb.RaftLocalState{LastIndex: 16})
		b.DeleteTo(2, 3)
		b.Append(3, ents(2, 10, 12))
		b.Clean(3)
	})
	check := func(l *Log) {
		termAt := func(i uint64) uint64 { return map[bool]uint64{true: 6, false: 5}[i >= 15] }
		checkLog(t, l, 1, 6, 17, termAt)
		checkState(t, l, 1, 16)
		checkLog(t, l, 2, 3, 4, term(1))
		checkState(t, l, 2, 3)
		checkLog(t, l, 3, 0, 0, nil)
		checkState(t, l, 3, 0)
		if _, err := l.Entries(2, 2, 4, 0); !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("entries below the first: %v", err)
		}
		if _, err := l.Entries(1, 10, 18, 0); !errors.Is(err, raft.ErrUnavailable) {
			t.Fatalf("entries past the last: %v", err)
		}
		for _, c := range []struct {
			region, i, term uint64
			err             error
		}{{1, 14, 5, nil}, {1, 15, 6, nil}, {1, 16, 6, nil}, {1, 17, 0, raft.ErrUnavailable},
			{2, 2, 0, raft.ErrCompacted}, {2, 3, 1, nil}, {3, 10, 0, raft.ErrUnavailable}} {
			if tm, err := l.Term(c.region, c.i); tm != c.term || !errors.Is(err, c.err) {
				t.Fatalf("Term(%d, %d) = %d, %v; want %d, %v", c.region, c.i, tm, err, c.term, c.err)
			}
		}
		// maxSize: at least one entry, then only what fits.
		one, err := l.Entries(1, 6, 17, 1)
		if err != nil || len(one) != 1 {
			t.Fatalf("maxSize 1: %d entries, %v", len(one), err)
		}
		sz := uint64(one[0].Size())
		if two, _ := l.Entries(1, 6, 17, 2*sz); len(two) != 2 {
			t.Fatalf("maxSize of two entries: %d entries", len(two))
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, 0)
	defer l.Close()
	check(l)
	// Appending past a gap starts the region's log afresh.
	write(t, l, func(b *Batch) { b.Append(2, ents(3, 10, 12)) })
	checkLog(t, l, 2, 10, 12, term(3))
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+fileExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRotateAndPurge: segments whose entries log GC deleted go, an idle
// region's few entries are carried forward rather than pinning the segment
// they were written in, and a reopen sees the same log.
func TestRotateAndPurge(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 16<<10)
	// Region 9 is idle: a few entries, written once.
	write(t, l, func(b *Batch) {
		b.Append(9, ents(1, 6, 9))
		b.SetState(9, &rspb.RaftLocalState{LastIndex: 8})
	})
	next := churn(t, l, 1000)
	check := func(l *Log) {
		checkLog(t, l, 1, next-50, next, term(2))
		checkState(t, l, 1, next-1)
		checkLog(t, l, 9, 6, 9, term(1))
		checkState(t, l, 9, 8)
	}
	check(l)
	if n := len(segments(t, dir)); n > 4 {
		t.Fatalf("%d segments left, want at most 4", n)
	}
	// Purged segments became spares, and spares became segments: the
	// active segment overwrote a purged one's records, which the reopen
	// below must not take for its own.
	spares, _ := filepath.Glob(filepath.Join(dir, "*"+spareExt))
	if len(spares) == 0 || len(spares) > maxSpares {
		t.Fatalf("%d spares, want 1..%d", len(spares), maxSpares)
	}
	if l.active.id < 10 {
		t.Fatalf("only %d segments were started: the test proves little", l.active.id)
	}
	// The later spares came from the purges. Zero-filled: Open's (taken by
	// segment 1), one for the first rotation and one for the second (the
	// first rotation's purge had nothing to recycle). A filler asked before
	// the purges made a fourth.
	if n := l.fills.Load(); n > 3 {
		t.Errorf("%d spares zero-filled over %d rotations, want at most 3", n, l.active.id-1)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, 16<<10)
	defer l.Close()
	check(l)
}

// TestTornWrite: a record cut short by a crash is dropped from the newest
// segment, and everything before it survives, across later reopens too.
func TestTornWrite(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	write(t, l, func(b *Batch) { b.Append(1, ents(1, 1, 5)) })
	write(t, l, func(b *Batch) { b.Append(1, ents(1, 5, 9)) })
	segs := segments(t, dir)
	end := l.active.size
	l.Close()
	// Cut the last record short.
	if err := os.Truncate(segs[len(segs)-1], end-7); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, 0)
	checkLog(t, l, 1, 1, 5, term(1))
	write(t, l, func(b *Batch) { b.Append(1, ents(2, 5, 7)) })
	l.Close()
	// The cut segment is now an older one, and complete.
	l = open(t, dir, 0)
	defer l.Close()
	checkLog(t, l, 1, 1, 7, func(i uint64) uint64 { return map[bool]uint64{true: 2, false: 1}[i >= 5] })
}

// TestCorruptOlderSegment: a bad record in a segment that was complete is
// corruption, not a torn write.
func TestCorruptOlderSegment(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	write(t, l, func(b *Batch) { b.Append(1, ents(1, 1, 5)) })
	segs := segments(t, dir)
	l.Close()
	l = open(t, dir, 0) // a newer segment now follows
	l.Close()
	f, err := os.OpenFile(segs[len(segs)-1], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, fileHeader+recHeader+3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(dir, Options{SegmentSize: 1 << 20}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

// TestConcurrentWriters: writers on many goroutines, each its own region,
// with rotation and purging going on.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 32<<10)
	var wg sync.WaitGroup
	for g := range 4 {
		region := uint64(g + 1)
		wg.Go(func() {
			var b Batch
			for i := uint64(1); i <= 300; i += 3 {
				b.Reset()
				b.Append(region, ents(1, i, i+3))
				b.SetState(region, &rspb.RaftLocalState{LastIndex: i + 2})
				if i > 30 {
					b.DeleteTo(region, i-30)
				}
				if err := l.Write(&b, i%2 == 0); err != nil {
					t.Error(err)
					return
				}
				if _, err := l.Entries(region, i, i+3, ^uint64(0)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, 32<<10)
	defer l.Close()
	for g := range 4 {
		checkLog(t, l, uint64(g+1), 268, 301, term(1))
		checkState(t, l, uint64(g+1), 300)
	}
}

func TestOpenLocksDir(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	if l2, err := Open(dir, Options{SegmentSize: 1 << 20}); err == nil {
		l2.Close()
		t.Fatal("a second Open of the same dir succeeded")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, 0).Close()
}

// TestEntriesCheckIndex: an entry read from where the index says another
// should be is reported corrupt, never returned to raft.
func TestEntriesCheckIndex(t *testing.T) {
	l := open(t, t.TempDir(), 0)
	defer l.Close()
	write(t, l, func(b *Batch) { b.Append(1, ents(2, 1, 5)) })
	l.mu.Lock()
	r := l.regions[1]
	r.locs[2], r.locs[3] = r.locs[3], r.locs[2] // index 3 now points at entry 4
	l.mu.Unlock()
	if got, err := l.Entries(1, 1, 3, math.MaxUint64); err != nil || len(got) != 2 {
		t.Fatalf("entries before the damage: %d, %v", len(got), err)
	}
	if _, err := l.Entries(1, 1, 5, math.MaxUint64); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("entries across a misplaced entry: %v, want ErrCorrupt", err)
	}
}
