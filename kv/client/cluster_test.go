package client

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regionkv/regionkv/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// TestCluster runs the client against real processes: a scheduler and three
// stores with a small region size. While about 1.5 MiB of writes split the
// key space into many regions, and leaders move (by the scheduler's
// operator API, and the balance schedulers), long scans in both directions
// must see every key written before they started, once and in order.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a scheduler and store processes")
	}
	start := time.Now()
	defer func() { t.Logf("took %v", time.Since(start).Round(100*time.Millisecond)) }()
	c := testcluster.New(t, testcluster.Options{StoreArgs: []string{"--region-max-size", "64KiB", "--region-split-size", "48KiB"}})
	sched := c.StartScheduler()
	for range 3 {
		c.StartStore()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := New(ctx, []string{sched.Addr}, Options{ScanPageSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	const n = 384
	key := func(i int) []byte { return fmt.Appendf(nil, "key-%05d", i) }
	value := func(i int) []byte {
		return append(fmt.Appendf(nil, "value-%d-", i), bytes.Repeat([]byte{'x'}, 4<<10)...)
	}
	var written atomic.Int64 // keys [0, written) are all written
	var wg sync.WaitGroup
	var stop atomic.Bool
	wg.Go(func() {
		for i := 0; i < n; i += 16 {
			var batch []KvPair
			for j := i; j < min(i+16, n); j++ {
				batch = append(batch, KvPair{Key: key(j), Value: value(j)})
			}
			if err := cli.BatchPut(ctx, batch); err != nil {
				t.Errorf("batch put at %d: %v", i, err)
				return
			}
			written.Store(int64(min(i+16, n)))
		}
	})
	// Move leaders by hand through the scheduler's operator API.
	var transfers atomic.Int32
	wg.Go(func() {
		for !stop.Load() {
			time.Sleep(300 * time.Millisecond)
			regions, err := c.SchedulerClient().ScanRegions(ctx, nil, nil, 0)
			if err != nil || len(regions) == 0 {
				continue
			}
			r := regions[int(transfers.Load())%len(regions)]
			if r.Leader == nil {
				continue
			}
			for _, p := range r.Region.Peers {
				if p.StoreId != r.Leader.StoreId {
					body := map[string]any{"type": "transfer-leader", "region_id": r.Region.Id, "store_id": p.StoreId}
					if _, err := c.SchedulerAPI(ctx, "POST", "/api/v1/operators", body, nil); err == nil {
						transfers.Add(1)
					}
					break
				}
			}
		}
	})

	check := func(what string, got []KvPair, upTo int) {
		t.Helper()
		for i := range upTo {
			if i >= len(got) || !bytes.Equal(got[i].Key, key(i)) || !bytes.Equal(got[i].Value, value(i)) {
				t.Fatalf("%s: pair %d of %d is wrong or missing (want %s)", what, i, len(got), key(i))
			}
		}
	}
	scans := 0
	for !t.Failed() {
		w := int(written.Load())
		got, err := cli.Scan(ctx, nil, nil, 10*n)
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		check("scan", got, w)
		rev, err := cli.ReverseScan(ctx, nil, nil, 10*n)
		if err != nil {
			t.Fatalf("reverse scan: %v", err)
		}
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		check("reverse scan", rev, w)
		scans++
		if w == n && transfers.Load() >= 5 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	regions, err := c.SchedulerClient().ScanRegions(ctx, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d scans each way; %d regions; %d leader transfers asked; %d regions cached by the client",
		scans, len(regions), transfers.Load(), len(cli.cache.regions()))
	if len(regions) < 4 {
		t.Errorf("only %d regions: the splits did not happen", len(regions))
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = key(i)
	}
	got, err := cli.BatchGet(ctx, keys)
	if err != nil || len(got) != n {
		t.Fatalf("batch get: %d pairs, %v", len(got), err)
	}
}
