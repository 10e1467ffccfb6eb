// Package raftlog is a store's raft log engine: the raft log entries and
// RaftLocalState of every region on the store, in one append-only log of
// segment files with an index in memory, in the manner of etcd's WAL and
// TiKV's raft-engine.
//
// Why not a Badger DB: a raft log is written once at its tail, read back
// rarely (the peers keep recent entries in memory) and deleted from its head.
// Badger made each entry a skiplist insert, a memtable-log write and later a
// flush and compactions, and each log-GC deletion a tombstone doing the same;
// with 16 regions Badger's write path was a quarter of a store's CPU
// (docs/BENCHMARKS.md). Here a raft round's writes are one write() of one
// record and one fdatasync; the write is direct (O_DIRECT, see direct.go)
// where the file system allows it.
//
// # Files
//
// The log is a sequence of segments named %016x.rlog by their id. Each starts
// with a 16-byte header (magic, id) and holds records:
//
//	length u32 | crc u32 | payload
//
// The CRC (Castagnoli) covers the segment id, the length and the payload, so
// a record copied from another segment does not verify. A payload is a
// sequence of operations, each a kind byte followed by uvarints:
//
//	append    region first count (term size entry-bytes){count}
//	state     region size RaftLocalState-bytes
//	deleteTo  region end           entries below end go
//	clean     region               all entries and the state go
//
// An append at index i replaces the region's entries from i on (a raft
// conflict); an append that does not touch the current entries starts the
// region's log afresh.
//
// # Segments, checkpoints and purging
//
// Once the active segment has grown Options.SegmentSize past its start, the
// log rotates: it cuts the segment to its records and syncs it, and starts
// the next (from a spare, see spare.go, under a temporary name renamed once
// synced) with a checkpoint record: every region's current state, and the
// entries of regions whose oldest entry sits two or more segments back,
// oldest first and up to half a segment of them (idle regions, which log GC
// does not compact, would otherwise pin old segments forever). Replaying the
// segments from any checkpoint onward therefore gives the same states and the
// same live entries as replaying them all, as long as no live entry sits in
// an earlier segment; purge removes exactly those earlier segments, oldest
// first, after syncing the active one so that every deletion it relies on is
// durable.
//
// # Recovery
//
// Open replays the segments in order. Ids grow by one, so a gap means a purge
// was cut short, and the segments before it are removed unread. A record that
// does not verify ends the newest segment (what follows was never written, or
// is a write torn by a crash, never acknowledged since a write is
// acknowledged only after its fdatasync), and the segment is cut there; in
// any older segment it is corruption and Open fails. Open then starts a new
// segment, so a segment is never appended to after a crash. A failed
// fdatasync is sticky: the log takes no more writes, since the kernel may
// have dropped the pages it could not write and report the next sync as a
// success.
//
// Entries must only be deleted (deleteTo) once the applied state that makes
// them unnecessary is durable; raftstore syncs the kv DB first.
package raftlog

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

const (
	magic      = "RKVRLOG1"
	fileHeader = 16 // magic, segment id
	recHeader  = 8  // length, crc
	fileExt    = ".rlog"
	tmpExt     = ".tmp"

	// DefaultSegmentSize is the size past which the active segment rotates.
	DefaultSegmentSize = 64 << 20
	// maxRecord bounds one record, the largest batch Write takes.
	maxRecord = 1 << 30
)

