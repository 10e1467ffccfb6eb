package raftlog

import (
	"bytes"
	"strconv"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// BenchmarkWrite appends batches of n 256-byte entries and a state to one
// region, with an fdatasync per batch, as a raft round does. Compare with
// the raft DB's BenchmarkWriteBatchRaftDB in docs/BENCHMARKS.md.
func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run("entries="+strconv.Itoa(n), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := bytes.Repeat([]byte{'v'}, 256)
			ents := make([]raftpb.Entry, n)
			b.SetBytes(int64(n * (16 + len(data))))
			b.ReportAllocs()
			var batch Batch
			next := uint64(1)
			for b.Loop() {
				batch.Reset()
				for i := range ents {
					ents[i] = raftpb.Entry{Term: 1, Index: next, Data: data}
					next++
				}
				batch.Append(1, ents)
				batch.SetState(1, &rspb.RaftLocalState{LastIndex: next - 1, LastTerm: 1})
				if next > 10000 {
					batch.DeleteTo(1, next-5000)
				}
				if err := l.Write(&batch, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
