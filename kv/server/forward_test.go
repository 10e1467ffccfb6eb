package server

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/raftstore"
)

// fakeForwarder reaches stores through fixed clients and locates keys in a
// fixed list of regions.
type fakeForwarder struct {
	clients map[uint64]kvpb.KvClient
	regions []*metapb.Region // all led by their first peer

	mu          sync.Mutex
	unreachable []uint64
	locates     int
}

func (f *fakeForwarder) KvClient(_ context.Context, storeID uint64) (kvpb.KvClient, error) {
	if c := f.clients[storeID]; c != nil {
		return c, nil
	}
	return nil, status.Errorf(codes.Unavailable, "no connection to store %d", storeID)
}

func (f *fakeForwarder) Unreachable(storeID uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreachable = append(f.unreachable, storeID)
}

func (f *fakeForwarder) LocateKey(_ context.Context, key []byte) (*metapb.Region, *metapb.Peer, error) {
	f.mu.Lock()
	f.locates++
	f.mu.Unlock()
	for _, r := range f.regions {
		if raftstore.CheckKeyInRegion(key, r) == nil {
			return r, r.Peers[0], nil
		}
	}
	return nil, nil, errors.New("no region")
}

// unreachableClient fails every call with Unavailable.
type unreachableClient struct{ kvpb.KvClient }

func (unreachableClient) RawPut(context.Context, *kvrpcpb.RawPutRequest, ...grpc.CallOption) (*kvrpcpb.RawPutResponse, error) {
	return nil, status.Error(codes.Unavailable, "connection refused")
}

// forwardEnv is a follower store (1) whose peers answer NotLeader naming
// the leader's peer on store 2, and the leader store 2; the regions are
// [, m) and [m, ) on both.
type forwardEnv struct {
	follower, leader *fakeStore
	fwd              *fakeForwarder
	client           kvpb.KvClient // of the follower
}

func newForwardEnv(t *testing.T) *forwardEnv {
	t.Helper()
	leader := newFakeStoreOn(t, 2, "m")
	_, leaderConn := serve(t, leader)
	follower := newFakeStore(t, "m")
	follower.setFail(notLeaderOn(2))
	fwd := &fakeForwarder{clients: map[uint64]kvpb.KvClient{2: kvpb.NewKvClient(leaderConn)}, regions: leader.regions}
	_, conn := serveWith(t, follower, Options{Forwarder: fwd})
	return &forwardEnv{follower: follower, leader: leader, fwd: fwd, client: kvpb.NewKvClient(conn)}
}

// notLeaderOn fails every command with NotLeader naming the region's peer
// (same id on every fake store) on store.
func notLeaderOn(store uint64) func(*raft_cmdpb.RaftCmdRequest) error {
	return func(req *raft_cmdpb.RaftCmdRequest) error {
		id := req.Header.RegionId
		return &raftstore.NotLeaderError{RegionID: id, Leader: &metapb.Peer{Id: 100 + id, StoreId: store}}
	}
}

func TestForwardToLeader(t *testing.T) {
	e := newForwardEnv(t)
	ctx := testCtx(t)
	for name, call := range allOps(nil) {
		before := len(e.leader.commands())
		r, err := call(ctx, e.client)
		checkOK(t, r, err)
		cmds := e.leader.commands()
		if len(cmds) != before+1 {
			t.Fatalf("%s: the leader got %d commands, want 1", name, len(cmds)-before)
		}
		h := cmds[len(cmds)-1].Header
		if h.RegionId != 1 || h.Peer.GetStoreId() != 2 || h.RegionEpoch.GetVersion() != 1 {
			t.Errorf("%s: the leader got header %v, want region 1's context with the leader peer", name, h)
		}
	}

	// Data written through the follower is read back through it.
	mustOK(e.client.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: []byte("x"), Value: []byte("1")}))(t)
	mustOK(e.client.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: []byte("y"), Value: []byte("2")}))(t)
	if r := mustOK(e.client.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: []byte("x")}))(t); string(r.Value) != "1" {
		t.Errorf("get x through the follower = %q, want 1", r.Value)
	}
	// A reverse scan is routed by the key below its start, region 2 here.
	r := mustOK(e.client.RawScan(ctx, &kvrpcpb.RawScanRequest{Reverse: true}))(t)
	if got := pairsString(r.Kvs); got != "y=2 x=1" {
		t.Errorf("reverse scan through the follower = %q", got)
	}
}

