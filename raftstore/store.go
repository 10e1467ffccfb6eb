package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/kv/raftlog"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/router"
)

// Transport sends raft messages to other stores. Send must not block for
// long: it queues, and returns an error only when the message certainly
// cannot be delivered (the peer is then reported unreachable). Flush is
// called at the end of every worker round so that a transport that batches
// per destination can send.
//
// SendSnapshot delivers a MsgSnap with its data (the snapshot's files,
// concatenated) to the receiving store's ReceiveSnapshot, and returns once
// the receiver has stored it (nil) or the transfer failed or timed out with
// ctx. It may block for as long as the transfer takes.
type Transport interface {
	Send(msg *rspb.RaftMessage) error
	SendSnapshot(ctx context.Context, msg *rspb.RaftMessage, data io.Reader) error
	Flush()
}

// Store is one regionkv store: the peers of every region it holds, the raft
// worker pool that drives them, and the store ticker.
type Store struct {
	cfg     Config
	ident   rspb.StoreIdent
	engines *engine.Engines
	trans   Transport
	router  *raftRouter
	log     *slog.Logger
	snaps   *snapManager
	genq    chan genTask
	splitq  chan splitCheckTask
	schedq  chan func(context.Context)
	logGC   *logGCWorker
	kvSync  *kvSyncer
	stats   storeStats
	// readers and leaseDur serve reads from leader leases (lease.go).
	readers  readDelegates
	leaseDur time.Duration
	sendSem  chan struct{} // bounds concurrent snapshot sends
	recvSem  chan struct{} // bounds concurrent snapshot receives

	// meta is what other goroutines may read about the peers.
	meta struct {
		sync.RWMutex
		peers map[uint64]*peer // by region id
		// byStart holds the initialized regions sorted by start key; ranges
		// never overlap.
		byStart []*metapb.Region
	}

	// ticking tracks which peers tick and which sleep (quiesce.go).
	ticking *storeTicking

	// pendingVotes holds first-election votes for regions a split will
	// create here (see parkVote).
	pendingVotes struct {
		sync.Mutex
		msgs []*rspb.RaftMessage
	}

	started  atomic.Bool
	stopOnce sync.Once
	stopc    chan struct{}
	// ctx is canceled by Stop; long operations (snapshot sends) use it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewStore loads a bootstrapped store from engines. It does not start it.
func NewStore(cfg Config, engines *engine.Engines, trans Transport) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if vt := engines.KV.Opts().ValueThreshold; vt < minKVValueThreshold {
		return nil, fmt.Errorf("kv DB value threshold %d is below %d: region states could go to the value log, and a split's would not be atomic", vt, minKVValueThreshold)
	}
	ident, err := LoadStoreIdent(engines)
	if err != nil {
		return nil, err
	}
	snaps, err := newSnapManager(filepath.Join(engines.Dir, "snap"))
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:     cfg,
		ident:   *ident,
		engines: engines,
		trans:   trans,
		router:  router.New[*peer, peerMsg, storeMsg](),
		log:     cfg.Logger.With("store_id", ident.StoreId),
		snaps:   snaps,
		genq:    make(chan genTask, snapGenQueueLen),
		splitq:  make(chan splitCheckTask, 64),
		schedq:  make(chan func(context.Context), 1024),
		sendSem: make(chan struct{}, cfg.SnapMaxConcurrentSends),
		recvSem: make(chan struct{}, cfg.SnapMaxConcurrentReceives),
		stopc:   make(chan struct{}),
	}
	s.leaseDur = cfg.leaseDuration()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.logGC = newLogGCWorker(s)
	s.kvSync = newKVSyncer(s)
	s.ticking = newStoreTicking()
	s.meta.peers = make(map[uint64]*peer)
	if err := s.loadPeers(); err != nil {
		return nil, err
	}
	return s, nil
}

