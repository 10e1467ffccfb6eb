// Package grpccodec replaces gRPC's "proto" codec with one that marshals
// gogo-generated messages (ours, and go.etcd.io/raft/v3/raftpb) through their
// generated Size, MarshalToSizedBuffer and Unmarshal methods, and hands every
// other message to gRPC's default codec.
//
// Importing the package (for its side effect) is enough: its init registers
// Codec under the name "proto", so every gRPC client and server in the
// process uses it. It is a leaf: it imports nothing from regionkv, so the
// store, the scheduler and their clients can all link it.
package grpccodec

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// CodecName is the name Codec is registered under. It is the name of gRPC's
// default codec, so Codec replaces it for every client and server in the
// process.
const CodecName = grpcproto.Name

// fallbackCodec is gRPC's own proto codec, captured before Codec replaces it
// in the registry. Importing grpc/encoding/proto guarantees it registered
// itself before this package's init runs.
var fallbackCodec = encoding.GetCodecV2(grpcproto.Name)

func init() {
	if fallbackCodec == nil {
		panic("grpccodec: grpc/encoding/proto did not register the default proto codec")
	}
	// Replacing the "proto" codec is the documented way to change how gRPC
	// marshals protobufs; it must happen in an init function.
	encoding.RegisterCodecV2(Codec{})
}

// gogoMessage is what protoc-gen-gofast generates for every message: a sized
// marshal that writes the buffer back to front, and an in-place unmarshal.
type gogoMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
	Unmarshal([]byte) error
	Reset()
}

// Codec is a gRPC encoding.CodecV2 that marshals gogo-generated messages
// (ours and go.etcd.io/raft/v3/raftpb) with their generated Size,
// MarshalToSizedBuffer and Unmarshal methods. For protobuf-go, gogo messages
// are legacy messages that it can only handle through a slower reflective
// wrapper. Any other message (grpc health, reflection, ...) goes to gRPC's
// default proto codec.
//
// The package's init registers Codec under CodecName ("proto"). Codec is
// stateless and safe for concurrent use.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name returns CodecName.
func (Codec) Name() string { return CodecName }

// Marshal encodes v. Messages above gRPC's buffer pooling threshold are
// written into a pooled buffer that gRPC frees once it has sent them.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(gogoMessage)
	if !ok {
		return fallbackCodec.Marshal(v)
	}
	size := m.Size()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if err := marshalSized(m, buf); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if err := marshalSized(m, (*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// marshalSized fills buf, which is exactly m.Size() bytes long.
func marshalSized(m gogoMessage, buf []byte) error {
	n, err := m.MarshalToSizedBuffer(buf)
	if err != nil {
		return fmt.Errorf("codec: marshal %T: %w", m, err)
	}
	if n != len(buf) {
		// The message changed between Size and MarshalToSizedBuffer: a
		// caller mutated it while gRPC was sending it.
		return fmt.Errorf("codec: marshal %T: wrote %d bytes, Size said %d (message modified concurrently?)", m, n, len(buf))
	}
	return nil
}

// Unmarshal decodes data into v, which is reset first (as proto.Unmarshal
// does). Generated gogo code copies bytes and strings out of the input, so
// the decoded message does not alias data, which gRPC frees on return.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(gogoMessage)
	if !ok {
		return fallbackCodec.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	m.Reset()
	if err := m.Unmarshal(buf.ReadOnlyData()); err != nil {
		return fmt.Errorf("codec: unmarshal %T: %w", m, err)
	}
	return nil
}
