package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/raftlog"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// importBatchBytes bounds one write of the import.
const importBatchBytes = 16 << 20

// importLegacyRaftDB moves the raft log and states of a raft DB written by an
// earlier version (a Badger DB in dir, keyed by RaftLogKey and RaftStateKey)
// into l, syncs l, and removes dir. It is idempotent: an import cut short by
// a crash is redone whole on the next Open, and an append or a state written
// twice is the same log. Once imported, dir is renamed before it is removed,
// so that a removal cut short is finished, not taken for a DB to import.
func importLegacyRaftDB(dir string, l *raftlog.Log, opts Options) error {
	done := dir + ".imported"
	if err := os.RemoveAll(done); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := badger.Open(badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger.With("db", "raft")}).
		WithMemTableSize(opts.MemTableSize))
	if err != nil {
		return fmt.Errorf("engine: open legacy raft db %s: %w", dir, err)
	}
	opts.Logger.Info("importing the raft DB of an earlier version into the raft log", "dir", dir)
	var b raftlog.Batch
	var ents []raftpb.Entry
	var entsRegion uint64
	flushEnts := func() {
		if len(ents) > 0 {
			b.Append(entsRegion, ents)
			ents = ents[:0]
		}
	}
	err = db.View(func(txn *badger.Txn) error {
		prefix := []byte{localPrefix, regionRaftPrefix}
		it := NewRangeIter(txn, prefix, []byte{localPrefix, regionRaftPrefix + 1}, false, false)
		defer it.Close()
		for ; it.Valid(); it.Next() {
			key := it.Item().Key()
			region := regionIDOf(key)
			if idx, err := RaftLogIndex(key); err == nil {
				var e raftpb.Entry
				if err := it.Item().Value(e.Unmarshal); err != nil {
					return err
				}
				if e.Index != idx {
					return fmt.Errorf("entry at key index %d has index %d", idx, e.Index)
				}
				// A gap (left by log GC's deletions) starts a new run;
				// the raft log keeps the last contiguous one.
				if len(ents) > 0 && (region != entsRegion || idx != ents[len(ents)-1].Index+1) {
					flushEnts()
				}
				entsRegion = region
				ents = append(ents, e)
			} else if len(key) == 11 && key[10] == raftStateSuffix {
				flushEnts()
				var st rspb.RaftLocalState
				if err := it.Item().Value(st.Unmarshal); err != nil {
					return err
				}
				b.SetState(region, &st)
			}
			if b.Size() > importBatchBytes {
				if err := l.Write(&b, false); err != nil {
					return err
				}
				b.Reset()
			}
		}
		flushEnts()
		return l.Write(&b, true)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("engine: import legacy raft db %s: %w", dir, err)
	}
	if err := os.Rename(dir, done); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if err := raftlog.SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if err := os.RemoveAll(done); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

func regionIDOf(key []byte) uint64 { return binary.BigEndian.Uint64(key[2:10]) }
