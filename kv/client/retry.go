package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
)

// backoff is a jittered exponential backoff: the n-th wait is drawn from
// [d/2, d] with d = base·2ⁿ capped at max. A few immediate retries (after a
// region error that told the client exactly where to go) are free.
type backoff struct {
	base, max time.Duration
	n         int
	free      int
}

// freeRetries is how many retries in a row may skip the wait.
const freeRetries = 2

func (b *backoff) next() time.Duration {
	d := b.base << min(b.n, 20)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

// now returns 0 for the first freeRetries calls, then next().
func (b *backoff) now() time.Duration {
	if b.free < freeRetries {
		b.free++
		return 0
	}
	return b.next()
}

// request is one region request as the retry loop sees it.
type request struct {
	op    string // for errors: "get", "scan", ...
	key   []byte // for errors
	write bool
	// locate says where to send the next attempt.
	locate func(ctx context.Context) (location, error)
	// send makes one attempt with the region context of loc. It returns the
	// response's region error and error string, or the RPC's error.
	send func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, loc location) (*errorpb.Error, string, error)
}

// errRelocate, returned by a request's locate or send, asks the loop to give
// up on the request as is (a batch whose keys now span several regions) so
// that the caller can split it.
var errRelocate = errors.New("request spans several regions")

// run runs req until it succeeds, fails for good, or ctx ends.
func (c *Client) run(ctx context.Context, req *request) error {
	if c.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := withDefaultTimeout(ctx, c.opts.Timeout)
	defer cancel()
	start := time.Now()
	bo := backoff{base: c.opts.BackoffBase, max: c.opts.BackoffMax}
	var (
		last      error // why the last attempt failed
		ambiguous bool  // some attempt of a write may have been applied
		attempts  int
	)
	giveUp := func() error {
		err := fmt.Errorf("regionkv: %s %q: gave up after %d attempts in %v: %w (last error: %v)",
			req.op, req.key, attempts, time.Since(start).Round(time.Millisecond), context.Cause(ctx), last)
		if ambiguous {
			err = fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
		}
		return err
	}
	for {
		if ctx.Err() != nil {
			return giveUp()
		}
		var wait time.Duration
		loc, err := req.locate(ctx)
		switch {
		case errors.Is(err, errRelocate):
			return err
		case err != nil && ctx.Err() != nil:
			last = err
			return giveUp()
		case err != nil:
			last = err
			wait = bo.next()
		default:
			attempts++
			wait, err = c.attempt(ctx, req, loc, &bo, &ambiguous)
			if err == nil || wait < 0 {
				return err
			}
			last = err
		}
		if wait > 0 {
			c.opts.Logger.Debug("retrying", "op", req.op, "key", req.key, "wait", wait, "err", last)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return giveUp()
			case <-t.C:
			}
		}
	}
}

// attempt sends req once to loc. It returns (0, nil) on success, (-1, err)
// when the request failed for good, and otherwise the wait before the next
// attempt and why this one failed.
func (c *Client) attempt(ctx context.Context, req *request, loc location, bo *backoff, ambiguous *bool) (time.Duration, error) {
	if loc.peer == nil {
		c.cache.invalidate(loc.region.GetId())
		return bo.next(), fmt.Errorf("region %d has no voter", loc.region.GetId())
	}
	storeID := loc.peer.StoreId
	kv, addr, err := c.stores.client(ctx, storeID)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return -1, err
		}
		c.cache.nextPeer(loc.region.Id, storeID)
		return bo.next(), err
	}
	rctx := &kvrpcpb.Context{RegionId: loc.region.Id, RegionEpoch: loc.region.RegionEpoch, Peer: loc.peer}
	// The attempt gets a deadline of its own only if the caller's is
	// further away: a context costs a timer and allocations per request.
	actx, cancel := ctx, context.CancelFunc(func() {})
	attemptDeadline := time.Now().Add(c.opts.AttemptTimeout)
	if d, ok := ctx.Deadline(); ok && !d.After(attemptDeadline) {
		attemptDeadline = d
	} else {
		actx, cancel = context.WithDeadline(ctx, attemptDeadline)
	}
	regionErr, msg, err := req.send(actx, kv, rctx, loc)
	cancel()
	switch {
	case errors.Is(err, errRelocate):
		return -1, err
	case err != nil:
		if d, ok := ctx.Deadline(); ok && !d.After(attemptDeadline) && status.Code(err) == codes.DeadlineExceeded {
			// The store enforces the caller's deadline too (gRPC sends it
			// along) and may end the call a moment before ctx's own timer
			// fires: let ctx catch up, so the error says whose deadline it was.
			<-ctx.Done()
		}
		return c.rpcFailed(ctx, req, loc, addr, err, bo, ambiguous)
	case regionErr != nil:
		return c.regionFailed(req, loc, regionErr, bo)
	case msg != "":
		return -1, &StoreError{StoreID: storeID, Msg: msg}
	}
	return 0, nil
}

