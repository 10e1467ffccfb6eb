package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/internal/routekey"
	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/raftstore"
)

// The raw API handlers share one shape: a private method does the work and
// returns an error, and finish sorts that error into the response's
// region_error, its error string, or a gRPC status.

// regionError carries a region error to the response's region_error field.
type regionError struct{ pb *errorpb.Error }

func (e *regionError) Error() string { return "region error: " + e.pb.GetMessage() }

func newRegionError(err error) *regionError { return &regionError{pb: raftstore.ErrToPB(err)} }

// isTypedRegionError reports whether pb carries one of the typed region
// errors clients act on, rather than only a message.
func isTypedRegionError(pb *errorpb.Error) bool {
	return pb.NotLeader != nil || pb.RegionNotFound != nil || pb.KeyNotInRegion != nil ||
		pb.EpochNotMatch != nil || pb.ServerIsBusy != nil || pb.StaleCommand != nil ||
		pb.StoreNotMatch != nil || pb.RaftEntryTooLarge != nil
}

// storeErr classifies an error from the Store or from a RegionSnapshot:
// context expiry, store shutdown and an unknown proposal outcome become gRPC
// statuses, typed region errors become a *regionError, and anything else is
// returned as is, for the response's error string.
func storeErr(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	case errors.Is(err, raftstore.ErrStoreStopped):
		return status.Error(codes.Unavailable, NotRunPrefix+err.Error())
	case errors.Is(err, raftstore.ErrProposalUnknown):
		return status.Error(codes.Unknown, err.Error()+": the write may or may not have been applied")
	}
	if pb := raftstore.ErrToPB(err); isTypedRegionError(pb) {
		return &regionError{pb: pb}
	}
	return err
}

// finish sorts the error of a handler into (region_error, error string,
// gRPC error). Exactly one is set when err is non-nil.
func (s *Server) finish(ctx context.Context, err error) (*errorpb.Error, string, error) {
	if err == nil {
		return nil, "", nil
	}
	var re *regionError
	if errors.As(err, &re) {
		return re.pb, "", nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return nil, "", err
	}
	method, _ := grpc.Method(ctx)
	s.log.Warn("request failed", "method", method, "store_id", s.store.StoreID(), "err", err)
	return nil, err.Error(), nil
}

// target is where a request goes.
type target struct {
	header *raft_cmdpb.RaftRequestHeader
	// routed is the region the server picked by key when the request's
	// context named no region; nil when it did.
	routed *metapb.Region
}

// route resolves a request's context. A context that names a region is used
// as is (after a store check; the raftstore checks the rest); otherwise the
// request goes to this store's region that holds key, with its current epoch.
//
// A request without a region context that this store holds no region for
// comes back as a forwardError when the scheduler knows who serves key.
func (s *Server) route(ctx context.Context, c *kvrpcpb.Context, key []byte) (target, error) {
	t, err := s.routeHere(c, key)
	var re *regionError
	if errors.As(err, &re) && re.pb.RegionNotFound != nil {
		if fw := s.forwardNotFound(ctx, key, re); fw != nil {
			return target{}, fw
		}
	}
	return t, err
}

// routeHere is route without forwarding: it asks no other process.
func (s *Server) routeHere(c *kvrpcpb.Context, key []byte) (target, error) {
	if id := c.GetRegionId(); id != 0 {
		if p := c.GetPeer(); p != nil && p.StoreId != s.store.StoreID() {
			return target{}, newRegionError(&raftstore.StoreNotMatchError{
				RequestStoreID: p.StoreId, ActualStoreID: s.store.StoreID(),
			})
		}
		return target{header: &raft_cmdpb.RaftRequestHeader{
			RegionId: id, Peer: c.GetPeer(), RegionEpoch: c.GetRegionEpoch(),
		}}, nil
	}
	region, peer, err := s.store.RegionByKey(key)
	if err != nil {
		return target{}, storeErr(err)
	}
	return target{
		header: &raft_cmdpb.RaftRequestHeader{RegionId: region.GetId(), Peer: peer, RegionEpoch: region.GetRegionEpoch()},
		routed: region,
	}, nil
}