func TestForwardOnlyWithoutContext(t *testing.T) {
	e := newForwardEnv(t)
	ctx := testCtx(t)
	before := len(e.leader.commands())

	// A request that names its region is served by that peer only.
	r, err := e.client.RawPut(ctx, &kvrpcpb.RawPutRequest{Context: ctxFor(1), Key: []byte("a"), Value: []byte("v")})
	if err != nil || r.RegionError.GetNotLeader().GetLeader().GetStoreId() != 2 {
		t.Errorf("put with a context = %v, %v; want NotLeader naming store 2", r, err)
	}
	// A request forwarded already is not forwarded again.
	fctx := metadata.AppendToOutgoingContext(ctx, ForwardedFromMetadata, "3")
	r, err = e.client.RawPut(fctx, &kvrpcpb.RawPutRequest{Key: []byte("a"), Value: []byte("v")})
	if err != nil || r.RegionError.GetNotLeader() == nil {
		t.Errorf("put marked forwarded = %v, %v; want NotLeader", r, err)
	}
	if n := len(e.leader.commands()) - before; n != 0 {
		t.Errorf("the leader got %d commands, want none", n)
	}
}

// TestForwardOneHop: when the store the request is forwarded to is not the
// leader either, its answer comes back; the request is not passed on.
func TestForwardOneHop(t *testing.T) {
	e := newForwardEnv(t)
	e.leader.setFail(notLeaderOn(1)) // it names the follower back
	ctx := testCtx(t)
	before := len(e.follower.commands())
	r, err := e.client.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: []byte("a"), Value: []byte("v")})
	if err != nil || r.RegionError.GetNotLeader().GetLeader().GetStoreId() != 1 {
		t.Errorf("put = %v, %v; want the second store's NotLeader", r, err)
	}
	if n := len(e.follower.commands()) - before; n != 1 {
		t.Errorf("the first store got %d commands, want 1 (no loop)", n)
	}
}

func TestForwardUnreachableLeader(t *testing.T) {
	e := newForwardEnv(t)
	ctx := testCtx(t)
	e.fwd.clients[2] = unreachableClient{e.fwd.clients[2]}
	r, err := e.client.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: []byte("a"), Value: []byte("v")})
	if err != nil || r.RegionError.GetNotLeader().GetLeader().GetStoreId() != 2 {
		t.Errorf("put with the leader unreachable = %v, %v; want this store's NotLeader", r, err)
	}
	if len(e.fwd.unreachable) != 1 || e.fwd.unreachable[0] != 2 {
		t.Errorf("unreachable reports %v, want [2]", e.fwd.unreachable)
	}
	// No connection at all: the same.
	delete(e.fwd.clients, 2)
	gr, err := e.client.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: []byte("a")})
	if err != nil || gr.RegionError.GetNotLeader() == nil {
		t.Errorf("get with no connection to the leader = %v, %v; want NotLeader", gr, err)
	}
}

// TestForwardRegionNotFound: a store that holds no region for the key asks
// the scheduler (the Forwarder) who does.
func TestForwardRegionNotFound(t *testing.T) {
	e := newForwardEnv(t)
	e.follower.setFail(nil)
	e.follower.setHidden(true)
	ctx := testCtx(t)
	for _, call := range allOps(nil) {
		r, err := call(ctx, e.client)
		checkOK(t, r, err)
	}
	if e.fwd.locates < len(allOps(nil)) {
		t.Errorf("%d key lookups for %d requests", e.fwd.locates, len(allOps(nil)))
	}
	// Nobody knows the key: RegionNotFound.
	e.fwd.regions = nil
	r, err := e.client.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: []byte("a")})
	if err != nil || r.RegionError.GetRegionNotFound() == nil {
		t.Errorf("get of a key nobody holds = %v, %v; want RegionNotFound", r, err)
	}
}
