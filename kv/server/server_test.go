package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/internal/grpccodec"
	"github.com/regionkv/regionkv/proto/errorpb"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
	"github.com/regionkv/regionkv/raftstore"
)

// testEnv is a Server on a fake store, served over loopback gRPC.
type testEnv struct {
	store  *fakeStore
	srv    *Server
	conn   *grpc.ClientConn
	client kvpb.KvClient
}

// newTestEnv starts a gRPC server on 127.0.0.1:0 for a fake store split at
// splitKeys and dials it. Everything is torn down by t.Cleanup.
func newTestEnv(t *testing.T, splitKeys ...string) *testEnv {
	t.Helper()
	store := newFakeStore(t, splitKeys...)
	srv, conn := serve(t, store)
	return &testEnv{store: store, srv: srv, conn: conn, client: kvpb.NewKvClient(conn)}
}

// serve starts a gRPC server on 127.0.0.1:0 for store and dials it. Both are
// torn down by t.Cleanup.
func serve(t *testing.T, store Store) (*Server, *grpc.ClientConn) {
	t.Helper()
	return serveWith(t, store, Options{})
}

// serveWith is serve with options (the logger is set).
func serveWith(t *testing.T, store Store, opts Options) (*Server, *grpc.ClientConn) {
	t.Helper()
	opts.Logger = testLogger(t)
	srv := NewServer(store, opts)
	g := grpc.NewServer(append(GRPCServerOptions(), grpc.WaitForHandlers(true))...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := g.Serve(lis); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxGRPCMessageSize),
			grpc.MaxCallSendMsgSize(MaxGRPCMessageSize)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		wg.Wait()
	})
	return srv, conn
}

// testLogger sends logs to t.Log, so they show only when a test fails.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawResp is what every raw API response has.
type rawResp interface {
	GetRegionError() *errorpb.Error
	GetError() string
}

// mustOK returns a check that fails the test unless the call succeeded
// without region error or error string; use it as mustOK(client.RawX(...))(t).
func mustOK[R rawResp](resp R, err error) func(t *testing.T) R {
	return func(t *testing.T) R {
		t.Helper()
		checkOK(t, resp, err)
		return resp
	}
}

func checkOK(t *testing.T, resp rawResp, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("rpc error: %v", err)
	}
	if re := resp.GetRegionError(); re != nil {
		t.Fatalf("region error: %v", re)
	}
	if e := resp.GetError(); e != "" {
		t.Fatalf("error: %s", e)
	}
}

func (e *testEnv) put(t *testing.T, cf string, kvs ...string) {
	t.Helper()
	for i := 0; i+1 < len(kvs); i += 2 {
		mustOK(e.client.RawPut(testCtx(t), &kvrpcpb.RawPutRequest{Key: []byte(kvs[i]), Value: []byte(kvs[i+1]), Cf: cf}))(t)
	}
}

func (e *testEnv) get(t *testing.T, key string) *kvrpcpb.RawGetResponse {
	t.Helper()
	return mustOK(e.client.RawGet(testCtx(t), &kvrpcpb.RawGetRequest{Key: []byte(key)}))(t)
}

// pairsString renders pairs as "k=v k=v"; with keyOnly values must be empty.
func pairsString(pairs []*kvrpcpb.KvPair) string {
	var parts []string
	for _, p := range pairs {
		parts = append(parts, fmt.Sprintf("%s=%s", p.Key, p.Value))
	}
	return strings.Join(parts, " ")
}

func TestPutGetDelete(t *testing.T) {
	e := newTestEnv(t)
	e.put(t, "", "k1", "v1", "empty", "")

	if r := e.get(t, "k1"); r.NotFound || string(r.Value) != "v1" {
		t.Errorf("get k1 = %q, not_found %v; want v1", r.Value, r.NotFound)
	}
	if r := e.get(t, "empty"); r.NotFound || len(r.Value) != 0 {
		t.Errorf("get empty = %q, not_found %v; want empty value, found", r.Value, r.NotFound)
	}
	if r := e.get(t, "missing"); !r.NotFound || r.Value != nil {
		t.Errorf("get missing = %q, not_found %v; want not_found", r.Value, r.NotFound)
	}

	// Column families are separate key spaces.
	e.put(t, "write", "k1", "w1")
	if r := mustOK(e.client.RawGet(testCtx(t), &kvrpcpb.RawGetRequest{Key: []byte("k1"), Cf: "write"}))(t); string(r.Value) != "w1" {
		t.Errorf("get write/k1 = %q, want w1", r.Value)
	}
	if r := e.get(t, "k1"); string(r.Value) != "v1" {
		t.Errorf("get default/k1 = %q after a put to write, want v1", r.Value)
	}

	mustOK(e.client.RawDelete(testCtx(t), &kvrpcpb.RawDeleteRequest{Key: []byte("k1")}))(t)
	if r := e.get(t, "k1"); !r.NotFound {
		t.Errorf("get k1 after delete = %q, want not_found", r.Value)
	}
	// Deleting a missing key succeeds.
	mustOK(e.client.RawDelete(testCtx(t), &kvrpcpb.RawDeleteRequest{Key: []byte("k1")}))(t)
}

