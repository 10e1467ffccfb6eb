package harness

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/raftstore"
)

// The benchmarks send every command straight to the leader: the harness
// client's probes of followers (and their backoff) would be measured too.

// BenchmarkPut3Peers measures propose → commit → apply → callback on a
// 3-peer region over the simulated network, with every raft write fsynced:
// one client (latency-bound) and 64 concurrent clients (batching-bound).
func BenchmarkPut3Peers(b *testing.B) {
	value := make([]byte, 256)
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := New(b, Options{Stores: 3})
			c.MustPut([]byte("warmup"), value)
			var seq atomic.Int64
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			runParallel(b, clients, func() {
				key := []byte(fmt.Sprintf("key%016d", seq.Add(1)))
				benchExec(b, c, &raft_cmdpb.Request{CmdType: raft_cmdpb.CmdType_Put,
					Put: &raft_cmdpb.PutRequest{Key: key, Value: value}}).Snap.Close()
			})
		})
	}
}

// BenchmarkGet3Peers measures linearizable reads: from the leader's lease,
// and with leases off through a ReadIndex round.
func BenchmarkGet3Peers(b *testing.B) {
	for _, lease := range []bool{true, false} {
		for _, clients := range []int{1, 64} {
			b.Run(fmt.Sprintf("lease=%v/clients=%d", lease, clients), func(b *testing.B) {
				c := New(b, Options{Stores: 3, Config: raftstore.Config{DisableLeaseRead: !lease}})
				c.MustPut([]byte("key"), make([]byte, 256))
				c.MustGet([]byte("key"))
				b.ResetTimer()
				runParallel(b, clients, func() {
					snap := benchExec(b, c, snapReq).Snap
					if _, _, err := snap.Get("", []byte("key")); err != nil {
						b.Error(err)
					}
					snap.Close()
				})
			})
		}
	}
}

// benchExec runs one command on the leader of region 1 and fails the
// benchmark on any error.
func benchExec(b *testing.B, c *Cluster, req *raft_cmdpb.Request) raftstore.Result {
	st, ok := c.Leader(firstRegionID)
	if !ok {
		b.Fatal("region 1 has no leader")
	}
	res, err := c.Store(st.StoreID).Execute(context.Background(), &raft_cmdpb.RaftCmdRequest{
		Header:   &raft_cmdpb.RaftRequestHeader{RegionId: firstRegionID, RegionEpoch: st.Region.RegionEpoch},
		Requests: []*raft_cmdpb.Request{req},
	})
	if err == nil && res.RegionError() != nil {
		err = fmt.Errorf("%s", res.RegionError().Message)
	}
	if err != nil {
		b.Error(err)
	}
	return res
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
