package server

import (
	"context"
	"encoding/json"
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
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/regionkv/regionkv/internal/freeport"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// testLogger logs to the test's output (shown for failing tests and with
// -v) until the test's cleanups have run.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.stop) // registered first, so it runs after the servers' Close
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

// testConfig returns a single-member config on free ports in a temp dir.
func testConfig(t *testing.T, name string) Config {
	p := freeport.Ports(t, 2)
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:0"
	cfg.StatusAddr = "127.0.0.1:0"
	cfg.EtcdClientURL = fmt.Sprintf("http://127.0.0.1:%d", p[0])
	cfg.EtcdPeerURL = fmt.Sprintf("http://127.0.0.1:%d", p[1])
	cfg.EtcdLogLevel = "error"
	cfg.LeaderLease = Duration{Duration: time.Second}
	cfg.StartTimeout = Duration{Duration: 30 * time.Second}
	return cfg
}

func startServer(t *testing.T, cfg Config, logger *slog.Logger) *Server {
	t.Helper()
	s, err := New(cfg, logger)
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

func dial(t *testing.T, addr string) (schedulerpb.SchedulerClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return schedulerpb.NewSchedulerClient(conn), conn
}

func waitLeader(t *testing.T, s *Server) *schedulerpb.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := s.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("no leader: %v", err)
	}
	return m
}

type headered interface {
	GetHeader() *schedulerpb.ResponseHeader
}

// rpcResult carries an RPC's results into mustOK and wantErr.
type rpcResult[R headered] struct {
	resp R
	err  error
}

func res[R headered](resp R, err error) rpcResult[R] { return rpcResult[R]{resp, err} }

func mustOK[R headered](t *testing.T, r rpcResult[R]) R {
	t.Helper()
	resp, err := r.resp, r.err
	if err != nil {
		t.Fatalf("rpc error: %v", err)
	}
	if e := resp.GetHeader().GetError(); e != nil {
		t.Fatalf("error %s: %s", e.Type, e.Message)
	}
	return resp
}

// allocID allocates an id from the scheduler behind cli.
func allocID(ctx context.Context, t *testing.T, cli schedulerpb.SchedulerClient, hdr *schedulerpb.RequestHeader) uint64 {
	t.Helper()
	return mustOK(t, res(cli.AllocID(ctx, &schedulerpb.AllocIDRequest{Header: hdr}))).Id
}

func wantErr[R headered](t *testing.T, r rpcResult[R], want schedulerpb.ErrorType) {
	t.Helper()
	resp, err := r.resp, r.err
	if err != nil {
		t.Fatalf("rpc error: %v", err)
	}
	if got := resp.GetHeader().GetError().GetType(); got != want {
		t.Fatalf("error type %s (%s), want %s", got, resp.GetHeader().GetError().GetMessage(), want)
	}
}

func httpGetJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, body)
		}
	}
	return resp.StatusCode
}

func region(id uint64, start, end string, confVer, version uint64, peers ...*metapb.Peer) *metapb.Region {
	return &metapb.Region{Id: id, StartKey: []byte(start), EndKey: []byte(end),
		RegionEpoch: &metapb.RegionEpoch{ConfVer: confVer, Version: version}, Peers: peers}
}