func TestLargeValue(t *testing.T) {
	e := newTestEnv(t)
	value := bytes.Repeat([]byte{'x'}, MaxValueSize)
	key := bytes.Repeat([]byte{'k'}, MaxKeySize)
	mustOK(e.client.RawPut(testCtx(t), &kvrpcpb.RawPutRequest{Key: key, Value: value}))(t)
	r := mustOK(e.client.RawGet(testCtx(t), &kvrpcpb.RawGetRequest{Key: key}))(t)
	if !bytes.Equal(r.Value, value) {
		t.Fatalf("got a %d-byte value, want the %d bytes put", len(r.Value), len(value))
	}
}

func TestBatchOps(t *testing.T) {
	e := newTestEnv(t)
	pairs := []*kvrpcpb.KvPair{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("b"), Value: []byte("2")},
		{Key: []byte("c"), Value: []byte("")},
		{Key: []byte("a"), Value: []byte("3")}, // a repeated key ends with its last value
	}
	mustOK(e.client.RawBatchPut(testCtx(t), &kvrpcpb.RawBatchPutRequest{Pairs: pairs}))(t)
	cmds := e.store.commands()
	if len(cmds) != 1 || len(cmds[0].Requests) != len(pairs) {
		t.Fatalf("batch put became %d commands (first with %d requests), want 1 with %d", len(cmds), len(cmds[0].Requests), len(pairs))
	}
	for i, r := range cmds[0].Requests {
		if r.CmdType != raft_cmdpb.CmdType_Put || !bytes.Equal(r.Put.Key, pairs[i].Key) || !bytes.Equal(r.Put.Value, pairs[i].Value) {
			t.Errorf("request %d = %v, want put %s=%s", i, r, pairs[i].Key, pairs[i].Value)
		}
	}

	keys := [][]byte{[]byte("c"), []byte("missing"), []byte("a"), []byte("b")}
	got := mustOK(e.client.RawBatchGet(testCtx(t), &kvrpcpb.RawBatchGetRequest{Keys: keys}))(t)
	if s, want := pairsString(got.Pairs), "c= a=3 b=2"; s != want {
		t.Errorf("batch get = %q, want %q (request order, missing keys left out)", s, want)
	}

	mustOK(e.client.RawBatchDelete(testCtx(t), &kvrpcpb.RawBatchDeleteRequest{Keys: [][]byte{[]byte("a"), []byte("c")}}))(t)
	if cmds := e.store.commands(); len(cmds[len(cmds)-1].Requests) != 2 {
		t.Errorf("batch delete became a command of %d requests, want 2", len(cmds[len(cmds)-1].Requests))
	}
	got = mustOK(e.client.RawBatchGet(testCtx(t), &kvrpcpb.RawBatchGetRequest{Keys: keys}))(t)
	if s, want := pairsString(got.Pairs), "b=2"; s != want {
		t.Errorf("batch get after delete = %q, want %q", s, want)
	}
}

// TestNoOps checks the requests that succeed without reaching the store.
func TestNoOps(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	mustOK(e.client.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{}))(t)
	mustOK(e.client.RawBatchDelete(ctx, &kvrpcpb.RawBatchDeleteRequest{}))(t)
	if r := mustOK(e.client.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{}))(t); len(r.Pairs) != 0 {
		t.Errorf("empty batch get returned %v", r.Pairs)
	}
	mustOK(e.client.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{StartKey: []byte("a"), EndKey: []byte("a")}))(t)
	for _, reverse := range []bool{false, true} {
		r := mustOK(e.client.RawScan(ctx, &kvrpcpb.RawScanRequest{StartKey: []byte("a"), EndKey: []byte("a"), Reverse: reverse}))(t)
		if len(r.Kvs) != 0 {
			t.Errorf("scan of an empty range (reverse %v) returned %v", reverse, r.Kvs)
		}
	}
	if cmds := e.store.commands(); len(cmds) != 0 {
		t.Errorf("no-op requests sent %d commands to the store: %v", len(cmds), cmds)
	}
}

