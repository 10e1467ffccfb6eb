package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/raftstore"
)

func batchPut(id uint64, key, value string) *kvrpcpb.BatchCommandsRequest_Request {
	return &kvrpcpb.BatchCommandsRequest_Request{Id: id, Cmd: &kvrpcpb.BatchCommandsRequest_Request_Put{
		Put: &kvrpcpb.RawPutRequest{Key: []byte(key), Value: []byte(value)}}}
}

func batchGet(id uint64, key string) *kvrpcpb.BatchCommandsRequest_Request {
	return &kvrpcpb.BatchCommandsRequest_Request{Id: id, Cmd: &kvrpcpb.BatchCommandsRequest_Request_Get{
		Get: &kvrpcpb.RawGetRequest{Key: []byte(key)}}}
}

// recvAnswers reads answers until it has n, keyed by id.
func recvAnswers(t *testing.T, stream interface {
	Recv() (*kvrpcpb.BatchCommandsResponse, error)
}, n int) map[uint64]*kvrpcpb.BatchCommandsResponse_Response {
	t.Helper()
	got := map[uint64]*kvrpcpb.BatchCommandsResponse_Response{}
	for len(got) < n {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv after %d of %d answers: %v", len(got), n, err)
		}
		for _, r := range m.Responses {
			if got[r.Id] != nil {
				t.Fatalf("answer %d twice", r.Id)
			}
			got[r.Id] = r
		}
	}
	return got
}