// rpcFailed sorts out a failed RPC.
func (c *Client) rpcFailed(ctx context.Context, req *request, loc location, addr string, err error, bo *backoff, ambiguous *bool) (time.Duration, error) {
	storeID := loc.peer.StoreId
	where := fmt.Errorf("store %d at %s: %w", storeID, addr, err)
	if c.closed.Load() {
		return -1, fmt.Errorf("%w (during %s %q)", ErrClosed, req.op, req.key)
	}
	if ctx.Err() != nil {
		// The caller's context ended during the attempt; run reports it.
		if req.write {
			*ambiguous = true
		}
		return 0, where
	}
	switch status.Code(err) {
	case codes.Unavailable:
		// Down, unreachable, or shutting down: try the next voter, and look
		// the store's address up again (it may have moved).
		c.stores.markStale(storeID)
		c.cache.nextPeer(loc.region.Id, storeID)
		return bo.next(), where
	case codes.Unknown, codes.DeadlineExceeded, codes.Canceled:
		// Unknown: a proposal whose fate the store cannot know. An attempt
		// past AttemptTimeout is just as ambiguous for a write.
		if req.write {
			*ambiguous = true
			if !c.opts.RetryUnknownOutcome {
				return -1, fmt.Errorf("%w: %s %q: %w", ErrUnknownOutcome, req.op, req.key, where)
			}
		}
		if status.Code(err) != codes.Unknown {
			c.cache.nextPeer(loc.region.Id, storeID) // the peer may be stuck
		}
		return bo.next(), where
	}
	return -1, fmt.Errorf("regionkv: %s %q: %w", req.op, req.key, where)
}

// regionFailed fixes the cache after a region error and says how long to
// wait before the next attempt. Region errors mean the request was not
// applied.
func (c *Client) regionFailed(req *request, loc location, e *errorpb.Error, bo *backoff) (time.Duration, error) {
	id := loc.region.Id
	err := fmt.Errorf("store %d: region %d: %s", loc.peer.StoreId, id, regionErrorString(e))
	switch {
	case e.NotLeader != nil:
		leader := e.NotLeader.Leader
		if leader == nil || leader.StoreId == 0 {
			// An election is running: try the next voter after a pause.
			c.cache.nextPeer(id, loc.peer.StoreId)
			return bo.next(), err
		}
		if leader.Id == loc.peer.Id {
			return bo.next(), err // it says it leads but refused: a moment
		}
		if !c.cache.setLeader(id, leader) {
			c.cache.invalidate(id) // a member the cache does not know
			return bo.next(), err
		}
		return bo.now(), err
	case e.EpochNotMatch != nil:
		c.cache.invalidate(id)
		for _, r := range e.EpochNotMatch.CurrentRegions {
			// Only a leader checks epochs, and the halves of a split it led
			// are led from the same store at first: a good guess.
			c.cache.insert(r, storePeer(r, loc.peer.StoreId))
		}
		return bo.now(), err
	case e.KeyNotInRegion != nil, e.RegionNotFound != nil:
		c.cache.invalidate(id)
		return bo.next(), err
	case e.StoreNotMatch != nil:
		c.stores.markStale(loc.peer.StoreId)
		c.cache.invalidate(id)
		return bo.next(), err
	case e.ServerIsBusy != nil:
		return max(bo.next(), time.Duration(e.ServerIsBusy.BackoffMs)*time.Millisecond), err
	case e.StaleCommand != nil:
		return bo.next(), err
	case e.RaftEntryTooLarge != nil:
		return -1, &RegionError{RegionID: id, Msg: regionErrorString(e)}
	}
	c.cache.invalidate(id)
	return bo.next(), err
}

func regionErrorString(e *errorpb.Error) string {
	if e.Message != "" {
		return e.Message
	}
	return e.String()
}

// storePeer returns region's voter on a store, or nil.
func storePeer(r *metapb.Region, storeID uint64) *metapb.Peer {
	for _, p := range r.GetPeers() {
		if p.StoreId == storeID && p.Role == metapb.PeerRole_Voter {
			return p
		}
	}
	return nil
}
