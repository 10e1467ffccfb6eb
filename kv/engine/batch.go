package engine

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/gogo/protobuf/proto"
)

// WriteBatch collects writes to one DB and commits them atomically in a
// single Badger transaction. Keys and values are not copied: the caller must
// not modify them until Commit returns. A WriteBatch is not safe for
// concurrent use.
type WriteBatch struct {
	ops  []batchOp
	size int
}

type batchOp struct {
	key, val []byte
	del      bool
}

// Set writes key=val.
func (wb *WriteBatch) Set(key, val []byte) {
	wb.ops = append(wb.ops, batchOp{key: key, val: val})
	wb.size += len(key) + len(val)
}

// SetMsg writes the marshalled msg at key.
func (wb *WriteBatch) SetMsg(key []byte, msg proto.Message) {
	val, err := proto.Marshal(msg)
	if err != nil {
		// Our messages are generated code with no required fields: marshal
		// cannot fail unless memory is corrupt.
		panic(fmt.Sprintf("engine: marshal %T: %v", msg, err))
	}
	wb.Set(key, val)
}

// Delete removes key.
func (wb *WriteBatch) Delete(key []byte) {
	wb.ops = append(wb.ops, batchOp{key: key, del: true})
	wb.size += len(key)
}

// Len is the number of writes in the batch.
func (wb *WriteBatch) Len() int { return len(wb.ops) }

// Size is the approximate byte size of the batch.
func (wb *WriteBatch) Size() int { return wb.size }

// Reset empties the batch, keeping its memory.
func (wb *WriteBatch) Reset() {
	clear(wb.ops)
	wb.ops = wb.ops[:0]
	wb.size = 0
}

// Commit writes the batch to db in one transaction: after a crash either all
// of it or none of it is there, but it is not durable yet: use
// Engines.WriteRaft for raft state. An empty batch is a no-op.
func (wb *WriteBatch) Commit(db *badger.DB) error {
	if len(wb.ops) == 0 {
		return nil
	}
	txn := db.NewTransaction(true)
	defer txn.Discard()
	for _, op := range wb.ops {
		var err error
		if op.del {
			err = txn.Delete(op.key)
		} else {
			err = txn.Set(op.key, op.val)
		}
		if err != nil {
			return fmt.Errorf("engine: write batch of %d ops, %d bytes: %w", len(wb.ops), wb.size, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("engine: commit batch of %d ops, %d bytes: %w", len(wb.ops), wb.size, err)
	}
	return nil
}

// deleteRangeBatchKeys bounds one transaction of DeleteRange.
const deleteRangeBatchKeys = 16 << 10

// DeleteRange deletes every key of db in [lo, hi), in transactions of a
// bounded number of keys; it is not atomic as a whole (a crash may leave a
// prefix deleted), so callers use it only where redoing it is safe.
func DeleteRange(db *badger.DB, lo, hi []byte) error {
	for {
		var keys [][]byte
		err := db.View(func(txn *badger.Txn) error {
			it := NewRangeIter(txn, lo, hi, false, true)
			defer it.Close()
			for ; it.Valid() && len(keys) < deleteRangeBatchKeys; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		var wb WriteBatch
		for _, k := range keys {
			wb.Delete(k)
		}
		if err := wb.Commit(db); err != nil {
			return err
		}
	}
}