func TestScan(t *testing.T) {
	e := newTestEnv(t)
	e.put(t, "", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5")
	e.put(t, "write", "bb", "w")

	tests := []struct {
		name string
		req  *kvrpcpb.RawScanRequest
		want string
	}{
		{"all", &kvrpcpb.RawScanRequest{}, "a=1 b=2 c=3 d=4 e=5"},
		{"range", &kvrpcpb.RawScanRequest{StartKey: []byte("b"), EndKey: []byte("d")}, "b=2 c=3"},
		{"start between keys", &kvrpcpb.RawScanRequest{StartKey: []byte("bb")}, "c=3 d=4 e=5"},
		{"limit", &kvrpcpb.RawScanRequest{StartKey: []byte("b"), Limit: 2}, "b=2 c=3"},
		{"key only", &kvrpcpb.RawScanRequest{StartKey: []byte("d"), KeyOnly: true}, "d= e="},
		{"cf", &kvrpcpb.RawScanRequest{Cf: "write"}, "bb=w"},
		{"reverse all", &kvrpcpb.RawScanRequest{Reverse: true}, "e=5 d=4 c=3 b=2 a=1"},
		// Reverse: start_key is the exclusive upper bound, end_key the inclusive lower one.
		{"reverse range", &kvrpcpb.RawScanRequest{StartKey: []byte("d"), EndKey: []byte("b"), Reverse: true}, "c=3 b=2"},
		{"reverse lower only", &kvrpcpb.RawScanRequest{EndKey: []byte("d"), Reverse: true}, "e=5 d=4"},
		{"reverse limit", &kvrpcpb.RawScanRequest{StartKey: []byte("d"), Limit: 1, Reverse: true}, "c=3"},
		{"reverse key only", &kvrpcpb.RawScanRequest{StartKey: []byte("c"), KeyOnly: true, Reverse: true}, "b= a="},
		{"past the end", &kvrpcpb.RawScanRequest{StartKey: []byte("f")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustOK(e.client.RawScan(testCtx(t), tt.req))(t)
			if got := pairsString(r.Kvs); got != tt.want {
				t.Errorf("scan = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestScanLimits(t *testing.T) {
	e := newTestEnv(t)
	n := DefaultScanLimit + 5
	pairs := make([]*kvrpcpb.KvPair, n)
	for i := range pairs {
		pairs[i] = &kvrpcpb.KvPair{Key: fmt.Appendf(nil, "k%06d", i), Value: []byte("v")}
	}
	mustOK(e.client.RawBatchPut(testCtx(t), &kvrpcpb.RawBatchPutRequest{Pairs: pairs}))(t)
	for _, tt := range []struct {
		limit uint32
		want  int
	}{{0, DefaultScanLimit}, {MaxScanLimit, n}, {3, 3}} {
		r := mustOK(e.client.RawScan(testCtx(t), &kvrpcpb.RawScanRequest{Limit: tt.limit, KeyOnly: true}))(t)
		if len(r.Kvs) != tt.want {
			t.Errorf("scan with limit %d returned %d pairs, want %d", tt.limit, len(r.Kvs), tt.want)
		}
	}
}

// ctxFor addresses the fake store's region id explicitly.
func ctxFor(id uint64) *kvrpcpb.Context {
	return &kvrpcpb.Context{
		RegionId:    id,
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
		Peer:        &metapb.Peer{Id: 100 + id, StoreId: fakeStoreID},
	}
}

func TestScanAcrossRegions(t *testing.T) {
	e := newTestEnv(t, "m") // region 1 [, m), region 2 [m, )
	e.put(t, "", "a", "1", "f", "2", "m", "3", "q", "4", "z", "5")

	tests := []struct {
		name string
		req  *kvrpcpb.RawScanRequest
		want string
		// notInRegion, if set, is the key of the expected KeyNotInRegion error.
		notInRegion string
	}{
		{name: "routed, clipped to region end", req: &kvrpcpb.RawScanRequest{StartKey: []byte("f")}, want: "f=2"},
		{name: "routed second region", req: &kvrpcpb.RawScanRequest{StartKey: []byte("n")}, want: "q=4 z=5"},
		{name: "routed reverse unbounded goes to last region", req: &kvrpcpb.RawScanRequest{Reverse: true}, want: "z=5 q=4 m=3"},
		{name: "routed reverse inside region", req: &kvrpcpb.RawScanRequest{StartKey: []byte("q"), Reverse: true}, want: "m=3"},
		{name: "routed reverse at region start goes to previous region", req: &kvrpcpb.RawScanRequest{StartKey: []byte("m"), Reverse: true}, want: "f=2 a=1"},
		{name: "routed reverse just after region start", req: &kvrpcpb.RawScanRequest{StartKey: []byte("m\x00"), Reverse: true}, want: "m=3"},
		{name: "context, clipped", req: &kvrpcpb.RawScanRequest{Context: ctxFor(1), StartKey: []byte("a")}, want: "a=1 f=2"},
		{name: "context, reverse clipped", req: &kvrpcpb.RawScanRequest{Context: ctxFor(2), Reverse: true, Limit: 10}, want: "z=5 q=4 m=3"},
		{name: "context, reverse upper at region end", req: &kvrpcpb.RawScanRequest{Context: ctxFor(1), StartKey: []byte("m"), Reverse: true}, want: "f=2 a=1"},
		{name: "context, start outside", req: &kvrpcpb.RawScanRequest{Context: ctxFor(1), StartKey: []byte("n")}, notInRegion: "n"},
		{name: "context, empty start outside", req: &kvrpcpb.RawScanRequest{Context: ctxFor(2)}, notInRegion: ""},
		{name: "context, reverse upper at region start", req: &kvrpcpb.RawScanRequest{Context: ctxFor(2), StartKey: []byte("m"), Reverse: true}, notInRegion: "m"},
		{name: "context, reverse unbounded not in last region", req: &kvrpcpb.RawScanRequest{Context: ctxFor(1), Reverse: true}, notInRegion: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := e.client.RawScan(testCtx(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" {
				checkOK(t, r, err)
				if got := pairsString(r.Kvs); got != tt.want {
					t.Errorf("scan = %q, want %q", got, tt.want)
				}
				return
			}
			kr := r.GetRegionError().GetKeyNotInRegion()
			if kr == nil || string(kr.Key) != tt.notInRegion || len(r.Kvs) != 0 {
				t.Errorf("got %v, kvs %v; want KeyNotInRegion for %q", r.GetRegionError(), r.Kvs, tt.notInRegion)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	e := newTestEnv(t, "m")
	ctx := testCtx(t)
	lastHeader := func() *raft_cmdpb.RaftRequestHeader {
		cmds := e.store.commands()
		return cmds[len(cmds)-1].Header
	}

	// Without a context the store routes by key and uses its region's epoch and peer.
	mustOK(e.client.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: []byte("x"), Value: []byte("1")}))(t)
	if h := lastHeader(); h.RegionId != 2 || h.Peer.GetId() != 102 || h.RegionEpoch.GetVersion() != 1 {
		t.Errorf("routed header = %v, want region 2, peer 102, epoch {1 1}", h)
	}
	// With one, the header is the context.
	c := ctxFor(1)
	mustOK(e.client.RawGet(ctx, &kvrpcpb.RawGetRequest{Context: c, Key: []byte("a")}))(t)
	if h := lastHeader(); h.RegionId != 1 || h.Peer.GetId() != 101 || h.RegionEpoch.GetConfVer() != 1 || h.RegionEpoch.GetVersion() != 1 {
		t.Errorf("header = %v, want the context %v", h, c)
	}

	t.Run("batch across regions", func(t *testing.T) {
		keys := [][]byte{[]byte("a"), []byte("b"), []byte("x"), []byte("y")}
		checks := map[string]func() (rawResp, error){
			"put": func() (rawResp, error) {
				pairs := make([]*kvrpcpb.KvPair, len(keys))
				for i, k := range keys {
					pairs[i] = &kvrpcpb.KvPair{Key: k, Value: k}
				}
				return e.client.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: pairs})
			},
			"get": func() (rawResp, error) {
				return e.client.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: keys})
			},
			"delete": func() (rawResp, error) {
				return e.client.RawBatchDelete(ctx, &kvrpcpb.RawBatchDeleteRequest{Keys: keys})
			},
		}
		for name, call := range checks {
			r, err := call()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			kr := r.GetRegionError().GetKeyNotInRegion()
			if kr == nil || string(kr.Key) != "x" || kr.RegionId != 1 || string(kr.EndKey) != "m" {
				t.Errorf("%s: region error %v, want KeyNotInRegion for the first outlier x in region 1", name, r.GetRegionError())
			}
		}
		if r := e.get(t, "a"); !r.NotFound {
			t.Errorf("a failed batch put wrote a = %q", r.Value)
		}
	})

	t.Run("delete range", func(t *testing.T) {
		e.put(t, "", "a", "1", "f", "2", "m", "3", "z", "4")
		// Routed: the whole range must be in one region.
		r, err := e.client.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{StartKey: []byte("a")})
		if err != nil || r.GetRegionError().GetKeyNotInRegion() == nil {
			t.Fatalf("routed delete range across regions = %v, %v; want KeyNotInRegion", r, err)
		}
		mustOK(e.client.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{StartKey: []byte("b"), EndKey: []byte("m")}))(t)
		// With a context the store clips it to the region.
		mustOK(e.client.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{Context: ctxFor(2), StartKey: []byte("n")}))(t)
		got := mustOK(e.client.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: [][]byte{[]byte("a"), []byte("f")}}))(t)
		if s := pairsString(got.Pairs); s != "a=1" {
			t.Errorf("region 1 after deleting [b, m) = %q, want a=1", s)
		}
		got = mustOK(e.client.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: [][]byte{[]byte("m"), []byte("z")}}))(t)
		if s := pairsString(got.Pairs); s != "m=3" {
			t.Errorf("region 2 after deleting [n, ) = %q, want m=3", s)
		}
	})
}

