package raftlog

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestDirectWriter: records appended with O_DIRECT land byte for byte after
// what the segment held, whatever their sizes against the block size; the
// rest of the last block is zeros; and a reader through the page cache,
// open from the start, sees every write.
func TestDirectWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	want := bytes.Repeat([]byte("header "), 15) // 105 bytes
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	cached := make([]byte, len(want))
	if _, err := reader.ReadAt(cached, 0); err != nil { // into the page cache
		t.Fatal(err)
	}
	d, err := openDirect(path, int64(len(want)), want)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil {
		t.Skip("the file system takes no O_DIRECT")
	}
	defer d.close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i, size := range []int{1, 4095 - 106, 1, 4096, 5000, 3, 70 << 10, 8191, 2, 4096 * 3} {
		rec := make([]byte, size)
		for j := range rec {
			rec[j] = byte(rng.IntN(255) + 1) // no zeros, so padding shows
		}
		if err := d.write(rec, int64(len(want))); err != nil {
			t.Fatalf("write %d (%d bytes): %v", i, size, err)
		}
		want = append(want, rec...)
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		end := (len(want) + directAlign - 1) &^ (directAlign - 1)
		if len(got) != end || !bytes.Equal(got[:len(want)], want) || slices.ContainsFunc(got[len(want):], func(c byte) bool { return c != 0 }) {
			t.Fatalf("after write %d (%d bytes): file of %d bytes, want %d bytes of records and zeros to %d", i, size, len(got), len(want), end)
		}
		cached = make([]byte, len(want))
		if _, err := reader.ReadAt(cached, 0); err != nil || !bytes.Equal(cached, want) {
			t.Fatalf("after write %d: the buffered reader sees stale bytes (%v)", i, err)
		}
	}
}

func TestLogWritesDirect(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := openDirect(probe, 0, nil)
	if err != nil || d == nil {
		t.Skipf("the file system takes no O_DIRECT (%v)", err)
	}
	d.close()
	l := open(t, dir, 0)
	defer l.Close()
	if l.active.dw == nil {
		t.Fatal("the log appends through the page cache where O_DIRECT works")
	}
}

// TestWithoutDirectIO: with DisableDirectIO (as on a file system that
// refuses O_DIRECT) the log appends through the page cache, and reads,
// rotates and reopens as with direct appends.
func TestWithoutDirectIO(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 16 << 10, DisableDirectIO: true}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if l.active.dw != nil {
		t.Fatal("a direct writer with DisableDirectIO")
	}
	next := churn(t, l, 300)
	if l.active.id < 3 {
		t.Fatalf("only %d segments were started: the test proves little", l.active.id)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened with direct appends, it carries on from the same log.
	l = open(t, dir, 16<<10)
	defer l.Close()
	checkLog(t, l, 1, next-50, next, term(2))
	checkState(t, l, 1, next-1)
	write(t, l, func(b *Batch) { b.Append(1, ents(2, next, next+1)) })
	checkLog(t, l, 1, next-50, next+1, term(2))
}
