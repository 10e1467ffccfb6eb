package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
)

// sim is a fake cluster for unit tests: gRPC Kv servers on loopback that
// check every request's region context against the true region layout (as
// a store would: NotLeader, EpochNotMatch, KeyNotInRegion, RegionNotFound)
// and serve from one shared map, and a scheduler whose view of the regions
// is set separately (it may be stale, as a real one often is).
type sim struct {
	t *testing.T

	mu struct {
		sync.Mutex
		regions []*simRegion // the truth, by start key
		sched   []*simRegion // what the scheduler says
		data    map[string][]byte
		calls   map[string]int // method → count
		// inject, if set, answers a request before anything else.
		inject func(method string, store uint64, rctx *kvrpcpb.Context) (*errorpb.Error, error)
	}
	stores map[uint64]*simStore
}

type simRegion struct {
	meta   *metapb.Region
	leader uint64 // store id
}

type simStore struct {
	kvpb.UnimplementedKvServer
	id   uint64
	addr string
	s    *sim
	g    *grpc.Server
}

// newSim starts n stores and one region over the whole key space with a
// voter on each store, led by store 1.
func newSim(t *testing.T, n int) *sim {
	s := &sim{t: t, stores: map[uint64]*simStore{}}
	s.mu.data = map[string][]byte{}
	s.mu.calls = map[string]int{}
	var peers []*metapb.Peer
	for i := 1; i <= n; i++ {
		id := uint64(i)
		peers = append(peers, &metapb.Peer{Id: 100 + id, StoreId: id})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		st := &simStore{id: id, addr: lis.Addr().String(), s: s, g: g}
		kvpb.RegisterKvServer(g, st)
		go g.Serve(lis)
		t.Cleanup(g.Stop)
		s.stores[id] = st
	}
	r := &simRegion{meta: &metapb.Region{Id: 1, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}, Peers: peers}, leader: 1}
	s.mu.regions = []*simRegion{r}
	s.mu.sched = []*simRegion{r}
	return s
}

// GetRegion implements Scheduler with the scheduler's view.
func (s *sim) GetRegion(_ context.Context, key []byte) (*metapb.Region, *metapb.Peer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.calls["GetRegion"]++
	for _, r := range s.mu.sched {
		if contains(r.meta, key) {
			return r.meta, storePeer(r.meta, r.leader), nil
		}
	}
	return nil, nil, fmt.Errorf("no region for %q", key)
}

// GetStore implements Scheduler.
func (s *sim) GetStore(_ context.Context, id uint64) (*metapb.Store, error) {
	st := s.stores[id]
	if st == nil {
		return nil, fmt.Errorf("store %d not found", id)
	}
	return &metapb.Store{Id: id, Address: st.addr}, nil
}

func (s *sim) calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.calls[method]
}

func (s *sim) setInject(f func(method string, store uint64, rctx *kvrpcpb.Context) (*errorpb.Error, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.inject = f
}

// split splits the true region holding key at key (ids from 1000 up); the
// scheduler learns of it only if tell is set.
func (s *sim) split(key string, tell bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.mu.regions {
		if !contains(r.meta, []byte(key)) {
			continue
		}
		if bytes.Equal(r.meta.StartKey, []byte(key)) {
			s.t.Fatalf("split at %q: already a boundary", key)
		}
		ver := r.meta.RegionEpoch.Version + 1
		left := &metapb.Region{Id: r.meta.Id, StartKey: r.meta.StartKey, EndKey: []byte(key),
			RegionEpoch: &metapb.RegionEpoch{ConfVer: r.meta.RegionEpoch.ConfVer, Version: ver}, Peers: r.meta.Peers}
		newID := uint64(1000 + len(s.mu.regions))
		var peers []*metapb.Peer
		for _, p := range r.meta.Peers {
			peers = append(peers, &metapb.Peer{Id: newID*10 + p.StoreId, StoreId: p.StoreId})
		}
		right := &metapb.Region{Id: newID, StartKey: []byte(key), EndKey: r.meta.EndKey,
			RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: ver}, Peers: peers}
		s.mu.regions = slices.Insert(slices.Delete(s.mu.regions, i, i+1), i,
			&simRegion{meta: left, leader: r.leader}, &simRegion{meta: right, leader: r.leader})
		if tell {
			s.mu.sched = slices.Clone(s.mu.regions)
		}
		return
	}
}