// allOps calls every raw API method with a valid request for key "a" (in
// region 1 of the fake store) and context c.
func allOps(c *kvrpcpb.Context) map[string]func(context.Context, kvpb.KvClient) (rawResp, error) {
	k := []byte("a")
	return map[string]func(context.Context, kvpb.KvClient) (rawResp, error){
		"RawGet": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawGet(ctx, &kvrpcpb.RawGetRequest{Context: c, Key: k})
		},
		"RawBatchGet": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Context: c, Keys: [][]byte{k}})
		},
		"RawPut": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawPut(ctx, &kvrpcpb.RawPutRequest{Context: c, Key: k, Value: k})
		},
		"RawBatchPut": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Context: c, Pairs: []*kvrpcpb.KvPair{{Key: k, Value: k}}})
		},
		"RawDelete": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawDelete(ctx, &kvrpcpb.RawDeleteRequest{Context: c, Key: k})
		},
		"RawBatchDelete": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawBatchDelete(ctx, &kvrpcpb.RawBatchDeleteRequest{Context: c, Keys: [][]byte{k}})
		},
		"RawDeleteRange": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{Context: c, StartKey: k, EndKey: []byte("b")})
		},
		"RawScan": func(ctx context.Context, cl kvpb.KvClient) (rawResp, error) {
			return cl.RawScan(ctx, &kvrpcpb.RawScanRequest{Context: c, StartKey: k})
		},
	}
}

