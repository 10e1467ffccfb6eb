package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/regionkv/regionkv/internal/freeport"
	"github.com/regionkv/regionkv/kv/config"
	"github.com/regionkv/regionkv/kv/engine"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/raftstore"
	"github.com/regionkv/regionkv/scheduler/client"
	schedserver "github.com/regionkv/regionkv/scheduler/server"
)

// testLogger logs to the test's output until the test's cleanups have run.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.stop) // registered first, so it runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// startScheduler starts a one-member scheduler on free ports.
func startScheduler(t *testing.T, logger *slog.Logger) *schedserver.Server {
	t.Helper()
	p := freeport.Ports(t, 2)
	cfg := schedserver.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:0"
	cfg.StatusAddr = ""
	cfg.EtcdClientURL = fmt.Sprintf("http://127.0.0.1:%d", p[0])
	cfg.EtcdPeerURL = fmt.Sprintf("http://127.0.0.1:%d", p[1])
	cfg.EtcdLogLevel = "error"
	cfg.EtcdUnsafeNoFsync = true
	cfg.LeaderLease = schedserver.Duration{Duration: time.Second}
	s, err := schedserver.New(cfg, logger.With("proc", "scheduler"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// nodeConfig is a store config for tests: loopback, small engines, fast
// ticks and heartbeats.
func nodeConfig(dir, scheduler string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Addr = "127.0.0.1:0"
	cfg.StatusAddr = "127.0.0.1:0"
	cfg.Scheduler = scheduler
	cfg.RaftBaseTickInterval = config.Duration{Duration: 20 * time.Millisecond}
	cfg.RegionHeartbeatTicks = 10
	cfg.StoreHeartbeatInterval = config.Duration{Duration: 200 * time.Millisecond}
	cfg.MemTableSize = 16 << 20
	cfg.BlockCacheSize = 8 << 20
	return cfg
}

func startNode(t *testing.T, cfg config.Config, logger *slog.Logger) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg, logger)
	if err != nil {
		t.Fatalf("start store on %s: %v", cfg.DataDir, err)
	}
	t.Cleanup(n.Stop)
	return n
}

func kvClient(t *testing.T, n *Node) kvpb.KvClient {
	t.Helper()
	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kvpb.NewKvClient(conn)
}

// eventually retries f until it succeeds or 20 s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func put(ctx context.Context, c kvpb.KvClient, k, v string) error {
	r, err := c.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: []byte(k), Value: []byte(v)})
	switch {
	case err != nil:
		return err
	case r.RegionError != nil:
		return fmt.Errorf("region error: %v", r.RegionError)
	case r.Error != "":
		return errors.New(r.Error)
	}
	return nil
}

func get(ctx context.Context, c kvpb.KvClient, k string) (string, error) {
	r, err := c.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: []byte(k)})
	switch {
	case err != nil:
		return "", err
	case r.RegionError != nil:
		return "", fmt.Errorf("region error: %v", r.RegionError)
	case r.Error != "":
		return "", errors.New(r.Error)
	case r.NotFound:
		return "", fmt.Errorf("%s not found", k)
	}
	return string(r.Value), nil
}

