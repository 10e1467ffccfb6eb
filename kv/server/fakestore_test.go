package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/raftstore"
)

const fakeStoreID = 1

// fakeStore is an in-memory Store: regions that split the key space at
// fixed keys, all led by this store, over one Badger DB. Writes
// apply at once; reads get a real raftstore.RegionSnapshot. It checks the
// request header (region, peer, epoch) and write keys as the raftstore does,
// and can be told to fail.
type fakeStore struct {
	id      uint64
	db      *badger.DB
	regions []*metapb.Region // sorted by start key, covering the key space
	// ctx ends with the test; Propose runs Execute under it.
	ctx context.Context

	mu struct {
		sync.Mutex
		// fail, if set, is consulted first by Execute: a region error it
		// returns goes into the response header, and any other error is
		// returned as Execute's error.
		fail func(*raft_cmdpb.RaftCmdRequest) error
		// block makes Execute wait for its context to end.
		block bool
		// stopped makes every call fail with raftstore.ErrStoreStopped.
		stopped bool
		// hidden makes RegionByKey find no region.
		hidden bool
		// cmds records every command Execute received.
		cmds []*raft_cmdpb.RaftCmdRequest
		// raftMsgs records every message OnRaftMessage accepted.
		raftMsgs []*raft_serverpb.RaftMessage
		snapMsgs []*raft_serverpb.RaftMessage
		snapData [][]byte
	}
}

var _ Store = (*fakeStore)(nil)

// newFakeStore returns a store whose regions are split at splitKeys (in
// ascending order). Region i has id i+1, peer id 100+i+1, epoch {1, 1}.
func newFakeStore(t testing.TB, splitKeys ...string) *fakeStore {
	t.Helper()
	return newFakeStoreOn(t, fakeStoreID, splitKeys...)
}

// newFakeStoreOn is newFakeStore for a store with another id; its peers
// have the same ids as those of the store newFakeStore returns, so a
// request context names the same peer on either.
func newFakeStoreOn(t testing.TB, storeID uint64, splitKeys ...string) *fakeStore {
	t.Helper()
	// On disk: in-memory Badger refuses values over 1 MiB.
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).
		WithMemTableSize(32 << 20).WithBlockCacheSize(1 << 20).WithNumCompactors(2))
	if err != nil {
		t.Fatalf("open badger: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	bounds := append(append([]string{""}, splitKeys...), "")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &fakeStore{id: storeID, db: db, ctx: ctx}
	for i := 0; i+1 < len(bounds); i++ {
		id := uint64(i + 1)
		s.regions = append(s.regions, &metapb.Region{
			Id:          id,
			StartKey:    []byte(bounds[i]),
			EndKey:      []byte(bounds[i+1]),
			RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
			Peers:       []*metapb.Peer{{Id: 100 + id, StoreId: storeID}},
		})
	}
	return s
}

func (s *fakeStore) StoreID() uint64 { return s.id }

func (s *fakeStore) setHidden(b bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.hidden = b
}

func (s *fakeStore) setFail(f func(*raft_cmdpb.RaftCmdRequest) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.fail = f
}

func (s *fakeStore) setBlock(b bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.block = b
}

func (s *fakeStore) setStopped(b bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.stopped = b
}

// commands returns the commands Execute has received so far.
func (s *fakeStore) commands() []*raft_cmdpb.RaftCmdRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*raft_cmdpb.RaftCmdRequest(nil), s.mu.cmds...)
}

func (s *fakeStore) raftMessages() []*raft_serverpb.RaftMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*raft_serverpb.RaftMessage(nil), s.mu.raftMsgs...)
}

func (s *fakeStore) RegionByKey(key []byte) (*metapb.Region, *metapb.Peer, error) {
	s.mu.Lock()
	stopped, hidden := s.mu.stopped, s.mu.hidden
	s.mu.Unlock()
	if stopped {
		return nil, nil, raftstore.ErrStoreStopped
	}
	if hidden {
		return nil, nil, &raftstore.RegionNotFoundError{}
	}
	for _, r := range s.regions {
		if raftstore.CheckKeyInRegion(key, r) == nil {
			return r, r.Peers[0], nil
		}
	}
	return nil, nil, &raftstore.RegionNotFoundError{}
}

