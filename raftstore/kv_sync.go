package raftstore

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// Durable apply states.
//
// A peer's RaftApplyState says how far the kv DB holds the region's applied
// entries; a restart applies the raft log again from there. The kv DB is not
// synced per round (the raft log, synced, can replay it), so a power loss
// may take its last writes, and the apply state written with them must not
// survive them. Badger gives no such order: a transaction written to one
// memtable log survives whole or not at all, and so does everything before
// it in that log, but once Badger rotates to a new log (the memtable filled)
// the kernel writes the old log's tail and the new log back in any order,
// and a restart replays each log on its own. Values Badger puts in its value
// log (1 MiB or more) are another file again.
//
// So a peer writes its RaftApplyState only where everything it covers is
// durable whatever the kernel does:
//
//   - After raw writes (Put, Delete, DeleteRange), not at once: once the
//     round's kv commit is done the peer takes a checkpoint, a copy of its
//     apply state, and writes it only after a kv sync that began after that
//     commit (kvSyncer). The durable apply state trails the applied index by
//     about a sync interval; a restart applies those entries again, which is
//     safe because raw writes are blind: each sets its keys whatever they
//     held, so applying them again, in order, over a state that already
//     has some of them ends where applying them once did.
//   - A split or a conf change is not blind, and must never be applied
//     twice. Its peer commits and syncs everything before it, then writes
//     its apply state in the same transaction as its effects, so they are
//     durable together or not at all (applyEntries).
//   - CompactLog only moves the truncated state, which a checkpoint carries
//     like the applied index. The log GC deletes entries only once an apply
//     state with that truncated state has been written (releaseCompacted)
//     and synced (logGCWorker), so a restart finds every entry it applies.
//   - Snapshots and a peer's destruction write and sync at once.
//
// kvSyncer runs the syncs; see its doc.

// minKVValueThreshold bounds the kv DB's ValueThreshold from below. A
// split's or conf change's transaction is durable whole because Badger
// replays a memtable log's transactions whole; a value in the value log,
// another file, would escape that. Region states hold two keys of at most
// 8 KiB (routekey.MaxKeySize) and the peers, so they stay under it, and so
// do apply states.
const minKVValueThreshold = 64 << 10

// kvSyncer runs the kv syncs: every KVSyncTickTicks (1 s) while a
// checkpoint waits, and whenever the log GC or a split or conf change needs
// one. Each sync has a generation; a checkpoint waits for the first
// generation begun after its commit, and its region gets a peerMsgKVSynced
// when that sync is done, so an idle region writes its checkpoint too.
type kvSyncer struct {
	s      *Store
	syncKV func() error

	syncMu  sync.Mutex    // one sync at a time
	started atomic.Uint64 // generation of the last sync begun
	done    atomic.Uint64 // generation of the last sync finished
	// last is when the last sync finished, as time since epoch: monotonic,
	// so that a step of the wall clock cannot hold the syncs off.
	epoch time.Time
	last  atomic.Int64

	mu      sync.Mutex
	waiting map[uint64]uint64 // region id -> generation its checkpoint waits for
}

func newKVSyncer(s *Store) *kvSyncer {
	return &kvSyncer{s: s, syncKV: s.engines.SyncKV, epoch: time.Now(), waiting: make(map[uint64]uint64)}
}

