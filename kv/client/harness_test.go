package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"

	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/raftstore/harness"
)

// harnessScheduler lets the client find regions through the harness's
// in-process scheduler (as stale as its heartbeats) and stores at the
// addresses where the test serves them.
type harnessScheduler struct {
	c     *harness.Cluster
	addrs map[uint64]string
}

func (h *harnessScheduler) GetRegion(_ context.Context, key []byte) (*metapb.Region, *metapb.Peer, error) {
	r := h.c.Scheduler().RegionByKey(key)
	if r == nil {
		return nil, nil, fmt.Errorf("harness scheduler: no region for %q", key)
	}
	_, leader := h.c.Scheduler().Region(r.Id)
	return r, leader, nil
}

func (h *harnessScheduler) GetStore(_ context.Context, id uint64) (*metapb.Store, error) {
	addr, ok := h.addrs[id]
	if !ok {
		return nil, fmt.Errorf("no store %d", id)
	}
	return &metapb.Store{Id: id, Address: addr}, nil
}

// harnessClient serves every store of a harness cluster over gRPC (the
// kv/server raw API, without forwarding) and returns a client of them.
func harnessClient(t *testing.T, c *harness.Cluster, opts Options) *Client {
	h := &harnessScheduler{c: c, addrs: map[uint64]string{}}
	for _, id := range c.StoreIDs() {
		g := grpc.NewServer(server.GRPCServerOptions()...)
		server.NewServer(c.Store(id), server.Options{Logger: c.Logger()}).Register(g)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go g.Serve(lis)
		t.Cleanup(g.Stop)
		h.addrs[id] = lis.Addr().String()
	}
	cli := NewWithScheduler(h, opts)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestHarnessScanUnderSplitsAndTransfers: against real raftstores, long
// scans (many small pages) forward and backward see every key exactly once,
// in order, while regions split and leaders move under them, and point
// writes and reads keep working.
func TestHarnessScanUnderSplitsAndTransfers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-store harness cluster")
	}
	c := harness.New(t, harness.Options{Stores: 3})
	c.WaitLeader(1)
	cli := harnessClient(t, c, Options{ScanPageSize: 16, BackoffMax: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const n = 500
	key := func(i int) []byte { return fmt.Appendf(nil, "key-%04d", i) }
	var pairs []KvPair
	for i := range n {
		pairs = append(pairs, KvPair{Key: key(i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := cli.BatchPut(ctx, pairs); err != nil {
		t.Fatal(err)
	}

	// Admin: split at random keys and move leaders, until told to stop.
	rng := rand.New(rand.NewPCG(uint64(c.Seed()), 6))
	var stop atomic.Bool
	var wg sync.WaitGroup
	var splits, transfers atomic.Int32
	wg.Go(func() {
		for i := 0; !stop.Load() && i < 20; i++ {
			k := key(rng.IntN(n))
			r := c.RegionOf(k)
			if r == nil {
				continue
			}
			if !bytes.Equal(r.StartKey, k) && i%2 == 0 {
				c.MustSplit(k)
				splits.Add(1)
				continue
			}
			l, ok := c.Leader(r.Id)
			if !ok {
				continue
			}
			for _, p := range r.Peers {
				if p.StoreId != l.StoreID {
					c.MustTransferLeader(r.Id, p)
					transfers.Add(1)
					break
				}
			}
		}
	})
	// Writers: overwrite keys with the same value (scans check values).
	wg.Go(func() {
		for i := 0; !stop.Load(); i = (i + 7) % n {
			if err := cli.Put(ctx, pairs[i].Key, pairs[i].Value); err != nil {
				t.Errorf("put %s: %v", pairs[i].Key, err)
				return
			}
			if v, err := cli.Get(ctx, pairs[i].Key); err != nil || !bytes.Equal(v, pairs[i].Value) {
				t.Errorf("get %s = %q, %v", pairs[i].Key, v, err)
				return
			}
		}
	})

	scans := 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !t.Failed() {
		got, err := cli.Scan(ctx, nil, nil, n+10)
		if err != nil {
			t.Fatalf("scan %d: %v", scans, err)
		}
		checkPairs(t, "scan", got, pairs)
		rev, err := cli.ReverseScan(ctx, nil, nil, n+10)
		if err != nil {
			t.Fatalf("reverse scan %d: %v", scans, err)
		}
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		checkPairs(t, "reverse scan", rev, pairs)
		scans++
		if splits.Load() >= 8 && transfers.Load() >= 4 && scans >= 10 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d full scans each way, %d splits, %d leader transfers; %d regions cached", scans, splits.Load(), transfers.Load(), len(cli.cache.regions()))
	if splits.Load() == 0 || transfers.Load() == 0 {
		t.Errorf("no split or no transfer happened during the scans (%d, %d)", splits.Load(), transfers.Load())
	}
	// A bounded scan across the boundaries, and a delete range over all.
	if got, err := cli.Scan(ctx, key(100), key(400), 1000); err != nil {
		t.Fatal(err)
	} else {
		checkPairs(t, "bounded scan", got, pairs[100:400])
	}
	if err := cli.DeleteRange(ctx, key(50), nil); err != nil {
		t.Fatal(err)
	}
	if got, err := cli.Scan(ctx, nil, nil, 1000); err != nil || len(got) != 50 {
		t.Fatalf("after delete-range: %d pairs, %v", len(got), err)
	}
}

func checkPairs(t *testing.T, what string, got, want []KvPair) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d pairs, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Fatalf("%s: pair %d is %s=%s, want %s=%s", what, i, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
}

// TestHarnessLeaderStoreStops: when the leader's store stops (its server
// answers Unavailable), the client finds the new leader on its own.
func TestHarnessLeaderStoreStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-store harness cluster")
	}
	c := harness.New(t, harness.Options{Stores: 3})
	leader := c.WaitLeader(1)
	cli := harnessClient(t, c, Options{BackoffMax: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cli.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	c.StopStore(leader.StoreID)
	start := time.Now()
	if err := cli.Put(ctx, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"a": "1", "b": "2"} {
		if v, err := cli.Get(ctx, []byte(k)); err != nil || string(v) != want {
			t.Fatalf("get %s = %q, %v", k, v, err)
		}
	}
	t.Logf("served again %v after the leader's store stopped", time.Since(start).Round(time.Millisecond))
}

// TestHarnessClientLinearizable: clients sharing one kv/client (so their
// gets, puts and deletes share the batch streams) against real raftstores,
// while leadership moves every few hundred milliseconds and the leader is
// now and then cut off from its followers: every answered operation fits a
// linearizable history, and ambiguous writes are reported as such.
func TestHarnessClientLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-store harness cluster")
	}
	c := harness.New(t, harness.Options{Stores: 3})
	c.WaitLeader(1)
	cli := harnessClient(t, c, Options{BackoffMax: 50 * time.Millisecond, AttemptTimeout: time.Second})
	rec := harness.NewRecorder()
	keys := []string{"k0", "k1", "k2", "k3"}
	var seq atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for client := range 8 {
		rng := rand.New(rand.NewPCG(uint64(c.Seed()), uint64(client)))
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := keys[rng.IntN(len(keys))]
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				switch n := rng.IntN(10); {
				case n < 4:
					op := rec.Begin(client, harness.KVInput{Kind: harness.OpGet, Key: key})
					v, err := cli.Get(ctx, []byte(key))
					switch {
					case errors.Is(err, ErrNotFound):
						op.Done(harness.KVOutput{})
					case err != nil:
						op.Unknown()
					default:
						op.Done(harness.KVOutput{Value: string(v), Found: true})
					}
				case n < 9:
					val := fmt.Sprintf("v%d", seq.Add(1))
					op := rec.Begin(client, harness.KVInput{Kind: harness.OpPut, Key: key, Value: val})
					if err := cli.Put(ctx, []byte(key), []byte(val)); err != nil {
						op.Unknown() // ambiguous, or failed: either way it may not have happened
					} else {
						op.Done(harness.KVOutput{})
					}
				default:
					op := rec.Begin(client, harness.KVInput{Kind: harness.OpDelete, Key: key})
					if err := cli.Delete(ctx, []byte(key)); err != nil {
						op.Unknown()
					} else {
						op.Done(harness.KVOutput{})
					}
				}
				cancel()
			}
		})
	}
	// Chaos: move leadership around, and cut the leader off now and then.
	deadline := time.Now().Add(4 * time.Second)
	transfers, isolations := 0, 0
	for i := 0; time.Now().Before(deadline); i++ {
		leader := c.WaitLeader(1)
		if i%4 == 3 {
			isolations++
			c.Network().Isolate(leader.StoreID)
			time.Sleep(400 * time.Millisecond)
			c.Network().Heal()
		} else {
			r := c.RegionOf([]byte("k0"))
			for _, p := range r.Peers {
				if p.StoreId != leader.StoreID {
					transfers++
					c.MustTransferLeader(1, p)
					break
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d leader transfers, %d isolations of the leader", transfers, isolations)
	if rec.Len() < 100 {
		t.Fatalf("only %d operations ran: the test proves little", rec.Len())
	}
	if res := rec.CheckLinearizable(t, time.Minute); res != porcupine.Ok && res != porcupine.Unknown {
		t.Fatal("the history is not linearizable")
	}
}
