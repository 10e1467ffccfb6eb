package client

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
)

// delayStore answers every RawPut after delay (raft's latency, roughly),
// so that a benchmark measures what a request costs the client, gRPC and
// the store's batch stream, not what raft costs.
type delayStore struct {
	kvpb.UnimplementedKvServer
	delay time.Duration
}

func (s *delayStore) BatchCommands(stream kvpb.Kv_BatchCommandsServer) error {
	return server.ServeBatchCommands(stream, s)
}

func (s *delayStore) RawPut(context.Context, *kvrpcpb.RawPutRequest) (*kvrpcpb.RawPutResponse, error) {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	return &kvrpcpb.RawPutResponse{}, nil
}

// BenchmarkBatchStreamPut: 64 callers put 16-byte keys and 256-byte values
// through one batch stream over loopback gRPC, with the options the stores
// and the client use. Client and store are this process, so cpu-µs/op is
// what a put costs both ends together.
func BenchmarkBatchStreamPut(b *testing.B) {
	for _, delay := range []time.Duration{0, time.Millisecond} {
		b.Run(fmt.Sprintf("answer=%v", delay), func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			g := grpc.NewServer(server.GRPCServerOptions()...)
			kvpb.RegisterKvServer(g, &delayStore{delay: delay})
			go g.Serve(lis)
			defer g.Stop()
			conn, err := grpc.NewClient(lis.Addr().String(), dialOptions(nil)...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			kv := newBatchingClient(conn)
			ctx := context.Background()
			value := make([]byte, 256)
			var n atomic.Int64
			var wg sync.WaitGroup
			cpu := cpuTime()
			b.ResetTimer()
			for c := range 64 {
				wg.Go(func() {
					req := &kvrpcpb.RawPutRequest{Key: fmt.Appendf(nil, "k%015d", c), Value: value}
					for n.Add(1) <= int64(b.N) {
						if _, err := kv.RawPut(ctx, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
