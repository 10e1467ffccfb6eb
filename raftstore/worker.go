package raftstore

import (
	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/router"
)

// raftRouter is the store's router: region mailboxes hold peers and peerMsgs;
// the store mailbox holds storeMsgs.
type raftRouter = router.Router[*peer, peerMsg, storeMsg]

// raftWorker is one goroutine of the fixed raft worker pool. Each round it
// takes a batch of ready mailboxes from the router and drives their peers
// through one shared raft-DB write (one fsync) and one shared kv commit.
type raftWorker struct {
	store *Store
	// Reused across rounds; owned by this worker's goroutine.
	batches []router.Batch[*peer, peerMsg]
	raftWB  engine.WriteBatch
	kv      *kvWriter
	ready   []*peer
	done    []appliedCallback
}

func newRaftWorker(s *Store) *raftWorker {
	return &raftWorker{store: s, kv: newKVWriter(s.engines.KV)}
}

func (w *raftWorker) run() {
	for {
		var ok bool
		w.batches, ok = w.store.router.Fetch(w.batches[:0], w.store.cfg.RaftMaxPeersPerRound)
		if !ok {
			return
		}
		w.round()
	}
}

// A round's raft batch is committed early once it grows past these.
const (
	raftBatchFlushBytes = 32 << 20
	raftBatchFlushOps   = 16 << 10
)

func (w *raftWorker) commitRaftBatch() {
	if err := w.raftWB.Commit(w.store.engines.Raft); err != nil {
		fatalf("raft batch of %d writes, %d bytes: %v", w.raftWB.Len(), w.raftWB.Size(), err)
	}
	w.raftWB.Reset()
}

// round handles one batch of mailboxes. See ready.go for the phases.
func (w *raftWorker) round() {
	for i := range w.batches {
		w.batches[i].FSM.handleMsgs(w.batches[i].Msgs)
	}

	// Phase 1: collect Readies and build one raft batch.
	w.ready = w.ready[:0]
	for i := range w.batches {
		if p := w.batches[i].FSM; p.collectReady(&w.raftWB) {
			w.ready = append(w.ready, p)
		}
		if w.raftWB.Size() > raftBatchFlushBytes || w.raftWB.Len() > raftBatchFlushOps {
			// Keep one transaction well inside Badger's limit; every peer's
			// Ready still lands atomically.
			w.commitRaftBatch()
		}
	}
	w.commitRaftBatch()

	// Phase 2: send and apply.
	w.done = w.done[:0]
	for _, p := range w.ready {
		w.done = p.afterPersist(w.kv, w.done)
	}
	w.kv.commit()
	w.store.trans.Flush()
	for _, p := range w.ready {
		w.store.logGC.schedule(p.compacted)
		p.compacted = p.compacted[:0]
	}

	// Phase 3: answer and advance.
	for _, d := range w.done {
		d.cb(d.res)
	}
	clear(w.done)
	for i := range w.batches {
		b := &w.batches[i]
		if b.FSM.finishReady() {
			w.store.router.Wake(b.RegionID)
		}
		w.store.router.Release(b)
	}
	clear(w.ready)
}