// execute runs req on the store. On success the caller owns res.Snap, if any.
func (s *Server) execute(ctx context.Context, req *raft_cmdpb.RaftCmdRequest) (raftstore.Result, error) {
	res, err := s.store.Execute(ctx, req)
	if err = resultErr(res, err); err != nil {
		res.Snap.Close()
		return raftstore.Result{}, err
	}
	return res, nil
}

// resultErr is the error of a command's answer from the store: err (what
// Execute returned, or the Result's own Err), no response, or a region
// error in the response.
func resultErr(res raftstore.Result, err error) error {
	switch {
	case err != nil:
		return storeErr(err)
	case res.Resp == nil:
		return errors.New("store returned no response")
	case res.RegionError() != nil:
		return &regionError{pb: res.RegionError()}
	}
	return nil
}

// write proposes reqs as one command. When the server routes by routeKey,
// inRegion (if not nil) checks that the rest of the request lies in the
// chosen region too; with an explicit context the raftstore checks keys.
func (s *Server) write(ctx context.Context, c *kvrpcpb.Context, routeKey []byte, inRegion func(*metapb.Region) error, reqs []*raft_cmdpb.Request) error {
	t, err := s.route(ctx, c, routeKey)
	if err != nil {
		return err
	}
	if t.routed != nil && inRegion != nil {
		if err := inRegion(t.routed); err != nil {
			return newRegionError(err)
		}
	}
	res, err := s.execute(ctx, &raft_cmdpb.RaftCmdRequest{Header: t.header, Requests: reqs})
	if err != nil {
		return s.maybeForward(ctx, t, err)
	}
	res.Snap.Close() // writes carry no snapshot; close one anyway if a store sent it
	return nil
}

// snapshot returns a linearizable snapshot of the region the request is
// for, routing by routeKey when the context names no region. The caller must
// Close it.
func (s *Server) snapshot(ctx context.Context, c *kvrpcpb.Context, routeKey []byte) (*raftstore.RegionSnapshot, error) {
	t, err := s.route(ctx, c, routeKey)
	if err != nil {
		return nil, err
	}
	res, err := s.execute(ctx, &raft_cmdpb.RaftCmdRequest{
		Header:   t.header,
		Requests: []*raft_cmdpb.Request{{CmdType: raft_cmdpb.CmdType_Snap, Snap: &raft_cmdpb.SnapRequest{}}},
	})
	if err != nil {
		return nil, s.maybeForward(ctx, t, err)
	}
	if res.Snap == nil {
		return nil, errors.New("store returned no snapshot for a Snap request")
	}
	return res.Snap, nil
}

// allInRegion returns a check that every key lies in a region.
func allInRegion(keys [][]byte) func(*metapb.Region) error {
	return func(r *metapb.Region) error {
		for _, k := range keys {
			if err := raftstore.CheckKeyInRegion(k, r); err != nil {
				return err
			}
		}
		return nil
	}
}

