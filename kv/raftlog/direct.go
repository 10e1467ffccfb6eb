package raftlog

import (
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// Direct appends. The active segment's records are written with O_DIRECT,
// from a block-aligned buffer, rather than through the page cache: the
// fdatasync that follows then has no dirty pages to find and write back,
// only the disk's cache to flush (at 16 busy regions on the bench machine
// it took 0.22–0.27 ms instead of 0.60–0.72; docs/BENCHMARKS.md). O_DIRECT
// writes whole blocks, so the writer keeps the segment's last partial block
// and writes it again, with the new record after it and zeros up to the
// next block boundary; those zeros lie past the segment's end, where replay
// stops anyway (a record that does not verify ends the newest segment) and
// which rotation cuts. Rewriting a block that holds acknowledged records is
// what the page cache's writeback does as well: it writes whole pages. The
// write holds the log's lock while the disk takes it (a page-cache write
// held it for a copy), so raft workers writing at once now queue for the
// disk before they share one fdatasync. A store has one worker per 4 CPUs;
// on a machine with several, moving the write out of the lock may pay.
//
// The checkpoint that starts a segment, the reads and the syncs go through
// the segment's ordinary descriptor, so the page cache and O_DIRECT meet on
// the same file; Linux writes back and drops the cached pages a direct
// write covers, so a read after it sees the write. Where the file system
// refuses O_DIRECT (at open, or at a first write that rewrites the block the
// segment ends in as it is), with Options.DisableDirectIO, and on systems
// other than Linux (sys_unix.go), the log appends through the page cache.

// directAlign is the alignment of a direct write's offset, length and
// buffer: the largest logical block size of common disks.
const directAlign = 4096

// directWriter appends to one segment with O_DIRECT.
type directWriter struct {
	f    *os.File
	buf  []byte // aligned scratch, reused
	tail []byte // the segment's bytes from its last block boundary to its end
}

// openDirect opens path for direct appends at its end, size, whose last
// partial block is the end of written (size-len(written) is where written
// starts in the file, and written must reach back to the block boundary). It
// returns nil, and no error, where the file system takes no O_DIRECT.
func openDirect(path string, size int64, written []byte) (*directWriter, error) {
	if oDirect == 0 {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|oDirect, 0)
	if noDirectIO(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keep := int(size % directAlign)
	if keep > len(written) {
		f.Close()
		return nil, errors.New("raftlog: direct writer: the segment's last block is not known")
	}
	d := &directWriter{f: f, tail: append(make([]byte, 0, directAlign), written[len(written)-keep:]...)}
	if err := d.write(nil, size); err != nil {
		f.Close()
		if noDirectIO(err) {
			return nil, nil
		}
		return nil, err
	}
	return d, nil
}

// write appends rec to the segment, which ends at off.
func (d *directWriter) write(rec []byte, off int64) error {
	if off%directAlign != int64(len(d.tail)) {
		return fmt.Errorf("raftlog: direct write at %d with %d bytes of its block known", off, len(d.tail))
	}
	n := len(d.tail) + len(rec)
	padded := (n + directAlign - 1) &^ (directAlign - 1)
	if cap(d.buf) < padded {
		d.buf = alignedBuf(max(padded, 2*cap(d.buf), 64<<10))
	}
	b := d.buf[:padded]
	copy(b, d.tail)
	copy(b[len(d.tail):], rec)
	clear(b[n:])
	if _, err := d.f.WriteAt(b, off-int64(len(d.tail))); err != nil {
		return err
	}
	d.tail = append(d.tail[:0], b[n-n%directAlign:n]...)
	return nil
}

func (d *directWriter) close() {
	if d != nil {
		d.f.Close()
	}
}

// alignedBuf returns n bytes starting at a multiple of directAlign. The Go
// heap does not move objects, so the alignment holds.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
}
