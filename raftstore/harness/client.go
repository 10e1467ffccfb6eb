package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/raftstore"
)

// ErrUnknownOutcome is returned by a write whose attempt got no definite
// answer (a timeout, a store stopping under it, a proposal lost in a
// leader change): it may or may not have been applied.
var ErrUnknownOutcome = errors.New("harness: write outcome unknown")

// DefaultAttemptTimeout is the default Options.AttemptTimeout.
const DefaultAttemptTimeout = time.Second

// mustTimeout bounds the Must helpers.
const mustTimeout = 15 * time.Second

const retryBackoff = 10 * time.Millisecond

// route picks the store to try for key: usually the last known leader of the
// key's region if it is running, else a random running store. One attempt in
// five ignores the hint, so that scenarios also knock on followers and stale
// leaders, where a read must never be served. It returns the
// store, the region as that store sees it, and that store's peer.
func (c *Cluster) route(key []byte) (*raftstore.Store, *metapb.Region, *metapb.Peer, error) {
	ids := c.StoreIDs()
	start := c.Rand(len(ids))
	for i := range ids {
		s := c.Store(ids[(start+i)%len(ids)])
		if s == nil {
			continue
		}
		region, peer, err := s.RegionByKey(key)
		if err != nil {
			continue
		}
		c.mu.Lock()
		hint := c.leaderHint[region.Id]
		c.mu.Unlock()
		if hint != 0 && hint != s.StoreID() && c.Float() >= 0.2 {
			if hs := c.Store(hint); hs != nil {
				if r, p, err := hs.RegionByKey(key); err == nil {
					return hs, r, p, nil
				}
			}
		}
		return s, region, peer, nil
	}
	return nil, nil, nil, fmt.Errorf("no running store has a region for key %q", key)
}

// noteRegionError updates the leader hint from a region error.
func (c *Cluster) noteRegionError(regionID uint64, tried *raftstore.Store, rerr *errorpb.Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := rerr.GetNotLeader().GetLeader(); l != nil {
		c.leaderHint[regionID] = l.StoreId
	} else if c.leaderHint[regionID] == tried.StoreID() {
		delete(c.leaderHint, regionID)
	}
}

func (c *Cluster) noteLeader(regionID, storeID uint64) {
	c.mu.Lock()
	c.leaderHint[regionID] = storeID
	c.mu.Unlock()
}

func (c *Cluster) forgetLeader(regionID, storeID uint64) {
	c.mu.Lock()
	if c.leaderHint[regionID] == storeID {
		delete(c.leaderHint, regionID)
	}
	c.mu.Unlock()
}

func header(region *metapb.Region, peer *metapb.Peer) *raft_cmdpb.RaftRequestHeader {
	return &raft_cmdpb.RaftRequestHeader{RegionId: region.Id, Peer: peer, RegionEpoch: region.RegionEpoch}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// write runs a write command on key's region until it succeeds, gets an
// ambiguous outcome (ErrUnknownOutcome), or ctx ends before any attempt
// could have applied it (ctx's error).
func (c *Cluster) write(ctx context.Context, key []byte, reqs ...*raft_cmdpb.Request) error {
	var lastErr error
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		}
		s, region, peer, err := c.route(key)
		if err != nil {
			lastErr = err
			_ = sleepCtx(ctx, retryBackoff)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		res, err := s.Execute(actx, &raft_cmdpb.RaftCmdRequest{Header: header(region, peer), Requests: reqs})
		cancel()
		if err != nil {
			c.forgetLeader(region.Id, s.StoreID())
			return fmt.Errorf("%w: store %d: %v", ErrUnknownOutcome, s.StoreID(), err)
		}
		if rerr := res.RegionError(); rerr != nil {
			// Every region error is definite: the command was refused before
			// it was proposed, or its log slot went to another entry.
			c.noteRegionError(region.Id, s, rerr)
			lastErr = fmt.Errorf("store %d: %s", s.StoreID(), rerr.Message)
			_ = sleepCtx(ctx, retryBackoff)
			continue
		}
		c.noteLeader(region.Id, s.StoreID())
		return nil
	}
}

