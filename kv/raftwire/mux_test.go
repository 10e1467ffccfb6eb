package raftwire

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestMux serves gRPC and raft connections on one port: each kind reaches
// its own server, a connection that sends nothing holds up neither, and
// Close ends it all.
func TestMux(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	raftStores := make(chan uint64, 10)
	mux := NewMux(lis, func(conn net.Conn) {
		defer conn.Close()
		id, err := ReadHelloStore(conn)
		if err != nil {
			t.Errorf("raft handler: %v", err)
			return
		}
		raftStores <- id
		conn.Write([]byte{StatusOK})
		io.Copy(io.Discard, conn)
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve() }()
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer())
	grpcDone := make(chan error, 1)
	go func() { grpcDone <- g.Serve(mux.GRPC()) }()

	// A connection that sends nothing is being classified meanwhile.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("gRPC through the mux: %v", err)
	}

	raft, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raft.Close()
	if _, err := raft.Write(AppendHello(nil, 7)); err != nil {
		t.Fatal(err)
	}
	raft.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ReadStatus(raft); err != nil {
		t.Fatalf("raft through the mux: %v", err)
	}
	if id := <-raftStores; id != 7 {
		t.Errorf("raft handler read store %d, want 7", id)
	}

	// Close ends Serve and gRPC's Serve, and the silent connection; the
	// connections handed on are their owners'.
	if err := mux.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := <-grpcDone; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("gRPC Serve after Close: %v", err)
	}
	g.Stop()
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("silent connection after Close: %v, want EOF", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("dial after Close succeeded")
	}
	if _, err := raft.Write(AppendHello(nil, 7)); err != nil {
		t.Errorf("raft connection after Close: %v", err)
	}
	mux.Close() // idempotent
}
