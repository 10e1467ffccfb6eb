package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The raft DB is opened without Badger's SyncWrites, and WriteRaft makes each
// batch durable itself with one fdatasync of the memtable's write-ahead log.
//
// Why: with SyncWrites, Badger syncs the value log file on every commit as
// well as the memtable log, even when the commit put nothing in the value log,
// and on ext4 every fsync costs a device cache flush. Two flushes per raft
// round made the raft DB's commit about twice as slow as etcd's WAL fsync on
// the same disk (docs/BENCHMARKS.md). walSyncer syncs the value log only
// when the batch put a value there.
//
// Badger names memtable logs NNNNN.mem and value logs NNNNNN.vlog, with ids
// that grow by one at each rotation, and creates (and dir-syncs) the next
// file before writing into it. So the newest file holds the latest writes,
// and a file with the next id means the current one is complete: walSyncer
// syncs it a last time and moves on. A write into a rotated-out memtable is
// therefore never missed.
//
// Syncs are group commits: several raft workers commit to the raft DB at
// once, and one fdatasync covers every commit that had returned before it
// began. A caller takes a ticket once its commit has returned; the syncer
// reads the last ticket before it syncs, and a caller whose ticket is
// already covered returns without syncing again.
type walSyncer struct {
	tickets atomic.Uint64 // the last ticket handed out

	mu   sync.Mutex // serializes syncs; protects the rest
	mem  walFile
	vlog walFile
	// memDone and vlogDone are the last tickets whose writes are durable in
	// the memtable logs and the value logs.
	memDone, vlogDone uint64

	syncs, nanos atomic.Uint64 // fdatasync rounds and their time
}

// walFile follows the newest file of one kind in dir.
type walFile struct {
	dir, ext string
	width    int // digits of the id in the name
	id       int
	f        *os.File
}

func newWALSyncer(dir string) *walSyncer {
	return &walSyncer{
		mem:  walFile{dir: dir, ext: ".mem", width: 5},
		vlog: walFile{dir: dir, ext: ".vlog", width: 6},
	}
}

// sync makes every write so far to the memtable logs (and, with vlog, to the
// value logs) durable.
func (s *walSyncer) sync(vlog bool) error {
	ticket := s.tickets.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memDone >= ticket && (!vlog || s.vlogDone >= ticket) {
		return nil // a sync that began after our commit has covered it
	}
	upTo := s.tickets.Load()
	start := time.Now()
	defer func() {
		s.syncs.Add(1)
		s.nanos.Add(uint64(time.Since(start)))
	}()
	if err := s.mem.sync(); err != nil {
		return err
	}
	s.memDone = upTo
	if vlog {
		if err := s.vlog.sync(); err != nil {
			return err
		}
		s.vlogDone = upTo
	}
	return nil
}

func (s *walSyncer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.close()
	s.vlog.close()
}

func (w *walFile) path(id int) string {
	return filepath.Join(w.dir, fmt.Sprintf("%0*d%s", w.width, id, w.ext))
}

// sync fdatasyncs the newest file, and every file it passes on the way to it.
func (w *walFile) sync() error {
	if w.f == nil {
		if err := w.openNewest(); err != nil {
			return err
		}
		if w.f == nil {
			return nil // no file of this kind yet: nothing was written
		}
	}
	for {
		_, err := os.Stat(w.path(w.id + 1))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		// Rotated: finish the old file, then follow the new one.
		if err := fdatasync(w.f); err != nil {
			return err
		}
		w.close()
		f, err := os.Open(w.path(w.id + 1))
		if errors.Is(err, os.ErrNotExist) {
			// Rotated and retired again meanwhile (flushed to a table,
			// which Badger syncs itself): start from the newest.
			if err := w.openNewest(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		w.id, w.f = w.id+1, f
	}
	return fdatasync(w.f)
}

// openNewest opens the file of this kind with the highest id, if any.
func (w *walFile) openNewest() error {
	w.close()
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	best := -1
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), w.ext)
		if !ok {
			continue
		}
		if id, err := strconv.Atoi(name); err == nil && id > best {
			best = id
		}
	}
	if best < 0 {
		return nil
	}
	f, err := os.Open(w.path(best))
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	w.id, w.f = best, f
	return nil
}

func (w *walFile) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// fdatasync flushes f's data (Badger's logs are preallocated and mmapped,
// so no metadata needs to follow). Writes through a shared mapping are
// page-cache writes, which fdatasync covers.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("engine: fdatasync %s: %w", f.Name(), err)
		}
		return nil
	}
}
