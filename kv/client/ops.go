package client

import (
	"bytes"
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
)

// KvPair is a key and its value.
type KvPair struct {
	Key, Value []byte
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "regionkv: "+format, args...)
}

func checkKey(key []byte) error {
	if len(key) == 0 {
		return invalid("key is empty")
	}
	return nil
}

// keyRequest is a request for one key, sent to the region that holds it.
func (c *Client) keyRequest(op string, key []byte, write bool,
	send func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context) (*errorpb.Error, string, error)) *request {
	return &request{
		op: op, key: key, write: write,
		locate: func(ctx context.Context) (location, error) { return c.locate(ctx, key) },
		send: func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, _ location) (*errorpb.Error, string, error) {
			return send(ctx, kv, rctx)
		},
	}
}

// Get returns the value of key, or ErrNotFound. An empty value is a value.
func (c *Client) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var resp *kvrpcpb.RawGetResponse
	err := c.run(ctx, c.keyRequest("get", key, false, func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context) (*errorpb.Error, string, error) {
		r, err := kv.RawGet(ctx, &kvrpcpb.RawGetRequest{Context: rctx, Key: key})
		if err != nil {
			return nil, "", err
		}
		resp = r
		return r.RegionError, r.Error, nil
	}))
	switch {
	case err != nil:
		return nil, err
	case resp.NotFound:
		return nil, ErrNotFound
	case resp.Value == nil:
		return []byte{}, nil
	}
	return resp.Value, nil
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return c.run(ctx, c.keyRequest("put", key, true, func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context) (*errorpb.Error, string, error) {
		r, err := kv.RawPut(ctx, &kvrpcpb.RawPutRequest{Context: rctx, Key: key, Value: value})
		if err != nil {
			return nil, "", err
		}
		return r.RegionError, r.Error, nil
	}))
}

// Delete deletes key; deleting a missing key succeeds.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return c.run(ctx, c.keyRequest("delete", key, true, func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context) (*errorpb.Error, string, error) {
		r, err := kv.RawDelete(ctx, &kvrpcpb.RawDeleteRequest{Context: rctx, Key: key})
		if err != nil {
			return nil, "", err
		}
		return r.RegionError, r.Error, nil
	}))
}

// BatchGet returns the pairs of the keys that exist, in the order of keys.
func (c *Client) BatchGet(ctx context.Context, keys [][]byte) ([]KvPair, error) {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
	}
	values := make([][]byte, len(keys))
	found := make([]bool, len(keys))
	err := c.batch(ctx, "batch-get", false, indexes(len(keys)), func(i int) []byte { return keys[i] }, func(i int) int { return len(keys[i]) },
		func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, idx []int) (*errorpb.Error, string, error) {
			req := &kvrpcpb.RawBatchGetRequest{Context: rctx, Keys: make([][]byte, len(idx))}
			for j, i := range idx {
				req.Keys[j] = keys[i]
			}
			r, err := kv.RawBatchGet(ctx, req)
			if err != nil || r.RegionError != nil || r.Error != "" {
				return r.GetRegionError(), r.GetError(), err
			}
			// Pairs come in request order; a key may repeat.
			p := 0
			for _, i := range idx {
				if p < len(r.Pairs) && bytes.Equal(r.Pairs[p].Key, keys[i]) {
					values[i], found[i] = r.Pairs[p].Value, true
					p++
				}
			}
			return nil, "", nil
		})
	if err != nil {
		return nil, err
	}
	var out []KvPair
	for i, k := range keys {
		if found[i] {
			v := values[i]
			if v == nil {
				v = []byte{}
			}
			out = append(out, KvPair{Key: k, Value: v})
		}
	}
	return out, nil
}

// BatchPut writes pairs. Pairs of one region are written atomically (as one
// raft command, up to the server's batch limits); the call as a whole is
// not atomic. A key given twice ends with one of its values.
func (c *Client) BatchPut(ctx context.Context, pairs []KvPair) error {
	for _, p := range pairs {
		if err := checkKey(p.Key); err != nil {
			return err
		}
	}
	return c.batch(ctx, "batch-put", true, indexes(len(pairs)), func(i int) []byte { return pairs[i].Key },
		func(i int) int { return len(pairs[i].Key) + len(pairs[i].Value) },
		func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, idx []int) (*errorpb.Error, string, error) {
			req := &kvrpcpb.RawBatchPutRequest{Context: rctx, Pairs: make([]*kvrpcpb.KvPair, len(idx))}
			for j, i := range idx {
				req.Pairs[j] = &kvrpcpb.KvPair{Key: pairs[i].Key, Value: pairs[i].Value}
			}
			r, err := kv.RawBatchPut(ctx, req)
			return r.GetRegionError(), r.GetError(), err
		})
}