// tell brings the scheduler's view up to date.
func (s *sim) tell() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.sched = slices.Clone(s.mu.regions)
}

// transfer moves the leadership of the true region holding key to store.
func (s *sim) transfer(key string, store uint64, tell bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.mu.regions {
		if contains(r.meta, []byte(key)) {
			s.mu.regions[i] = &simRegion{meta: r.meta, leader: store}
			if tell {
				s.mu.sched = slices.Clone(s.mu.regions)
			}
		}
	}
}

// check returns the region the request may be served from, or the region
// error a store would answer, or the injected failure.
func (st *simStore) check(method string, rctx *kvrpcpb.Context, keys ...[]byte) (*metapb.Region, *errorpb.Error, error) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.calls[method]++
	if f := s.mu.inject; f != nil {
		if re, err := f(method, st.id, rctx); re != nil || err != nil {
			return nil, re, err
		}
	}
	if rctx.GetRegionId() == 0 {
		return nil, nil, status.Error(codes.FailedPrecondition, "sim: the client must send a region context")
	}
	var r *simRegion
	var after []*metapb.Region // like the raftstore: up to 4 regions that follow
	for i, x := range s.mu.regions {
		if x.meta.Id == rctx.RegionId {
			r = x
			for _, y := range s.mu.regions[i+1 : min(i+5, len(s.mu.regions))] {
				after = append(after, y.meta)
			}
		}
	}
	if r == nil || storePeer(r.meta, st.id) == nil {
		return nil, &errorpb.Error{Message: "region not found", RegionNotFound: &errorpb.RegionNotFound{RegionId: rctx.RegionId}}, nil
	}
	if rctx.GetPeer().GetStoreId() != st.id {
		return nil, nil, status.Error(codes.FailedPrecondition, "sim: peer of another store")
	}
	if r.leader != st.id {
		return nil, &errorpb.Error{Message: "not leader", NotLeader: &errorpb.NotLeader{RegionId: r.meta.Id, Leader: storePeer(r.meta, r.leader)}}, nil
	}
	if e := rctx.GetRegionEpoch(); e.GetVersion() != r.meta.RegionEpoch.Version { // reads and writes check the version only
		cur := append([]*metapb.Region{r.meta}, after...)
		return nil, &errorpb.Error{Message: "epoch not match", EpochNotMatch: &errorpb.EpochNotMatch{CurrentRegions: cur}}, nil
	}
	for _, k := range keys {
		if !contains(r.meta, k) {
			return nil, &errorpb.Error{Message: "key not in region", KeyNotInRegion: &errorpb.KeyNotInRegion{Key: k, RegionId: r.meta.Id}}, nil
		}
	}
	return r.meta, nil, nil
}

// BatchCommands serves the batch stream as a real store does.
func (st *simStore) BatchCommands(stream kvpb.Kv_BatchCommandsServer) error {
	return server.ServeBatchCommands(stream, st)
}

