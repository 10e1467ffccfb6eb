package grpcwindow_test

import (
	"bytes"
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/regionkv/regionkv/internal/grpccodec" // the gogo-aware "proto" codec
	"github.com/regionkv/regionkv/internal/grpcwindow"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
)

type echo struct{ kvpb.UnimplementedKvServer }

func (*echo) RawGet(_ context.Context, req *kvrpcpb.RawGetRequest) (*kvrpcpb.RawGetResponse, error) {
	return &kvrpcpb.RawGetResponse{Value: req.Key}, nil
}

// A message larger than both windows still goes through, in both
// directions: the fixed windows are refilled as the receiver reads.
func TestMessageLargerThanWindows(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const size = 3 * grpcwindow.Conn
	g := grpc.NewServer(append(grpcwindow.ServerOptions(), grpc.MaxRecvMsgSize(2*size))...)
	kvpb.RegisterKvServer(g, &echo{})
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), append(grpcwindow.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(2*size)))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key := bytes.Repeat([]byte("k"), size)
	for range 2 {
		resp, err := kvpb.NewKvClient(conn).RawGet(context.Background(), &kvrpcpb.RawGetRequest{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp.Value, key) {
			t.Fatalf("got %d bytes back, want the %d sent", len(resp.Value), size)
		}
	}
}