// BatchDelete deletes keys, atomically per region (as BatchPut).
func (c *Client) BatchDelete(ctx context.Context, keys [][]byte) error {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return c.batch(ctx, "batch-delete", true, indexes(len(keys)), func(i int) []byte { return keys[i] }, func(i int) int { return len(keys[i]) },
		func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, idx []int) (*errorpb.Error, string, error) {
			req := &kvrpcpb.RawBatchDeleteRequest{Context: rctx, Keys: make([][]byte, len(idx))}
			for j, i := range idx {
				req.Keys[j] = keys[i]
			}
			r, err := kv.RawBatchDelete(ctx, req)
			return r.GetRegionError(), r.GetError(), err
		})
}

// DeleteRange deletes every key in [start, end); an empty end means no
// upper bound. It deletes region by region: each region's part is atomic,
// the whole is not.
func (c *Client) DeleteRange(ctx context.Context, start, end []byte) error {
	if len(end) > 0 && bytes.Compare(start, end) > 0 {
		return invalid("start %q is after end %q", start, end)
	}
	if len(end) > 0 && bytes.Equal(start, end) {
		return nil
	}
	cur := start
	for {
		var region *metapb.Region
		err := c.run(ctx, &request{
			op: "delete-range", key: cur, write: true,
			locate: func(ctx context.Context) (location, error) { return c.locate(ctx, cur) },
			send: func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, loc location) (*errorpb.Error, string, error) {
				r, err := kv.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{Context: rctx, StartKey: cur, EndKey: clipEnd(end, loc.region.EndKey)})
				region = loc.region
				return r.GetRegionError(), r.GetError(), err
			},
		})
		if err != nil {
			return err
		}
		if len(region.EndKey) == 0 || (len(end) > 0 && bytes.Compare(region.EndKey, end) >= 0) {
			return nil
		}
		cur = region.EndKey
	}
}

// clipEnd returns the smaller of two exclusive upper bounds (empty: none).
func clipEnd(a, b []byte) []byte {
	switch {
	case len(a) == 0:
		return b
	case len(b) == 0:
		return a
	case bytes.Compare(a, b) < 0:
		return a
	}
	return b
}

// ScanOption changes what a scan returns.
type ScanOption func(*scanOptions)

type scanOptions struct{ keyOnly bool }

// KeyOnly makes a scan return keys without values.
func KeyOnly() ScanOption { return func(o *scanOptions) { o.keyOnly = true } }

// Scan returns up to limit pairs with keys in [start, end), in ascending
// order; an empty end means no upper bound. It continues across regions.
func (c *Client) Scan(ctx context.Context, start, end []byte, limit int, opts ...ScanOption) ([]KvPair, error) {
	return c.scan(ctx, start, end, limit, false, opts)
}

// ReverseScan returns up to limit pairs with keys in [lower, upper), in
// descending order; an empty upper means no upper bound. Note the order of
// the bounds: the scan starts below upper.
func (c *Client) ReverseScan(ctx context.Context, upper, lower []byte, limit int, opts ...ScanOption) ([]KvPair, error) {
	return c.scan(ctx, lower, upper, limit, true, opts)
}

