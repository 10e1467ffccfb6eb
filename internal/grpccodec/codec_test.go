package grpccodec

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"

	"go.etcd.io/raft/v3/raftpb"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/raft_serverpb"
)

// batchPut returns a RawBatchPutRequest of n pairs with values of vlen bytes.
func batchPut(n, vlen int) *kvrpcpb.RawBatchPutRequest {
	req := &kvrpcpb.RawBatchPutRequest{
		Context: &kvrpcpb.Context{
			RegionId:    42,
			RegionEpoch: &metapb.RegionEpoch{ConfVer: 3, Version: 7},
			Peer:        &metapb.Peer{Id: 43, StoreId: 2},
		},
		Cf: "default",
	}
	for i := range n {
		req.Pairs = append(req.Pairs, &kvrpcpb.KvPair{
			Key:   fmt.Appendf(nil, "user%012d", i),
			Value: bytes.Repeat([]byte{byte(i)}, vlen),
		})
	}
	return req
}

// roundTrip marshals in with Codec, checks the bytes against want, and
// unmarshals them into out.
func roundTrip(t *testing.T, in, out any, want []byte) {
	t.Helper()
	data, err := Codec{}.Marshal(in)
	if err != nil {
		t.Fatalf("marshal %T: %v", in, err)
	}
	defer data.Free()
	if got := data.Materialize(); !bytes.Equal(got, want) {
		t.Fatalf("marshal %T: %d bytes differ from the reference encoding's %d", in, len(got), len(want))
	}
	if err := (Codec{}).Unmarshal(data, out); err != nil {
		t.Fatalf("unmarshal %T: %v", out, err)
	}
}

func TestCodecGogoRoundTrip(t *testing.T) {
	// Small (a plain slice) and above gRPC's pooling threshold (a pooled buffer).
	for _, in := range []*kvrpcpb.RawBatchPutRequest{batchPut(2, 3), batchPut(64, 1024)} {
		want, err := in.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// Decoding must replace, not merge into, what out held.
		out := &kvrpcpb.RawBatchPutRequest{Pairs: []*kvrpcpb.KvPair{{Key: []byte("stale")}}, Cf: "lock"}
		roundTrip(t, in, out, want)
		got, err := out.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || len(out.Pairs) != len(in.Pairs) || out.Context.Peer.Id != 43 {
			t.Errorf("round trip of %d pairs changed the message: %v", len(in.Pairs), out)
		}
	}
}

func TestCodecRaftMessage(t *testing.T) {
	in := &raft_serverpb.RaftMessageBatch{Msgs: []*raft_serverpb.RaftMessage{{
		RegionId: 1,
		FromPeer: &metapb.Peer{Id: 2, StoreId: 2},
		ToPeer:   &metapb.Peer{Id: 3, StoreId: 3},
		Message: &raftpb.Message{Type: raftpb.MsgApp, To: 3, From: 2, Term: 4, Index: 5, LogTerm: 4, Commit: 5,
			Entries: []raftpb.Entry{{Term: 4, Index: 6, Data: []byte("payload")}}},
		StartKey: []byte("a"),
	}}}
	want, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out := new(raft_serverpb.RaftMessageBatch)
	roundTrip(t, in, out, want)
	if m := out.Msgs[0].Message; m.Type != raftpb.MsgApp || string(m.Entries[0].Data) != "payload" {
		t.Errorf("raft message after round trip: %v", m)
	}
}

func TestCodecFallback(t *testing.T) {
	in := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}
	want, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := new(healthpb.HealthCheckResponse)
	roundTrip(t, in, out, want)
	if out.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health response after round trip: %v", out)
	}

	if _, err := (Codec{}).Marshal(struct{}{}); err == nil {
		t.Error("marshal of a non-message succeeded")
	}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{1})}, new(int)); err == nil {
		t.Error("unmarshal into a non-message succeeded")
	}
}

func TestCodecSplitInput(t *testing.T) {
	in := batchPut(8, 100)
	wire, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// gRPC may hand over a message in several buffers.
	data := mem.BufferSlice{mem.SliceBuffer(wire[:10]), mem.SliceBuffer(wire[10:500]), mem.SliceBuffer(wire[500:])}
	out := new(kvrpcpb.RawBatchPutRequest)
	if err := (Codec{}).Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.Marshal(); !bytes.Equal(got, wire) {
		t.Error("message decoded from split buffers differs")
	}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire[:len(wire)-3])}, out); err == nil {
		t.Error("unmarshal of a truncated message succeeded")
	}
}

// BenchmarkCodec compares Codec with gRPC's default proto codec, which sees
// gogo messages as legacy messages.
func BenchmarkCodec(b *testing.B) {
	codecs := []struct {
		name  string
		codec interface {
			Marshal(any) (mem.BufferSlice, error)
			Unmarshal(mem.BufferSlice, any) error
		}
	}{{"gogo", Codec{}}, {"fallback", fallbackCodec}}
	msgs := []struct {
		name string
		msg  *kvrpcpb.RawBatchPutRequest
	}{{"small", batchPut(1, 16)}, {"batch64x128", batchPut(64, 128)}}

	for _, m := range msgs {
		for _, c := range codecs {
			b.Run(m.name+"/marshal/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					data, err := c.codec.Marshal(m.msg)
					if err != nil {
						b.Fatal(err)
					}
					data.Free()
				}
			})
		}
		wire, err := m.msg.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range codecs {
			b.Run(m.name+"/unmarshal/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(wire)))
				for b.Loop() {
					out := new(kvrpcpb.RawBatchPutRequest)
					if err := c.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestCodecIsRegistered(t *testing.T) {
	if c, ok := encoding.GetCodecV2(CodecName).(Codec); !ok {
		t.Fatalf("codec %q is %T, want grpccodec.Codec", CodecName, c)
	}
}
