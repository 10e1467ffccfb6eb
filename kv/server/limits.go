package server

import (
	"github.com/regionkv/regionkv/internal/routekey"
	"github.com/regionkv/regionkv/internal/writeoutcome"
)

// Request limits. They are part of the public contract: a request beyond any
// of them is rejected with gRPC InvalidArgument before it reaches the
// raftstore. The Go client splits batches so that every request it sends
// stays within them.
const (
	// MaxKeySize is the largest key, in bytes, that a request may carry
	// (TiKV's storage.max-key-size default is the same 8 KiB). It applies to
	// point keys and to scan and delete-range bounds. Region boundaries are
	// user keys, so they obey it too; routing of reverse scans relies on that
	// (see internal/routekey).
	MaxKeySize = routekey.MaxKeySize

	// MaxValueSize is the largest value, in bytes, of a single put.
	MaxValueSize = 8 << 20

	// MaxBatchKeys is the largest number of keys (RawBatchGet,
	// RawBatchDelete) or pairs (RawBatchPut) in one batch request.
	MaxBatchKeys = 16 << 10

	// MaxBatchBytes bounds the sum of the lengths of all keys and values of
	// one batch request. It is at least MaxKeySize+MaxValueSize, so every
	// pair that RawPut accepts also fits in a batch of one.
	MaxBatchBytes = 16 << 20

	// MaxCommandSize bounds the marshalled size of any RaftCmdRequest the
	// server proposes: MaxBatchBytes of keys and values plus the protobuf
	// framing of MaxBatchKeys requests (well under 64 bytes each) and the
	// header. The raftstore's raft entry size limit must be at least this
	// large, or legal requests come back with a RaftEntryTooLarge region
	// error.
	MaxCommandSize = MaxBatchBytes + 1<<20

	// MaxGRPCMessageSize is the largest gRPC message the server accepts
	// (grpc.MaxRecvMsgSize). It leaves room for the largest legal request
	// (at most MaxCommandSize on the wire) and for Raft stream batches that
	// carry such a command inside a MsgApp; the raft transport must keep each
	// RaftMessageBatch below it.
	MaxGRPCMessageSize = 32 << 20

	// DefaultScanLimit is the number of pairs RawScan returns when the
	// request's limit is 0.
	DefaultScanLimit = 10 << 10

	// MaxScanLimit is the largest limit RawScan accepts. Scan responses are
	// not bounded in bytes: a client scanning large values should ask for a
	// small limit and raise its MaxCallRecvMsgSize.
	MaxScanLimit = 100_000
)

// NotRunPrefix begins the message of every Unavailable status the server
// itself returns for a request (the store is stopping): the request was not
// run, and a client may send it elsewhere. An Unavailable without it comes
// from the connection, which may have failed after the request was sent
// (internal/writeoutcome).
const NotRunPrefix = writeoutcome.NotRunPrefix

// Compile-time checks of the relations documented above.
var (
	_ [MaxBatchBytes - (MaxKeySize + MaxValueSize)]struct{}
	_ [MaxGRPCMessageSize - MaxCommandSize]struct{}
	_ [MaxScanLimit - DefaultScanLimit]struct{}
)