func TestRegionErrors(t *testing.T) {
	e := newTestEnv(t, "m")
	leader := &metapb.Peer{Id: 7, StoreId: 2}
	e.store.setFail(func(*raft_cmdpb.RaftCmdRequest) error {
		return &raftstore.NotLeaderError{RegionID: 1, Leader: leader}
	})
	for name, call := range allOps(nil) {
		r, err := call(testCtx(t), e.client)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if nl := r.GetRegionError().GetNotLeader(); nl == nil || nl.RegionId != 1 || nl.Leader.GetId() != 7 || nl.Leader.GetStoreId() != 2 {
			t.Errorf("%s: region error %v, want NotLeader{1, peer 7 on store 2}", name, r.GetRegionError())
		}
	}
	e.store.setFail(nil)

	stale := ctxFor(1)
	stale.RegionEpoch.Version = 0
	otherStore := ctxFor(1)
	otherStore.Peer.StoreId = 9
	tests := []struct {
		name  string
		c     *kvrpcpb.Context
		check func(*errorpb.Error) bool
	}{
		{"stale epoch", stale, func(re *errorpb.Error) bool {
			cur := re.GetEpochNotMatch().GetCurrentRegions()
			return len(cur) == 1 && cur[0].Id == 1 && cur[0].RegionEpoch.Version == 1
		}},
		{"unknown region", ctxFor(9), func(re *errorpb.Error) bool { return re.GetRegionNotFound().GetRegionId() == 9 }},
		{"peer on another store", otherStore, func(re *errorpb.Error) bool {
			sm := re.GetStoreNotMatch()
			return sm.GetRequestStoreId() == 9 && sm.GetActualStoreId() == fakeStoreID
		}},
	}
	for _, tt := range tests {
		for name, call := range allOps(tt.c) {
			r, err := call(testCtx(t), e.client)
			if err != nil {
				t.Fatalf("%s, %s: %v", tt.name, name, err)
			}
			if re := r.GetRegionError(); re == nil || re.Message == "" || !tt.check(re) {
				t.Errorf("%s, %s: region error %v", tt.name, name, re)
			}
		}
	}
}

func TestStoreFailures(t *testing.T) {
	e := newTestEnv(t)

	t.Run("deadline", func(t *testing.T) {
		e.store.setBlock(true)
		defer e.store.setBlock(false)
		for name, call := range allOps(nil) {
			ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
			_, err := call(ctx, e.client)
			cancel()
			if status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("%s: %v, want DeadlineExceeded", name, err)
			}
		}
	})

	// The server maps the store's errors itself, whatever the client's own
	// deadline would say.
	tests := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"store deadline", fmt.Errorf("propose: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"store canceled", fmt.Errorf("propose: %w", context.Canceled), codes.Canceled},
		{"store stopped", fmt.Errorf("propose: %w", raftstore.ErrStoreStopped), codes.Unavailable},
		{"proposal unknown", raftstore.ErrProposalUnknown, codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.store.setFail(func(*raft_cmdpb.RaftCmdRequest) error { return tt.err })
			defer e.store.setFail(nil)
			for name, call := range allOps(nil) {
				if _, err := call(testCtx(t), e.client); status.Code(err) != tt.code {
					t.Errorf("%s: %v, want %v", name, err, tt.code)
				}
			}
		})
	}

	t.Run("stopped while routing", func(t *testing.T) {
		e.store.setStopped(true)
		defer e.store.setStopped(false)
		for name, call := range allOps(nil) {
			if _, err := call(testCtx(t), e.client); status.Code(err) != codes.Unavailable {
				t.Errorf("%s: %v, want Unavailable", name, err)
			}
		}
	})

	t.Run("other error", func(t *testing.T) {
		e.store.setFail(func(*raft_cmdpb.RaftCmdRequest) error { return errors.New("disk on fire") })
		defer e.store.setFail(nil)
		for name, call := range allOps(nil) {
			r, err := call(testCtx(t), e.client)
			if err != nil || r.GetRegionError() != nil || !strings.Contains(r.GetError(), "disk on fire") {
				t.Errorf("%s: %v, %v; want the error in the response's error string", name, r, err)
			}
		}
	})
}