const (
	opAppend byte = iota + 1
	opState
	opDeleteTo
	opClean
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt reports a segment that does not decode.
var ErrCorrupt = errors.New("raftlog: corrupt log")

// Options tunes a Log. The zero value gives the defaults.
type Options struct {
	// SegmentSize is the size past which the active segment rotates.
	SegmentSize int64
	// Logger receives recovery and rotation notices; nil means slog.Default().
	Logger *slog.Logger
	// DisableDirectIO appends through the page cache, as on a file system
	// that refuses O_DIRECT (direct.go).
	DisableDirectIO bool
}

// loc is where one entry's encoding lies.
type loc struct {
	term uint64
	off  int64
	file uint64
	size uint32
}

// regionLog is the index of one region: its live entries [first,
// first+len(locs)) and its latest state.
type regionLog struct {
	first uint64
	locs  []loc
	state []byte // RaftLocalState, encoded; nil if none
}

func (r *regionLog) last() uint64 { return r.first + uint64(len(r.locs)) - 1 }

// size is the total size of r's live entries.
func (r *regionLog) size() int64 {
	var n int64
	for _, lc := range r.locs {
		n += int64(lc.size)
	}
	return n
}

type segment struct {
	id   uint64
	f    *os.File
	dw   *directWriter // appends, if the file system takes O_DIRECT (direct.go)
	size int64
	// rotateAt is the size past which the segment rotates: SegmentSize
	// beyond its checkpoint, so that a big checkpoint cannot make every
	// write rotate.
	rotateAt int64
}

// Log is the raft log engine. It is safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger

	lock *os.File // holds the directory's flock

	mu      sync.RWMutex // protects the fields below, and reads of files
	regions map[uint64]*regionLog
	files   map[uint64]*os.File // every live segment, by id
	active  segment
	err     error    // sticky: a failed write leaves the active segment unusable
	spares  []string // spare segment files (spare.go)
	locBuf  []loc    // applyRecord's scratch

	// Group commit: a writer takes a ticket once its record is written; one
	// fdatasync covers every ticket taken before it began.
	tickets atomic.Uint64
	syncMu  sync.Mutex // serializes syncs and purges
	synced  uint64     // protected by syncMu

	syncs, syncNanos atomic.Uint64

	fills      atomic.Uint64 // spares zero-filled, for tests
	fillReq    chan struct{} // wakes the spare filler
	stopc      chan struct{} // closed by Close
	fillerDone chan struct{}
}

// Open opens the log in dir, creating it if needed, and replays it.
func Open(dir string, opts Options) (*Log, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, opts: opts, log: opts.Logger.With("db", "raftlog"), lock: lock,
		regions: make(map[uint64]*regionLog), files: make(map[uint64]*os.File),
		fillReq: make(chan struct{}, 1), stopc: make(chan struct{}), fillerDone: make(chan struct{})}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	go l.runFiller()
	l.wakeFiller()
	return l, nil
}

// recover replays the segments and starts a new one.
func (l *Log) recover() error {
	ids, spares, err := l.listDir()
	if err != nil {
		return err
	}
	if err := l.loadSpares(spares); err != nil {
		return err
	}
	if len(l.spares) == 0 {
		if err := l.fillSpare(); err != nil {
			return err
		}
	}
	// Segment ids grow by one, and purge removes a prefix of them: a gap
	// means a purge stopped part way, and what precedes it was being
	// removed.
	for i := len(ids) - 1; i > 0; i-- {
		if ids[i] != ids[i-1]+1 {
			for _, id := range ids[:i] {
				if err := os.Remove(l.path(id)); err != nil {
					return fmt.Errorf("raftlog: %w", err)
				}
			}
			ids = ids[i:]
			break
		}
	}
	for i, id := range ids {
		if err := l.replay(id, i == len(ids)-1); err != nil {
			return err
		}
	}
	next := uint64(1)
	if len(ids) > 0 {
		next = ids[len(ids)-1] + 1
	}
	return l.startSegment(next, false)
}

// lockDir takes an exclusive flock on dir's LOCK file, so that two processes
// never write one log.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("raftlog: lock %s (is another store using it?): %w", dir, err)
	}
	return f, nil
}

func (l *Log) path(id uint64) string {
	return filepath.Join(l.dir, fmt.Sprintf("%016x%s", id, fileExt))
}

// listDir returns the segment ids in order and the paths of the spares,
// removing files that were being created when the store stopped.
func (l *Log) listDir() (ids []uint64, spares []string, _ error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("raftlog: %w", err)
	}
	for _, e := range ents {
		switch {
		case strings.HasSuffix(e.Name(), tmpExt):
			if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil {
				return nil, nil, fmt.Errorf("raftlog: %w", err)
			}
		case strings.HasSuffix(e.Name(), spareExt):
			spares = append(spares, filepath.Join(l.dir, e.Name()))
		case strings.HasSuffix(e.Name(), fileExt):
			id, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), fileExt), 16, 64)
			if err != nil {
				return nil, nil, fmt.Errorf("raftlog: unexpected file %s", e.Name())
			}
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, spares, nil
}

