package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/gogo/protobuf/proto"

	"github.com/regionkv/regionkv/kv/raftlog"
)

// ErrNotFound is returned by GetMsg when the key does not exist.
var ErrNotFound = errors.New("engine: key not found")

// Options sizes the engines. The zero value gives the production defaults;
// tests and the harness use SmallOptions.
type Options struct {
	// MemTableSize of the kv DB. It also bounds the largest atomic batch:
	// Badger refuses a transaction over ~15% of it.
	MemTableSize int64
	// BlockCacheSize of the kv DB.
	BlockCacheSize int64
	// Compression of the kv DB's table blocks: "none" (or ""), "snappy" or
	// "zstd". See compressions.
	Compression string
	// ValueLogFileSize of the kv DB.
	ValueLogFileSize int64
	// ValueThreshold is the size from which the kv DB keeps a value in its
	// value log, with only the key and a pointer in the LSM tree (Badger's
	// key-value separation, after WiscKey); 0 means DefaultValueThreshold,
	// or 15% of MemTableSize if that is less. It must not exceed either.
	// Tests only: the raftstore refuses a kv DB whose threshold could put
	// region states in the value log (DefaultValueThreshold).
	ValueThreshold int64
	// RaftSegmentSize is the size of the raft log's segment files
	// (raftlog.Options.SegmentSize).
	RaftSegmentSize int64
	// Logger receives Badger's warnings and errors; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultValueThreshold is the kv DB's ValueThreshold unless Options sets
// one: Badger's own default and largest, so that only values over 1 MiB go
// to the value log. A low threshold (tried at 128 bytes: 16-region puts
// +12%, docs/BENCHMARKS.md) breaks the kv DB's crash recovery against power
// loss: a split's RegionLocalState would go to the value log, and the
// memtable's log could keep the split's apply state while the value log
// lost the region state (docs/ARCHITECTURE.md, Decisions).
const DefaultValueThreshold = MaxValueThreshold

// MaxValueThreshold is the largest ValueThreshold Badger accepts.
const MaxValueThreshold = 1 << 20

// SmallOptions suits tests and in-process clusters of several stores. Small
// raft log segments make the harness rotate and purge them often.
func SmallOptions() Options {
	return Options{MemTableSize: 32 << 20, BlockCacheSize: 16 << 20, ValueLogFileSize: 64 << 20, RaftSegmentSize: 4 << 20}
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
	if o.ValueThreshold == 0 {
		o.ValueThreshold = min(DefaultValueThreshold, o.MemTableSize*15/100)
	}
	if o.RaftSegmentSize == 0 {
		o.RaftSegmentSize = raftlog.DefaultSegmentSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Engines are a store's raft log and kv DB.
type Engines struct {
	Raft *raftlog.Log
	KV   *badger.DB
	Dir  string

	advisor   *advisor
	writeback *periodic // writeOut of the kv DB's logs (writeback.go)
	valueGC   *periodic // collectValueLog (value_gc.go)
	// valueGCSynced, if set (tests), runs when collectValueLog has synced
	// its rewrites and Badger has not yet deleted the files.
	valueGCSynced func()
	logger        *slog.Logger
}

// Open opens (creating if needed) the raft log and the kv DB under dir. A
// raft DB left by an earlier version (a Badger DB in raft/) is imported into
// the raft log and then removed.
func Open(dir string, opts Options) (*Engines, error) {
	opts = opts.withDefaults()
	if opts.ValueThreshold < 0 { // Badger refuses one too large itself
		return nil, fmt.Errorf("engine: value threshold %d is negative", opts.ValueThreshold)
	}
	if err := CheckCompression(opts.Compression); err != nil {
		return nil, err
	}
	raftPath, kvPath := filepath.Join(dir, "raftlog"), filepath.Join(dir, "kv")
	if err := os.MkdirAll(kvPath, 0o755); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	raftLog, err := raftlog.Open(raftPath, raftlog.Options{SegmentSize: opts.RaftSegmentSize, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("engine: open raft log %s: %w", raftPath, err)
	}
	if err := importLegacyRaftDB(filepath.Join(dir, "raft"), raftLog, opts); err != nil {
		raftLog.Close()
		return nil, err
	}
	kvDB, err := badger.Open(badgerOptions(kvPath, opts))
	if err != nil {
		raftLog.Close()
		return nil, fmt.Errorf("engine: open kv db %s: %w", kvPath, err)
	}
	e := &Engines{Raft: raftLog, KV: kvDB, Dir: dir, advisor: startAdvisor(kvPath), logger: opts.Logger}
	e.writeback = runEvery(writebackInterval, func(<-chan struct{}) { writeOut(kvPath) })
	e.valueGC = runEvery(valueGCInterval, e.collectValueLog)
	return e, nil
}

func badgerOptions(path string, opts Options) badger.Options {
	return badger.DefaultOptions(path).
		WithLogger(badgerLogger{opts.Logger.With("db", filepath.Base(path))}).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(opts.MemTableSize).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithValueThreshold(opts.ValueThreshold).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithCompression(compressions[opts.Compression]) // checked by Open
}

// compressions maps Options.Compression to Badger's compression of table
// blocks. The default is none, not Badger's Snappy: a table is compressed
// block by block when a memtable is flushed and again at every compaction,
// and on the stores' few CPUs that was a sixth of their CPU while a 128 MiB
// memtable was being flushed (docs/BENCHMARKS.md), CPU the raft rounds need.
// TiKV leaves its upper levels uncompressed for that reason; Badger has one
// setting for all levels. Each table records how it was compressed, so the
// setting can change between restarts.
var compressions = map[string]options.CompressionType{
	"": options.None, "none": options.None, "snappy": options.Snappy, "zstd": options.ZSTD,
}

// CheckCompression reports whether Options takes name as its Compression.
func CheckCompression(name string) error {
	if _, ok := compressions[name]; !ok {
		return fmt.Errorf("engine: unknown compression %q (want none, snappy or zstd)", name)
	}
	return nil
}

// Close closes the raft log and the kv DB.
func (e *Engines) Close() error {
	e.valueGC.close()
	e.advisor.close()
	e.writeback.close()
	return errors.Join(e.Raft.Close(), e.KV.Close())
}

// WriteRaft writes b to the raft log and makes it durable (with every earlier
// write to the raft log) before it returns.
func (e *Engines) WriteRaft(b *raftlog.Batch) error {
	return e.Raft.Write(b, true)
}

// WaitCommitted returns once every commit handed to db before the call,
// with Txn.Commit or Txn.CommitWith, is written to its memtable and log.
// It is the barrier Badger puts in every new transaction: a transaction's
// read timestamp is the last commit timestamp handed out, and Badger waits
// until every commit up to it is written before the transaction starts
// (its txnMark watermark), so that a read sees every commit made before
// it began. A commit handed over with CommitWith is therefore visible to
// every transaction begun after CommitWith returns; only what reads the
// files rather than a transaction, a sync, has to wait for it here.
func WaitCommitted(db *badger.DB) { db.NewTransaction(false).Discard() }

// SyncKV makes every write to the kv DB so far durable, even against power
// loss, including the commits handed to Badger without waiting for them
// (Txn.CommitWith; see WaitCommitted). Badger's DB.Sync syncs only the
// active memtable's write-ahead log and the newest value log (Badger syncs
// a value log when it rotates it out, truncating it), so a write that went
// into a memtable which has since been rotated out (and is not yet flushed
// to a table) would be missed; SyncKV therefore also fsyncs every memtable
// log file (Badger names them NNNNN.mem) in the kv directory. Last it
// fsyncs the directory: Badger does not when it creates a memtable or value
// log, so a power loss could take a log's directory entry, and the log with
// it.
func (e *Engines) SyncKV() error {
	WaitCommitted(e.KV)
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
	if err := raftlog.SyncDir(dir); err != nil {
		return fmt.Errorf("engine: sync %s: %w", dir, err)
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
//
// Badger reads a value kept in the value log through the pointer its lookup
// found, and if that file is gone it logs the failure and returns an empty
// value without an error. The value-log GC deletes a file once it has
// rewritten its live values elsewhere, and only iterators hold the deletion
// off, so a point read can lose that race (value_gc.go). A value-log
// pointer that yields nothing is therefore looked up again, which finds the
// rewritten copy, and after valueReadAttempts it is an error, never an
// empty value.
func GetValueTxn(txn *badger.Txn, key []byte) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		if afterValueLookup != nil {
			afterValueLookup()
		}
		v, err := item.ValueCopy(nil)
		// An inline value's size is its length; a value-log pointer's is
		// its value's, which is never empty (ValueThreshold).
		if err != nil || len(v) > 0 || item.ValueSize() <= 0 {
			return v, err
		}
		if attempt == valueReadAttempts {
			return nil, fmt.Errorf("engine: value of %q in the value log unreadable after %d lookups (see the log)", key, attempt)
		}
	}
}

// valueReadAttempts bounds GetValueTxn's lookups of one value.
const valueReadAttempts = 3

// afterValueLookup, if set (tests), runs in GetValueTxn between a key's
// lookup and the read of its value.
var afterValueLookup func()

// badgerLogger forwards Badger's log lines to slog; Badger's info and debug
// chatter is dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}