func TestInvalidArgument(t *testing.T) {
	e := newTestEnv(t)
	long := bytes.Repeat([]byte{'k'}, MaxKeySize+1)
	big := bytes.Repeat([]byte{'v'}, MaxValueSize+1)
	k := []byte("k")
	manyKeys := make([][]byte, MaxBatchKeys+1)
	for i := range manyKeys {
		manyKeys[i] = k
	}
	manyPairs := make([]*kvrpcpb.KvPair, MaxBatchKeys+1)
	for i := range manyPairs {
		manyPairs[i] = &kvrpcpb.KvPair{Key: k}
	}
	// Keys of MaxKeySize bytes, together over MaxBatchBytes.
	heavyKeys := make([][]byte, MaxBatchBytes/MaxKeySize+1)
	for i := range heavyKeys {
		heavyKeys[i] = bytes.Repeat([]byte{'h'}, MaxKeySize)
	}
	// Values of MaxValueSize bytes, together over MaxBatchBytes.
	heavyPairs := []*kvrpcpb.KvPair{
		{Key: []byte("a"), Value: big[:MaxValueSize]},
		{Key: []byte("b"), Value: big[:MaxValueSize]},
		{Key: []byte("c"), Value: []byte("v")},
	}

	type call func(context.Context, kvpb.KvClient) (any, error)
	tests := []struct {
		name string
		call call
		msg  string // a substring of the status message
	}{
		{"get empty key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawGet(ctx, &kvrpcpb.RawGetRequest{})
		}, "key is empty"},
		{"get long key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: long})
		}, "key is 8193 bytes"},
		{"get unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawGet(ctx, &kvrpcpb.RawGetRequest{Key: k, Cf: "nope"})
		}, `unknown column family "nope"`},
		{"put empty key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawPut(ctx, &kvrpcpb.RawPutRequest{Value: k})
		}, "key is empty"},
		{"put long key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: long})
		}, "key is"},
		{"put big value", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: k, Value: big})
		}, "value is"},
		{"put unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawPut(ctx, &kvrpcpb.RawPutRequest{Key: k, Cf: "Default"})
		}, "cf"},
		{"delete empty key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawDelete(ctx, &kvrpcpb.RawDeleteRequest{})
		}, "key is empty"},
		{"delete long key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawDelete(ctx, &kvrpcpb.RawDeleteRequest{Key: long})
		}, "key is"},
		{"delete unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawDelete(ctx, &kvrpcpb.RawDeleteRequest{Key: k, Cf: "raft"})
		}, "cf"},
		{"batch get too many keys", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: manyKeys})
		}, "16385 keys"},
		{"batch get empty key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: [][]byte{k, nil}})
		}, "keys[1] is empty"},
		{"batch get long key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: [][]byte{long}})
		}, "keys[0] is"},
		{"batch get too many bytes", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: heavyKeys})
		}, "batch keys total"},
		{"batch get unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchGet(ctx, &kvrpcpb.RawBatchGetRequest{Keys: [][]byte{k}, Cf: "x"})
		}, "cf"},
		{"batch put too many pairs", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: manyPairs})
		}, "16385 pairs"},
		{"batch put empty key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: []*kvrpcpb.KvPair{{Key: k}, {Value: k}}})
		}, "pairs[1].key is empty"},
		{"batch put long key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: []*kvrpcpb.KvPair{{Key: long}}})
		}, "pairs[0].key is"},
		{"batch put big value", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: []*kvrpcpb.KvPair{{Key: k, Value: big}}})
		}, "pairs[0].value is"},
		{"batch put too many bytes", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: heavyPairs})
		}, "batch pairs total"},
		{"batch put unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: []*kvrpcpb.KvPair{{Key: k}}, Cf: "x"})
		}, "cf"},
		{"batch delete too many keys", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchDelete(ctx, &kvrpcpb.RawBatchDeleteRequest{Keys: manyKeys})
		}, "16385 keys"},
		{"batch delete empty key", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchDelete(ctx, &kvrpcpb.RawBatchDeleteRequest{Keys: [][]byte{nil}})
		}, "keys[0] is empty"},
		{"batch delete unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawBatchDelete(ctx, &kvrpcpb.RawBatchDeleteRequest{Keys: [][]byte{k}, Cf: "x"})
		}, "cf"},
		{"delete range start after end", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{StartKey: []byte("b"), EndKey: []byte("a")})
		}, `start_key "b" is after end_key "a"`},
		{"delete range long start", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{StartKey: long})
		}, "start_key is"},
		{"delete range long end", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{EndKey: long})
		}, "end_key is"},
		{"delete range unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawDeleteRange(ctx, &kvrpcpb.RawDeleteRangeRequest{Cf: "x"})
		}, "cf"},
		{"scan start after end", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawScan(ctx, &kvrpcpb.RawScanRequest{StartKey: []byte("b"), EndKey: []byte("a")})
		}, `start_key "b" is after end_key "a"`},
		{"reverse scan lower above upper", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawScan(ctx, &kvrpcpb.RawScanRequest{StartKey: []byte("a"), EndKey: []byte("b"), Reverse: true})
		}, `end_key "b" is after start_key "a"`},
		{"scan long start", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawScan(ctx, &kvrpcpb.RawScanRequest{StartKey: long})
		}, "start_key is"},
		{"scan long end", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawScan(ctx, &kvrpcpb.RawScanRequest{EndKey: long, Reverse: true})
		}, "end_key is"},
		{"scan limit too large", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawScan(ctx, &kvrpcpb.RawScanRequest{Limit: MaxScanLimit + 1})
		}, "limit 100001"},
		{"scan unknown cf", func(ctx context.Context, c kvpb.KvClient) (any, error) {
			return c.RawScan(ctx, &kvrpcpb.RawScanRequest{Cf: "x"})
		}, "cf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.call(testCtx(t), e.client)
			if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), tt.msg) {
				t.Errorf("got %v, want InvalidArgument mentioning %q", err, tt.msg)
			}
		})
	}
	if cmds := e.store.commands(); len(cmds) != 0 {
		t.Errorf("invalid requests reached the store: %d commands", len(cmds))
	}
}