func (st *simStore) RawGet(_ context.Context, req *kvrpcpb.RawGetRequest) (*kvrpcpb.RawGetResponse, error) {
	_, re, err := st.check("RawGet", req.Context, req.Key)
	if re != nil || err != nil {
		return &kvrpcpb.RawGetResponse{RegionError: re}, err
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	v, ok := st.s.mu.data[string(req.Key)]
	return &kvrpcpb.RawGetResponse{Value: v, NotFound: !ok}, nil
}

func (st *simStore) RawPut(_ context.Context, req *kvrpcpb.RawPutRequest) (*kvrpcpb.RawPutResponse, error) {
	_, re, err := st.check("RawPut", req.Context, req.Key)
	if re != nil || err != nil {
		return &kvrpcpb.RawPutResponse{RegionError: re}, err
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	st.s.mu.data[string(req.Key)] = req.Value
	return &kvrpcpb.RawPutResponse{}, nil
}

func (st *simStore) RawDelete(_ context.Context, req *kvrpcpb.RawDeleteRequest) (*kvrpcpb.RawDeleteResponse, error) {
	_, re, err := st.check("RawDelete", req.Context, req.Key)
	if re != nil || err != nil {
		return &kvrpcpb.RawDeleteResponse{RegionError: re}, err
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	delete(st.s.mu.data, string(req.Key))
	return &kvrpcpb.RawDeleteResponse{}, nil
}

func (st *simStore) RawBatchGet(_ context.Context, req *kvrpcpb.RawBatchGetRequest) (*kvrpcpb.RawBatchGetResponse, error) {
	_, re, err := st.check("RawBatchGet", req.Context, req.Keys...)
	if re != nil || err != nil {
		return &kvrpcpb.RawBatchGetResponse{RegionError: re}, err
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	resp := &kvrpcpb.RawBatchGetResponse{}
	for _, k := range req.Keys {
		if v, ok := st.s.mu.data[string(k)]; ok {
			resp.Pairs = append(resp.Pairs, &kvrpcpb.KvPair{Key: k, Value: v})
		}
	}
	return resp, nil
}

func (st *simStore) RawBatchPut(_ context.Context, req *kvrpcpb.RawBatchPutRequest) (*kvrpcpb.RawBatchPutResponse, error) {
	var keys [][]byte
	for _, p := range req.Pairs {
		keys = append(keys, p.Key)
	}
	_, re, err := st.check("RawBatchPut", req.Context, keys...)
	if re != nil || err != nil {
		return &kvrpcpb.RawBatchPutResponse{RegionError: re}, err
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	for _, p := range req.Pairs {
		st.s.mu.data[string(p.Key)] = p.Value
	}
	return &kvrpcpb.RawBatchPutResponse{}, nil
}

func (st *simStore) RawBatchDelete(_ context.Context, req *kvrpcpb.RawBatchDeleteRequest) (*kvrpcpb.RawBatchDeleteResponse, error) {
	_, re, err := st.check("RawBatchDelete", req.Context, req.Keys...)
	if re != nil || err != nil {
		return &kvrpcpb.RawBatchDeleteResponse{RegionError: re}, err
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	for _, k := range req.Keys {
		delete(st.s.mu.data, string(k))
	}
	return &kvrpcpb.RawBatchDeleteResponse{}, nil
}

func (st *simStore) RawDeleteRange(_ context.Context, req *kvrpcpb.RawDeleteRangeRequest) (*kvrpcpb.RawDeleteRangeResponse, error) {
	region, re, err := st.check("RawDeleteRange", req.Context, req.StartKey)
	if re != nil || err != nil {
		return &kvrpcpb.RawDeleteRangeResponse{RegionError: re}, err
	}
	end := clipEnd(req.EndKey, region.EndKey)
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	for k := range st.s.mu.data {
		if k >= string(req.StartKey) && (len(end) == 0 || k < string(end)) {
			delete(st.s.mu.data, k)
		}
	}
	return &kvrpcpb.RawDeleteRangeResponse{}, nil
}

func (st *simStore) RawScan(_ context.Context, req *kvrpcpb.RawScanRequest) (*kvrpcpb.RawScanResponse, error) {
	var route [][]byte
	if !req.Reverse {
		route = append(route, req.StartKey) // a reverse scan is checked below
	}
	region, re, err := st.check("RawScan", req.Context, route...)
	if re != nil || err != nil {
		return &kvrpcpb.RawScanResponse{RegionError: re}, err
	}
	lower, upper := req.StartKey, req.EndKey
	if req.Reverse {
		lower, upper = req.EndKey, req.StartKey
		if !holdsBelow(region, upper) {
			return &kvrpcpb.RawScanResponse{RegionError: &errorpb.Error{Message: "key not in region", KeyNotInRegion: &errorpb.KeyNotInRegion{Key: upper}}}, nil
		}
	}
	// Clip to the region.
	if bytes.Compare(lower, region.StartKey) < 0 {
		lower = region.StartKey
	}
	upper = clipEnd(upper, region.EndKey)
	st.s.mu.Lock()
	var keys []string
	for k := range st.s.mu.data {
		if k >= string(lower) && (len(upper) == 0 || k < string(upper)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if req.Reverse {
		slices.Reverse(keys)
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = 10 << 10
	}
	resp := &kvrpcpb.RawScanResponse{}
	for _, k := range keys[:min(limit, len(keys))] {
		p := &kvrpcpb.KvPair{Key: []byte(k)}
		if !req.KeyOnly {
			p.Value = st.s.mu.data[k]
		}
		resp.Kvs = append(resp.Kvs, p)
	}
	st.s.mu.Unlock()
	return resp, nil
}
