package client

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
)

// batchFake is a Kv server whose BatchCommands runs batch; its unary RawPut
// counts calls and succeeds.
type batchFake struct {
	kvpb.UnimplementedKvServer
	batch     func(kvpb.Kv_BatchCommandsServer) error // nil: Unimplemented
	unaryPuts chan struct{}
}

func (f *batchFake) BatchCommands(s kvpb.Kv_BatchCommandsServer) error {
	if f.batch == nil {
		return f.UnimplementedKvServer.BatchCommands(s)
	}
	return f.batch(s)
}

func (f *batchFake) RawPut(context.Context, *kvrpcpb.RawPutRequest) (*kvrpcpb.RawPutResponse, error) {
	f.unaryPuts <- struct{}{}
	return &kvrpcpb.RawPutResponse{}, nil
}

func startBatchFake(t *testing.T, f *batchFake) *batchingClient {
	t.Helper()
	f.unaryPuts = make(chan struct{}, 16)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(maxGRPCMessage))
	kvpb.RegisterKvServer(g, f)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return newBatchingClient(conn)
}

func putReq(key string) *kvrpcpb.RawPutRequest {
	return &kvrpcpb.RawPutRequest{Key: []byte(key), Value: []byte("v")}
}

// TestBatchStreamBrokeAfterSend: a request sent on a stream that then
// breaks has an unknown outcome (Unknown, as a unary call cut off would),
// and the next call opens a new stream.
func TestBatchStreamBrokeAfterSend(t *testing.T) {
	var streams atomic.Int32
	c := startBatchFake(t, &batchFake{batch: func(s kvpb.Kv_BatchCommandsServer) error {
		n := streams.Add(1)
		m, err := s.Recv()
		if err != nil {
			return err
		}
		if n > 1 { // answer on the second stream
			id := m.Requests[0].Id
			return s.Send(&kvrpcpb.BatchCommandsResponse{Responses: []*kvrpcpb.BatchCommandsResponse_Response{
				{Id: id, Cmd: &kvrpcpb.BatchCommandsResponse_Response_Put{Put: &kvrpcpb.RawPutResponse{}}}}})
		}
		return status.Error(codes.Internal, "store crashed")
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.RawPut(ctx, putReq("a")); status.Code(err) != codes.Unknown {
		t.Fatalf("put on a stream that broke after the send: %v, want Unknown", err)
	}
	if _, err := c.RawPut(ctx, putReq("a")); err != nil {
		t.Fatalf("put on a new stream: %v", err)
	}
}

// TestBatchStreamClosing: requests a stopping store did not answer before
// its closing message were not run: Unavailable, which the client retries
// elsewhere even for writes.
func TestBatchStreamClosing(t *testing.T) {
	c := startBatchFake(t, &batchFake{batch: func(s kvpb.Kv_BatchCommandsServer) error {
		if _, err := s.Recv(); err != nil {
			return err
		}
		if err := s.Send(&kvrpcpb.BatchCommandsResponse{Closing: true}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "the store is shutting down")
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.RawPut(ctx, putReq("a")); status.Code(err) != codes.Unavailable {
		t.Fatalf("put not answered before the closing message: %v, want Unavailable", err)
	}
}

// TestBatchStreamUnimplemented: a store without BatchCommands gets unary
// calls, the first request included.
func TestBatchStreamUnimplemented(t *testing.T) {
	f := &batchFake{}
	c := startBatchFake(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := c.RawPut(ctx, putReq("a")); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		<-f.unaryPuts
	}
	if !c.b.isUnsupported() {
		t.Fatal("the batcher did not note the store has no batch stream")
	}
}

// TestBatchCallDeadline: a caller whose context ends stops waiting with the
// context's status and leaves nothing pending; a large request goes as a
// unary call.
func TestBatchCallDeadline(t *testing.T) {
	f := &batchFake{batch: func(s kvpb.Kv_BatchCommandsServer) error {
		for {
			m, err := s.Recv()
			if err != nil {
				return err
			}
			for _, r := range m.Requests {
				if r.TimeoutUs == 0 || r.TimeoutUs > 1e6 {
					return status.Errorf(codes.Internal, "timeout_us = %d, want the caller's 50 ms", r.TimeoutUs)
				}
			}
		}
	}}
	c := startBatchFake(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.RawPut(ctx, putReq("a")); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("put the store never answers: %v, want DeadlineExceeded", err)
	}
	st := c.b.stream()
	st.mu.Lock()
	pending := len(st.pending)
	st.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d calls still pending after their callers left", pending)
	}

	big := &kvrpcpb.RawPutRequest{Key: []byte("big"), Value: bytes.Repeat([]byte{'v'}, batchMaxBytes+1)}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	if _, err := c.RawPut(ctx2, big); err != nil {
		t.Fatalf("large put: %v", err)
	}
	<-f.unaryPuts
}