// TestServerEndToEnd drives one scheduler over loopback gRPC the way stores
// would, checks the status API, then restarts it on the same data dir and
// checks that nothing was lost.
func TestServerEndToEnd(t *testing.T) {
	logger := testLogger(t)
	cfg := testConfig(t, "s1")
	s := startServer(t, cfg, logger)
	waitLeader(t, s)
	cli, conn := dial(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Health and members.
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}
	members := mustOK(t, res(cli.GetMembers(ctx, &schedulerpb.GetMembersRequest{})))
	clusterID := members.Header.ClusterId
	if clusterID == 0 || members.Leader.GetAddress() != s.Addr() || len(members.Members) != 1 ||
		members.Members[0].Address != s.Addr() || members.EtcdLeader.GetName() != "s1" {
		t.Fatalf("GetMembers = %v", members)
	}
	hdr := &schedulerpb.RequestHeader{ClusterId: clusterID}

	// Wrong cluster, not bootstrapped.
	wantErr(t, res(cli.AllocID(ctx, &schedulerpb.AllocIDRequest{Header: &schedulerpb.RequestHeader{ClusterId: clusterID + 1}})), schedulerpb.ErrorType_CLUSTER_ID_MISMATCH)
	if b := mustOK(t, res(cli.IsBootstrapped(ctx, &schedulerpb.IsBootstrappedRequest{Header: hdr}))); b.Bootstrapped {
		t.Fatal("bootstrapped before Bootstrap")
	}
	wantErr(t, res(cli.PutStore(ctx, &schedulerpb.PutStoreRequest{Header: hdr, Store: &metapb.Store{Id: 99, Address: "x:1"}})), schedulerpb.ErrorType_NOT_BOOTSTRAPPED)

	// Three stores, region 1 with one peer per store.
	var storeIDs, peerIDs []uint64
	for range 3 {
		storeIDs = append(storeIDs, allocID(ctx, t, cli, hdr))
		peerIDs = append(peerIDs, allocID(ctx, t, cli, hdr))
	}
	regionID := allocID(ctx, t, cli, hdr)
	peer := func(i int) *metapb.Peer { return &metapb.Peer{Id: peerIDs[i], StoreId: storeIDs[i]} }
	storeAddr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", 20160+i) }

	boot := &schedulerpb.BootstrapRequest{Header: hdr, Store: &metapb.Store{Id: storeIDs[0], Address: storeAddr(0)},
		Region: region(regionID, "", "", 1, 1, peer(0))}
	mustOK(t, res(cli.Bootstrap(ctx, boot)))
	wantErr(t, res(cli.Bootstrap(ctx, boot)), schedulerpb.ErrorType_ALREADY_BOOTSTRAPPED)
	for i := 1; i < 3; i++ {
		mustOK(t, res(cli.PutStore(ctx, &schedulerpb.PutStoreRequest{Header: hdr, Store: &metapb.Store{Id: storeIDs[i], Address: storeAddr(i)}})))
	}
	for i := range 3 {
		mustOK(t, res(cli.StoreHeartbeat(ctx, &schedulerpb.StoreHeartbeatRequest{Header: hdr,
			Stats: &schedulerpb.StoreStats{StoreId: storeIDs[i], Capacity: 100 << 30, Available: 50 << 30, RegionCount: 1}})))
	}
	wantErr(t, res(cli.StoreHeartbeat(ctx, &schedulerpb.StoreHeartbeatRequest{Header: hdr, Stats: &schedulerpb.StoreStats{StoreId: 12345}})), schedulerpb.ErrorType_STORE_NOT_FOUND)

	// Region heartbeats: region 1 grows to three peers, then splits at "m".
	stream, err := cli.RegionHeartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *metapb.Region, leader *metapb.Peer, size uint64) {
		t.Helper()
		if err := stream.Send(&schedulerpb.RegionHeartbeatRequest{Header: hdr, Region: r, Leader: leader, ApproximateSize: size, Term: 6}); err != nil {
			t.Fatal(err)
		}
	}
	waitRegion := func(key string, id, version uint64) *schedulerpb.GetRegionResponse {
		t.Helper()
		for {
			resp, err := cli.GetRegion(ctx, &schedulerpb.GetRegionRequest{Header: hdr, RegionKey: []byte(key)})
			if err != nil {
				t.Fatal(err)
			}
			// The key may be in the gap a half-reported split leaves.
			if e := resp.Header.Error; e != nil && e.Type != schedulerpb.ErrorType_REGION_NOT_FOUND {
				t.Fatalf("GetRegion(%q): %v", key, e)
			}
			if resp.Region.GetId() == id && resp.Region.GetRegionEpoch().GetVersion() == version {
				return resp
			}
			if ctx.Err() != nil {
				t.Fatalf("region at %q = %v, want id %d version %d", key, resp.Region, id, version)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	full := region(regionID, "", "", 3, 1, peer(0), peer(1), peer(2))
	send(full, peer(0), 300)
	split := mustOK(t, res(cli.AskSplit(ctx, &schedulerpb.AskSplitRequest{Header: hdr, Region: full})))
	if len(split.NewPeerIds) != 3 {
		t.Fatalf("AskSplit = %v", split)
	}
	right := region(split.NewRegionId, "m", "", 3, 2,
		&metapb.Peer{Id: split.NewPeerIds[0], StoreId: storeIDs[0]},
		&metapb.Peer{Id: split.NewPeerIds[1], StoreId: storeIDs[1]},
		&metapb.Peer{Id: split.NewPeerIds[2], StoreId: storeIDs[2]})
	left := region(regionID, "", "m", 3, 2, peer(0), peer(1), peer(2))
	send(right, right.Peers[1], 150) // the right half first
	waitRegion("z", right.Id, 2)
	send(left, peer(0), 150)
	waitRegion("a", regionID, 2)

	// A stale heartbeat (the parent's) and one from an unknown store are
	// answered with errors on the stream.
	send(full, peer(0), 300)
	got, err := stream.Recv()
	if err != nil || got.Header.GetError().GetType() != schedulerpb.ErrorType_STALE_REGION || got.RegionId != regionID {
		t.Fatalf("stale heartbeat answer = %v, %v", got, err)
	}
	ghost := &metapb.Peer{Id: 777, StoreId: 778}
	send(region(779, "zz", "", 1, 9, ghost), ghost, 1)
	got, err = stream.Recv()
	if err != nil || got.Header.GetError().GetType() != schedulerpb.ErrorType_STORE_NOT_FOUND || got.RegionId != 779 {
		t.Fatalf("unknown store answer = %v, %v", got, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}

	// Queries.
	if r := waitRegion("z", right.Id, 2); r.Leader.GetStoreId() != storeIDs[1] {
		t.Fatalf("leader of the right half: %v", r.Leader)
	}
	prev := mustOK(t, res(cli.GetPrevRegion(ctx, &schedulerpb.GetRegionRequest{Header: hdr, RegionKey: []byte("x")})))
	if prev.Region.Id != regionID {
		t.Fatalf("GetPrevRegion(x) = %v", prev.Region)
	}
	byID := mustOK(t, res(cli.GetRegionByID(ctx, &schedulerpb.GetRegionByIDRequest{Header: hdr, RegionId: right.Id})))
	if string(byID.Region.StartKey) != "m" {
		t.Fatalf("GetRegionByID = %v", byID.Region)
	}
	wantErr(t, res(cli.GetRegionByID(ctx, &schedulerpb.GetRegionByIDRequest{Header: hdr, RegionId: 424242})), schedulerpb.ErrorType_REGION_NOT_FOUND)
	scan := mustOK(t, res(cli.ScanRegions(ctx, &schedulerpb.ScanRegionsRequest{Header: hdr})))
	if len(scan.Regions) != 2 || scan.Regions[0].Region.Id != regionID || scan.Regions[1].Region.Id != right.Id {
		t.Fatalf("ScanRegions = %v", scan.Regions)
	}
	if scan := mustOK(t, res(cli.ScanRegions(ctx, &schedulerpb.ScanRegionsRequest{Header: hdr, StartKey: []byte("n"), Limit: 5}))); len(scan.Regions) != 1 {
		t.Fatalf("ScanRegions from n = %v", scan.Regions)
	}
	batch := mustOK(t, res(cli.AskBatchSplit(ctx, &schedulerpb.AskBatchSplitRequest{Header: hdr, Region: right, SplitCount: 2})))
	if len(batch.Ids) != 2 {
		t.Fatalf("AskBatchSplit = %v", batch)
	}
	mustOK(t, res(cli.PutClusterConfig(ctx, &schedulerpb.PutClusterConfigRequest{Header: hdr,
		Config: &schedulerpb.ClusterConfig{MaxReplicas: 5, MaxStoreDownTimeMs: 60000}})))
	all := mustOK(t, res(cli.GetAllStores(ctx, &schedulerpb.GetAllStoresRequest{Header: hdr})))
	if len(all.Stores) != 3 {
		t.Fatalf("GetAllStores = %v", all.Stores)
	}

	// With max_replicas 5 and a fourth store, the replica checker answers a
	// heartbeat with an operator step: add a learner on the new store.
	store4 := allocID(ctx, t, cli, hdr)
	mustOK(t, res(cli.PutStore(ctx, &schedulerpb.PutStoreRequest{Header: hdr, Store: &metapb.Store{Id: store4, Address: storeAddr(3)}})))
	mustOK(t, res(cli.StoreHeartbeat(ctx, &schedulerpb.StoreHeartbeatRequest{Header: hdr, Stats: &schedulerpb.StoreStats{StoreId: store4}})))
	stream, err = cli.RegionHeartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(left, peer(0), 150)
	step, err := stream.Recv()
	if err != nil || step.Header.GetError() != nil || step.RegionId != regionID || step.TargetPeer.GetId() != peer(0).Id ||
		step.ChangePeer.GetChangeType() != raft_cmdpb.ConfChangeType_AddLearnerNode || step.ChangePeer.Peer.GetStoreId() != store4 {
		t.Fatalf("operator step = %v, %v", step, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var ops struct {
		Running []struct {
			RegionID uint64 `json:"region_id"`
		} `json:"running"`
	}
	if code := httpGetJSON(t, "http://"+s.StatusAddr()+"/api/v1/operators", &ops); code != 200 || len(ops.Running) != 1 || ops.Running[0].RegionID != regionID {
		t.Fatalf("/api/v1/operators = %d %+v", code, ops)
	}

	// Status API.
	base := "http://" + s.StatusAddr()
	var status struct {
		ClusterID string `json:"cluster_id"`
		IsLeader  bool   `json:"is_leader"`
		Version   string `json:"version"`
	}
	if code := httpGetJSON(t, base+"/status", &status); code != 200 || status.ClusterID != fmt.Sprint(clusterID) || !status.IsLeader {
		t.Fatalf("/status = %d %+v", code, status)
	}
	var regions struct {
		Count   int          `json:"count"`
		Regions []regionJSON `json:"regions"`
	}
	if code := httpGetJSON(t, base+"/api/v1/regions", &regions); code != 200 || regions.Count != 2 || regions.Regions[1].StartKey != "6d" {
		t.Fatalf("/api/v1/regions = %d %+v", code, regions)
	}
	var one regionJSON
	if code := httpGetJSON(t, base+"/api/v1/region/key/zebra", &one); code != 200 || one.ID != right.Id || one.Leader.StoreID != storeIDs[1] {
		t.Fatalf("/api/v1/region/key/zebra = %d %+v", code, one)
	}
	if code := httpGetJSON(t, base+fmt.Sprintf("/api/v1/region/%d", regionID), &one); code != 200 || one.ID != regionID {
		t.Fatalf("/api/v1/region/id = %d %+v", code, one)
	}
	if code := httpGetJSON(t, base+"/api/v1/region/9999999", nil); code != 404 {
		t.Fatalf("/api/v1/region/9999999 = %d", code)
	}
	var stores struct {
		Stores []storeJSON `json:"stores"`
	}
	if code := httpGetJSON(t, base+"/api/v1/stores", &stores); code != 200 || len(stores.Stores) != 4 || stores.Stores[1].RegionCount != 2 {
		t.Fatalf("/api/v1/stores = %d %+v", code, stores)
	}
	var health map[string]any
	if code := httpGetJSON(t, base+"/api/v1/health", &health); code != 200 || health["healthy"] != true {
		t.Fatalf("/api/v1/health = %d %v", code, health)
	}
	var config configJSON
	if code := httpGetJSON(t, base+"/api/v1/config", &config); code != 200 || config.MaxReplicas != 5 {
		t.Fatalf("/api/v1/config = %d %+v", code, config)
	}
	// The balance schedulers can be listed, removed and added back.
	var scheds struct {
		Running   []string `json:"running"`
		Available []string `json:"available"`
	}
	if code := httpGetJSON(t, base+"/api/v1/schedulers", &scheds); code != 200 || strings.Join(scheds.Running, ",") != "balance-leader,balance-region" {
		t.Fatalf("/api/v1/schedulers = %d %+v", code, scheds)
	}
	req, _ := http.NewRequest(http.MethodDelete, base+"/api/v1/schedulers/balance-leader", nil)
	if dresp, err := http.DefaultClient.Do(req); err != nil || dresp.StatusCode != 200 {
		t.Fatalf("DELETE balance-leader: %v %v", dresp, err)
	} else {
		dresp.Body.Close()
	}
	if dresp, err := http.DefaultClient.Do(req); err != nil || dresp.StatusCode != 404 {
		t.Fatalf("DELETE balance-leader again: %v %v", dresp, err)
	} else {
		dresp.Body.Close()
	}
	for body, code := range map[string]int{`{"name":"balance-leader"}`: 200, `{"name":"balance-hot-region"}`: 400} {
		presp, err := http.Post(base+"/api/v1/schedulers", "application/json", strings.NewReader(body))
		if err != nil || presp.StatusCode != code {
			t.Fatalf("POST %s: %v %v, want %d", body, presp, err, code)
		}
		presp.Body.Close()
	}
	if code := httpGetJSON(t, base+"/api/v1/schedulers", &scheds); code != 200 || len(scheds.Running) != 2 {
		t.Fatalf("/api/v1/schedulers after re-adding = %d %+v", code, scheds)
	}

	mresp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{"regionkv_scheduler_regions{member=\"s1\"} 2", "regionkv_scheduler_region_heartbeats_total", "etcd_server_has_leader"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	lastID := allocID(ctx, t, cli, hdr)

	// Restart on the same data dir: nothing is lost.
	s.Close()
	s2 := startServer(t, cfg, logger)
	waitLeader(t, s2)
	if s2.ClusterID() != clusterID {
		t.Fatalf("cluster id after restart %d, want %d", s2.ClusterID(), clusterID)
	}
	cli, _ = dial(t, s2.Addr())
	if b := mustOK(t, res(cli.IsBootstrapped(ctx, &schedulerpb.IsBootstrappedRequest{Header: hdr}))); !b.Bootstrapped {
		t.Fatal("not bootstrapped after restart")
	}
	if id := allocID(ctx, t, cli, hdr); id <= lastID {
		t.Fatalf("id %d after restart, but %d was handed out before", id, lastID)
	}
	scan = mustOK(t, res(cli.ScanRegions(ctx, &schedulerpb.ScanRegionsRequest{Header: hdr})))
	if len(scan.Regions) != 2 || scan.Regions[0].Region.Id != regionID || scan.Regions[1].Region.Id != right.Id ||
		scan.Regions[1].Region.RegionEpoch.Version != 2 || len(scan.Regions[1].Region.Peers) != 3 {
		t.Fatalf("regions after restart = %v", scan.Regions)
	}
	all = mustOK(t, res(cli.GetAllStores(ctx, &schedulerpb.GetAllStoresRequest{Header: hdr})))
	if len(all.Stores) != 4 || all.Stores[2].Address != storeAddr(2) {
		t.Fatalf("stores after restart = %v", all.Stores)
	}
	if c := mustOK(t, res(cli.GetClusterConfig(ctx, &schedulerpb.GetClusterConfigRequest{Header: hdr}))); c.Config.MaxReplicas != 5 {
		t.Fatalf("config after restart = %v", c.Config)
	}
}
