package writeoutcome

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
)

// store answers RawBatchPut and RawGet with answer, which may stop the
// server under the call.
type store struct {
	kvpb.UnimplementedKvServer
	answer func() error
}

func (s *store) RawBatchPut(context.Context, *kvrpcpb.RawBatchPutRequest) (*kvrpcpb.RawBatchPutResponse, error) {
	return &kvrpcpb.RawBatchPutResponse{}, s.answer()
}

func (s *store) RawGet(context.Context, *kvrpcpb.RawGetRequest) (*kvrpcpb.RawGetResponse, error) {
	return &kvrpcpb.RawGetResponse{}, s.answer()
}

func dial(t *testing.T, addr string) kvpb.KvClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kvpb.NewKvClient(conn)
}

func serve(t *testing.T, s *store) (kvpb.KvClient, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	kvpb.RegisterKvServer(g, s)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return dial(t, lis.Addr().String()), g
}

// breaking serves a store that, answering a call, closes the connection
// under it first.
func breaking(t *testing.T) kvpb.KvClient {
	s := &store{}
	c, g := serve(t, s)
	s.answer = func() error {
		go g.Stop()
		time.Sleep(200 * time.Millisecond)
		return nil
	}
	return c
}

func TestUnaryClientInterceptor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put := &kvrpcpb.RawBatchPutRequest{}

	// The connection breaks under a write: Unknown. Under a read: it stays
	// Unavailable (a read is safe to retry).
	if _, err := breaking(t).RawBatchPut(ctx, put); status.Code(err) != codes.Unknown {
		t.Errorf("write whose connection broke: %v, want Unknown", err)
	}
	if _, err := breaking(t).RawGet(ctx, &kvrpcpb.RawGetRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("read whose connection broke: %v, want Unavailable", err)
	}

	// The store says it did not run the write: Unavailable. A bare
	// Unavailable from the store: Unknown.
	c3, _ := serve(t, &store{answer: func() error { return status.Error(codes.Unavailable, NotRunPrefix+"stopping") }})
	if _, err := c3.RawBatchPut(ctx, put); status.Code(err) != codes.Unavailable {
		t.Errorf("write the store did not run: %v, want Unavailable", err)
	}
	c4, _ := serve(t, &store{answer: func() error { return status.Error(codes.Unavailable, "down") }})
	if _, err := c4.RawBatchPut(ctx, put); status.Code(err) != codes.Unknown {
		t.Errorf("write answered a bare Unavailable: %v, want Unknown", err)
	}

	// Nothing listening: the write never left, Unavailable.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	if _, err := dial(t, dead).RawBatchPut(ctx, put); status.Code(err) != codes.Unavailable {
		t.Errorf("write to nothing: %v, want Unavailable", err)
	}
}