// scan scans [lower, upper) in either direction.
func (c *Client) scan(ctx context.Context, lower, upper []byte, limit int, reverse bool, opts []ScanOption) ([]KvPair, error) {
	var o scanOptions
	for _, f := range opts {
		f(&o)
	}
	if limit <= 0 {
		return nil, invalid("scan limit %d: must be positive", limit)
	}
	if len(upper) > 0 && bytes.Compare(lower, upper) > 0 {
		return nil, invalid("scan range [%q, %q): the lower bound is after the upper bound", lower, upper)
	}
	if len(upper) > 0 && bytes.Equal(lower, upper) {
		return nil, nil
	}
	op := "scan"
	if reverse {
		op = "reverse-scan"
	}
	var out []KvPair
	// Forward, cur is the inclusive lower bound of what is left; reverse,
	// the exclusive upper bound.
	cur := lower
	if reverse {
		cur = upper
	}
	for len(out) < limit {
		want := min(limit-len(out), c.opts.ScanPageSize)
		var (
			kvs    []*kvrpcpb.KvPair
			region *metapb.Region
		)
		err := c.run(ctx, &request{
			op: op, key: cur,
			locate: func(ctx context.Context) (location, error) {
				if reverse {
					return c.locateBelow(ctx, cur)
				}
				return c.locate(ctx, cur)
			},
			send: func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, loc location) (*errorpb.Error, string, error) {
				req := &kvrpcpb.RawScanRequest{Context: rctx, StartKey: cur, EndKey: upper, Limit: uint32(want), KeyOnly: o.keyOnly}
				if reverse {
					req.StartKey, req.EndKey, req.Reverse = cur, lower, true
				}
				r, err := kv.RawScan(ctx, req)
				kvs, region = r.GetKvs(), loc.region
				return r.GetRegionError(), r.GetError(), err
			},
		})
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			v := kv.Value
			if v == nil && !o.keyOnly {
				v = []byte{}
			}
			out = append(out, KvPair{Key: kv.Key, Value: v})
		}
		if len(kvs) >= want {
			// The page is full: more may follow in this region.
			last := kvs[len(kvs)-1].Key
			if reverse {
				cur = last
			} else {
				cur = append(last[:len(last):len(last)], 0)
			}
			continue
		}
		// This region is done.
		if reverse {
			if len(region.StartKey) == 0 || bytes.Compare(region.StartKey, lower) <= 0 {
				break
			}
			cur = region.StartKey
		} else {
			if len(region.EndKey) == 0 || (len(upper) > 0 && bytes.Compare(region.EndKey, upper) >= 0) {
				break
			}
			cur = region.EndKey
		}
	}
	return out, nil
}

func indexes(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// batch runs send over the items idx (whose keys key gives), split by region
// and by the server's batch limits, the parts in parallel. A part whose keys
// turn out to span several regions (the cache was stale) is split again.
func (c *Client) batch(ctx context.Context, op string, write bool, idx []int, key func(int) []byte, size func(int) int,
	send func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, idx []int) (*errorpb.Error, string, error)) error {
	if len(idx) == 0 {
		return nil
	}
	ctx, cancel := withDefaultTimeout(ctx, c.opts.Timeout)
	defer cancel()
	parts, err := c.split(ctx, idx, key, size)
	if err != nil {
		return err
	}
	runPart := func(part []int) error {
		first := key(part[0])
		err := c.run(ctx, &request{
			op: op, key: first, write: write,
			locate: func(ctx context.Context) (location, error) {
				loc, err := c.locate(ctx, first)
				if err != nil {
					return loc, err
				}
				for _, i := range part[1:] {
					if !contains(loc.region, key(i)) {
						return loc, errRelocate
					}
				}
				return loc, nil
			},
			send: func(ctx context.Context, kv kvpb.KvClient, rctx *kvrpcpb.Context, _ location) (*errorpb.Error, string, error) {
				return send(ctx, kv, rctx, part)
			},
		})
		if errors.Is(err, errRelocate) {
			return c.batch(ctx, op, write, part, key, size, send)
		}
		return err
	}
	if len(parts) == 1 {
		return runPart(parts[0])
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, c.opts.BatchConcurrency)
	)
	for _, part := range parts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := runPart(part); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return firstErr
}

// split groups idx by the region (as cached, or as the scheduler says) of
// their keys, in chunks within the server's batch limits.
func (c *Client) split(ctx context.Context, idx []int, key func(int) []byte, size func(int) int) ([][]int, error) {
	type group struct {
		idx   []int
		bytes int
	}
	byRegion := make(map[uint64][]*group)
	var order []uint64
	var parts [][]int
	for _, i := range idx {
		loc, err := c.locate(ctx, key(i))
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			parts = append(parts, []int{i}) // its own part: the retry loop looks again
			continue
		}
		id := loc.region.Id
		gs := byRegion[id]
		if gs == nil {
			order = append(order, id)
		}
		n := size(i)
		if len(gs) == 0 || len(gs[len(gs)-1].idx) >= maxBatchKeys || gs[len(gs)-1].bytes+n > maxBatchBytes {
			gs = append(gs, &group{})
			byRegion[id] = gs
		}
		g := gs[len(gs)-1]
		g.idx = append(g.idx, i)
		g.bytes += n
	}
	for _, id := range order {
		for _, g := range byRegion[id] {
			parts = append(parts, g.idx)
		}
	}
	return parts, nil
}