// replay reads segment id into the index. A torn record ends the newest
// segment, which is cut there.
func (l *Log) replay(id uint64, newest bool) error {
	path := l.path(id)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if len(data) < fileHeader || string(data[:8]) != magic || binary.LittleEndian.Uint64(data[8:16]) != id {
		return fmt.Errorf("%w: %s: bad segment header", ErrCorrupt, path)
	}
	off := int64(fileHeader)
	for off < int64(len(data)) {
		payload, ok := verify(id, data[off:])
		if !ok {
			if !newest {
				return fmt.Errorf("%w: %s: bad record at offset %d", ErrCorrupt, path, off)
			}
			// The rest is what was never written (zeros, or a recycled
			// spare's old records), or a write torn by a crash, which was
			// never acknowledged.
			level := slog.LevelInfo
			if rest := data[off:]; len(rest) >= recHeader && binary.LittleEndian.Uint64(rest) == 0 {
				level = slog.LevelDebug
			}
			l.log.Log(context.Background(), level, "raft log ends before its segment does", "segment", path, "offset", off, "cut_bytes", int64(len(data))-off)
			if err := cutSegment(path, off); err != nil {
				return err
			}
			break
		}
		if err := l.applyRecord(id, off+recHeader, payload); err != nil {
			return fmt.Errorf("%w: %s: record at offset %d: %v", ErrCorrupt, path, off, err)
		}
		off += recHeader + int64(len(payload))
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	l.files[id] = f
	return nil
}

func cutSegment(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	return f.Sync()
}

// verify returns the payload of the record at the start of b, if it is whole
// and its CRC matches.
func verify(id uint64, b []byte) ([]byte, bool) {
	if len(b) < recHeader {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(b[0:4])
	if n == 0 || int64(n) > int64(len(b)-recHeader) {
		return nil, false
	}
	if checksum(id, b[:4], b[recHeader:recHeader+n]) != binary.LittleEndian.Uint32(b[4:8]) {
		return nil, false
	}
	return b[recHeader : recHeader+n], true
}

func checksum(id uint64, length, payload []byte) uint32 {
	var idb [8]byte
	binary.LittleEndian.PutUint64(idb[:], id)
	c := crc32.Update(0, crcTable, idb[:])
	c = crc32.Update(c, crcTable, length)
	return crc32.Update(c, crcTable, payload)
}

// applyRecord updates the index with a record's operations; base is the
// payload's offset in segment file.
func (l *Log) applyRecord(file uint64, base int64, p []byte) error {
	d := decoder{b: p}
	locs := l.locBuf[:0]
	defer func() { l.locBuf = locs[:0] }()
	for !d.done() {
		kind := d.byte()
		region := d.uvarint()
		switch kind {
		case opAppend:
			first, count := d.uvarint(), d.uvarint()
			if d.err != nil || count > uint64(len(p)) {
				return errors.New("bad append")
			}
			locs = locs[:0]
			for range count {
				term, size := d.uvarint(), d.uvarint()
				off := d.pos
				d.skip(size)
				locs = append(locs, loc{term: term, off: base + int64(off), file: file, size: uint32(size)})
			}
			if d.err == nil {
				l.append(region, first, locs)
			}
		case opState:
			size := d.uvarint()
			off := d.pos
			d.skip(size)
			if d.err == nil {
				l.setState(region, p[off:off+int(size)])
			}
		case opDeleteTo:
			l.deleteTo(region, d.uvarint())
		case opClean:
			delete(l.regions, region)
		default:
			return fmt.Errorf("unknown operation %d", kind)
		}
		if d.err != nil {
			return d.err
		}
	}
	return nil
}

func (l *Log) regionOf(id uint64) *regionLog {
	r := l.regions[id]
	if r == nil {
		r = &regionLog{}
		l.regions[id] = r
	}
	return r
}

func (l *Log) append(region, first uint64, locs []loc) {
	if len(locs) == 0 {
		return
	}
	r := l.regionOf(region)
	if len(r.locs) == 0 || first < r.first || first > r.last()+1 {
		r.first, r.locs = first, r.locs[:0]
	} else {
		r.locs = r.locs[:first-r.first]
	}
	r.locs = append(r.locs, locs...)
}

func (l *Log) setState(region uint64, state []byte) {
	r := l.regionOf(region)
	r.state = append(r.state[:0], state...)
}

func (l *Log) deleteTo(region, end uint64) {
	r := l.regions[region]
	if r == nil || len(r.locs) == 0 || end <= r.first {
		return
	}
	n := min(end-r.first, uint64(len(r.locs)))
	// The dropped head is freed when an append next grows the slice.
	r.locs = r.locs[n:]
	r.first = end
	if len(r.locs) == 0 {
		r.first = 0
		if r.state == nil {
			delete(l.regions, region)
		}
	}
}

// Write appends b to the log as one record and applies it to the index. With
// sync, the record (and every earlier one) is durable when Write returns.
// After an error the log takes no more writes.
func (l *Log) Write(b *Batch, sync bool) error {
	if b.Empty() {
		if sync {
			return l.Sync()
		}
		return nil
	}
	l.mu.Lock()
	ticket, rotated, err := l.writeLocked(b)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if rotated {
		err := l.purge()
		l.wakeFiller() // after the purge, which may have recycled a spare
		if err != nil {
			return err
		}
	}
	if sync {
		return l.syncTo(ticket)
	}
	return nil
}

func (l *Log) writeLocked(b *Batch) (ticket uint64, rotated bool, err error) {
	if l.err != nil {
		return 0, false, l.err
	}
	seg := &l.active
	if err := b.seal(seg.id, "batch"); err != nil {
		return 0, false, err // not sticky: the log is intact
	}
	buf := b.buf
	if seg.dw != nil {
		err = seg.dw.write(buf, seg.size)
	} else {
		_, err = seg.f.WriteAt(buf, seg.size)
	}
	if err != nil {
		l.err = fmt.Errorf("raftlog: write %s: %w", seg.f.Name(), err)
		return 0, false, l.err
	}
	if err := l.applyRecord(seg.id, seg.size+recHeader, buf[recHeader:]); err != nil {
		// Only a bug in Batch gets here: the record is written, and a
		// replay would fail on it too.
		l.err = fmt.Errorf("raftlog: %w: the batch just written does not decode: %v", ErrCorrupt, err)
		return 0, false, l.err
	}
	seg.size += int64(len(buf))
	ticket = l.tickets.Add(1)
	if seg.size >= seg.rotateAt {
		if err := l.rotateLocked(); err != nil {
			l.err = err
			return 0, false, err
		}
		rotated = true
	}
	return ticket, rotated, nil
}

// Sync makes every write so far durable.
func (l *Log) Sync() error { return l.syncTo(l.tickets.Load()) }

func (l *Log) syncTo(ticket uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= ticket {
		return nil // a sync that began after our write has covered it
	}
	return l.syncLocked()
}

// syncLocked makes every write so far durable with an fdatasync of the
// active segment. The caller holds syncMu.
func (l *Log) syncLocked() error {
	// Every ticket up to upTo was taken after its write, into the active
	// segment as read below or an older one (which rotation synced).
	upTo := l.tickets.Load()
	l.mu.RLock()
	f, err := l.active.f, l.err
	l.mu.RUnlock()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := fdatasync(f); err != nil {
		return l.fail(err)
	}
	l.syncs.Add(1)
	l.syncNanos.Add(uint64(time.Since(start)))
	l.synced = upTo
	return nil
}

// SyncStats returns how many fdatasyncs the log's writes took and their
// total time.
func (l *Log) SyncStats() (syncs uint64, total time.Duration) {
	return l.syncs.Load(), time.Duration(l.syncNanos.Load())
}

// rotateLocked finishes the active segment and starts the next. The
// finished segment is cut to its records, so that only the newest segment
// can end in anything but a whole record.
func (l *Log) rotateLocked() error {
	old := l.active
	old.dw.close()
	l.active.dw = nil
	if err := old.f.Truncate(old.size); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if err := old.f.Sync(); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	return l.startSegment(old.id+1, true)
}

// startSegment creates segment id, whose first record is the checkpoint (see
// the package doc), and makes it the active segment. With rewrite, the
// checkpoint also carries the entries of regions that pin old segments,
// oldest first and up to half a segment of them.
func (l *Log) startSegment(id uint64, rewrite bool) error {
	var cp Batch
	cp.Reset()
	var pinning []uint64
	for region, r := range l.regions {
		if r.state != nil {
			cp.setState(region, r.state)
		}
		if rewrite && len(r.locs) > 0 && r.locs[0].file+2 <= id {
			pinning = append(pinning, region)
		}
	}
	// Oldest first, at most half a segment per checkpoint; the rest wait
	// for the next rotation.
	slices.SortFunc(pinning, func(a, b uint64) int {
		return cmp.Compare(l.regions[a].locs[0].file, l.regions[b].locs[0].file)
	})
	budget := l.opts.SegmentSize / 2
	for _, region := range pinning {
		r := l.regions[region]
		size := r.size()
		if size > budget {
			continue // log GC's size limit bounds it
		}
		budget -= size
		if err := l.rewrite(&cp, region, r); err != nil {
			return err
		}
	}
	if err := cp.seal(id, "checkpoint"); err != nil {
		return err
	}
	f, tmp, err := l.segmentFile(id)
	if err != nil {
		return err
	}
	buf := make([]byte, fileHeader, fileHeader+len(cp.buf))
	copy(buf, magic)
	binary.LittleEndian.PutUint64(buf[8:16], id)
	if !cp.Empty() {
		buf = append(buf, cp.buf...)
	}
	if _, err = f.WriteAt(buf, 0); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, l.path(id))
	}
	if err == nil {
		err = SyncDir(l.dir)
	}
	var dw *directWriter
	if err == nil && !l.opts.DisableDirectIO {
		dw, err = openDirect(l.path(id), int64(len(buf)), buf)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("raftlog: start segment: %w", err)
	}
	if !cp.Empty() {
		if err := l.applyRecord(id, fileHeader+recHeader, cp.buf[recHeader:]); err != nil {
			dw.close()
			f.Close()
			return fmt.Errorf("raftlog: %w: the carried-forward batch does not decode: %v", ErrCorrupt, err)
		}
	}
	l.files[id] = f
	l.active = segment{id: id, f: f, dw: dw, size: int64(len(buf)), rotateAt: int64(len(buf)) + l.opts.SegmentSize}
	return nil
}

