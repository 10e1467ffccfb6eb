package raftlog

import (
	"fmt"
	"os"
	"strings"
)

// Spare segments. An fdatasync after an append that grows a file, or that
// writes into blocks the file system has only reserved (fallocate), must also
// commit the file's metadata through the journal; on ext4 that made a sync
// about 1.5x as long with three stores syncing at once. So a segment starts
// life as a spare: a file whose blocks are all written, either zero-filled
// or a purged segment's file recycled (its old records carry the old
// segment's id in their CRC, so they never verify in the new one). Appends
// into a spare overwrite blocks in place, and a sync writes only data.
//
// The log keeps up to maxSpares spares (*.spare in its dir, kept across
// restarts); a background goroutine zero-fills a new one whenever none is
// left once a rotation's purge is done, writing it out chunk by chunk so as
// not to hold up the syncs. Asked before the purge, it would mostly fill a
// spare that the purge was about to recycle: 64 MiB written for nothing,
// about a fifth of a second of a store's CPU. Open fills the first
// synchronously when the dir has none.

const (
	spareExt  = ".spare"
	maxSpares = 2
	fillChunk = 1 << 20
)

// loadSpares adopts the spares (paths) left in the dir by an earlier run.
func (l *Log) loadSpares(names []string) error {
	for _, name := range names {
		fi, err := os.Stat(name)
		if err == nil && fi.Size() >= l.opts.SegmentSize && len(l.spares) < maxSpares {
			l.spares = append(l.spares, name)
			continue
		}
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("raftlog: %w", err)
		}
	}
	return nil
}

// fillSpare zero-fills a new spare of SegmentSize and adds it to the pool.
// It gives up early, without error, once the log is closing.
func (l *Log) fillSpare() error {
	f, err := os.CreateTemp(l.dir, "*"+tmpExt)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	zeros := make([]byte, fillChunk)
	for n := int64(0); n < l.opts.SegmentSize; n += fillChunk {
		select {
		case <-l.stopc:
			return nil
		default:
		}
		chunk := zeros[:min(fillChunk, l.opts.SegmentSize-n)]
		if _, err := f.Write(chunk); err != nil {
			return fmt.Errorf("raftlog: fill spare: %w", err)
		}
		// Write each chunk out before the next, so that the disk never has
		// more than a chunk of the fill queued ahead of the stores' syncs.
		// With one sync of the whole file at the end, a synced 3 KB write
		// made during the fill took up to 85-96 ms on the bench machine's
		// disk; chunk by chunk, at most 5-7 ms (and the fill 20% longer).
		if err := writeOutRange(f, n, int64(len(chunk))); err != nil {
			return fmt.Errorf("raftlog: fill spare: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("raftlog: fill spare: %w", err)
	}
	f.Close()
	f = nil
	name := strings.TrimSuffix(tmp, tmpExt) + spareExt
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("raftlog: %w", err)
	}
	l.mu.Lock()
	l.spares = append(l.spares, name)
	l.mu.Unlock()
	l.fills.Add(1)
	return nil
}

// runFiller keeps a spare ready.
func (l *Log) runFiller() {
	defer close(l.fillerDone)
	for {
		select {
		case <-l.stopc:
			return
		case <-l.fillReq:
		}
		l.mu.RLock()
		n := len(l.spares)
		l.mu.RUnlock()
		if n > 0 {
			continue
		}
		if err := l.fillSpare(); err != nil {
			// Only speed suffers: segments are then created empty.
			l.log.Warn("could not prepare a spare raft log segment", "err", err)
		}
	}
}

func (l *Log) wakeFiller() {
	select {
	case l.fillReq <- struct{}{}:
	default:
	}
}

// segmentFile returns the file for new segment id, under a temporary name:
// a spare if there is one, else an empty file. The caller holds mu.
func (l *Log) segmentFile(id uint64) (*os.File, string, error) {
	tmp := l.path(id) + tmpExt
	if n := len(l.spares); n > 0 {
		spare := l.spares[n-1]
		l.spares = l.spares[:n-1]
		if err := os.Rename(spare, tmp); err == nil {
			if f, err := os.OpenFile(tmp, os.O_RDWR, 0); err == nil {
				return f, tmp, nil
			}
		}
		l.log.Warn("could not use a spare raft log segment", "file", spare)
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("raftlog: %w", err)
	}
	return f, tmp, nil
}

// retire removes purged segment id, keeping its file as a spare if the pool
// has room and it is big enough. The caller holds mu.
func (l *Log) retire(id uint64, size int64) error {
	path := l.path(id)
	if size >= l.opts.SegmentSize && len(l.spares) < maxSpares {
		spare := strings.TrimSuffix(path, fileExt) + spareExt
		if err := os.Rename(path, spare); err == nil {
			l.spares = append(l.spares, spare)
			return nil
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("raftlog: purge: %w", err)
	}
	return nil
}
