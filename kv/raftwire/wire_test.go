package raftwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/regionkv/regionkv/proto/metapb"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

func batchOf(n int, data []byte) *rspb.RaftMessageBatch {
	b := new(rspb.RaftMessageBatch)
	for i := range n {
		b.Msgs = append(b.Msgs, &rspb.RaftMessage{
			RegionId: uint64(i + 1),
			FromPeer: &metapb.Peer{Id: 1, StoreId: 1},
			ToPeer:   &metapb.Peer{Id: 2, StoreId: 2},
			Message: &raftpb.Message{Type: raftpb.MsgApp, Index: uint64(i),
				Entries: []raftpb.Entry{{Index: uint64(i + 1), Data: data}}},
		})
	}
	return b
}

func TestFrames(t *testing.T) {
	batches := []*rspb.RaftMessageBatch{batchOf(3, []byte("abc")), {}, batchOf(1, bytes.Repeat([]byte("x"), 2<<20))}
	var buf []byte
	for _, b := range batches {
		var err error
		if buf, err = AppendFrame(buf, b); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(bytes.NewReader(buf))
	var got []*rspb.RaftMessageBatch
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(got), err)
		}
		got = append(got, b)
	}
	if len(got) != len(batches) {
		t.Fatalf("read %d frames, want %d", len(got), len(batches))
	}
	for i := range batches {
		g, _ := got[i].Marshal()
		w, _ := batches[i].Marshal()
		if !bytes.Equal(g, w) {
			t.Errorf("frame %d differs", i)
		}
	}
	// A batch read must not share memory with the reader's buffer, which
	// the next frame overwrites.
	r = NewReader(bytes.NewReader(buf))
	first, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	clear(r.buf[:cap(r.buf)])
	if d := first.Msgs[0].Message.Entries[0].Data; string(d) != "abc" {
		t.Errorf("entry data after the buffer was cleared: %q", d)
	}

	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"truncated body":   {buf[:10], io.ErrUnexpectedEOF},
		"truncated header": {buf[:2], io.ErrUnexpectedEOF},
		"too large":        {binary.BigEndian.AppendUint32(nil, MaxFrameSize+1), ErrBadFrame},
		"not a batch":      {append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff), ErrBadFrame},
	} {
		if _, err := NewReader(bytes.NewReader(tc.in)).Next(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestHello(t *testing.T) {
	hello := AppendHello(nil, 0x0102030405060708)
	if string(hello[:len(Magic)]) != Magic {
		t.Fatalf("hello starts with %q", hello[:len(Magic)])
	}
	id, err := ReadHelloStore(bytes.NewReader(hello[len(Magic):]))
	if err != nil || id != 0x0102030405060708 {
		t.Errorf("ReadHelloStore = %x, %v", id, err)
	}
	if _, err := ReadHelloStore(bytes.NewReader(hello[len(Magic) : len(hello)-1])); err == nil {
		t.Error("a short hello was read without an error")
	}
	if err := ReadStatus(bytes.NewReader([]byte{StatusOK})); err != nil {
		t.Errorf("StatusOK: %v", err)
	}
	var se *StatusError
	if err := ReadStatus(bytes.NewReader([]byte{StatusStopping})); !errors.As(err, &se) || se.Status != StatusStopping {
		t.Errorf("StatusStopping: %v", err)
	}
}

// FuzzReader: whatever a connection sends, the reader returns batches or an
// error and never panics, and a batch it returns can be sent on again.
// (go test -fuzz FuzzReader ./kv/raftwire/; plain go test runs the seeds.)
func FuzzReader(f *testing.F) {
	var good []byte
	for _, b := range []*rspb.RaftMessageBatch{batchOf(2, []byte("seed")), {}} {
		good, _ = AppendFrame(good, b)
	}
	f.Add(good)
	f.Add(good[:7])
	f.Add(binary.BigEndian.AppendUint32(nil, MaxFrameSize+1))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		for {
			b, err := r.Next()
			if err != nil {
				return
			}
			if _, err := AppendFrame(nil, b); err != nil {
				t.Fatalf("a batch read does not encode again: %v", err)
			}
		}
	})
}