// RawGet returns the value of a key. A missing key sets not_found; an
// existing key with an empty value does not.
func (s *Server) RawGet(ctx context.Context, req *kvrpcpb.RawGetRequest) (*kvrpcpb.RawGetResponse, error) {
	resp := new(kvrpcpb.RawGetResponse)
	err := s.rawGet(ctx, req, resp)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawGetResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawGet(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawGet(ctx context.Context, req *kvrpcpb.RawGetRequest, resp *kvrpcpb.RawGetResponse) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkKey("key", req.Key); err != nil {
		return err
	}
	if err := checkCF(req.Cf); err != nil {
		return err
	}
	snap, err := s.snapshot(ctx, req.Context, req.Key)
	if err != nil {
		return err
	}
	defer snap.Close()
	if err := raftstore.CheckKeyInRegion(req.Key, snap.Region()); err != nil {
		return newRegionError(err)
	}
	value, found, err := snap.Get(req.Cf, req.Key)
	if err != nil {
		return storeErr(fmt.Errorf("get: %w", err))
	}
	resp.Value, resp.NotFound = value, !found
	return nil
}

// RawBatchGet returns the pairs of the keys that exist, in request order.
// All keys must lie in one region. An empty batch returns nothing.
func (s *Server) RawBatchGet(ctx context.Context, req *kvrpcpb.RawBatchGetRequest) (*kvrpcpb.RawBatchGetResponse, error) {
	resp := new(kvrpcpb.RawBatchGetResponse)
	err := s.rawBatchGet(ctx, req, resp)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawBatchGetResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawBatchGet(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawBatchGet(ctx context.Context, req *kvrpcpb.RawBatchGetRequest, resp *kvrpcpb.RawBatchGetResponse) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkCF(req.Cf); err != nil {
		return err
	}
	if err := checkKeys(req.Keys); err != nil {
		return err
	}
	if len(req.Keys) == 0 {
		return nil
	}
	snap, err := s.snapshot(ctx, req.Context, req.Keys[0])
	if err != nil {
		return err
	}
	defer snap.Close()
	if err := allInRegion(req.Keys)(snap.Region()); err != nil {
		return newRegionError(err)
	}
	pairs := make([]*kvrpcpb.KvPair, 0, len(req.Keys))
	for _, k := range req.Keys {
		value, found, err := snap.Get(req.Cf, k)
		if err != nil {
			return storeErr(fmt.Errorf("get %q: %w", k, err))
		}
		if found {
			pairs = append(pairs, &kvrpcpb.KvPair{Key: k, Value: value})
		}
	}
	resp.Pairs = pairs
	return nil
}

// RawPut writes one pair.
func (s *Server) RawPut(ctx context.Context, req *kvrpcpb.RawPutRequest) (*kvrpcpb.RawPutResponse, error) {
	return s.answerPut(ctx, req, s.rawPut(ctx, req))
}

// answerPut turns rawPut's error into RawPut's answer, forwarding the
// request if the error asks for it.
func (s *Server) answerPut(ctx context.Context, req *kvrpcpb.RawPutRequest, err error) (*kvrpcpb.RawPutResponse, error) {
	resp := new(kvrpcpb.RawPutResponse)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawPutResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawPut(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawPut(ctx context.Context, req *kvrpcpb.RawPutRequest) error {
	if err := checkPut(req); err != nil {
		return err
	}
	return s.write(ctx, req.Context, req.Key, nil, []*raft_cmdpb.Request{putRequest(req.Cf, req.Key, req.Value)})
}

// checkPut validates a RawPut request.
func checkPut(req *kvrpcpb.RawPutRequest) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkKey("key", req.Key); err != nil {
		return err
	}
	if err := checkValue("value", req.Value); err != nil {
		return err
	}
	return checkCF(req.Cf)
}

func putRequest(cf string, key, value []byte) *raft_cmdpb.Request {
	return &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put, Put: &raft_cmdpb.PutRequest{Cf: cf, Key: key, Value: value}}
}

func deleteRequest(cf string, key []byte) *raft_cmdpb.Request {
	return &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Delete, Delete: &raft_cmdpb.DeleteRequest{Cf: cf, Key: key}}
}

// RawBatchPut writes all pairs atomically, as one raft command; a key that
// appears twice ends with its last value. All keys must lie in one region.
// An empty batch is a successful no-op.
func (s *Server) RawBatchPut(ctx context.Context, req *kvrpcpb.RawBatchPutRequest) (*kvrpcpb.RawBatchPutResponse, error) {
	resp := new(kvrpcpb.RawBatchPutResponse)
	err := s.rawBatchPut(ctx, req)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawBatchPutResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawBatchPut(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawBatchPut(ctx context.Context, req *kvrpcpb.RawBatchPutRequest) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkCF(req.Cf); err != nil {
		return err
	}
	if len(req.Pairs) > MaxBatchKeys {
		return invalidf("batch has %d pairs, more than the %d allowed", len(req.Pairs), MaxBatchKeys)
	}
	if len(req.Pairs) == 0 {
		return nil
	}
	total := 0
	keys := make([][]byte, len(req.Pairs))
	reqs := make([]*raft_cmdpb.Request, len(req.Pairs))
	for i, p := range req.Pairs {
		if p == nil {
			return invalidf("pairs[%d] is nil", i)
		}
		if err := checkKey(fmt.Sprintf("pairs[%d].key", i), p.Key); err != nil {
			return err
		}
		if err := checkValue(fmt.Sprintf("pairs[%d].value", i), p.Value); err != nil {
			return err
		}
		total += len(p.Key) + len(p.Value)
		keys[i] = p.Key
		reqs[i] = putRequest(req.Cf, p.Key, p.Value)
	}
	if total > MaxBatchBytes {
		return invalidf("batch pairs total %d bytes, more than the %d allowed", total, MaxBatchBytes)
	}
	return s.write(ctx, req.Context, keys[0], allInRegion(keys[1:]), reqs)
}

// RawDelete deletes one key; deleting a missing key succeeds.
func (s *Server) RawDelete(ctx context.Context, req *kvrpcpb.RawDeleteRequest) (*kvrpcpb.RawDeleteResponse, error) {
	return s.answerDelete(ctx, req, s.rawDelete(ctx, req))
}

// answerDelete is answerPut for RawDelete.
func (s *Server) answerDelete(ctx context.Context, req *kvrpcpb.RawDeleteRequest, err error) (*kvrpcpb.RawDeleteResponse, error) {
	resp := new(kvrpcpb.RawDeleteResponse)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawDeleteResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawDelete(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawDelete(ctx context.Context, req *kvrpcpb.RawDeleteRequest) error {
	if err := checkDelete(req); err != nil {
		return err
	}
	return s.write(ctx, req.Context, req.Key, nil, []*raft_cmdpb.Request{deleteRequest(req.Cf, req.Key)})
}

// checkDelete validates a RawDelete request.
func checkDelete(req *kvrpcpb.RawDeleteRequest) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkKey("key", req.Key); err != nil {
		return err
	}
	return checkCF(req.Cf)
}

// RawBatchDelete deletes all keys atomically, as one raft command. All keys
// must lie in one region. An empty batch is a successful no-op.
func (s *Server) RawBatchDelete(ctx context.Context, req *kvrpcpb.RawBatchDeleteRequest) (*kvrpcpb.RawBatchDeleteResponse, error) {
	resp := new(kvrpcpb.RawBatchDeleteResponse)
	err := s.rawBatchDelete(ctx, req)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawBatchDeleteResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawBatchDelete(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawBatchDelete(ctx context.Context, req *kvrpcpb.RawBatchDeleteRequest) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkCF(req.Cf); err != nil {
		return err
	}
	if err := checkKeys(req.Keys); err != nil {
		return err
	}
	if len(req.Keys) == 0 {
		return nil
	}
	reqs := make([]*raft_cmdpb.Request, len(req.Keys))
	for i, k := range req.Keys {
		reqs[i] = deleteRequest(req.Cf, k)
	}
	return s.write(ctx, req.Context, req.Keys[0], allInRegion(req.Keys[1:]), reqs)
}

// RawDeleteRange deletes [start_key, end_key); an empty end_key means the
// end of the region. start_key == end_key (both non-empty) is an empty range
// and a successful no-op; start_key > end_key is InvalidArgument.
//
// With an explicit context the raftstore clips the range to the region.
// Without one the server routes by start_key and requires the whole range to
// lie in that region, answering KeyNotInRegion (for end_key) otherwise: a
// range that spans regions is not deleted atomically, so the caller must
// split it by region itself rather than have part of it silently ignored.
func (s *Server) RawDeleteRange(ctx context.Context, req *kvrpcpb.RawDeleteRangeRequest) (*kvrpcpb.RawDeleteRangeResponse, error) {
	resp := new(kvrpcpb.RawDeleteRangeResponse)
	err := s.rawDeleteRange(ctx, req)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawDeleteRangeResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawDeleteRange(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawDeleteRange(ctx context.Context, req *kvrpcpb.RawDeleteRangeRequest) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkCF(req.Cf); err != nil {
		return err
	}
	if err := checkRange("start_key", req.StartKey, "end_key", req.EndKey); err != nil {
		return err
	}
	if len(req.EndKey) > 0 && bytes.Equal(req.StartKey, req.EndKey) {
		return nil
	}
	endInRegion := func(r *metapb.Region) error {
		if len(r.EndKey) > 0 && (len(req.EndKey) == 0 || bytes.Compare(req.EndKey, r.EndKey) > 0) {
			return &raftstore.KeyNotInRegionError{Key: req.EndKey, Region: r}
		}
		return nil
	}
	return s.write(ctx, req.Context, req.StartKey, endInRegion, []*raft_cmdpb.Request{{
		CmdType:     raft_cmdpb.CmdType_DeleteRange,
		DeleteRange: &raft_cmdpb.DeleteRangeRequest{Cf: req.Cf, StartKey: req.StartKey, EndKey: req.EndKey},
	}})
}

// RawScan returns up to limit pairs of one region, clipped to it.
//
// Forward, it scans [start_key, end_key) in ascending order; start_key must
// lie in the region. With reverse, as in TiKV, start_key is the exclusive
// upper bound and end_key the inclusive lower bound, and pairs come in
// descending order; the region must hold the keys just below start_key
// (region start < start_key <= region end). Empty bounds are unbounded.
// Without an explicit context a reverse scan is routed to the region that
// holds the largest keys below start_key (the last region when start_key is
// empty).
//
// limit 0 means DefaultScanLimit; more than MaxScanLimit is InvalidArgument.
// Equal non-empty bounds give an empty result.
func (s *Server) RawScan(ctx context.Context, req *kvrpcpb.RawScanRequest) (*kvrpcpb.RawScanResponse, error) {
	resp := new(kvrpcpb.RawScanResponse)
	err := s.rawScan(ctx, req, resp)
	if fw := asForward(err); fw != nil {
		r, ok, ferr := forward(ctx, s, fw, func(ctx context.Context, c kvpb.KvClient) (*kvrpcpb.RawScanResponse, error) {
			cp := *req
			cp.Context = fw.rctx
			return c.RawScan(ctx, &cp)
		})
		if ok {
			return r, ferr
		}
		err = fw.cause
	}
	resp.RegionError, resp.Error, err = s.finish(ctx, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) rawScan(ctx context.Context, req *kvrpcpb.RawScanRequest, resp *kvrpcpb.RawScanResponse) error {
	if req == nil {
		return errNilRequest
	}
	if err := checkCF(req.Cf); err != nil {
		return err
	}
	limit, err := checkScanLimit(req.Limit)
	if err != nil {
		return err
	}
	// lower is inclusive, upper exclusive; routeKey picks the region.
	lower, upper, routeKey := req.StartKey, req.EndKey, req.StartKey
	if req.Reverse {
		if err := checkRange("end_key", req.EndKey, "start_key", req.StartKey); err != nil {
			return err
		}
		lower, upper = req.EndKey, req.StartKey
		if req.Context.GetRegionId() == 0 {
			routeKey = routekey.Before(req.StartKey) // up to 8 KiB: only when routing
		}
	} else if err := checkRange("start_key", req.StartKey, "end_key", req.EndKey); err != nil {
		return err
	}
	if len(upper) > 0 && bytes.Equal(lower, upper) {
		return nil
	}

	snap, err := s.snapshot(ctx, req.Context, routeKey)
	if err != nil {
		return err
	}
	defer snap.Close()
	region := snap.Region()
	if req.Reverse {
		if !upperInRegion(upper, region) {
			return newRegionError(&raftstore.KeyNotInRegionError{Key: upper, Region: region})
		}
	} else if err := raftstore.CheckKeyInRegion(lower, region); err != nil {
		return newRegionError(err)
	}
	kvs, err := snap.Scan(req.Cf, lower, upper, limit, req.KeyOnly, req.Reverse)
	if err != nil {
		return storeErr(fmt.Errorf("scan: %w", err))
	}
	pairs := make([]*kvrpcpb.KvPair, len(kvs))
	for i, kv := range kvs {
		pairs[i] = &kvrpcpb.KvPair{Key: kv.Key, Value: kv.Value}
	}
	resp.Kvs = pairs
	return nil
}

// upperInRegion reports whether a reverse scan with exclusive upper bound
// upper (empty: unbounded) starts in region, i.e. whether the keys just
// below upper belong to it: start < upper <= end.
func upperInRegion(upper []byte, r *metapb.Region) bool {
	if len(upper) == 0 {
		return len(r.EndKey) == 0
	}
	return bytes.Compare(upper, r.StartKey) > 0 && (len(r.EndKey) == 0 || bytes.Compare(upper, r.EndKey) <= 0)
}
