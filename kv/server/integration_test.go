package server

import (
	"fmt"
	"testing"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/raftstore/harness"
)

// TestRealStore runs the raw API against real raftstore stores of an
// in-process harness cluster: a smoke test of the Store contract (Snap reads,
// writes through raft, region errors from followers).
func TestRealStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-store cluster")
	}
	c := harness.New(t, harness.Options{Stores: 3})
	leader := c.WaitLeader(1)
	var follower uint64
	for _, id := range c.StoreIDs() {
		if id != leader.StoreID {
			follower = id
			break
		}
	}
	_, conn := serve(t, c.Store(leader.StoreID))
	kv := kvpb.NewKvClient(conn)
	ctx := testCtx(t)

	pairs := []*kvrpcpb.KvPair{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("b"), Value: []byte("")},
		{Key: []byte("c"), Value: []byte("3")},
		{Key: []byte("d"), Value: []byte("4")},
	}
	mustOK(kv.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: pairs}))(t)
	mustOK(kv.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: []byte("e"), Value: []byte("5")}))(t)

	if r := mustOK(kv.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: []byte("b")}))(t); r.NotFound || len(r.Value) != 0 {
		t.Errorf("get b = %q, not_found %v; want an empty value", r.Value, r.NotFound)
	}
	if r := mustOK(kv.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: []byte("x")}))(t); !r.NotFound {
		t.Errorf("get x = %q, want not_found", r.Value)
	}
	if r := mustOK(kv.RawScan(ctx, &kvrpcpb.RawScanRequest{StartKey: []byte("b"), EndKey: []byte("e")}))(t); pairsString(r.Kvs) != "b= c=3 d=4" {
		t.Errorf("scan [b, e) = %q", pairsString(r.Kvs))
	}
	if r := mustOK(kv.RawScan(ctx, &kvrpcpb.RawScanRequest{StartKey: []byte("e"), Reverse: true, Limit: 2, KeyOnly: true}))(t); pairsString(r.Kvs) != "d= c=" {
		t.Errorf("reverse scan below e = %q", pairsString(r.Kvs))
	}
	mustOK(kv.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{StartKey: []byte("b"), EndKey: []byte("d")}))(t)
	mustOK(kv.RawBatchDelete(ctx, &kvrpcpb.RawBatchDeleteRequest{Keys: [][]byte{[]byte("a"), []byte("e")}}))(t)
	if r := mustOK(kv.RawScan(ctx, &kvrpcpb.RawScanRequest{}))(t); pairsString(r.Kvs) != "d=4" {
		t.Errorf("scan after deletes = %q, want d=4", pairsString(r.Kvs))
	}

	// A follower answers NotLeader, naming the leader, for reads and writes.
	_, fconn := serve(t, c.Store(follower))
	fkv := kvpb.NewKvClient(fconn)
	for name, call := range allOps(nil) {
		r, err := call(ctx, fkv)
		if err != nil {
			t.Fatalf("follower %s: %v", name, err)
		}
		if nl := r.GetRegionError().GetNotLeader(); nl == nil || nl.RegionId != 1 {
			t.Errorf("follower %s: region error %v, want NotLeader", name, r.GetRegionError())
		}
	}

	// A stale epoch is refused.
	stale := &kvrpcpb.Context{RegionId: 1, RegionEpoch: &metapb.RegionEpoch{
		ConfVer: leader.Region.RegionEpoch.ConfVer, Version: leader.Region.RegionEpoch.Version - 1,
	}}
	for _, p := range leader.Region.Peers {
		if p.StoreId == leader.StoreID {
			stale.Peer = p
		}
	}
	r, err := kv.RawPut(ctx, &kvrpcpb.RawPutRequest{Context: stale, Key: []byte("k"), Value: []byte("v")})
	if err != nil || r.GetRegionError().GetEpochNotMatch() == nil {
		t.Errorf("put with a stale epoch = %v, %v; want EpochNotMatch", r, err)
	}
}

// TestRealStoreForwarding: requests without a region context sent to a
// follower of a real cluster are forwarded to the leader and served.
func TestRealStoreForwarding(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-store cluster")
	}
	c := harness.New(t, harness.Options{Stores: 3})
	leader := c.WaitLeader(1)
	fwd := &fakeForwarder{clients: make(map[uint64]kvpb.KvClient)}
	clients := make(map[uint64]kvpb.KvClient)
	for _, id := range c.StoreIDs() {
		_, conn := serveWith(t, c.Store(id), Options{Forwarder: fwd})
		clients[id] = kvpb.NewKvClient(conn)
		fwd.clients[id] = clients[id]
	}
	ctx := testCtx(t)
	for _, id := range c.StoreIDs() {
		key := []byte(fmt.Sprintf("k%d", id))
		mustOK(clients[id].RawPut(ctx, &kvrpcpb.RawPutRequest{Key: key, Value: key}))(t)
	}
	for _, id := range c.StoreIDs() {
		if id == leader.StoreID {
			continue
		}
		r := mustOK(clients[id].RawScan(ctx, &kvrpcpb.RawScanRequest{}))(t)
		if got := pairsString(r.Kvs); got != "k1=k1 k2=k2 k3=k3" {
			t.Errorf("scan through follower store %d = %q", id, got)
		}
	}
}