// TestNilRequests calls the handlers directly: gRPC never passes nil, but a
// direct caller might.
func TestNilRequests(t *testing.T) {
	s := NewServer(newFakeStore(t), Options{Logger: testLogger(t)})
	ctx := testCtx(t)
	var errs []error
	_, err := s.RawGet(ctx, nil)
	errs = append(errs, err)
	_, err = s.RawBatchGet(ctx, nil)
	errs = append(errs, err)
	_, err = s.RawPut(ctx, nil)
	errs = append(errs, err)
	_, err = s.RawBatchPut(ctx, nil)
	errs = append(errs, err)
	_, err = s.RawBatchPut(ctx, &kvrpcpb.RawBatchPutRequest{Pairs: []*kvrpcpb.KvPair{nil}})
	errs = append(errs, err)
	_, err = s.RawDelete(ctx, nil)
	errs = append(errs, err)
	_, err = s.RawBatchDelete(ctx, nil)
	errs = append(errs, err)
	_, err = s.RawDeleteRange(ctx, nil)
	errs = append(errs, err)
	_, err = s.RawScan(ctx, nil)
	errs = append(errs, err)
	for i, err := range errs {
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("call %d: %v, want InvalidArgument", i, err)
		}
	}
}

func raftMsg(region uint64, typ raftpb.MessageType) *raft_serverpb.RaftMessage {
	return &raft_serverpb.RaftMessage{
		RegionId:    region,
		FromPeer:    &metapb.Peer{Id: 200 + region, StoreId: 2},
		ToPeer:      &metapb.Peer{Id: 100 + region, StoreId: fakeStoreID},
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1, Version: 1},
		Message: &raftpb.Message{
			Type: typ, To: 100 + region, From: 200 + region, Term: 5, Index: 9, LogTerm: 4, Commit: 8,
			Entries: []raftpb.Entry{{Term: 5, Index: 10, Data: []byte("cmd")}},
		},
	}
}

