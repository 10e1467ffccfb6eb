package engine

import (
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Badger appends every kv write to its memtable's log through a shared
// mapping and leaves the pages dirty: nothing writes them out until a sync.
// The store syncs the kv DB about once a second (SyncKV: before it deletes
// raft log entries, and so that apply states can be written), so each of
// those syncs wrote a second's worth of kv writes at once. With 16 busy
// regions that was ~4 MB per store, the three stores' bursts held the disk
// for ~100 ms each second, and the raft log's fdatasyncs, which every put
// waits for, queued behind them (docs/BENCHMARKS.md: puts' p99.9 28–48 ms,
// and a dip in throughput every second).
//
// So the engines start the write-out of the kv DB's logs every
// writebackInterval, with sync_file_range(SYNC_FILE_RANGE_WRITE): the pages
// go to disk in small pieces, in the background and without a flush of the
// disk's cache, and the next sync has little left to write. It changes when
// pages are written, not what is durable: durability still comes from
// SyncKV, so failures are ignored.

const writebackInterval = 100 * time.Millisecond

// writeOut starts writing out the dirty pages of every memtable log and
// value log in dir; it does not wait for the writes.
func writeOut(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !isBadgerLog(e.Name()) {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // flushed to a table and deleted meanwhile
		}
		startWriteOut(f)
		f.Close()
	}
}

// periodic runs a function every interval on a goroutine of its own until
// it is closed; the function gets the channel that closing closes, to stop
// early.
type periodic struct {
	stop, done chan struct{}
	once       sync.Once
}

func runEvery(interval time.Duration, f func(stop <-chan struct{})) *periodic {
	p := &periodic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				f(p.stop)
			}
		}
	}()
	return p
}

// close stops the goroutine and waits for it; it may be called again.
func (p *periodic) close() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}
