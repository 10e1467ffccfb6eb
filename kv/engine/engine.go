package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/gogo/protobuf/proto"
)

// ErrNotFound is returned by GetMsg when the key does not exist.
var ErrNotFound = errors.New("engine: key not found")

// Options sizes the two DBs. The zero value gives the production defaults;
// tests and the harness use SmallOptions.
type Options struct {
	// MemTableSize of each DB. It also bounds the largest atomic batch: Badger
	// refuses a transaction over ~15% of it.
	MemTableSize int64
	// BlockCacheSize of the kv DB (the raft DB is read mostly from memory).
	BlockCacheSize int64
	// ValueLogFileSize of each DB.
	ValueLogFileSize int64
	// Logger receives Badger's warnings and errors; nil means slog.Default().
	Logger *slog.Logger
}

// SmallOptions suits tests and in-process clusters of several stores.
func SmallOptions() Options {
	return Options{MemTableSize: 32 << 20, BlockCacheSize: 16 << 20, ValueLogFileSize: 64 << 20}
}

func (o Options) withDefaults() Options {
	if o.MemTableSize == 0 {
		o.MemTableSize = 128 << 20
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = 256 << 20
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = 256 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// raftValueThreshold: raft log entries (and states) larger than this are kept
// in the raft DB's value log rather than its LSM tree.
const raftValueThreshold = 4 << 10

// Engines are a store's raft DB and kv DB.
type Engines struct {
	Raft *badger.DB
	KV   *badger.DB
	Dir  string

	raftSync *walSyncer
	advisor  *advisor
}

// Open opens (creating if needed) the raft and kv DBs under dir.
func Open(dir string, opts Options) (*Engines, error) {
	opts = opts.withDefaults()
	raftPath, kvPath := filepath.Join(dir, "raft"), filepath.Join(dir, "kv")
	for _, p := range []string{raftPath, kvPath} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	raftDB, err := badger.Open(badgerOptions(raftPath, opts, true))
	if err != nil {
		return nil, fmt.Errorf("engine: open raft db %s: %w", raftPath, err)
	}
	kvDB, err := badger.Open(badgerOptions(kvPath, opts, false))
	if err != nil {
		raftDB.Close()
		return nil, fmt.Errorf("engine: open kv db %s: %w", kvPath, err)
	}
	return &Engines{Raft: raftDB, KV: kvDB, Dir: dir, raftSync: newWALSyncer(raftPath),
		advisor: startAdvisor(raftPath, kvPath)}, nil
}

func badgerOptions(path string, opts Options, raft bool) badger.Options {
	o := badger.DefaultOptions(path).
		WithLogger(badgerLogger{opts.Logger.With("db", filepath.Base(path))}).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(opts.MemTableSize).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithNumCompactors(2).
		WithNumGoroutines(2)
	if raft {
		// The raft log must be durable before a peer acknowledges it:
		// WriteRaft syncs each batch itself (walsync.go says why not
		// SyncWrites). Entries past raftValueThreshold live in the value
		// log, so that a round of large entries costs Badger's transaction
		// size limit a pointer each and one round's raft batch always fits
		// in one atomic transaction.
		o = o.WithValueThreshold(raftValueThreshold).
			WithBlockCacheSize(opts.BlockCacheSize / 8).
			WithCompression(0)
	} else {
		o = o.WithBlockCacheSize(opts.BlockCacheSize)
	}
	return o
}

// Close closes both DBs.
func (e *Engines) Close() error {
	e.advisor.close()
	e.raftSync.close()
	return errors.Join(e.Raft.Close(), e.KV.Close())
}

// WriteRaft commits wb to the raft DB atomically and makes it durable (with
// every earlier write to the raft DB) before it returns. Writes to the raft
// DB by any other means are not durable until the next WriteRaft or SyncRaft.
func (e *Engines) WriteRaft(wb *WriteBatch) error {
	if wb.Len() == 0 {
		return nil
	}
	if err := wb.Commit(e.Raft); err != nil {
		return err
	}
	return e.raftSync.sync(wb.maxVal >= raftValueThreshold/2)
}

// RaftSyncStats returns how many times WriteRaft and SyncRaft synced the
// raft DB's logs, and the time they spent in fdatasync.
func (e *Engines) RaftSyncStats() (syncs uint64, total time.Duration) {
	return e.raftSync.syncs.Load(), time.Duration(e.raftSync.nanos.Load())
}

// SyncRaft makes every write to the raft DB so far durable, value log
// included.
func (e *Engines) SyncRaft() error {
	return e.raftSync.sync(true)
}

// RaftValueLogGC reclaims space in the raft DB's value log (large entries
// that log GC deleted). Badger's value-log GC rewrites the live entries of a
// file and then deletes the file; without SyncWrites the rewritten entries
// would not be durable yet. An open iterator makes Badger defer the
// deletion until it closes, so the rewrite is synced first.
func (e *Engines) RaftValueLogGC(discardRatio float64) error {
	txn := e.Raft.NewTransaction(false)
	it := txn.NewIterator(badger.IteratorOptions{})
	rewrote := false
	for e.Raft.RunValueLogGC(discardRatio) == nil {
		rewrote = true
	}
	var err error
	if rewrote {
		err = e.SyncRaft()
	}
	it.Close()
	txn.Discard()
	return err
}

// SyncKV makes every write to the kv DB so far durable, even against power
// loss. Badger's DB.Sync syncs only the active memtable's write-ahead log, so
// a write that went into a memtable which has since been rotated out (and is
// not yet flushed to a table) would be missed; SyncKV therefore also fsyncs
// every memtable log file (Badger names them NNNNN.mem) in the kv directory.
func (e *Engines) SyncKV() error {
	if err := e.KV.Sync(); err != nil {
		return fmt.Errorf("engine: sync kv db: %w", err)
	}
	dir := e.KV.Opts().Dir
	mems, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil {
		return err
	}
	for _, m := range mems {
		f, err := os.Open(m)
		if errors.Is(err, os.ErrNotExist) {
			continue // flushed to a table and deleted meanwhile: durable
		}
		if err != nil {
			return fmt.Errorf("engine: sync %s: %w", m, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("engine: sync %s: %w", m, err)
		}
	}
	return nil
}

// GetMsg reads key from db and unmarshals it into msg. It returns ErrNotFound
// if the key is absent.
func GetMsg(db *badger.DB, key []byte, msg proto.Message) error {
	return db.View(func(txn *badger.Txn) error { return GetMsgTxn(txn, key, msg) })
}

// GetMsgTxn is GetMsg inside an open transaction.
func GetMsgTxn(txn *badger.Txn, key []byte, msg proto.Message) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error { return proto.Unmarshal(v, msg) })
}

// GetValueTxn returns a copy of the value at key, or ErrNotFound.
func GetValueTxn(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// badgerLogger forwards Badger's log lines to slog; Badger's info and debug
// chatter is dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}
