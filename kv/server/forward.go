package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
)

// Forwarding (DESIGN §4). A request whose context names no region is routed
// by key on whatever store it reaches. When that store cannot serve it, the
// server passes it, once, to the store that can:
//
//   - the store's peer of the region is not the leader and knows who is
//     (NotLeader with a leader): the request goes to the leader's store with
//     the region context filled in (region id, the epoch this store knows,
//     the leader peer);
//   - the store holds no region for the key (RegionNotFound): the scheduler
//     says which region holds it and who leads it, and the request goes
//     there, with that context.
//
// The leader's answer, whatever it is, is returned as is. A forwarded
// request carries ForwardedFromMetadata and a region context, and is never
// forwarded again. If the leader's store cannot be reached, the client gets
// the region error this store would have answered.

// ForwardedFromMetadata is the gRPC metadata key that marks a forwarded
// request; its value is the id of the store that forwarded it.
const ForwardedFromMetadata = "regionkv-forwarded-from"

// forwardTimeout bounds a forwarded call whose client set no deadline.
const forwardTimeout = 30 * time.Second

// Forwarder is what forwarding needs from the rest of the cluster. The store
// process implements it with its transport's connection pool and the
// scheduler client.
type Forwarder interface {
	// KvClient returns a client of a store's Kv service.
	KvClient(ctx context.Context, storeID uint64) (kvpb.KvClient, error)
	// Unreachable reports that a call to the store failed with Unavailable
	// (its address may have changed).
	Unreachable(storeID uint64)
	// LocateKey returns the region that holds key and its leader (nil if
	// unknown), as the scheduler knows them.
	LocateKey(ctx context.Context, key []byte) (*metapb.Region, *metapb.Peer, error)
}

// forwardError asks the handler to pass the request to another store with
// a region context. cause is the region error to answer if that fails.
type forwardError struct {
	storeID uint64
	rctx    *kvrpcpb.Context
	cause   *regionError
}

func (e *forwardError) Error() string {
	return fmt.Sprintf("forward to store %d (region %d): %v", e.storeID, e.rctx.RegionId, e.cause)
}

// mayForward reports whether a request (whose context named no region) may
// be forwarded: forwarding is configured and the request was not forwarded
// to us already.
func (s *Server) mayForward(ctx context.Context) bool {
	if s.fwd == nil {
		return false
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(ForwardedFromMetadata)) == 0
}

// forwardNotLeader turns a NotLeader answer for region (routed by key here)
// into a forwardError to the leader's store, or returns nil.
func (s *Server) forwardNotLeader(ctx context.Context, region *metapb.Region, re *regionError) *forwardError {
	leader := re.pb.GetNotLeader().GetLeader()
	if leader == nil || leader.StoreId == 0 || leader.StoreId == s.store.StoreID() || !s.mayForward(ctx) {
		return nil
	}
	return &forwardError{
		storeID: leader.StoreId,
		rctx:    &kvrpcpb.Context{RegionId: region.Id, RegionEpoch: region.RegionEpoch, Peer: leader},
		cause:   re,
	}
}

// forwardNotFound asks the scheduler who serves key, which this store holds
// no region for, and returns a forwardError to it, or nil.
func (s *Server) forwardNotFound(ctx context.Context, key []byte, re *regionError) *forwardError {
	if !s.mayForward(ctx) {
		return nil
	}
	region, leader, err := s.fwd.LocateKey(ctx, key)
	if err != nil {
		s.log.Debug("cannot locate key for forwarding", "store_id", s.store.StoreID(), "err", err)
		return nil
	}
	if region == nil || leader == nil || leader.StoreId == 0 || leader.StoreId == s.store.StoreID() {
		return nil
	}
	return &forwardError{
		storeID: leader.StoreId,
		rctx:    &kvrpcpb.Context{RegionId: region.Id, RegionEpoch: region.RegionEpoch, Peer: leader},
		cause:   re,
	}
}

// asForward returns the forwardError in err, if any.
func asForward(err error) *forwardError {
	var fw *forwardError
	if errors.As(err, &fw) {
		return fw
	}
	return nil
}

// forward makes call on the store fw names, with the metadata that marks
// the request forwarded. ok is false when the store could not be reached;
// the caller then answers fw.cause.
func forward[R any](ctx context.Context, s *Server, fw *forwardError, call func(context.Context, kvpb.KvClient) (R, error)) (resp R, ok bool, err error) {
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, forwardTimeout)
		defer cancel()
	}
	c, err := s.fwd.KvClient(ctx, fw.storeID)
	if err == nil {
		out := metadata.AppendToOutgoingContext(ctx, ForwardedFromMetadata, strconv.FormatUint(s.store.StoreID(), 10))
		resp, err = call(out, c)
		if err == nil || status.Code(err) != codes.Unavailable {
			return resp, true, err
		}
		s.fwd.Unreachable(fw.storeID)
	}
	if ctx.Err() != nil {
		var zero R
		return zero, true, status.FromContextError(ctx.Err()).Err()
	}
	// Common while a leader's store is down and until a new leader is
	// elected: keep it out of the default log level.
	s.log.Debug("cannot forward request", "store_id", s.store.StoreID(), "to_store", fw.storeID,
		"region_id", fw.rctx.RegionId, "err", err)
	var zero R
	return zero, false, nil
}

// maybeForward returns, for the failure err of a request routed by key here
// (t.routed set), a forwardError to the region's leader when err is
// NotLeader naming one; otherwise err.
func (s *Server) maybeForward(ctx context.Context, t target, err error) error {
	var re *regionError
	if t.routed == nil || !errors.As(err, &re) || re.pb.NotLeader == nil {
		return err
	}
	if fw := s.forwardNotLeader(ctx, t.routed, re); fw != nil {
		return fw
	}
	return err
}
