package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The kv DB keeps values of ValueThreshold bytes or more (by default,
// 1 MiB) in its value log, and the LSM tree points at them. Overwriting or
// deleting such a key leaves its old value in the log, so the engines
// collect the value log every valueGCInterval: Badger rewrites the live
// values of a log file that its compactions found at least
// valueGCDiscardRatio garbage into the newest log, and deletes the file. A
// rewritten value keeps its key's version, so a newer write of the key made
// meanwhile still wins.
//
// Badger deletes the old file as soon as the rewrite is written, before the
// new copies are durable; a power loss then could lose values that an
// earlier SyncKV had made durable, and whose raft entries are gone. Badger
// defers the deletion while an iterator is open, so collectValueLog holds
// one until it has synced the kv DB. Point reads, which hold no iterator,
// race the deletion: GetValueTxn looks a value up again when its file went
// between the lookup and the read.

const (
	valueGCInterval     = time.Minute
	valueGCDiscardRatio = 0.5
)

// collectValueLog rewrites value log files until none is worth it or stop
// is closed, syncs the rewrites, and then lets Badger delete the files.
func (e *Engines) collectValueLog(stop <-chan struct{}) {
	txn := e.KV.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{}) // defers the deletions
	rewrote := false
	defer func() {
		if rewrote {
			if err := e.SyncKV(); err != nil {
				// The rewritten values may not be durable: deleting their
				// old copies could lose them, and the kv DB's pages may
				// be lost already. As the raftstore does on a failed sync.
				panic(fmt.Sprintf("engine: sync after value log gc: %v", err))
			}
		}
		if e.valueGCSynced != nil {
			e.valueGCSynced()
		}
		it.Close() // Badger deletes the rewritten files now
	}()
	for {
		select {
		case <-stop:
			return
		default:
		}
		err := e.KV.RunValueLogGC(valueGCDiscardRatio)
		switch {
		case err == nil:
			rewrote = true
			continue // a file was rewritten; try the next
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing worth rewriting, or the DB is closing.
		default:
			e.logger.Warn("value log gc failed", "err", err)
		}
		return
	}
}
