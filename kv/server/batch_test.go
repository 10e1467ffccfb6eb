package server

import (
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvrpcpb"
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