// loadPeers creates a peer for every region this store holds a live replica of.
func (s *Store) loadPeers() error {
	txn := s.engines.KV.NewTransaction(false)
	defer txn.Discard()
	prefix := engine.RegionStatePrefix()
	it := engine.NewRangeIter(txn, prefix, []byte{prefix[0], prefix[1] + 1}, false, false)
	defer it.Close()
	var tombstones []*metapb.Region
	var leftovers []gcTask
	for ; it.Valid(); it.Next() {
		var st rspb.RegionLocalState
		if err := it.Item().Value(st.Unmarshal); err != nil {
			return fmt.Errorf("load region state %x: %w", it.Key(), err)
		}
		if st.State == rspb.PeerState_Tombstone {
			tombstones = append(tombstones, st.Region)
			continue
		}
		if st.State == rspb.PeerState_Applying {
			s.log.Info("finishing an interrupted snapshot apply", "region_id", st.Region.GetId())
			if err := recoverApplyingSnapshot(s.engines, s.snaps, &st); err != nil {
				return fmt.Errorf("region %d: finish applying snapshot: %w", st.Region.GetId(), err)
			}
		} else if st.State != rspb.PeerState_Normal {
			return fmt.Errorf("region %d is in state %v, which this version cannot resume", st.Region.GetId(), st.State)
		}
		meta := findPeer(st.Region, s.ident.StoreId)
		if meta == nil {
			return fmt.Errorf("region %d has no peer on store %d but is not a tombstone", st.Region.GetId(), s.ident.StoreId)
		}
		p, err := newPeer(s, st.Region, meta)
		if err != nil {
			return err
		}
		if p.ps.raftState.HardState.Term > RaftInitLogTerm {
			// It may have acknowledged a leader that still holds a lease.
			p.holdVotes()
		}
		s.addPeer(p)
		// Entries at or below the truncated index whose deletion a stop or
		// crash cut short: left alone, an idle region would keep them.
		if first, _, ok := s.engines.Raft.Bounds(st.Region.Id); ok && first <= p.ps.truncatedIndex() {
			leftovers = append(leftovers, gcTask{regionID: st.Region.Id, end: p.ps.truncatedIndex() + 1})
		}
	}
	s.log.Info("loaded regions", "count", len(s.meta.peers))
	s.logGC.schedule(leftovers)
	return s.sweepTombstones(tombstones)
}

// sweepTombstones finishes the destruction of peers that crashed after
// their tombstone was written: leftover raft state and log go, and so does
// data no live region of this store covers.
func (s *Store) sweepTombstones(regions []*metapb.Region) error {
	for _, r := range regions {
		var rs rspb.RaftLocalState
		found, err := s.engines.Raft.State(r.Id, &rs)
		if err != nil {
			return fmt.Errorf("region %d: raft state: %w", r.Id, err)
		}
		if _, _, hasLog := s.engines.Raft.Bounds(r.Id); !found && !hasLog {
			continue // fully destroyed
		}
		s.log.Info("sweeping the leftovers of a destroyed peer", "region_id", r.Id)
		if len(r.Peers) > 0 && s.overlapping(r, r.Id) == nil {
			if err := clearRegionData(s.engines, r); err != nil {
				return err
			}
		}
		var wb raftlog.Batch
		wb.Clean(r.Id)
		if err := s.engines.WriteRaft(&wb); err != nil {
			return err
		}
	}
	return nil
}

func findPeer(region *metapb.Region, storeID uint64) *metapb.Peer {
	for _, p := range region.GetPeers() {
		if p.StoreId == storeID {
			return p
		}
	}
	return nil
}

func (s *Store) addPeer(p *peer) {
	s.meta.Lock()
	defer s.meta.Unlock()
	s.meta.peers[p.regionID()] = p
	if p.ps.isInitialized() {
		s.insertRangeLocked(p.region())
	}
	s.ticking.setActive(p.regionID())
}

// removePeer forgets a destroyed peer.
func (s *Store) removePeer(p *peer) {
	s.meta.Lock()
	defer s.meta.Unlock()
	if s.meta.peers[p.regionID()] == p {
		delete(s.meta.peers, p.regionID())
		s.removeRangeLocked(p.regionID())
		s.ticking.forget(p.regionID())
	}
}

// snapGenQueueLen bounds queued snapshot generations; past it raft is told
// to retry later.
const snapGenQueueLen = 16

// A raft worker writes its round's raft batch early once it passes
// raftBatchBytes, and a peer steps at most appendBudget bytes of appended
// entries per round; together they bound a round's memory and the length of
// one raft log write.
const (
	raftBatchBytes = 16 << 20
	appendBudget   = 4 << 20
)

// updateRegion publishes a peer's new region (after a snapshot, a conf change
// or a split) in the store's region index.
func (s *Store) updateRegion(region *metapb.Region) {
	s.meta.Lock()
	defer s.meta.Unlock()
	s.removeRangeLocked(region.Id)
	s.insertRangeLocked(region)
}

func (s *Store) removeRangeLocked(regionID uint64) {
	for i, r := range s.meta.byStart {
		if r.Id == regionID {
			s.meta.byStart = append(s.meta.byStart[:i], s.meta.byStart[i+1:]...)
			return
		}
	}
}