func TestRaftStream(t *testing.T) {
	e := newTestEnv(t)
	stream, err := e.client.Raft(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	batches := []*raft_serverpb.RaftMessageBatch{
		{Msgs: []*raft_serverpb.RaftMessage{raftMsg(1, raftpb.MsgApp), raftMsg(0, raftpb.MsgApp), raftMsg(2, raftpb.MsgHeartbeat)}},
		{},
		{Msgs: []*raft_serverpb.RaftMessage{raftMsg(3, raftpb.MsgVote)}},
	}
	for _, b := range batches {
		if err := stream.Send(b); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The message of region 0 is rejected by the store and skipped.
	want := []*raft_serverpb.RaftMessage{raftMsg(1, raftpb.MsgApp), raftMsg(2, raftpb.MsgHeartbeat), raftMsg(3, raftpb.MsgVote)}
	checkRaftMessages(t, e.store.raftMessages(), want)

	t.Run("store stopped", func(t *testing.T) {
		e.store.setStopped(true)
		defer e.store.setStopped(false)
		stream, err := e.client.Raft(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&raft_serverpb.RaftMessageBatch{Msgs: want[:1]}); err != nil {
			t.Fatalf("send: %v", err)
		}
		if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Unavailable {
			t.Errorf("close: %v, want Unavailable", err)
		}
	})

	t.Run("streams stopped", func(t *testing.T) {
		stream, err := e.client.Raft(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&raft_serverpb.RaftMessageBatch{Msgs: want[:1]}); err != nil {
			t.Fatalf("send: %v", err)
		}
		// An idle stream ends when the server stops streams, and new ones
		// end at once.
		e.srv.StopStreams()
		e.srv.StopStreams()
		if err := stream.RecvMsg(new(raft_serverpb.Done)); status.Code(err) != codes.Unavailable {
			t.Errorf("idle stream after StopStreams: %v, want Unavailable", err)
		}
		stream, err = e.client.Raft(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Unavailable {
			t.Errorf("new stream after StopStreams: %v, want Unavailable", err)
		}
		// Client requests still work.
		e.put(t, "", "k", "v")
	})
}

// checkRaftMessages fails the test unless got equals want, in order.
func checkRaftMessages(t *testing.T, got, want []*raft_serverpb.RaftMessage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("store got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		g, _ := got[i].Marshal()
		w, _ := want[i].Marshal()
		if !bytes.Equal(g, w) {
			t.Errorf("message %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestSnapshotStream(t *testing.T) {
	e := newTestEnv(t)
	msg := &raft_serverpb.RaftMessage{RegionId: 1}
	t.Run("delivered", func(t *testing.T) {
		stream, err := e.client.Snapshot(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		chunks := []*raft_serverpb.SnapshotChunk{{Message: msg, Data: []byte("ab")}, {Data: []byte("cd")}, {Data: []byte("e")}}
		for _, c := range chunks {
			if err := stream.Send(c); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatalf("close: %v", err)
		}
		e.store.mu.Lock()
		defer e.store.mu.Unlock()
		if n := len(e.store.mu.snapData); n != 1 || string(e.store.mu.snapData[0]) != "abcde" {
			t.Fatalf("store got %d snapshots, data %q", n, e.store.mu.snapData)
		}
	})
	for _, tc := range []struct {
		name   string
		chunks []*raft_serverpb.SnapshotChunk
	}{
		{"no message", []*raft_serverpb.SnapshotChunk{{Data: []byte("x")}}},
		{"second message", []*raft_serverpb.SnapshotChunk{{Message: msg}, {Message: msg}}},
		{"rejected by the store", []*raft_serverpb.SnapshotChunk{{Message: &raft_serverpb.RaftMessage{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := e.client.Snapshot(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.chunks {
				_ = stream.Send(c)
			}
			if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
				t.Errorf("close: %v, want InvalidArgument", err)
			}
		})
	}
}

func TestHealthAndReflection(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	hc := healthpb.NewHealthClient(e.conn)
	check := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, svc := range []string{"", KvServiceName} {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || r.Status != want {
				t.Errorf("health of %q = %v, %v; want %v", svc, r.GetStatus(), err, want)
			}
		}
	}
	check(healthpb.HealthCheckResponse_SERVING)
	e.srv.SetServing(false)
	check(healthpb.HealthCheckResponse_NOT_SERVING)
	e.srv.SetServing(true)
	check(healthpb.HealthCheckResponse_SERVING)

	rs, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.CloseSend()
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{KvServiceName, "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v, want %s among them", names, want)
		}
	}

	// The Kv service can be described (see Register for the one import that
	// cannot).
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: KvServiceName},
	}); err != nil {
		t.Fatal(err)
	}
	if r, err = rs.Recv(); err != nil {
		t.Fatal(err)
	}
	if fds := r.GetFileDescriptorResponse().GetFileDescriptorProto(); len(fds) == 0 {
		t.Errorf("reflection cannot describe %s: %v", KvServiceName, r.GetErrorResponse())
	}
}

func TestCodecIsRegistered(t *testing.T) {
	if c, ok := encoding.GetCodecV2(grpccodec.CodecName).(grpccodec.Codec); !ok {
		t.Fatalf("codec %q is %T, want grpccodec.Codec", grpccodec.CodecName, c)
	}
}

// TestLimitsFit checks that the largest legal batches fit in MaxCommandSize
// as a raft command and in MaxGRPCMessageSize as a gRPC request.
func TestLimitsFit(t *testing.T) {
	ctx := &kvrpcpb.Context{
		RegionId:    1 << 62,
		RegionEpoch: &metapb.RegionEpoch{ConfVer: 1 << 62, Version: 1 << 62},
		Peer:        &metapb.Peer{Id: 1 << 62, StoreId: 1 << 62},
	}
	header := &raft_cmdpb.RaftRequestHeader{RegionId: ctx.RegionId, Peer: ctx.Peer, RegionEpoch: ctx.RegionEpoch, Term: 1 << 62}
	// Many pairs with 2-byte varint lengths, and one maximal pair.
	value := make([]byte, MaxBatchBytes/MaxBatchKeys-8)
	var many []*kvrpcpb.KvPair
	for i := range MaxBatchKeys {
		many = append(many, &kvrpcpb.KvPair{Key: fmt.Appendf(nil, "%08d", i), Value: value})
	}
	one := []*kvrpcpb.KvPair{{Key: make([]byte, MaxKeySize), Value: make([]byte, MaxValueSize)}}
	for _, pairs := range [][]*kvrpcpb.KvPair{many, one} {
		req := &kvrpcpb.RawBatchPutRequest{Context: ctx, Pairs: pairs, Cf: "default"}
		cmd := &raft_cmdpb.RaftCmdRequest{Header: header}
		total := 0
		for _, p := range pairs {
			total += len(p.Key) + len(p.Value)
			cmd.Requests = append(cmd.Requests, putRequest(req.Cf, p.Key, p.Value))
		}
		if total > MaxBatchBytes {
			t.Fatalf("test batch has %d bytes, more than MaxBatchBytes", total)
		}
		if n := req.Size(); n > MaxGRPCMessageSize {
			t.Errorf("request of %d pairs is %d bytes, more than MaxGRPCMessageSize", len(pairs), n)
		}
		if n := cmd.Size(); n > MaxCommandSize {
			t.Errorf("command of %d pairs is %d bytes, more than MaxCommandSize", len(pairs), n)
		}
	}
}
