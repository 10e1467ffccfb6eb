// Package writeoutcome keeps a gRPC Unavailable from hiding a write that may
// have run.
//
// gRPC reports a call that never left (no connection) and a call whose
// connection broke after the request went out with the same code,
// Unavailable. Callers retry an Unavailable elsewhere, which is safe for a
// write only in the first case. UnaryClientInterceptor tells them apart on
// the client side of every store connection (the Go client's, and a store's
// own when it forwards requests), and stores mark the Unavailable they
// return themselves for requests they did not run with NotRunPrefix.
package writeoutcome

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// NotRunPrefix begins the message of every Unavailable status a store itself
// returns for a request: the request was not run, and may be sent elsewhere.
const NotRunPrefix = "regionkv: not run: "

// rawWrites are the unary Kv methods that change data.
var rawWrites = map[string]bool{
	"/regionkv.kvpb.Kv/RawPut":         true,
	"/regionkv.kvpb.Kv/RawDelete":      true,
	"/regionkv.kvpb.Kv/RawBatchPut":    true,
	"/regionkv.kvpb.Kv/RawBatchDelete": true,
	"/regionkv.kvpb.Kv/RawDeleteRange": true,
}

// UnaryClientInterceptor turns the Unavailable of a unary write that had
// reached a connection (grpc.Peer is set only then) into Unknown, unless the
// store said it did not run the write (NotRunPrefix). Other calls pass
// through unchanged.
func UnaryClientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !rawWrites[method] {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	var p peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && p.Addr != nil &&
		!strings.HasPrefix(st.Message(), NotRunPrefix) {
		return status.Errorf(codes.Unknown, "regionkv: the connection failed after the request was sent: %s", st.Message())
	}
	return err
}
