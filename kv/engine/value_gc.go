package engine

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The kv DB keeps values of ValueThreshold bytes or more in its value log,
// and the LSM tree points at them. Overwriting or deleting such a key leaves
// its old value in the log, so the engines collect the value log every
// valueGCInterval: Badger rewrites the live values of a log file that its
// compactions found at least valueGCDiscardRatio garbage into the newest
// log, and deletes the file. A rewritten value keeps its key's version, so
// a newer write of the key made meanwhile still wins. With a ratio of 0.5
// the value log holds at most about twice the live values, and each value is
// rewritten about once over its life (Badger's RunValueLogGC).

const (
	valueGCInterval     = time.Minute
	valueGCDiscardRatio = 0.5
)

// collectValueLog rewrites value log files until none is worth it or the
// engines close.
func (e *Engines) collectValueLog() {
	for {
		select {
		case <-e.closing:
			return
		default:
		}
		err := e.KV.RunValueLogGC(valueGCDiscardRatio)
		switch {
		case err == nil:
			continue // a file was rewritten; try the next
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing worth rewriting, or the DB is closing.
		default:
			e.logger.Warn("value log gc failed", "err", err)
		}
		return
	}
}