func (s *Store) insertRangeLocked(r *metapb.Region) {
	i := sort.Search(len(s.meta.byStart), func(i int) bool {
		return bytes.Compare(s.meta.byStart[i].StartKey, r.StartKey) >= 0
	})
	s.meta.byStart = append(s.meta.byStart, nil)
	copy(s.meta.byStart[i+1:], s.meta.byStart[i:])
	s.meta.byStart[i] = r
}

// regionsAfter returns up to n regions of this store that follow r
// contiguously (each starts where the previous ends).
func (s *Store) regionsAfter(r *metapb.Region, n int) []*metapb.Region {
	s.meta.RLock()
	defer s.meta.RUnlock()
	var out []*metapb.Region
	for end := r.EndKey; len(end) > 0 && len(out) < n; {
		i := sort.Search(len(s.meta.byStart), func(i int) bool { return bytes.Compare(s.meta.byStart[i].StartKey, end) >= 0 })
		if i == len(s.meta.byStart) || !bytes.Equal(s.meta.byStart[i].StartKey, end) {
			break
		}
		out = append(out, s.meta.byStart[i])
		end = s.meta.byStart[i].EndKey
	}
	return out
}

// overlapping returns a region other than exclude whose range overlaps r's.
func (s *Store) overlapping(r *metapb.Region, exclude uint64) *metapb.Region {
	s.meta.RLock()
	defer s.meta.RUnlock()
	for _, o := range s.meta.byStart {
		if o.Id != exclude && rangesOverlap(o, r) {
			return o
		}
	}
	return nil
}

func rangesOverlap(a, b *metapb.Region) bool {
	aEndsBeforeB := len(a.EndKey) > 0 && bytes.Compare(a.EndKey, b.StartKey) <= 0
	bEndsBeforeA := len(b.EndKey) > 0 && bytes.Compare(b.EndKey, a.StartKey) <= 0
	return !aEndsBeforeB && !bEndsBeforeA
}

// Start registers every peer with the router and starts the workers and the
// ticker.
func (s *Store) Start() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("raftstore: store already started")
	}
	s.meta.RLock()
	for id, p := range s.meta.peers {
		if err := s.router.Register(id, p); err != nil {
			s.meta.RUnlock()
			return fmt.Errorf("register region %d: %w", id, err)
		}
	}
	s.meta.RUnlock()
	for range s.cfg.RaftWorkers {
		w := newRaftWorker(s)
		s.wg.Go(w.run)
	}
	s.wg.Go(s.runTicker)
	s.wg.Go(s.logGC.run)
	s.wg.Go(s.kvSync.run)
	s.wg.Go(s.runSnapGen)
	s.wg.Go(s.runJanitor)
	s.wg.Go(s.runStoreWorker)
	s.wg.Go(s.runSplitChecker)
	s.wg.Go(s.runSchedulerWorker)
	s.wg.Go(s.runStoreHeartbeat)
	s.log.Info("store started", "workers", s.cfg.RaftWorkers, "tick", s.cfg.RaftBaseTickInterval)
	return nil
}

// Stop stops the ticker and the workers and fails every pending command
// with ErrStoreStopped. It does not close the engines. It is idempotent.
func (s *Store) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopc)
		s.cancel()
		s.router.Stop()
		s.wg.Wait()
		// The workers' last kv commits may still be being written (they do
		// not wait for them); the engines may be closed once Stop returns.
		engine.WaitCommitted(s.engines.KV)
		s.meta.Lock()
		defer s.meta.Unlock()
		for id, p := range s.meta.peers {
			p.stop(ErrStoreStopped)
			for _, m := range s.router.Close(id) {
				if m.kind == peerMsgCommand {
					m.cb(noAnswer(ErrStoreStopped))
				}
			}
		}
		s.log.Info("store stopped")
	})
}

// StoreID is this store's id.
func (s *Store) StoreID() uint64 { return s.ident.StoreId }

// ClusterID is the id of the cluster this store belongs to.
func (s *Store) ClusterID() uint64 { return s.ident.ClusterId }

// Engines are the store's DBs.
func (s *Store) Engines() *engine.Engines { return s.engines }

// Propose hands a command to its region's peer. cb is called exactly once,
// unless Propose returns an error (then never).
func (s *Store) Propose(req *raft_cmdpb.RaftCmdRequest, cb Callback) error {
	regionID := req.GetHeader().GetRegionId()
	err := s.router.Send(regionID, peerMsg{kind: peerMsgCommand, cmd: req, cb: cb})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, router.ErrStopped):
		return ErrStoreStopped
	case errors.Is(err, router.ErrRegionNotFound):
		return &RegionNotFoundError{RegionID: regionID}
	}
	return err
}