// ReceiveSnapshot records the snapshot; a message for region 0 is rejected.
func (s *fakeStore) ReceiveSnapshot(msg *raft_serverpb.RaftMessage, data io.Reader) error {
	buf, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	if msg.RegionId == 0 {
		return errors.New("fake: snapshot without a region")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.snapMsgs = append(s.mu.snapMsgs, msg)
	s.mu.snapData = append(s.mu.snapData, buf)
	return nil
}

func (s *fakeStore) OnRaftMessage(msg *raft_serverpb.RaftMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.stopped {
		return raftstore.ErrStoreStopped
	}
	if msg.RegionId == 0 {
		return errors.New("fake: raft message without a region")
	}
	s.mu.raftMsgs = append(s.mu.raftMsgs, msg)
	return nil
}

func (s *fakeStore) Execute(ctx context.Context, req *raft_cmdpb.RaftCmdRequest) (raftstore.Result, error) {
	s.mu.Lock()
	s.mu.cmds = append(s.mu.cmds, req)
	fail, block, stopped := s.mu.fail, s.mu.block, s.mu.stopped
	s.mu.Unlock()

	if stopped {
		return raftstore.Result{}, raftstore.ErrStoreStopped
	}
	if block {
		<-ctx.Done()
		return raftstore.Result{}, fmt.Errorf("fake: waiting for command: %w", ctx.Err())
	}
	if fail != nil {
		if err := fail(req); err != nil {
			if pb := raftstore.ErrToPB(err); isTypedRegionError(pb) {
				return regionErrResult(err), nil
			}
			return raftstore.Result{}, err
		}
	}
	region, err := s.checkHeader(req.Header)
	if err != nil {
		return regionErrResult(err), nil
	}
	if len(req.Requests) == 1 && req.Requests[0].CmdType == raft_cmdpb.CmdType_Snap {
		resp := &raft_cmdpb.RaftCmdResponse{
			Header:    &raft_cmdpb.RaftResponseHeader{},
			Responses: []*raft_cmdpb.Response{{CmdType: raft_cmdpb.CmdType_Snap, Snap: &raft_cmdpb.SnapResponse{Region: region}}},
		}
		return raftstore.Result{Resp: resp, Snap: raftstore.NewRegionSnapshot(s.db, region)}, nil
	}
	if err := s.apply(region, req.Requests); err != nil {
		return regionErrResult(err), nil
	}
	return raftstore.Result{Resp: &raft_cmdpb.RaftCmdResponse{Header: &raft_cmdpb.RaftResponseHeader{}}}, nil
}

// Propose runs Execute on a goroutine of its own and hands its answer to cb.
func (s *fakeStore) Propose(req *raft_cmdpb.RaftCmdRequest, cb raftstore.Callback) error {
	s.mu.Lock()
	stopped := s.mu.stopped
	s.mu.Unlock()
	if stopped {
		return raftstore.ErrStoreStopped
	}
	go func() {
		res, err := s.Execute(s.ctx, req)
		if err != nil {
			res = raftstore.Result{Err: err}
		}
		cb(res)
	}()
	return nil
}

func regionErrResult(err error) raftstore.Result {
	return raftstore.Result{Resp: &raft_cmdpb.RaftCmdResponse{
		Header: &raft_cmdpb.RaftResponseHeader{Error: raftstore.ErrToPB(err)},
	}}
}

// checkHeader does the raftstore's propose checks: region, peer, epoch.
func (s *fakeStore) checkHeader(h *raft_cmdpb.RaftRequestHeader) (*metapb.Region, error) {
	for _, r := range s.regions {
		if r.Id != h.GetRegionId() {
			continue
		}
		if h.GetPeer() != nil && h.GetPeer().Id != r.Peers[0].Id {
			return nil, fmt.Errorf("fake: peer %d is not on this store", h.GetPeer().Id)
		}
		if e := h.GetRegionEpoch(); e.GetConfVer() != r.RegionEpoch.ConfVer || e.GetVersion() != r.RegionEpoch.Version {
			return nil, &raftstore.EpochNotMatchError{Msg: fmt.Sprintf("request epoch %v, current %v", e, r.RegionEpoch), Regions: []*metapb.Region{r}}
		}
		return r, nil
	}
	return nil, &raftstore.RegionNotFoundError{RegionID: h.GetRegionId()}
}

// apply checks every write's keys against region and applies them all in
// one Badger transaction. Delete ranges are clipped to the region.
func (s *fakeStore) apply(region *metapb.Region, reqs []*raft_cmdpb.Request) error {
	for _, r := range reqs {
		var key []byte
		switch r.CmdType {
		case raft_cmdpb.CmdType_Put:
			key = r.Put.Key
		case raft_cmdpb.CmdType_Delete:
			key = r.Delete.Key
		case raft_cmdpb.CmdType_DeleteRange:
			key = r.DeleteRange.StartKey
		default:
			return fmt.Errorf("fake: unexpected request %v", r.CmdType)
		}
		if err := raftstore.CheckKeyInRegion(key, region); err != nil {
			return err
		}
	}
	return s.db.Update(func(txn *badger.Txn) error {
		for _, r := range reqs {
			var err error
			switch r.CmdType {
			case raft_cmdpb.CmdType_Put:
				err = txn.Set(dataKey(r.Put.Cf, r.Put.Key), r.Put.Value)
			case raft_cmdpb.CmdType_Delete:
				err = txn.Delete(dataKey(r.Delete.Cf, r.Delete.Key))
			case raft_cmdpb.CmdType_DeleteRange:
				err = deleteRange(txn, region, r.DeleteRange)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func dataKey(cf string, key []byte) []byte {
	b, err := engine.CFByte(cf)
	if err != nil {
		panic(fmt.Sprintf("fake store got unknown cf %q: the server must reject it", cf))
	}
	return engine.DataKey(b, key)
}

func deleteRange(txn *badger.Txn, region *metapb.Region, r *raft_cmdpb.DeleteRangeRequest) error {
	end := r.EndKey
	if len(region.EndKey) > 0 && (len(end) == 0 || bytes.Compare(end, region.EndKey) > 0) {
		end = region.EndKey
	}
	cf, _ := engine.CFByte(r.Cf)
	lo, hi := engine.DataRange(cf, r.StartKey, end)
	it := engine.NewRangeIter(txn, lo, hi, false, true)
	var keys [][]byte
	for ; it.Valid(); it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
