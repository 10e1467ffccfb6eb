package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
)

// TestLimitsMatchServer: the client's copy of the request limits agrees
// with the server's.
func TestLimitsMatchServer(t *testing.T) {
	for _, c := range []struct {
		name         string
		client, srvr int
	}{
		{"MaxKeySize", maxKeySize, server.MaxKeySize},
		{"MaxBatchKeys", maxBatchKeys, server.MaxBatchKeys},
		{"MaxBatchBytes", maxBatchBytes, server.MaxBatchBytes},
		{"MaxScanLimit", maxScanLimit, server.MaxScanLimit},
		{"MaxGRPCMessageSize", maxGRPCMessage, server.MaxGRPCMessageSize},
	} {
		if c.client != c.srvr {
			t.Errorf("%s: client %d, server %d", c.name, c.client, c.srvr)
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fastOptions() Options {
	return Options{BackoffBase: time.Millisecond, BackoffMax: 20 * time.Millisecond, ScanPageSize: 3}
}

func newSimClient(t *testing.T, s *sim, opts Options) *Client {
	c := NewWithScheduler(s, opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func k(i int) []byte { return fmt.Appendf(nil, "k%03d", i) }

func pairsString(kvs []KvPair) string {
	var b strings.Builder
	for i, p := range kvs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", p.Key, p.Value)
	}
	return b.String()
}

func keysString(kvs []KvPair) string {
	var parts []string
	for _, p := range kvs {
		parts = append(parts, string(p.Key))
	}
	return strings.Join(parts, " ")
}

func mustPut(t *testing.T, c *Client, key, value string) {
	t.Helper()
	if err := c.Put(testCtx(t), []byte(key), []byte(value)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func mustGet(t *testing.T, c *Client, key, want string) {
	t.Helper()
	v, err := c.Get(testCtx(t), []byte(key))
	if err != nil || string(v) != want {
		t.Fatalf("get %s = %q, %v; want %q", key, v, err, want)
	}
}

// TestOps covers every call on one region and then on several.
func TestOps(t *testing.T) {
	s := newSim(t, 3)
	c := newSimClient(t, s, fastOptions())
	ctx := testCtx(t)
	for round, splits := range [][]string{nil, {"k003", "k006", "k009"}} {
		for _, key := range splits {
			s.split(key, true)
		}
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			mustPut(t, c, "a", "1")
			mustGet(t, c, "a", "1")
			mustPut(t, c, "empty", "")
			if v, err := c.Get(ctx, []byte("empty")); err != nil || v == nil || len(v) != 0 {
				t.Errorf("get empty = %q (nil %v), %v; want an empty, non-nil value", v, v == nil, err)
			}
			if err := c.Delete(ctx, []byte("a")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, []byte("a")); !errors.Is(err, ErrNotFound) {
				t.Errorf("get after delete: %v, want ErrNotFound", err)
			}
			if err := c.Delete(ctx, []byte("empty")); err != nil {
				t.Fatal(err)
			}

			var pairs []KvPair
			for i := range 12 {
				pairs = append(pairs, KvPair{Key: k(i), Value: fmt.Appendf(nil, "v%d", i)})
			}
			if err := c.BatchPut(ctx, pairs); err != nil {
				t.Fatal(err)
			}
			got, err := c.BatchGet(ctx, [][]byte{k(11), []byte("nope"), k(0), k(5), k(5)})
			if err != nil || pairsString(got) != "k011=v11 k000=v0 k005=v5 k005=v5" {
				t.Errorf("batch get = %q, %v", pairsString(got), err)
			}
			all, err := c.Scan(ctx, nil, nil, 100)
			if err != nil || len(all) != 12 || pairsString(all[:2]) != "k000=v0 k001=v1" {
				t.Errorf("scan all = %q, %v", pairsString(all), err)
			}
			if got, err := c.Scan(ctx, k(2), k(8), 4, KeyOnly()); err != nil || keysString(got) != "k002 k003 k004 k005" || got[0].Value != nil {
				t.Errorf("scan [k002, k008) limit 4 = %q, %v", pairsString(got), err)
			}
			if got, err := c.Scan(ctx, k(2), k(8), 100); err != nil || keysString(got) != "k002 k003 k004 k005 k006 k007" {
				t.Errorf("scan [k002, k008) = %q, %v", keysString(got), err)
			}
			if got, err := c.ReverseScan(ctx, k(8), k(2), 100); err != nil || keysString(got) != "k007 k006 k005 k004 k003 k002" {
				t.Errorf("reverse scan [k002, k008) = %q, %v", keysString(got), err)
			}
			if got, err := c.ReverseScan(ctx, nil, nil, 5); err != nil || keysString(got) != "k011 k010 k009 k008 k007" {
				t.Errorf("reverse scan all, limit 5 = %q, %v", keysString(got), err)
			}
			if got, err := c.ReverseScan(ctx, k(6), nil, 100); err != nil || keysString(got) != "k005 k004 k003 k002 k001 k000" {
				t.Errorf("reverse scan below k006 = %q, %v", keysString(got), err)
			}
			if err := c.BatchDelete(ctx, [][]byte{k(0), k(11)}); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteRange(ctx, k(2), k(7)); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Scan(ctx, nil, nil, 100); err != nil || keysString(got) != "k001 k007 k008 k009 k010" {
				t.Errorf("after deletes = %q, %v", keysString(got), err)
			}
			if err := c.DeleteRange(ctx, nil, nil); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Scan(ctx, nil, nil, 100); err != nil || len(got) != 0 {
				t.Errorf("after deleting everything = %q, %v", keysString(got), err)
			}
		})
	}
	if n := len(c.cache.regions()); n != 4 {
		t.Errorf("%d regions cached, want 4", n)
	}
}

// TestBadInput: malformed calls fail at once with InvalidArgument.
func TestBadInput(t *testing.T) {
	s := newSim(t, 1)
	c := newSimClient(t, s, fastOptions())
	ctx := testCtx(t)
	for name, err := range map[string]error{
		"get empty key":            func() error { _, err := c.Get(ctx, nil); return err }(),
		"put empty key":            c.Put(ctx, nil, []byte("v")),
		"batch put empty key":      c.BatchPut(ctx, []KvPair{{Key: []byte("a")}, {}}),
		"scan limit 0":             func() error { _, err := c.Scan(ctx, nil, nil, 0); return err }(),
		"scan reversed range":      func() error { _, err := c.Scan(ctx, []byte("b"), []byte("a"), 1); return err }(),
		"delete-range start > end": c.DeleteRange(ctx, []byte("b"), []byte("a")),
	} {
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if n := s.calls("GetRegion"); n != 0 {
		t.Errorf("bad input reached the scheduler %d times", n)
	}
}

// TestStaleCache: the scheduler and the cache lag behind splits and leader
// moves; the client follows NotLeader and EpochNotMatch.
func TestStaleCache(t *testing.T) {
	s := newSim(t, 3)
	c := newSimClient(t, s, fastOptions())
	ctx := testCtx(t)
	for i := range 20 {
		mustPut(t, c, string(k(i)), "v")
	}
	// Splits the scheduler does not know of yet, and a new leader.
	s.split("k005", false)
	s.split("k010", false)
	s.transfer("k012", 3, false)
	for i := range 20 {
		mustPut(t, c, string(k(i)), "w")
	}
	got, err := c.Scan(ctx, nil, nil, 100)
	if err != nil || len(got) != 20 {
		t.Fatalf("scan = %d pairs, %v", len(got), err)
	}
	regions := c.cache.regions()
	if len(regions) != 3 || string(regions[1].region.StartKey) != "k005" || regions[2].peer.GetStoreId() != 3 {
		t.Errorf("cache after stale reads: %v", regions)
	}
	// The scheduler was asked once: everything else came from the stores.
	if n := s.calls("GetRegion"); n != 1 {
		t.Errorf("GetRegion called %d times, want 1", n)
	}
	// A batch over a stale cache is split again.
	s.split("k015", false)
	var keys [][]byte
	for i := range 20 {
		keys = append(keys, k(i))
	}
	if err := c.BatchDelete(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Scan(ctx, nil, nil, 100); err != nil || len(got) != 0 {
		t.Fatalf("scan after batch delete = %q, %v", keysString(got), err)
	}

	// More splits than a store reports at once, which the scheduler learns
	// of a moment later: the client waits for it and gets there.
	for i := 11; i < 20; i++ {
		if i != 15 {
			s.split(string(k(i)), false)
		}
	}
	time.AfterFunc(100*time.Millisecond, s.tell)
	mustPut(t, c, string(k(19)), "x")
	mustGet(t, c, string(k(19)), "x")
}

// TestRegionErrorsRetried: transient region errors and unavailable stores
// are retried; the call succeeds once they pass.
func TestRegionErrorsRetried(t *testing.T) {
	for name, e := range map[string]*errorpb.Error{
		"server is busy":        {Message: "busy", ServerIsBusy: &errorpb.ServerIsBusy{BackoffMs: 5}},
		"stale command":         {Message: "stale", StaleCommand: &errorpb.StaleCommand{}},
		"not leader, no leader": {Message: "election", NotLeader: &errorpb.NotLeader{RegionId: 1}},
		"region not found":      {Message: "gone", RegionNotFound: &errorpb.RegionNotFound{RegionId: 1}},
		"store not match":       {Message: "moved", StoreNotMatch: &errorpb.StoreNotMatch{}},
		"message only":          {Message: "something"},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t, 3)
			c := newSimClient(t, s, fastOptions())
			n := 0
			s.setInject(func(string, uint64, *kvrpcpb.Context) (*errorpb.Error, error) {
				if n++; n <= 3 {
					return e, nil
				}
				return nil, nil
			})
			mustPut(t, c, "a", "1")
			mustGet(t, c, "a", "1")
		})
	}
	t.Run("unavailable", func(t *testing.T) {
		s := newSim(t, 3)
		c := newSimClient(t, s, fastOptions())
		n := 0
		s.setInject(func(_ string, store uint64, _ *kvrpcpb.Context) (*errorpb.Error, error) {
			if n++; n <= 3 {
				return nil, status.Error(codes.Unavailable, "down")
			}
			return nil, nil
		})
		mustPut(t, c, "a", "1")
	})
	t.Run("raft entry too large", func(t *testing.T) {
		s := newSim(t, 1)
		c := newSimClient(t, s, fastOptions())
		s.setInject(func(string, uint64, *kvrpcpb.Context) (*errorpb.Error, error) {
			return &errorpb.Error{Message: "too large", RaftEntryTooLarge: &errorpb.RaftEntryTooLarge{RegionId: 1}}, nil
		})
		var re *RegionError
		if err := c.Put(testCtx(t), []byte("a"), nil); !errors.As(err, &re) {
			t.Fatalf("put: %v, want a *RegionError", err)
		}
		if n := s.calls("RawPut"); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
}

// TestUnknownOutcome: gRPC Unknown from a store is ambiguous for a write:
// not retried unless asked; reads retry.
func TestUnknownOutcome(t *testing.T) {
	s := newSim(t, 3)
	unknownOnce := func() {
		n := 0
		s.setInject(func(method string, _ uint64, _ *kvrpcpb.Context) (*errorpb.Error, error) {
			if n++; n == 1 {
				return nil, status.Error(codes.Unknown, "raftstore: proposal outcome unknown")
			}
			return nil, nil
		})
	}
	c := newSimClient(t, s, fastOptions())
	ctx := testCtx(t)
	unknownOnce()
	err := c.Put(ctx, []byte("a"), []byte("1"))
	if !errors.Is(err, ErrUnknownOutcome) || !strings.Contains(err.Error(), "proposal outcome unknown") {
		t.Fatalf("put = %v, want ErrUnknownOutcome", err)
	}
	if n := s.calls("RawPut"); n != 1 {
		t.Errorf("the write was retried: %d attempts", n)
	}
	unknownOnce()
	if _, err := c.Get(ctx, []byte("a")); !errors.Is(err, ErrNotFound) || s.calls("RawGet") != 2 {
		t.Errorf("get = %v after %d attempts, want ErrNotFound after 2 (reads retry)", err, s.calls("RawGet"))
	}

	opts := fastOptions()
	opts.RetryUnknownOutcome = true
	c2 := newSimClient(t, s, opts)
	unknownOnce()
	mustPut(t, c2, "b", "2")
	mustGet(t, c2, "b", "2")

	// A write whose context ends during an attempt is ambiguous too.
	s.setInject(func(string, uint64, *kvrpcpb.Context) (*errorpb.Error, error) {
		time.Sleep(200 * time.Millisecond)
		return nil, nil
	})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = c.Put(short, []byte("c"), nil)
	if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("put past its deadline = %v, want ErrUnknownOutcome and DeadlineExceeded", err)
	}
}

// TestUnaryWriteUnavailable: a unary write (BatchPut) that fails with
// Unavailable is retried elsewhere only if it never reached the store or the
// store says it did not run it; Unavailable from a connection that broke
// after the request was sent is an unknown outcome.
func TestUnaryWriteUnavailable(t *testing.T) {
	pairs := []KvPair{{Key: []byte("a"), Value: []byte("1")}}
	t.Run("store did not run it", func(t *testing.T) {
		s := newSim(t, 3)
		c := newSimClient(t, s, fastOptions())
		n := 0
		s.setInject(func(method string, _ uint64, _ *kvrpcpb.Context) (*errorpb.Error, error) {
			if n++; n == 1 {
				return nil, status.Error(codes.Unavailable, server.NotRunPrefix+"store stopped")
			}
			return nil, nil
		})
		if err := c.BatchPut(testCtx(t), pairs); err != nil {
			t.Fatalf("batch put: %v", err)
		}
		mustGet(t, c, "a", "1")
	})
	t.Run("connection broke after the send", func(t *testing.T) {
		s := newSim(t, 3)
		c := newSimClient(t, s, fastOptions())
		s.setInject(func(method string, store uint64, _ *kvrpcpb.Context) (*errorpb.Error, error) {
			go s.stores[store].g.Stop() // closes the connection under the call
			time.Sleep(200 * time.Millisecond)
			return nil, nil
		})
		if err := c.BatchPut(testCtx(t), pairs); !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("batch put whose connection broke = %v, want ErrUnknownOutcome", err)
		}
	})
	t.Run("Unavailable without the prefix", func(t *testing.T) {
		s := newSim(t, 3)
		c := newSimClient(t, s, fastOptions())
		s.setInject(func(string, uint64, *kvrpcpb.Context) (*errorpb.Error, error) {
			return nil, status.Error(codes.Unavailable, "down")
		})
		if err := c.BatchPut(testCtx(t), pairs); !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("batch put answered a bare Unavailable = %v, want ErrUnknownOutcome", err)
		}
	})
}

// TestUnreachable: no scheduler, or no store, gives a clear error within
// the deadline.
func TestUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = New(ctx, []string{dead}, Options{})
	if !errors.Is(err, ErrSchedulerUnreachable) || !strings.Contains(err.Error(), dead) {
		t.Errorf("New against nothing = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New took %v", d)
	}

	s := newSim(t, 1)
	s.stores[1].addr = dead
	c := newSimClient(t, s, fastOptions())
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Get(ctx, []byte("a"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "gave up after") || !strings.Contains(err.Error(), dead) {
		t.Errorf("get with the store down = %v", err)
	}
	c.Close()
	if _, err := c.Get(context.Background(), []byte("a")); !errors.Is(err, ErrClosed) {
		t.Errorf("get after close = %v", err)
	}
}

// TestRegionCache checks the cache's replacement rules.
func TestRegionCache(t *testing.T) {
	rc := newRegionCache()
	r := func(id uint64, start, end string, ver uint64) *metapb.Region {
		return &metapb.Region{Id: id, StartKey: []byte(start), EndKey: []byte(end),
			RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: ver},
			Peers:       []*metapb.Peer{{Id: id*10 + 1, StoreId: 1}, {Id: id*10 + 2, StoreId: 2}}}
	}
	ids := func() string {
		var s []string
		for _, l := range rc.regions() {
			s = append(s, fmt.Sprintf("%d[%s,%s)", l.region.Id, l.region.StartKey, l.region.EndKey))
		}
		return strings.Join(s, " ")
	}
	rc.insert(r(1, "", "", 1), nil)
	rc.insert(r(1, "", "m", 2), nil)
	rc.insert(r(2, "m", "", 2), nil)
	if got := ids(); got != "1[,m) 2[m,)" {
		t.Fatalf("after split: %s", got)
	}
	if rc.insert(r(1, "", "", 1), nil) {
		t.Error("a stale region replaced newer ones")
	}
	rc.insert(r(3, "t", "", 3), nil)
	if got := ids(); got != "1[,m) 3[t,)" {
		t.Fatalf("after a newer overlapping region: %s", got)
	}
	for key, want := range map[string]uint64{"": 1, "a": 1, "l": 1, "m": 0, "s": 0, "t": 3, "zz": 3} {
		l, ok := rc.locate([]byte(key))
		if got := l.region.GetId(); (ok && got != want) || (!ok && want != 0) {
			t.Errorf("locate(%q) = %d, %v; want %d", key, got, ok, want)
		}
	}
	for upper, want := range map[string]uint64{"": 3, "zz": 3, "u": 3, "t": 0, "m": 1, "b": 1} {
		l, ok := rc.locateBelow([]byte(upper))
		if got := l.region.GetId(); (ok && got != want) || (!ok && want != 0) {
			t.Errorf("locateBelow(%q) = %d, %v; want %d", upper, got, ok, want)
		}
	}
	// Leaders.
	if l, _ := rc.locate([]byte("a")); l.peer.GetStoreId() != 1 {
		t.Errorf("unknown leader: first voter expected, got %v", l.peer)
	}
	rc.nextPeer(1, 1)
	if l, _ := rc.locate([]byte("a")); l.peer.GetStoreId() != 2 {
		t.Errorf("after store 1 failed: %v", l.peer)
	}
	if rc.setLeader(1, &metapb.Peer{Id: 99, StoreId: 3}) {
		t.Error("a non-member became leader")
	}
	rc.setLeader(1, &metapb.Peer{Id: 11, StoreId: 1})
	rc.insert(r(1, "", "m", 2), nil) // same region again: the leader is kept
	if l, _ := rc.locate([]byte("a")); l.peer.GetId() != 11 {
		t.Errorf("leader lost on reinsert: %v", l.peer)
	}
	rc.invalidate(1)
	if _, ok := rc.locate([]byte("a")); ok {
		t.Error("invalidated region still cached")
	}
}