// TestBatchCommands: each request of a batch is answered under its id as
// its unary call would be, bad ones with the unary call's status.
func TestBatchCommands(t *testing.T) {
	e := newTestEnv(t)
	stream, err := e.client.BatchCommands(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	send := func(reqs ...*kvrpcpb.BatchCommandsRequest_Request) {
		t.Helper()
		if err := stream.Send(&kvrpcpb.BatchCommandsRequest{Requests: reqs}); err != nil {
			t.Fatal(err)
		}
	}
	send(batchPut(1, "a", "1"), batchPut(2, "b", "2"), batchPut(3, "", "empty key"),
		&kvrpcpb.BatchCommandsRequest_Request{Id: 4})
	got := recvAnswers(t, stream, 4)
	for _, id := range []uint64{1, 2} {
		if r := got[id]; r.Code != 0 || r.GetPut() == nil || r.GetPut().RegionError != nil {
			t.Errorf("put %d: %v", id, r)
		}
	}
	for _, id := range []uint64{3, 4} {
		if r := got[id]; codes.Code(r.Code) != codes.InvalidArgument || r.Message == "" || r.Cmd != nil {
			t.Errorf("request %d: %v, want InvalidArgument and no response", id, r)
		}
	}

	// Writes through the stream are seen by reads through it and by unary
	// calls, and a timeout is accepted.
	get := batchGet(5, "a")
	get.TimeoutUs = 5e6
	send(get, batchGet(6, "missing"),
		&kvrpcpb.BatchCommandsRequest_Request{Id: 7, Cmd: &kvrpcpb.BatchCommandsRequest_Request_Delete{
			Delete: &kvrpcpb.RawDeleteRequest{Key: []byte("b")}}})
	got = recvAnswers(t, stream, 3)
	if r := got[5].GetGet(); r == nil || string(r.Value) != "1" || r.NotFound {
		t.Errorf("get a = %v, want 1", got[5])
	}
	if r := got[6].GetGet(); r == nil || !r.NotFound {
		t.Errorf("get missing = %v, want not found", got[6])
	}
	if r := got[7].GetDelete(); r == nil || got[7].Code != 0 {
		t.Errorf("delete b = %v", got[7])
	}
	if r := e.get(t, "b"); !r.NotFound {
		t.Errorf("unary get b after the batched delete = %q", r.Value)
	}

	// Closing the send side ends the stream cleanly, after a last message
	// that says every request read was answered.
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || !m.Closing || len(m.Responses) != 0 {
		t.Fatalf("last message = %v, %v; want an empty closing message", m, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the closing message: %v, want EOF", err)
	}
}

// TestBatchCommandsStopStreams: a stopping store ends batch streams with a
// closing message and Unavailable, so that clients know which requests ran.
func TestBatchCommandsStopStreams(t *testing.T) {
	e := newTestEnv(t)
	stream, err := e.client.BatchCommands(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&kvrpcpb.BatchCommandsRequest{Requests: []*kvrpcpb.BatchCommandsRequest_Request{batchPut(1, "a", "1")}}); err != nil {
		t.Fatal(err)
	}
	recvAnswers(t, stream, 1)
	e.srv.StopStreams()
	m, err := stream.Recv()
	if err != nil || !m.Closing {
		t.Fatalf("after StopStreams: %v, %v; want a closing message", m, err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("after the closing message: %v, want Unavailable", err)
	}
	// Unary calls still work.
	if r := e.get(t, "a"); string(r.Value) != "1" {
		t.Fatalf("get a = %q", r.Value)
	}
}

// batchOne sends one request on a new stream of client and returns its answer.
func batchOne(t *testing.T, ctx context.Context, client kvpb.KvClient, req *kvrpcpb.BatchCommandsRequest_Request) *kvrpcpb.BatchCommandsResponse_Response {
	t.Helper()
	stream, err := client.BatchCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&kvrpcpb.BatchCommandsRequest{Requests: []*kvrpcpb.BatchCommandsRequest_Request{req}}); err != nil {
		t.Fatal(err)
	}
	return recvAnswers(t, stream, 1)[req.Id]
}

func batchDelete(id uint64, key string) *kvrpcpb.BatchCommandsRequest_Request {
	return &kvrpcpb.BatchCommandsRequest_Request{Id: id, Cmd: &kvrpcpb.BatchCommandsRequest_Request_Delete{
		Delete: &kvrpcpb.RawDeleteRequest{Key: []byte(key)}}}
}

// TestBatchWriteStoreErrors: a batched put or delete (proposed without a
// goroutine of its own, batch_direct.go) gets the answer its unary call
// gets when the store fails it.
func TestBatchWriteStoreErrors(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		name  string
		err   error
		check func(*kvrpcpb.BatchCommandsResponse_Response) bool
	}{
		{"region error", &raftstore.EpochNotMatchError{Msg: "stale"}, func(r *kvrpcpb.BatchCommandsResponse_Response) bool {
			re := r.GetPut().GetRegionError()
			if r.GetDelete() != nil {
				re = r.GetDelete().GetRegionError()
			}
			return r.Code == 0 && re.GetEpochNotMatch() != nil
		}},
		{"store stopped", raftstore.ErrStoreStopped, func(r *kvrpcpb.BatchCommandsResponse_Response) bool {
			return codes.Code(r.Code) == codes.Unavailable && r.Cmd == nil
		}},
		{"proposal unknown", raftstore.ErrProposalUnknown, func(r *kvrpcpb.BatchCommandsResponse_Response) bool {
			return codes.Code(r.Code) == codes.Unknown && r.Cmd == nil
		}},
		{"other error", errors.New("disk on fire"), func(r *kvrpcpb.BatchCommandsResponse_Response) bool {
			msg := r.GetPut().GetError()
			if r.GetDelete() != nil {
				msg = r.GetDelete().GetError()
			}
			return r.Code == 0 && strings.Contains(msg, "disk on fire")
		}},
	}
	for _, tt := range tests {
		e.store.setFail(func(*raft_cmdpb.RaftCmdRequest) error { return tt.err })
		for _, req := range []*kvrpcpb.BatchCommandsRequest_Request{batchPut(1, "a", "1"), batchDelete(2, "a")} {
			if r := batchOne(t, testCtx(t), e.client, req); !tt.check(r) {
				t.Errorf("%s: request %d answered %v", tt.name, req.Id, r)
			}
		}
	}
	e.store.setFail(nil)
}

// TestBatchWriteTimeout: a batched write the store does not answer within
// the request's timeout is answered DeadlineExceeded.
func TestBatchWriteTimeout(t *testing.T) {
	e := newTestEnv(t)
	e.store.setBlock(true)
	defer e.store.setBlock(false)
	for _, req := range []*kvrpcpb.BatchCommandsRequest_Request{batchPut(1, "a", "1"), batchDelete(2, "a")} {
		req.TimeoutUs = 50e3
		if r := batchOne(t, testCtx(t), e.client, req); codes.Code(r.Code) != codes.DeadlineExceeded || r.Cmd != nil {
			t.Errorf("request %d answered %v, want DeadlineExceeded", req.Id, r)
		}
	}
}

// TestBatchWriteTimeoutsOneStream: each batched write on a stream is
// answered at its own deadline, whatever the order the writes came in: a
// write with a short timeout sent after one with a long timeout is answered
// first, and a third whose deadline comes next is answered next.
func TestBatchWriteTimeoutsOneStream(t *testing.T) {
	e := newTestEnv(t)
	e.store.setBlock(true)
	defer e.store.setBlock(false)
	stream, err := e.client.BatchCommands(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	long, mid, short := batchPut(1, "a", "1"), batchPut(2, "b", "2"), batchDelete(3, "c")
	long.TimeoutUs, mid.TimeoutUs, short.TimeoutUs = 600e6, 300e3, 50e3
	for _, req := range []*kvrpcpb.BatchCommandsRequest_Request{long, mid, short} {
		if err := stream.Send(&kvrpcpb.BatchCommandsRequest{Requests: []*kvrpcpb.BatchCommandsRequest_Request{req}}); err != nil {
			t.Fatal(err)
		}
	}
	var order []uint64
	for len(order) < 2 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv after answers to %v: %v", order, err)
		}
		for _, r := range m.Responses {
			if codes.Code(r.Code) != codes.DeadlineExceeded || r.Cmd != nil {
				t.Errorf("request %d answered %v, want DeadlineExceeded", r.Id, r)
			}
			order = append(order, r.Id)
		}
	}
	if !slices.Equal(order, []uint64{short.Id, mid.Id}) {
		t.Fatalf("answered %v, want %v", order, []uint64{short.Id, mid.Id})
	}
}

