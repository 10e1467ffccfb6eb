package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/kv/raftlog"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// The store's background workers: snapshot generation, raft log GC, snapshot
// sending, and the periodic cleanup of snapshot files. Each is started by
// Store.Start and stopped by Store.Stop.

// gcTask deletes a region's raft log entries below end; they were truncated
// by an applied CompactLog.
type gcTask struct {
	regionID, end uint64
}

// logGCWorker deletes truncated raft log entries. Before deleting anything it
// syncs the kv DB, so the RaftApplyState that truncated them (and the data
// applied from them) is durable first: the log is never cut past a durable
// applied index.
//
// It runs at most once per log-GC tick, so that one kv sync covers the
// compactions of every region in that time: a sync per region would put
// large fsyncs of the kv DB between the raft log's small ones (with 16
// regions, raft log fsyncs took twice as long).
type logGCWorker struct {
	s      *Store
	mu     sync.Mutex
	tasks  []gcTask // protected by mu
	signal chan struct{}
}

func newLogGCWorker(s *Store) *logGCWorker {
	return &logGCWorker{s: s, signal: make(chan struct{}, 1)}
}

func (w *logGCWorker) schedule(tasks []gcTask) {
	if len(tasks) == 0 {
		return
	}
	w.mu.Lock()
	w.tasks = append(w.tasks, tasks...)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *logGCWorker) run() {
	for {
		select {
		case <-w.s.stopc:
			w.gc() // what is queued; otherwise only the next start would
			return
		case <-w.signal:
		}
		w.gc()
		// Let the tasks of other regions gather.
		select {
		case <-w.s.stopc:
			w.gc()
			return
		case <-time.After(time.Duration(w.s.cfg.RaftLogGCTickTicks) * w.s.cfg.RaftBaseTickInterval):
		}
	}
}

func (w *logGCWorker) gc() {
	w.mu.Lock()
	tasks := w.tasks
	w.tasks = nil
	w.mu.Unlock()
	if len(tasks) == 0 {
		return
	}
	w.s.kvSync.sync()
	var b raftlog.Batch
	for _, t := range tasks {
		b.DeleteTo(t.regionID, t.end)
	}
	// Not synced: a deletion lost in a crash leaves entries below the
	// truncated index, which the next one, or the store's next start,
	// deletes.
	if err := w.s.engines.Raft.Write(&b, false); err != nil {
		fatalf("raft log gc: %v", err)
	}
}

// runSnapGen builds snapshots queued by peers.
func (s *Store) runSnapGen() {
	for {
		select {
		case <-s.stopc:
			// Release the read transactions of tasks nobody will run.
			for {
				select {
				case t := <-s.genq:
					t.txn.Discard()
				default:
					return
				}
			}
		case t := <-s.genq:
			start := time.Now()
			res, size := s.snaps.runGen(t)
			if res.err == nil {
				s.log.Info("generated snapshot", "region_id", t.key.RegionID, "index", t.key.Index,
					"bytes", size, "took", time.Since(start))
			}
			t.result <- res
		}
	}
}

// runJanitor periodically removes stale snapshot files.
func (s *Store) runJanitor() {
	t := time.NewTicker(s.cfg.SnapGCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
			if n := s.snaps.gc(s.cfg.SnapMaxAge); n > 0 {
				s.log.Info("removed stale snapshot files", "count", n)
			}
		}
	}
}

// sendSnapshot streams a generated snapshot to its peer in the background and
// reports the outcome to the sending peer, whatever it is: a follower whose
// snapshot is never reported stays paused forever.
func (s *Store) sendSnapshot(rm *rspb.RaftMessage) {
	snap := rm.Message.Snapshot
	var data rspb.RaftSnapshotData
	if err := data.Unmarshal(snap.Data); err != nil {
		panic(fmt.Sprintf("raftstore: our own snapshot data is undecodable: %v", err))
	}
	key := snapKeyOf(rm.RegionId, snap)
	report := func(err error) {
		s.snaps.remove("gen", key)
		status := raft.SnapshotFinish
		if err != nil {
			status = raft.SnapshotFailure
			s.log.Warn("snapshot send failed", "region_id", rm.RegionId, "to_peer", rm.ToPeer.Id, "snapshot", key, "err", err)
		} else {
			s.log.Info("sent snapshot", "region_id", rm.RegionId, "to_peer", rm.ToPeer.Id, "snapshot", key, "bytes", data.FileSize)
		}
		_ = s.router.Send(rm.RegionId, peerMsg{kind: peerMsgSnapStatus, snapTo: rm.ToPeer.Id, snapStatus: status})
	}
	s.wg.Go(func() {
		select {
		case s.sendSem <- struct{}{}:
			defer func() { <-s.sendSem }()
		case <-s.stopc:
			report(ErrStoreStopped)
			return
		}
		r, err := s.snaps.openSnapshot(key, &data)
		if err != nil {
			report(err)
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.SnapSendTimeout)
		err = s.trans.SendSnapshot(ctx, rm, r)
		cancel()
		r.Close()
		report(err)
	})
}

// ReceiveSnapshot takes a snapshot from another store: data is its files,
// concatenated as RaftSnapshotData in the message describes them. The files
// are checked (size and checksum) and stored, and only then is the MsgSnap
// handed to the peer. It returns when the snapshot has been stored.
func (s *Store) ReceiveSnapshot(msg *rspb.RaftMessage, data io.Reader) error {
	if msg == nil || msg.Message == nil || msg.Message.Type != raftpb.MsgSnap || msg.Message.Snapshot == nil {
		return errors.New("snapshot stream without a MsgSnap")
	}
	if msg.ToPeer == nil || msg.ToPeer.StoreId != s.ident.StoreId {
		return &StoreNotMatchError{RequestStoreID: msg.ToPeer.GetStoreId(), ActualStoreID: s.ident.StoreId}
	}
	var sd rspb.RaftSnapshotData
	if err := sd.Unmarshal(msg.Message.Snapshot.Data); err != nil {
		return fmt.Errorf("undecodable snapshot data: %w", err)
	}
	if sd.Region.GetId() != msg.RegionId || raft.IsEmptySnap(*msg.Message.Snapshot) {
		return fmt.Errorf("snapshot of region %d in a message for region %d", sd.Region.GetId(), msg.RegionId)
	}
	select {
	case s.recvSem <- struct{}{}:
		defer func() { <-s.recvSem }()
	case <-s.stopc:
		return ErrStoreStopped
	}
	key := snapKeyOf(msg.RegionId, msg.Message.Snapshot)
	if err := s.snaps.receiveSnapshot(key, &sd, data); err != nil {
		return err
	}
	if err := s.OnRaftMessage(msg); err != nil {
		s.snaps.remove("rcv", key)
		return err
	}
	return nil
}
