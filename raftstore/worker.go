package raftstore

import (
	"time"

	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/router"
)

// raftRouter is the store's router: region mailboxes hold peers and peerMsgs;
// the store mailbox holds storeMsgs.
type raftRouter = router.Router[*peer, peerMsg, storeMsg]

// raftWorker is one goroutine of the fixed raft worker pool. Each round it
// takes a batch of ready mailboxes from the router and drives their peers
// through one shared raft log write (one fsync) and one shared kv commit.
type raftWorker struct {
	store *Store
	// Reused across rounds; owned by this worker's goroutine.
	batches []router.Batch[*peer, peerMsg]
	raftWB  raftlog.Batch
	kv      *kvWriter
	ready   []*peer
	done    []appliedCallback
	// writeReq asks the writer goroutine to commit raftWB, which it owns
	// until it answers on writeDone.
	writeReq, writeDone chan struct{}
}

func newRaftWorker(s *Store) *raftWorker {
	return &raftWorker{store: s, kv: newKVWriter(s.engines.KV, &s.stats),
		writeReq: make(chan struct{}), writeDone: make(chan struct{})}
}

func (w *raftWorker) run() {
	go w.runWriter()
	defer close(w.writeReq)
	for {
		var ok bool
		w.batches, ok = w.store.router.Fetch(w.batches[:0], w.store.cfg.RaftMaxPeersPerRound)
		if !ok {
			return
		}
		w.round()
	}
}

func (w *raftWorker) commitRaftBatch() {
	if w.raftWB.Empty() {
		return
	}
	start := time.Now()
	if err := w.store.engines.WriteRaft(&w.raftWB); err != nil {
		fatalf("raft batch of %d writes, %d bytes: %v", w.raftWB.Len(), w.raftWB.Size(), err)
	}
	st := &w.store.stats
	st.raftSyncs.Add(1)
	st.raftSyncNanos.Add(uint64(time.Since(start)))
	w.raftWB.Reset()
}

func (w *raftWorker) anyEarlyApply() bool {
	for _, p := range w.ready {
		if p.earlyApplyCount() > 0 {
			return true
		}
	}
	return false
}

// answer fires the callbacks of the applied entries committed so far.
func (w *raftWorker) answer() {
	for _, d := range w.done {
		d.cb(d.res)
	}
	clear(w.done)
	w.done = w.done[:0]
}

// runWriter commits the round's raft batch when asked (see round).
func (w *raftWorker) runWriter() {
	for range w.writeReq {
		w.commitRaftBatch()
		w.writeDone <- struct{}{}
	}
}

// round handles one batch of mailboxes. See ready.go for the phases.
func (w *raftWorker) round() {
	for i := range w.batches {
		w.batches[i].FSM.handleMsgs(w.batches[i].Msgs)
	}

	// Phase 1: collect Readies and build one raft batch.
	w.ready = w.ready[:0]
	entries, applied := 0, 0 // for Stats
	for i := range w.batches {
		p := w.batches[i].FSM
		if p.collectReady(&w.raftWB) {
			w.ready = append(w.ready, p)
			entries += len(p.ready.Entries)
			applied += len(p.ready.CommittedEntries)
		}
		// After collectReady: its appends may have made a held one needless.
		p.flushHeld()
		if w.raftWB.Size() > raftBatchBytes {
			// Bound one write; every peer's Ready still lands atomically.
			w.commitRaftBatch()
		}
	}
	// Leaders sent their appends in collectReady; get them going before the
	// fsync, or the followers' fsyncs would wait for it (the point of
	// sending early).
	w.store.trans.Flush()

	// The fsync runs on the writer goroutine while this one applies and
	// answers what is already durable; with nothing to apply meanwhile it
	// runs here, saving two goroutine hand-offs.
	w.done = w.done[:0]
	switch {
	case w.raftWB.Empty():
	case !w.anyEarlyApply():
		w.commitRaftBatch()
	default:
		w.writeReq <- struct{}{}
		for _, p := range w.ready {
			w.done = p.applyEarly(w.kv, w.done)
		}
		w.kv.commit()
		w.answer()
		<-w.writeDone
	}
	st := &w.store.stats
	st.rounds.Add(1)
	st.readyPeers.Add(uint64(len(w.ready)))
	st.entries.Add(uint64(entries))
	st.appliedEn.Add(uint64(applied))

	// Phase 2: send (the acks go before the kv commit) and apply.
	for _, p := range w.ready {
		w.done = p.afterPersist(w.kv, w.done)
	}
	w.store.trans.Flush()
	for i := range w.batches {
		w.batches[i].FSM.writeCheckpoint(w.kv)
	}
	w.kv.commit()
	for i := range w.batches {
		p := w.batches[i].FSM
		p.releaseCompacted()
		p.takeCheckpoint()
	}

	// Phase 3: answer and advance.
	w.answer()
	for i := range w.batches {
		b := &w.batches[i]
		if b.FSM.finishReady() {
			w.store.router.Wake(b.RegionID)
		}
		w.store.router.Release(b)
	}
	clear(w.ready)
}
