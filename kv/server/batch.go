package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/kvrpcpb"
)

// BatchCommands serves RawGet, RawPut and RawDelete requests that clients
// batch on one stream (TiKV's batch commands): each request runs as its
// unary call would, on a goroutine of its own, and the answers go back in
// batches of whatever has finished, so concurrent callers share the frames,
// headers and socket writes of gRPC calls. A request's timeout_us stands for
// the unary call's deadline.
//
// The stream ends when the client closes it, when it breaks, or when the
// store stops (StopStreams): then the server stops reading, answers every
// request it has read, and sends a last message marked closing before it
// ends the stream with Unavailable, so that the client knows the requests
// it has no answer for were never run.
//
// Puts and deletes the store can propose at once take a shorter way
// (batch_direct.go): no goroutine of their own, answered from the raftstore.
func (s *Server) BatchCommands(stream kvpb.Kv_BatchCommandsServer) error {
	return serveBatch(stream, s, s.streamsStopped, s.spawn, s.obs, s)
}

// ServeBatchCommands serves a BatchCommands stream as Server does, running
// each request through kv's unary RawGet, RawPut and RawDelete, each on a
// goroutine of its own. It lets other implementations of the Kv service
// (test fakes, proxies) serve the batch stream.
func ServeBatchCommands(stream kvpb.Kv_BatchCommandsServer, kv kvpb.KvServer) error {
	return serveBatch(stream, kv, nil, func(f func()) { go f() }, nil, nil)
}

// serveBatch serves the stream until it ends or stop is closed (a nil stop
// never is), running requests with spawn and telling obs (if set) of each.
// With a direct server, the writes it can propose at once skip spawn.
func serveBatch(stream kvpb.Kv_BatchCommandsServer, kv kvpb.KvServer, stop <-chan struct{}, spawn func(func()),
	obs func(method string, code codes.Code, elapsed time.Duration), direct *Server) error {
	ctx := stream.Context()
	batches, recvErr := receive(ctx, stream.Recv)
	out := newBatchOut()
	sendErr := make(chan error, 1)
	go func() { sendErr <- out.sendAll(stream) }()
	var running sync.WaitGroup
	var inFlight *directWrites
	if direct != nil {
		inFlight = newDirectWrites(ctx)
		defer inFlight.stop()
	}
	var end error
loop:
	for {
		select {
		case batch := <-batches:
			for _, req := range batch.GetRequests() {
				if req == nil {
					continue
				}
				running.Add(1)
				start := time.Now()
				answer := func(resp *kvrpcpb.BatchCommandsResponse_Response, method string) {
					out.add(resp)
					if obs != nil {
						obs(method, codes.Code(resp.Code), time.Since(start))
					}
					running.Done()
				}
				if direct != nil && direct.writeDirect(inFlight, req, start, answer) {
					continue
				}
				spawn(func() { answer(batchCommand(ctx, kv, req)) })
			}
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				end = err // the stream broke or its context ended
			}
			break loop
		case <-stop:
			end = status.Error(codes.Unavailable, "the store is shutting down")
			break loop
		}
	}
	running.Wait()
	out.close()
	if err := <-sendErr; err != nil && end == nil {
		end = err
	}
	return end
}

// batchCommand runs one request of a batch as its unary call would, and
// returns the full name of that unary method with the answer.
func batchCommand(ctx context.Context, kv kvpb.KvServer, req *kvrpcpb.BatchCommandsRequest_Request) (*kvrpcpb.BatchCommandsResponse_Response, string) {
	if req.TimeoutUs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutUs)*time.Microsecond)
		defer cancel()
	}
	resp := &kvrpcpb.BatchCommandsResponse_Response{Id: req.Id}
	method := methodBatchCommands
	var err error
	switch cmd := req.Cmd.(type) {
	case *kvrpcpb.BatchCommandsRequest_Request_Get:
		method = methodRawGet
		var r *kvrpcpb.RawGetResponse
		if r, err = kv.RawGet(ctx, cmd.Get); err == nil {
			resp.Cmd = &kvrpcpb.BatchCommandsResponse_Response_Get{Get: r}
		}
	case *kvrpcpb.BatchCommandsRequest_Request_Put:
		method = methodRawPut
		var r *kvrpcpb.RawPutResponse
		if r, err = kv.RawPut(ctx, cmd.Put); err == nil {
			resp.Cmd = &kvrpcpb.BatchCommandsResponse_Response_Put{Put: r}
		}
	case *kvrpcpb.BatchCommandsRequest_Request_Delete:
		method = methodRawDelete
		var r *kvrpcpb.RawDeleteResponse
		if r, err = kv.RawDelete(ctx, cmd.Delete); err == nil {
			resp.Cmd = &kvrpcpb.BatchCommandsResponse_Response_Delete{Delete: r}
		}
	default:
		err = status.Error(codes.InvalidArgument, "batch command carries no request")
	}
	if err != nil {
		setBatchErr(resp, err)
	}
	return resp, method
}