// TestBootstrapRestart: the first store bootstraps the cluster, serves,
// reports its status, and finds its region and data again after a restart.
func TestBootstrapRestart(t *testing.T) {
	logger := testLogger(t)
	sched := startScheduler(t, logger)
	dir := t.TempDir()
	cfg := nodeConfig(dir, sched.Addr())
	n := startNode(t, cfg, logger)
	if n.StoreID() == 0 || n.ClusterID() != sched.ClusterID() {
		t.Fatalf("store %d of cluster %d; the scheduler's cluster is %d", n.StoreID(), n.ClusterID(), sched.ClusterID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := kvClient(t, n)
	eventually(t, "put", func() error { return put(ctx, c, "k", "v") })
	if v, err := get(ctx, c, "k"); err != nil || v != "v" {
		t.Fatalf("get k = %q, %v", v, err)
	}

	// A request on the batch stream is counted under its unary method.
	bs, err := c.BatchCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = bs.Send(&kvrpcpb.BatchCommandsRequest{Requests: []*kvrpcpb.BatchCommandsRequest_Request{{Id: 1,
		Cmd: &kvrpcpb.BatchCommandsRequest_Request_Delete{Delete: &kvrpcpb.RawDeleteRequest{Key: []byte("gone")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := bs.Recv(); err != nil || len(m.Responses) != 1 || m.Responses[0].GetDelete() == nil {
		t.Fatalf("batched delete: %v, %v", m, err)
	}
	bs.CloseSend()

	// /status and /metrics.
	resp, err := http.Get("http://" + n.StatusAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st StatusJSON
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.StoreID != n.StoreID() || st.RegionCount != 1 || st.LeaderCount != 1 || len(st.Regions) != 1 {
		t.Fatalf("/status = %+v, %v", st, err)
	}
	regionID := st.Regions[0].RegionID
	resp, err = http.Get("http://" + n.StatusAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"regionkv_store_regions 1", "regionkv_store_leaders 1", `regionkv_store_grpc_duration_seconds_count{code="OK",method="/regionkv.kvpb.Kv/RawPut"}`,
		`regionkv_store_grpc_duration_seconds_count{code="OK",method="/regionkv.kvpb.Kv/RawDelete"} 1`,
		"regionkv_store_raft_messages_received_total 0", "regionkv_store_raft_connections 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The scheduler knows the store and its region.
	cli, err := client.New(ctx, []string{sched.Addr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if s, err := cli.GetStore(ctx, n.StoreID()); err != nil || s.Address != n.Addr() {
		t.Fatalf("GetStore = %v, %v; want address %s", s, err, n.Addr())
	}

	// Restart on the same dir.
	storeID := n.StoreID()
	n.Stop()
	n = startNode(t, cfg, logger)
	if n.StoreID() != storeID {
		t.Fatalf("store id %d after restart, want %d", n.StoreID(), storeID)
	}
	if st := n.Status(); st.RegionCount != 1 || st.Regions[0].RegionID != regionID {
		t.Fatalf("regions after restart: %+v", st.Regions)
	}
	c = kvClient(t, n)
	eventually(t, "get after restart", func() error {
		v, err := get(ctx, c, "k")
		if err == nil && v != "v" {
			return fmt.Errorf("k = %q", v)
		}
		return err
	})
}

func TestDataDirLocked(t *testing.T) {
	logger := testLogger(t)
	sched := startScheduler(t, logger)
	cfg := nodeConfig(t.TempDir(), sched.Addr())
	startNode(t, cfg, logger)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Start(ctx, cfg, logger)
	if !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), "another regionkv-server") {
		t.Fatalf("second store on the same dir: %v, want ErrDataDirLocked", err)
	}
}

// TestWrongCluster: a store whose data belongs to one cluster refuses to
// start against the scheduler of another.
func TestWrongCluster(t *testing.T) {
	logger := testLogger(t)
	sched1 := startScheduler(t, logger)
	dir := t.TempDir()
	n := startNode(t, nodeConfig(dir, sched1.Addr()), logger)
	n.Stop()

	sched2 := startScheduler(t, logger)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Start(ctx, nodeConfig(dir, sched2.Addr()), logger)
	if !errors.Is(err, client.ErrClusterIDMismatch) || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("store of cluster %d against cluster %d: %v", sched1.ClusterID(), sched2.ClusterID(), err)
	}
	t.Logf("refused as expected: %v", err)
	// The refusal released the LOCK: the store starts against its own cluster.
	startNode(t, nodeConfig(dir, sched1.Addr()), logger)
}

// TestBootstrapRace: stores that start together on a fresh cluster agree
// on one first region; the losers discard theirs.
func TestBootstrapRace(t *testing.T) {
	logger := testLogger(t)
	sched := startScheduler(t, logger)
	const stores = 3
	nodes := make([]*Node, stores)
	errs := make([]error, stores)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range nodes {
		wg.Go(func() { nodes[i], errs[i] = Start(ctx, nodeConfig(t.TempDir(), sched.Addr()), logger) })
	}
	wg.Wait()
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("store %d: %v", i, errs[i])
		}
		t.Cleanup(n.Stop)
	}
	cli, err := client.New(ctx, []string{sched.Addr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	regions, err := cli.ScanRegions(ctx, nil, nil, 0)
	if err != nil || len(regions) != 1 {
		t.Fatalf("scheduler regions %v, %v; want one", regions, err)
	}
	first := regions[0].Region.Id
	holders := 0
	for _, n := range nodes {
		for _, r := range n.Status().Regions {
			if r.RegionID != first {
				t.Errorf("store %d holds region %d, not the cluster's first region %d", n.StoreID(), r.RegionID, first)
			}
			holders++
		}
	}
	if holders == 0 {
		t.Error("no store holds the first region")
	}
}

// TestPreparedRegionLeftover: a first region prepared by a store whose
// bootstrap never reached the scheduler is discarded once the cluster is
// bootstrapped by another store.
func TestPreparedRegionLeftover(t *testing.T) {
	logger := testLogger(t)
	sched := startScheduler(t, logger)
	startNode(t, nodeConfig(t.TempDir(), sched.Addr()), logger) // bootstraps the cluster

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := client.New(ctx, []string{sched.Addr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	storeID, err := cli.AllocID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A store that prepared region 999999 and crashed before Bootstrap.
	dir := t.TempDir()
	e, err := engine.Open(dir, engine.SmallOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := raftstore.BootstrapStore(e, sched.ClusterID(), storeID); err != nil {
		t.Fatal(err)
	}
	stale := &metapb.Region{Id: 999999, RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
		Peers: []*metapb.Peer{{Id: 1000000, StoreId: storeID}}}
	if err := raftstore.BootstrapRegion(e, stale); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, nodeConfig(dir, sched.Addr()), logger)
	if n.StoreID() != storeID {
		t.Fatalf("store id %d, want %d", n.StoreID(), storeID)
	}
	for _, r := range n.Status().Regions {
		if r.RegionID == stale.Id {
			t.Fatalf("the stale prepared region %d was kept", stale.Id)
		}
	}
}

// TestThreeNodes runs three stores in this process (so the race detector
// sees the transport, forwarding and the raftstore together): the replica
// checker grows the first region to three voters, and writes and reads go
// through every store.
func TestThreeNodes(t *testing.T) {
	logger := testLogger(t)
	sched := startScheduler(t, logger)
	var nodes []*Node
	for range 3 {
		nodes = append(nodes, startNode(t, nodeConfig(t.TempDir(), sched.Addr()), logger))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli, err := client.New(ctx, []string{sched.Addr()}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	eventually(t, "three voters", func() error {
		r, leader, err := cli.GetRegion(ctx, nil)
		if err != nil {
			return err
		}
		voters := 0
		for _, p := range r.Peers {
			if p.Role == metapb.PeerRole_Voter {
				voters++
			}
		}
		if voters != 3 || len(r.Peers) != 3 || leader == nil {
			return fmt.Errorf("region %v, leader %v", r, leader)
		}
		return nil
	})
	clients := make([]kvpb.KvClient, len(nodes))
	for i, n := range nodes {
		clients[i] = kvClient(t, n)
	}
	for i := range 30 {
		k := fmt.Sprintf("k%02d", i)
		eventually(t, "put "+k, func() error { return put(ctx, clients[i%3], k, k) })
	}
	for _, c := range clients {
		for i := range 30 {
			k := fmt.Sprintf("k%02d", i)
			eventually(t, "get "+k, func() error {
				v, err := get(ctx, c, k)
				if err == nil && v != k {
					return fmt.Errorf("%s = %q", k, v)
				}
				return err
			})
		}
	}
}