// rewrite adds region r's live entries to b, read from their segments.
func (l *Log) rewrite(b *Batch, region uint64, r *regionLog) error {
	b.beginAppend(region, r.first, len(r.locs))
	for _, lc := range r.locs {
		dst := b.addEntry(lc.term, int(lc.size))
		if _, err := l.files[lc.file].ReadAt(dst, lc.off); err != nil {
			return fmt.Errorf("raftlog: rewrite region %d: %w", region, err)
		}
	}
	return nil
}

// purge deletes the segments that hold no live entry. See the package doc.
func (l *Log) purge() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.RLock()
	oldest := l.active.id
	for _, r := range l.regions {
		if len(r.locs) > 0 {
			oldest = min(oldest, r.locs[0].file)
		}
	}
	l.mu.RUnlock()
	// The index above may count on deletions not yet durable. (This also
	// covers the rotating writer's sync: its ticket is below the one
	// syncLocked reads.)
	if err := l.syncLocked(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Oldest first, so that what a crash leaves is a run of segments, or a
	// run with a gap whose head recover removes.
	var ids []uint64
	for id := range l.files {
		if id < oldest {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		f := l.files[id]
		var size int64
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
		}
		f.Close()
		delete(l.files, id)
		if err := l.retire(id, size); err != nil {
			return err
		}
	}
	if len(ids) > 0 {
		return SyncDir(l.dir)
	}
	return nil
}