// Execute proposes a command and waits for its Result. A region error comes
// back inside the Result; the error return is for the cases with no answer:
// ctx done, ErrStoreStopped, ErrProposalUnknown. The caller must Close
// res.Snap.
func (s *Store) Execute(ctx context.Context, req *raft_cmdpb.RaftCmdRequest) (Result, error) {
	if res, ok := s.localRead(req); ok {
		return res, nil
	}
	w := &waiter{ch: make(chan Result, 1)}
	if err := s.Propose(req, w.done); err != nil {
		if errors.Is(err, ErrStoreStopped) {
			return Result{}, err
		}
		return errResult(err), nil
	}
	select {
	case res := <-w.ch:
		return res, res.Err
	case <-ctx.Done():
		w.abandon()
		return Result{}, ctx.Err()
	}
}

// waiter turns a Callback into a channel receive that may be abandoned; a
// Result that arrives after abandonment has its snapshot closed.
type waiter struct {
	ch        chan Result // capacity 1: the callback never blocks
	abandoned atomic.Bool
}

func (w *waiter) done(res Result) {
	w.ch <- res
	if w.abandoned.Load() {
		w.release()
	}
}

func (w *waiter) abandon() {
	w.abandoned.Store(true)
	w.release()
}

func (w *waiter) release() {
	select {
	case res := <-w.ch:
		res.Snap.Close()
	default:
	}
}

// Campaign makes the store's peer of a region start an election, for tests
// and fault injection. It goes through pre-vote, so followers that hear from
// a live leader refuse it; but the campaigning peer's own vote counts, so
// with a partition it can elect a leader while the old one still holds a
// lease (lease.go). Do not use it on a cluster that serves reads.
func (s *Store) Campaign(regionID uint64) error {
	if err := s.router.Send(regionID, peerMsg{kind: peerMsgCampaign}); err != nil {
		return &RegionNotFoundError{RegionID: regionID}
	}
	return nil
}

// OnRaftMessage hands a raft message from another store to its peer.
func (s *Store) OnRaftMessage(msg *rspb.RaftMessage) error {
	if isStorePing(msg) {
		s.ticking.heard(msg.FromPeer.StoreId, time.Now())
		return nil
	}
	if msg != nil && msg.FromPeer != nil {
		s.ticking.heard(msg.FromPeer.StoreId, time.Now())
	}
	switch {
	case msg == nil || (msg.Message == nil && !msg.IsTombstone):
		return errors.New("raft message without a message")
	case msg.RegionId == 0 || msg.ToPeer == nil || msg.FromPeer == nil:
		return fmt.Errorf("raft message without region or peers: region %d", msg.RegionId)
	case msg.ToPeer.StoreId != s.ident.StoreId:
		return &StoreNotMatchError{RequestStoreID: msg.ToPeer.StoreId, ActualStoreID: s.ident.StoreId}
	}
	err := s.router.Send(msg.RegionId, peerMsg{kind: peerMsgRaft, raft: msg})
	switch {
	case errors.Is(err, router.ErrRegionNotFound):
		// Maybe a peer this store should create: the store worker decides.
		if err := s.router.SendStore(storeMsg{kind: storeMsgRaft, raft: msg}); err != nil {
			return ErrStoreStopped
		}
		return nil
	case errors.Is(err, router.ErrStopped):
		return ErrStoreStopped
	}
	return err
}

// RegionByKey returns the region on this store that contains key, and this
// store's peer of it.
func (s *Store) RegionByKey(key []byte) (*metapb.Region, *metapb.Peer, error) {
	s.meta.RLock()
	defer s.meta.RUnlock()
	rs := s.meta.byStart
	// The last region whose start key is <= key.
	i := sort.Search(len(rs), func(i int) bool { return bytes.Compare(rs[i].StartKey, key) > 0 }) - 1
	if i >= 0 && CheckKeyInRegion(key, rs[i]) == nil {
		p := s.meta.peers[rs[i].Id]
		return rs[i], p.meta, nil
	}
	return nil, nil, &RegionNotFoundError{}
}

// PeerStatus returns the latest status of this store's peer of a region.
func (s *Store) PeerStatus(regionID uint64) (*PeerStatus, bool) {
	s.meta.RLock()
	p, ok := s.meta.peers[regionID]
	s.meta.RUnlock()
	if !ok {
		return nil, false
	}
	return p.status.Load(), true
}

// PeerStatuses returns the status of every peer on the store.
func (s *Store) PeerStatuses() []*PeerStatus {
	s.meta.RLock()
	defer s.meta.RUnlock()
	out := make([]*PeerStatus, 0, len(s.meta.peers))
	for _, p := range s.meta.peers {
		out = append(out, p.status.Load())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RegionID < out[j].RegionID })
	return out
}