// setBatchErr puts a unary handler's error in its batched answer.
func setBatchErr(resp *kvrpcpb.BatchCommandsResponse_Response, err error) {
	st := status.Convert(err)
	resp.Code, resp.Message = uint32(st.Code()), st.Message()
}

// The full names of the unary methods a batched request stands for.
const (
	methodBatchCommands = "/regionkv.kvpb.Kv/BatchCommands"
	methodRawGet        = "/regionkv.kvpb.Kv/RawGet"
	methodRawPut        = "/regionkv.kvpb.Kv/RawPut"
	methodRawDelete     = "/regionkv.kvpb.Kv/RawDelete"
)

// batchOut collects a stream's finished responses for its one sender.
type batchOut struct {
	mu     sync.Mutex
	resps  []*kvrpcpb.BatchCommandsResponse_Response
	closed bool
	wake   chan struct{} // capacity 1: "there is something to send"
}

func newBatchOut() *batchOut { return &batchOut{wake: make(chan struct{}, 1)} }

func (o *batchOut) add(r *kvrpcpb.BatchCommandsResponse_Response) {
	o.mu.Lock()
	o.resps = append(o.resps, r)
	o.mu.Unlock()
	o.signal()
}

// close ends the sender once it has sent everything added, with a last
// message marked closing: every request read has been answered by then.
func (o *batchOut) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.signal()
}

func (o *batchOut) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// sendAll sends batches until close. After a send error it keeps draining
// (the responses have no one to go to) and returns the error at the end.
func (o *batchOut) sendAll(stream kvpb.Kv_BatchCommandsServer) error {
	var sendErr error
	for range o.wake {
		o.mu.Lock()
		resps, closed := o.resps, o.closed
		o.resps = nil
		o.mu.Unlock()
		for sendErr == nil && (len(resps) > 0 || closed) {
			// At most batchMaxBytes of answers per message (and at least one).
			n, size := 0, 0
			for ; n < len(resps); n++ {
				sz := resps[n].Size()
				if n > 0 && size+sz > batchMaxBytes {
					break
				}
				size += sz
			}
			last := closed && n == len(resps)
			sendErr = stream.Send(&kvrpcpb.BatchCommandsResponse{Responses: resps[:n], Closing: last})
			resps = resps[n:]
			if last {
				break
			}
		}
		if closed {
			return sendErr
		}
	}
	return sendErr
}

// batchMaxBytes bounds the answers sent in one stream message, so that a
// client's receive limit is not reached by many large values at once.
const batchMaxBytes = 4 << 20

// batchWorkerIdle is how long an idle batch worker waits for more work.
const batchWorkerIdle = 30 * time.Second

// spawn runs f on an idle batch worker, or on a new one. Workers outlive
// their requests, so their stacks have grown to what a request needs and
// a request does not pay for the growth again.
func (s *Server) spawn(f func()) {
	select {
	case s.batchWork <- f:
	default:
		go s.batchWorker(f)
	}
}

func (s *Server) batchWorker(f func()) {
	f()
	idle := time.NewTimer(batchWorkerIdle)
	defer idle.Stop()
	for {
		select {
		case f := <-s.batchWork:
			f()
			idle.Reset(batchWorkerIdle)
		case <-idle.C:
			return
		}
	}
}