// fail makes err sticky: after a failed fdatasync the kernel may have dropped
// the dirty pages and report success for the next, so no later write may be
// acknowledged.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
	return err
}

// State reads region's RaftLocalState into st. It reports false if the
// region has none.
func (l *Log) State(region uint64, st *rspb.RaftLocalState) (bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r := l.regions[region]
	if r == nil || r.state == nil {
		return false, nil
	}
	if err := st.Unmarshal(r.state); err != nil {
		return false, fmt.Errorf("raftlog: region %d state: %w", region, err)
	}
	return true, nil
}

// Bounds returns the first and last index of region's entries; ok is false if
// it has none.
func (l *Log) Bounds(region uint64) (first, last uint64, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r := l.regions[region]
	if r == nil || len(r.locs) == 0 {
		return 0, 0, false
	}
	return r.first, r.last(), true
}

// Term returns the term of region's entry i from the in-memory index,
// without reading the entry. It returns raft.ErrCompacted if i is below the
// first entry held, and raft.ErrUnavailable if it is past the last.
func (l *Log) Term(region, i uint64) (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r := l.regions[region]
	switch {
	case r == nil || len(r.locs) == 0 || i > r.last():
		return 0, raft.ErrUnavailable
	case i < r.first:
		return 0, raft.ErrCompacted
	}
	return r.locs[i-r.first].term, nil
}