// snapshot gets a linearizable snapshot of key's region, retrying until ctx
// ends. The caller must Close it.
func (c *Cluster) snapshot(ctx context.Context, key []byte) (*raftstore.RegionSnapshot, error) {
	var lastErr error
	for {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		}
		s, region, peer, err := c.route(key)
		if err != nil {
			lastErr = err
			_ = sleepCtx(ctx, retryBackoff)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
		res, err := s.Execute(actx, &raft_cmdpb.RaftCmdRequest{
			Header:   header(region, peer),
			Requests: []*raft_cmdpb.Request{{CmdType: raft_cmdpb.CmdType_Snap, Snap: &raft_cmdpb.SnapRequest{}}},
		})
		cancel()
		if err != nil {
			c.forgetLeader(region.Id, s.StoreID())
			lastErr = fmt.Errorf("store %d: %v", s.StoreID(), err)
			continue
		}
		if rerr := res.RegionError(); rerr != nil {
			c.noteRegionError(region.Id, s, rerr)
			lastErr = fmt.Errorf("store %d: %s", s.StoreID(), rerr.Message)
			_ = sleepCtx(ctx, retryBackoff)
			continue
		}
		c.noteLeader(region.Id, s.StoreID())
		return res.Snap, nil
	}
}

// Put writes key=value. See write for the errors.
func (c *Cluster) Put(ctx context.Context, key, value []byte) error {
	return c.write(ctx, key, &raft_cmdpb.Request{
		CmdType: raft_cmdpb.CmdType_Put,
		Put:     &raft_cmdpb.PutRequest{Cf: engine.CFDefault, Key: key, Value: value},
	})
}

// Delete removes key. See write for the errors.
func (c *Cluster) Delete(ctx context.Context, key []byte) error {
	return c.write(ctx, key, &raft_cmdpb.Request{
		CmdType: raft_cmdpb.CmdType_Delete,
		Delete:  &raft_cmdpb.DeleteRequest{Cf: engine.CFDefault, Key: key},
	})
}

// Get reads key linearizably.
func (c *Cluster) Get(ctx context.Context, key []byte) (value []byte, found bool, err error) {
	snap, err := c.snapshot(ctx, key)
	if err != nil {
		return nil, false, err
	}
	defer snap.Close()
	return snap.Get(engine.CFDefault, key)
}

// Scan returns up to limit pairs of [start, end) (end empty: to the end of
// the key space), in key order, across regions; limit <= 0 means no limit.
// Each region is read from its own linearizable snapshot.
func (c *Cluster) Scan(ctx context.Context, start, end []byte, limit int) ([]raftstore.KV, error) {
	var out []raftstore.KV
	cur := start
	for limit <= 0 || len(out) < limit {
		snap, err := c.snapshot(ctx, cur)
		if err != nil {
			return nil, err
		}
		kvs, err := snap.Scan(engine.CFDefault, cur, end, limit-len(out), false, false)
		region := snap.Region()
		snap.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, kvs...)
		if len(region.EndKey) == 0 || (len(end) > 0 && bytes.Compare(region.EndKey, end) >= 0) {
			break
		}
		cur = region.EndKey
	}
	return out, nil
}

// MustPut writes key=value, retrying through ambiguous outcomes (a put is
// idempotent), and fails the test if it cannot within 15s.
func (c *Cluster) MustPut(key, value []byte) {
	c.t.Helper()
	c.mustWrite(func(ctx context.Context) error { return c.Put(ctx, key, value) }, "put", key)
}

// MustDelete removes key like MustPut writes.
func (c *Cluster) MustDelete(key []byte) {
	c.t.Helper()
	c.mustWrite(func(ctx context.Context) error { return c.Delete(ctx, key) }, "delete", key)
}

func (c *Cluster) mustWrite(f func(context.Context) error, what string, key []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mustTimeout)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrUnknownOutcome) || ctx.Err() != nil {
			c.t.Fatalf("harness: %s %q: %v", what, key, err)
		}
	}
}

// MustGet returns the value of key, failing the test if it is missing or
// cannot be read within 15s.
func (c *Cluster) MustGet(key []byte) []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mustTimeout)
	defer cancel()
	v, found, err := c.Get(ctx, key)
	if err != nil {
		c.t.Fatalf("harness: get %q: %v", key, err)
	}
	if !found {
		c.t.Fatalf("harness: get %q: not found", key)
	}
	return v
}

// MustGetEqual fails the test unless key holds want.
func (c *Cluster) MustGetEqual(key, want []byte) {
	c.t.Helper()
	if got := c.MustGet(key); !bytes.Equal(got, want) {
		c.t.Fatalf("harness: get %q = %q, want %q", key, got, want)
	}
}

// MustGetNone fails the test unless key is missing.
func (c *Cluster) MustGetNone(key []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mustTimeout)
	defer cancel()
	v, found, err := c.Get(ctx, key)
	if err != nil {
		c.t.Fatalf("harness: get %q: %v", key, err)
	}
	if found {
		c.t.Fatalf("harness: get %q = %q, want not found", key, v)
	}
}
