package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
)

// batchingClient sends RawGet, RawPut and RawDelete on the connection's
// BatchCommands stream instead of as unary calls: the requests of
// concurrent callers that are waiting to go out when the stream is free are
// sent as one message, and the store answers them in batches too, so they
// share gRPC's per-call costs. Every other method is the unary one. A store
// without BatchCommands (Unimplemented) gets unary calls from then on.
type batchingClient struct {
	kvpb.KvClient
	b *batcher
}

func newBatchingClient(conn *grpc.ClientConn) *batchingClient {
	kv := kvpb.NewKvClient(conn)
	return &batchingClient{KvClient: kv, b: &batcher{kv: kv}}
}

func (c *batchingClient) RawGet(ctx context.Context, in *kvrpcpb.RawGetRequest, opts ...grpc.CallOption) (*kvrpcpb.RawGetResponse, error) {
	return batched(ctx, c.b, in.Size(),
		&kvrpcpb.BatchCommandsRequest_Request{Cmd: &kvrpcpb.BatchCommandsRequest_Request_Get{Get: in}},
		(*kvrpcpb.BatchCommandsResponse_Response).GetGet,
		func() (*kvrpcpb.RawGetResponse, error) { return c.KvClient.RawGet(ctx, in, opts...) })
}

func (c *batchingClient) RawPut(ctx context.Context, in *kvrpcpb.RawPutRequest, opts ...grpc.CallOption) (*kvrpcpb.RawPutResponse, error) {
	return batched(ctx, c.b, in.Size(),
		&kvrpcpb.BatchCommandsRequest_Request{Cmd: &kvrpcpb.BatchCommandsRequest_Request_Put{Put: in}},
		(*kvrpcpb.BatchCommandsResponse_Response).GetPut,
		func() (*kvrpcpb.RawPutResponse, error) { return c.KvClient.RawPut(ctx, in, opts...) })
}

func (c *batchingClient) RawDelete(ctx context.Context, in *kvrpcpb.RawDeleteRequest, opts ...grpc.CallOption) (*kvrpcpb.RawDeleteResponse, error) {
	return batched(ctx, c.b, in.Size(),
		&kvrpcpb.BatchCommandsRequest_Request{Cmd: &kvrpcpb.BatchCommandsRequest_Request_Delete{Delete: in}},
		(*kvrpcpb.BatchCommandsResponse_Response).GetDelete,
		func() (*kvrpcpb.RawDeleteResponse, error) { return c.KvClient.RawDelete(ctx, in, opts...) })
}

// batchMaxBytes bounds the requests sent in one stream message. A request
// larger than this goes as a unary call: alone in a message it could exceed
// the gRPC message limit and break the stream under the other requests.
const batchMaxBytes = 4 << 20

// batched sends req on the batch stream and unwraps the answer, or makes
// the unary call when the store has no batch stream or req is too large.
func batched[Resp comparable](ctx context.Context, b *batcher, size int, req *kvrpcpb.BatchCommandsRequest_Request,
	unwrap func(*kvrpcpb.BatchCommandsResponse_Response) Resp, unary func() (Resp, error)) (Resp, error) {
	var zero Resp
	if size > batchMaxBytes || b.isUnsupported() {
		return unary()
	}
	r, err := b.call(ctx, req)
	switch {
	case errors.Is(err, errBatchUnsupported):
		return unary()
	case err != nil:
		return zero, err
	}
	if resp := unwrap(r); resp != zero {
		return resp, nil
	}
	return zero, mismatched(r)
}

// mismatched: the store answered OK with another kind of response. Unknown,
// because nothing says what the store did.
func mismatched(r *kvrpcpb.BatchCommandsResponse_Response) error {
	return status.Errorf(codes.Unknown, "regionkv: batch response %d carries %T, not the answer to the request", r.Id, r.Cmd)
}

// errBatchUnsupported: the store has no BatchCommands; the request was not
// sent.
var errBatchUnsupported = errors.New("store does not serve BatchCommands")

// batcher keeps one BatchCommands stream open on a connection.
type batcher struct {
	kv kvpb.KvClient

	mu          sync.Mutex
	cur         *batchStream // nil: open one on the next call
	unsupported bool
}

func (b *batcher) isUnsupported() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.unsupported
}