// wait registers a checkpoint of regionID taken after a kv commit and
// returns the generation of the first sync that makes the commit durable.
// If the region's checkpoint waits for generation cur (0: none) and that
// sync has begun, the new one would have to wait for a later sync: wait
// returns false, and the region keeps cur. Otherwise a newer checkpoint
// replaces the old one, for the same sync.
func (k *kvSyncer) wait(regionID, cur uint64) (uint64, bool) {
	if cur != 0 {
		// Registered already; the map holds cur until that sync is done.
		return cur, cur > k.started.Load()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	gen := k.started.Load() + 1 // a sync begun before now may have missed the commit
	k.waiting[regionID] = gen
	return gen, true
}

// synced reports whether the sync of generation gen has finished.
func (k *kvSyncer) synced(gen uint64) bool { return k.done.Load() >= gen }

// sync makes every kv write committed before the call durable, then tells
// the regions whose checkpoints it covers.
func (k *kvSyncer) sync() {
	k.syncMu.Lock()
	gen := k.started.Add(1)
	if err := k.syncKV(); err != nil {
		fatalf("kv sync: %v", err)
	}
	k.done.Store(gen)
	k.last.Store(int64(time.Since(k.epoch)))
	k.syncMu.Unlock()
	k.s.stats.kvSyncs.Add(1)

	k.mu.Lock()
	var ready []uint64
	for id, g := range k.waiting {
		if g <= gen {
			ready = append(ready, id)
			delete(k.waiting, id)
		}
	}
	k.mu.Unlock()
	for _, id := range ready {
		// A region gone meanwhile has nothing left to write.
		_ = k.s.router.Send(id, peerMsg{kind: peerMsgKVSynced})
	}
}

// run syncs every interval while a checkpoint waits, unless another sync
// (the log GC's, an admin entry's) just did.
func (k *kvSyncer) run() {
	interval := time.Duration(k.s.cfg.KVSyncTickTicks) * k.s.cfg.RaftBaseTickInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-k.s.stopc:
			return
		case <-t.C:
		}
		k.mu.Lock()
		idle := len(k.waiting) == 0
		k.mu.Unlock()
		if idle || time.Since(k.epoch)-time.Duration(k.last.Load()) < interval/2 {
			continue
		}
		k.sync()
	}
}

// checkpoint is a peer's apply state as of a kv commit, waiting to be
// written until the sync of generation gen has made that commit durable.
type checkpoint struct {
	applied   uint64
	truncated rspb.RaftTruncatedState
	gen       uint64 // 0: none
}

// takeCheckpoint runs after the round's kv commit: if the peer applied
// past its last written apply state, it takes a checkpoint, unless the one
// it has waits for a sync already begun (kvSyncer.wait).
func (p *peer) takeCheckpoint() {
	ps := p.ps
	if p.dead || ps.appliedIndex() <= ps.persistedApplied || ps.appliedIndex() == ps.ckpt.applied {
		return
	}
	gen, ok := p.store.kvSync.wait(p.regionID(), ps.ckpt.gen)
	if !ok {
		return
	}
	// Plain values: a busy peer takes one every round, and only the one
	// written (about once a second) becomes a message.
	ps.ckpt = checkpoint{applied: ps.appliedIndex(), truncated: *ps.applyState.TruncatedState, gen: gen}
}

// releaseCompacted hands the log GC the deletions of compacted entries
// that a written apply state's truncated state covers; the log GC syncs
// the kv DB before it deletes them. Compactions only move forward, so
// those are a prefix of p.compacted.
func (p *peer) releaseCompacted() {
	n := 0
	for n < len(p.compacted) && p.compacted[n].end-1 <= p.ps.persistedTruncated {
		n++
	}
	if n == 0 {
		return
	}
	p.store.logGC.schedule(p.compacted[:n]) // copies them
	p.compacted = append(p.compacted[:0], p.compacted[n:]...)
}

// writeCheckpoint runs before the round's kv commit: a checkpoint whose sync
// is done goes into w, unless an apply state written since (an admin
// entry's, a snapshot's) already covers it.
func (p *peer) writeCheckpoint(w *kvWriter) {
	ps := p.ps
	if p.dead || ps.ckpt.gen == 0 || !p.store.kvSync.synced(ps.ckpt.gen) {
		return
	}
	if ps.ckpt.applied > ps.persistedApplied {
		tr := ps.ckpt.truncated
		st := rspb.RaftApplyState{AppliedIndex: ps.ckpt.applied, TruncatedState: &tr}
		w.setMsg(engine.ApplyStateKey(p.regionID()), &st)
		ps.notePersisted(&st)
	}
	ps.ckpt = checkpoint{}
}