// TestBatchWriteStreamEnd: when a stream ends, a batched write the store
// has not answered is answered Canceled (nowhere), so the stream's handler
// returns without waiting for the store.
func TestBatchWriteStreamEnd(t *testing.T) {
	store := newFakeStore(t)
	codesSeen := make(chan codes.Code, 1)
	_, conn := serveWith(t, store, Options{ObserveBatched: func(_ string, code codes.Code, _ time.Duration) {
		codesSeen <- code
	}})
	store.setBlock(true)
	defer store.setBlock(false)
	ctx, cancel := context.WithCancel(testCtx(t))
	stream, err := kvpb.NewKvClient(conn).BatchCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&kvrpcpb.BatchCommandsRequest{Requests: []*kvrpcpb.BatchCommandsRequest_Request{batchPut(1, "a", "1")}}); err != nil {
		t.Fatal(err)
	}
	for len(store.commands()) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case code := <-codesSeen:
		if code != codes.Canceled {
			t.Fatalf("the write was answered %v, want Canceled", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write was not answered after its stream ended")
	}
}

// TestBatchWriteForwarded: a batched write that the store's peer refuses
// as a follower is forwarded to the leader, as its unary call is.
func TestBatchWriteForwarded(t *testing.T) {
	e := newForwardEnv(t)
	for _, req := range []*kvrpcpb.BatchCommandsRequest_Request{batchPut(1, "a", "1"), batchDelete(2, "b")} {
		before := len(e.leader.commands())
		r := batchOne(t, testCtx(t), e.client, req)
		if r.Code != 0 || (r.GetPut() == nil && r.GetDelete() == nil) ||
			r.GetPut().GetRegionError() != nil || r.GetDelete().GetRegionError() != nil {
			t.Errorf("request %d answered %v", req.Id, r)
		}
		if n := len(e.leader.commands()) - before; n != 1 {
			t.Errorf("request %d: the leader got %d commands, want 1", req.Id, n)
		}
	}
}