// Entries returns region's entries in [lo, hi), at least one and no more than
// maxSize bytes beyond the first (raft's limitSize rule). It returns
// raft.ErrCompacted if lo is below the first entry held, and
// raft.ErrUnavailable if hi-1 is past the last.
func (l *Log) Entries(region, lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r := l.regions[region]
	switch {
	case lo >= hi:
		return nil, nil
	case r == nil || len(r.locs) == 0 || hi-1 > r.last():
		return nil, raft.ErrUnavailable
	case lo < r.first:
		return nil, raft.ErrCompacted
	}
	locs := r.locs[lo-r.first : hi-r.first]
	ents := make([]raftpb.Entry, 0, min(len(locs), 64))
	var size uint64
	var buf []byte
	for i, lc := range locs {
		size += uint64(lc.size)
		if i > 0 && size > maxSize {
			break
		}
		buf = slices.Grow(buf[:0], int(lc.size))[:lc.size]
		if _, err := l.files[lc.file].ReadAt(buf, lc.off); err != nil {
			return nil, fmt.Errorf("raftlog: read region %d entry %d: %w", region, lo+uint64(i), err)
		}
		var e raftpb.Entry
		if err := e.Unmarshal(buf); err != nil {
			return nil, fmt.Errorf("%w: region %d entry %d: %v", ErrCorrupt, region, lo+uint64(i), err)
		}
		// The index maps positions to entries; an entry that is not the
		// one asked for must never reach raft.
		if want := lo + uint64(i); e.Index != want || e.Term != lc.term {
			return nil, fmt.Errorf("%w: region %d: entry %d (term %d) found where entry %d (term %d) should be",
				ErrCorrupt, region, e.Index, e.Term, want, lc.term)
		}
		ents = append(ents, e)
	}
	return ents, nil
}

// Size returns the bytes of the log's segments.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, f := range l.files {
		if fi, err := f.Stat(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Close syncs and closes the log.
func (l *Log) Close() error {
	select {
	case <-l.stopc:
		return errors.New("raftlog: closed twice")
	default:
	}
	close(l.stopc)
	<-l.fillerDone
	err := l.Sync()
	l.syncMu.Lock() // no purge or sync under way
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeFiles()
	if l.err == nil {
		l.err = errors.New("raftlog: closed")
	}
	return err
}

// closeFiles closes the segments and releases the directory lock.
func (l *Log) closeFiles() {
	l.active.dw.close()
	l.active.dw = nil
	for id, f := range l.files {
		f.Close()
		delete(l.files, id)
	}
	if l.lock != nil {
		l.lock.Close()
		l.lock = nil
	}
}

// SyncDir makes dir's entries (files created, renamed or removed in it)
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