// call sends req on the stream and waits for its answer or for ctx. The
// errors are gRPC statuses, classified as a unary call's would be: a request
// that was never sent fails with Unavailable; one whose stream broke after
// it was sent fails with Unknown, as its outcome is.
func (b *batcher) call(ctx context.Context, req *kvrpcpb.BatchCommandsRequest_Request) (*kvrpcpb.BatchCommandsResponse_Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if d, ok := ctx.Deadline(); ok {
		req.TimeoutUs = uint64(max(time.Until(d), time.Microsecond) / time.Microsecond)
	}
	var call *batchCall
	for try := 0; ; try++ {
		call = &batchCall{req: req, done: make(chan struct{})}
		st := b.stream()
		if st.enqueue(call) {
			select {
			case <-call.done:
			case <-ctx.Done():
				st.forget(call)
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			break
		}
		// The stream ended before the call was queued; a new one may work.
		b.ended(st, false)
		if try == 1 {
			break
		}
	}
	if call.err != nil {
		return nil, call.err
	}
	if call.resp.Code != uint32(codes.OK) {
		return nil, status.Error(codes.Code(call.resp.Code), call.resp.Message)
	}
	return call.resp, nil
}

// stream returns the open stream, opening one if there is none.
func (b *batcher) stream() *batchStream {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == nil {
		b.cur = openBatchStream(b)
	}
	return b.cur
}

// ended forgets st once it has failed; unsupported notes a store without
// BatchCommands.
func (b *batcher) ended(st *batchStream, unsupported bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == st {
		b.cur = nil
	}
	if unsupported {
		b.unsupported = true
	}
}

type batchCall struct {
	req  *kvrpcpb.BatchCommandsRequest_Request
	sent bool
	resp *kvrpcpb.BatchCommandsResponse_Response
	err  error
	done chan struct{} // closed once resp or err is set
}

// batchStream is one BatchCommands stream and its two goroutines: the
// sender, which opens the stream and then sends whatever calls are queued
// as one message whenever it is free, and the receiver, which hands each
// answer to its call.
type batchStream struct {
	b      *batcher
	cancel context.CancelFunc

	mu      sync.Mutex
	nextID  uint64
	queue   []*batchCall
	pending map[uint64]*batchCall // queued or sent, not answered
	failed  error                 // set once the stream is over
	wake    chan struct{}         // capacity 1: "the queue is not empty"
}

func openBatchStream(b *batcher) *batchStream {
	ctx, cancel := context.WithCancel(context.Background())
	st := &batchStream{b: b, cancel: cancel, pending: map[uint64]*batchCall{}, wake: make(chan struct{}, 1)}
	go st.run(ctx)
	return st
}

// enqueue queues call; false if the stream is over, call then failed.
func (st *batchStream) enqueue(call *batchCall) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.failed != nil {
		call.err = status.Error(codes.Unavailable, st.failed.Error())
		close(call.done)
		return false
	}
	st.nextID++
	call.req.Id = st.nextID
	st.pending[call.req.Id] = call
	st.queue = append(st.queue, call)
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return true
}

// forget drops a call whose caller stopped waiting. If it has not been sent
// yet it will not be.
func (st *batchStream) forget(call *batchCall) {
	st.mu.Lock()
	delete(st.pending, call.req.Id)
	st.mu.Unlock()
}

func (st *batchStream) run(ctx context.Context) {
	stream, err := st.b.kv.BatchCommands(ctx)
	if err != nil {
		st.fail(err)
		return
	}
	go st.receive(stream)
	var reqs []*kvrpcpb.BatchCommandsRequest_Request
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.wake:
		}
		for {
			reqs = st.take(reqs[:0])
			if len(reqs) == 0 {
				break
			}
			if err := stream.Send(&kvrpcpb.BatchCommandsRequest{Requests: reqs}); err != nil {
				// Send reports io.EOF when the stream ended; Recv, in
				// receive, has the status and fails the stream with it.
				if !errors.Is(err, io.EOF) {
					st.fail(err)
				}
				return
			}
		}
	}
}

// take moves queued calls into reqs, up to batchMaxBytes (and at least one),
// and marks them sent. Calls whose callers stopped waiting are dropped.
func (st *batchStream) take(reqs []*kvrpcpb.BatchCommandsRequest_Request) []*kvrpcpb.BatchCommandsRequest_Request {
	st.mu.Lock()
	defer st.mu.Unlock()
	n, size := 0, 0
	for ; n < len(st.queue); n++ {
		c := st.queue[n]
		if st.pending[c.req.Id] != c {
			continue // forgotten
		}
		if sz := c.req.Size(); len(reqs) == 0 || size+sz <= batchMaxBytes {
			size += sz
			c.sent = true
			reqs = append(reqs, c.req)
			continue
		}
		break
	}
	rest := copy(st.queue, st.queue[n:])
	clear(st.queue[rest:])
	st.queue = st.queue[:rest]
	return reqs
}

func (st *batchStream) receive(stream kvpb.Kv_BatchCommandsClient) {
	closing := false
	for {
		m, err := stream.Recv()
		if err != nil {
			if closing {
				// The store answered all it read: the rest never ran.
				err = &notSentError{err}
			}
			st.fail(err)
			return
		}
		closing = closing || m.Closing
		st.mu.Lock()
		for _, r := range m.Responses {
			if c := st.pending[r.GetId()]; c != nil {
				delete(st.pending, r.Id)
				c.resp = r
				close(c.done)
			}
		}
		st.mu.Unlock()
	}
}

// notSentError marks a stream end after which no pending request had run.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }

// fail ends the stream: every pending call fails, with Unavailable if it
// was not sent (or the store said it did not run it), else with Unknown.
func (st *batchStream) fail(err error) {
	st.cancel()
	unsupported := status.Code(err) == codes.Unimplemented
	var ns *notSentError
	notSent := errors.As(err, &ns) || unsupported
	st.mu.Lock()
	if st.failed == nil {
		st.failed = fmt.Errorf("batch stream: %w", err)
	}
	for id, c := range st.pending {
		delete(st.pending, id)
		switch {
		case unsupported:
			c.err = errBatchUnsupported
		case !c.sent || notSent:
			c.err = status.Errorf(codes.Unavailable, "regionkv: request not sent: batch stream ended: %v", err)
		default:
			c.err = status.Errorf(codes.Unknown, "regionkv: batch stream broke after the request was sent: %v", err)
		}
		close(c.done)
	}
	st.mu.Unlock()
	st.b.ended(st, unsupported)
}
