package harness

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkPut3Peers measures propose → commit → apply → callback on a
// 3-peer region over the simulated network, with every raft write fsynced:
// one client (latency-bound) and 64 concurrent clients (batching-bound).
func BenchmarkPut3Peers(b *testing.B) {
	value := make([]byte, 256)
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := New(b, Options{Stores: 3})
			c.MustPut([]byte("warmup"), value)
			ctx := context.Background()
			var seq atomic.Int64
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			runParallel(b, clients, func() {
				key := []byte(fmt.Sprintf("key%016d", seq.Add(1)))
				if err := c.Put(ctx, key, value); err != nil {
					b.Error(err)
				}
			})
		})
	}
}

// BenchmarkGet3Peers measures linearizable reads (ReadIndex + snapshot).
func BenchmarkGet3Peers(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := New(b, Options{Stores: 3})
			c.MustPut([]byte("key"), make([]byte, 256))
			ctx := context.Background()
			b.ResetTimer()
			runParallel(b, clients, func() {
				if _, _, err := c.Get(ctx, []byte("key")); err != nil {
					b.Error(err)
				}
			})
		})
	}
}

// runParallel runs f b.N times over exactly n goroutines.
func runParallel(b *testing.B, n int, f func()) {
	var next atomic.Int64
	done := make(chan struct{})
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			for next.Add(1) <= int64(b.N) {
				f()
			}
		}()
	}
	for range n {
		<-done
	}
}
