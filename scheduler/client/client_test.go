package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/regionkv/regionkv/internal/freeport"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/client"
	"github.com/regionkv/regionkv/scheduler/server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startScheduler(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	s, err := server.New(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestClient bootstraps through the client, heartbeats over its stream, and
// keeps working across a scheduler restart.
func TestClient(t *testing.T) {
	addrs := freeport.Addrs(t, 3)
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Addr = addrs[0]
	cfg.StatusAddr = ""
	cfg.EtcdClientURL, cfg.EtcdPeerURL = "http://"+addrs[1], "http://"+addrs[2]
	cfg.EtcdLogLevel = "error"
	cfg.LeaderLease = server.Duration{Duration: time.Second}
	s := startScheduler(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.New(ctx, []string{s.Addr()}, client.Options{ClusterID: 12345, Logger: quiet}); !errors.Is(err, client.ErrClusterIDMismatch) {
		t.Fatalf("New with another cluster id: %v", err)
	}
	c, err := client.New(ctx, []string{"127.0.0.1:1", s.Addr()}, client.Options{Logger: quiet, RetryInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ClusterID() != s.ClusterID() {
		t.Fatalf("cluster id %d, want %d", c.ClusterID(), s.ClusterID())
	}
	var ids []uint64
	for range 3 {
		id, err := c.AllocID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	store := &metapb.Store{Id: ids[0], Address: "127.0.0.1:20160"}
	peer := &metapb.Peer{Id: ids[2], StoreId: ids[0]}
	r := &metapb.Region{Id: ids[1], RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1}, Peers: []*metapb.Peer{peer}}
	if err := c.Bootstrap(ctx, store, r); err != nil {
		t.Fatal(err)
	}
	if err := c.Bootstrap(ctx, store, r); !client.IsErrorType(err, schedulerpb.ErrorType_ALREADY_BOOTSTRAPPED) {
		t.Fatalf("second Bootstrap: %v", err)
	}
	if ok, err := c.IsBootstrapped(ctx); err != nil || !ok {
		t.Fatalf("IsBootstrapped = %v, %v", ok, err)
	}
	if err := c.StoreHeartbeat(ctx, &schedulerpb.StoreStats{StoreId: store.Id, Capacity: 1 << 30}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var responses []*schedulerpb.RegionHeartbeatResponse
	c.SetRegionHeartbeatHandler(func(resp *schedulerpb.RegionHeartbeatResponse) {
		mu.Lock()
		responses = append(responses, resp)
		mu.Unlock()
	})
	waitResponse := func(want schedulerpb.ErrorType) {
		t.Helper()
		for ctx.Err() == nil {
			mu.Lock()
			for _, r := range responses {
				if r.Header.GetError().GetType() == want {
					responses = nil
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no heartbeat response with %s", want)
	}
	// Region grows to version 3; a stale version-2 heartbeat is rejected.
	newer := &metapb.Region{Id: r.Id, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 3}, Peers: r.Peers}
	c.RegionHeartbeat(ctx, &schedulerpb.RegionHeartbeatRequest{Region: newer, Leader: peer, ApproximateSize: 42})
	older := &metapb.Region{Id: r.Id, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 2}, Peers: r.Peers}
	c.RegionHeartbeat(ctx, &schedulerpb.RegionHeartbeatRequest{Region: older, Leader: peer})
	waitResponse(schedulerpb.ErrorType_STALE_REGION)
	got, leader, err := c.GetRegion(ctx, []byte("any"))
	if err != nil || got.RegionEpoch.Version != 3 || leader.GetId() != peer.Id {
		t.Fatalf("GetRegion = %v %v %v", got, leader, err)
	}

	// Restart the scheduler: calls and the heartbeat stream recover.
	s.Close()
	s = startScheduler(t, cfg)
	id, err := c.AllocID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id <= ids[2] {
		t.Fatalf("id %d after restart, %d before", id, ids[2])
	}
	newest := &metapb.Region{Id: r.Id, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 4}, Peers: r.Peers}
	for ctx.Err() == nil {
		c.RegionHeartbeat(ctx, &schedulerpb.RegionHeartbeatRequest{Region: newest, Leader: peer})
		got, _, err := c.GetRegionByID(ctx, r.Id)
		if err != nil {
			t.Fatal(err)
		}
		if got.RegionEpoch.Version == 4 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := c.GetRegionByID(ctx, 999999); !client.IsErrorType(err, schedulerpb.ErrorType_REGION_NOT_FOUND) {
		t.Fatalf("GetRegionByID(unknown): %v", err)
	}

	// Split ids and the split report.
	newID, peerIDs, err := c.AskSplit(ctx, newest)
	if err != nil || newID == 0 || len(peerIDs) != 1 {
		t.Fatalf("AskSplit = %d %v %v", newID, peerIDs, err)
	}
	left := &metapb.Region{Id: r.Id, EndKey: []byte("m"), RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 5}, Peers: r.Peers}
	right := &metapb.Region{Id: newID, StartKey: []byte("m"), RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 5},
		Peers: []*metapb.Peer{{Id: peerIDs[0], StoreId: store.Id}}}
	if err := c.ReportSplit(ctx, left, right); err != nil {
		t.Fatal(err)
	}
	if got, _, err := c.GetRegion(ctx, []byte("z")); err != nil || got.Id != newID {
		t.Fatalf("GetRegion(z) after the split report = %v, %v", got, err)
	}
	c.Close()
	if err := c.RegionHeartbeat(ctx, &schedulerpb.RegionHeartbeatRequest{Region: newest, Leader: peer}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("RegionHeartbeat after Close: %v", err)
	}
}
