package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	"github.com/regionkv/regionkv/proto/kvrpcpb"
	"github.com/regionkv/regionkv/proto/raft_cmdpb"
	"github.com/regionkv/regionkv/raftstore"
)

// Direct writes. A batched request normally runs as its unary call would,
// on a batch worker: a goroutine hand-off, a context with a timer, and a
// wait on a channel for the raftstore's answer, for every request. A put
// or delete that this store can route and propose by itself skips all
// that: the stream's goroutine proposes it (Store.Propose) and the
// raftstore's callback answers it. Only success is answered from the
// callback. Everything else keeps the unary call's answer:
//
//   - a request that is not a put or delete, or is invalid, or is routed to
//     no region here, is handed to a batch worker before anything is done;
//   - an error answer from the store goes through the unary handler's error
//     path on a batch worker (a NotLeader may be forwarded to the leader);
//   - the request's timeout and the end of the stream answer the write with
//     the status the unary handler's context would have given, and the
//     raftstore's later answer is dropped (as Execute abandons it).

// directWrites are a stream's direct writes awaiting their answer.
type directWrites struct {
	ctx  context.Context
	stop func() bool // stops the watch on ctx

	mu      sync.Mutex
	pending map[*directWrite]struct{}
	ended   bool // ctx is done: no more direct writes
}

func newDirectWrites(ctx context.Context) *directWrites {
	w := &directWrites{ctx: ctx, pending: make(map[*directWrite]struct{})}
	w.stop = context.AfterFunc(ctx, w.end)
	return w
}

// end answers every pending write with ctx's error, as Execute would.
func (w *directWrites) end() {
	w.mu.Lock()
	w.ended = true
	pending := w.pending
	w.pending = nil
	w.mu.Unlock()
	for d := range pending {
		if d.claim() {
			d.fail(status.FromContextError(w.ctx.Err()).Err())
		}
	}
}

// add records d as pending, unless its timeout has answered it already; it
// returns false if the stream has ended.
func (w *directWrites) add(d *directWrite) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return false
	}
	if !d.claimed.Load() {
		w.pending[d] = struct{}{}
	}
	return true
}

func (w *directWrites) remove(d *directWrite) {
	w.mu.Lock()
	delete(w.pending, d)
	w.mu.Unlock()
}

// directWrite is one put or delete in flight.
type directWrite struct {
	s      *Server
	w      *directWrites
	req    *kvrpcpb.BatchCommandsRequest_Request
	t      target
	start  time.Time
	answer func(*kvrpcpb.BatchCommandsResponse_Response, string)
	timer  *time.Timer // nil: the request set no timeout

	claimed atomic.Bool // answered, or being answered
}

// writeDirect proposes req if it is a valid put or delete that this store
// can route by itself, and reports whether it did; answer is then called
// once with its answer. When it returns false it has done nothing.
func (s *Server) writeDirect(w *directWrites, req *kvrpcpb.BatchCommandsRequest_Request,
	start time.Time, answer func(*kvrpcpb.BatchCommandsResponse_Response, string)) bool {
	var (
		c    *kvrpcpb.Context
		key  []byte
		creq *raft_cmdpb.Request
	)
	switch cmd := req.Cmd.(type) {
	case *kvrpcpb.BatchCommandsRequest_Request_Put:
		p := cmd.Put
		if checkPut(p) != nil {
			return false
		}
		c, key, creq = p.Context, p.Key, putRequest(p.Cf, p.Key, p.Value)
	case *kvrpcpb.BatchCommandsRequest_Request_Delete:
		p := cmd.Delete
		if checkDelete(p) != nil {
			return false
		}
		c, key, creq = p.Context, p.Key, deleteRequest(p.Cf, p.Key)
	default:
		return false
	}
	t, err := s.routeHere(c, key)
	if err != nil {
		return false
	}
	d := &directWrite{s: s, w: w, req: req, t: t, start: start, answer: answer}
	if req.TimeoutUs > 0 {
		d.timer = time.AfterFunc(time.Duration(req.TimeoutUs)*time.Microsecond, d.expire)
	}
	// Below, false means nothing was proposed: then, unless the timeout or
	// the stream's end has answered d meanwhile, the unary handler answers.
	if !w.add(d) {
		return !d.claim()
	}
	if d.claimed.Load() {
		return true // answered by its timeout already
	}
	cmd := &raft_cmdpb.RaftCmdRequest{Header: t.header, Requests: []*raft_cmdpb.Request{creq}}
	if err := s.store.Propose(cmd, d.done); err != nil {
		return !d.claim()
	}
	return true
}

// claim makes the caller the one that answers d, if no one has; it stops
// the timeout and the watch on the stream. The timeout claims d with
// claimed alone: d.timer may not be set yet when it fires.
func (d *directWrite) claim() bool {
	if !d.claimed.CompareAndSwap(false, true) {
		return false
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	d.w.remove(d)
	return true
}

// done is the raftstore's callback.
func (d *directWrite) done(res raftstore.Result) {
	res.Snap.Close() // writes carry none; close one anyway
	if !d.claim() {
		return
	}
	err := resultErr(res, res.Err)
	if err == nil {
		resp := &kvrpcpb.BatchCommandsResponse_Response{Id: d.req.Id}
		if d.isPut() {
			resp.Cmd = &kvrpcpb.BatchCommandsResponse_Response_Put{Put: &kvrpcpb.RawPutResponse{}}
		} else {
			resp.Cmd = &kvrpcpb.BatchCommandsResponse_Response_Delete{Delete: &kvrpcpb.RawDeleteResponse{}}
		}
		d.answer(resp, d.method())
		return
	}
	// The raftstore's callback must not block: forwarding makes calls.
	d.s.spawn(func() { d.answerErr(err) })
}

// expire answers a write whose timeout has passed.
func (d *directWrite) expire() {
	if d.claimed.CompareAndSwap(false, true) {
		d.w.remove(d)
		d.fail(status.FromContextError(context.DeadlineExceeded).Err())
	}
}

// fail answers d with a gRPC status, as batchCommand answers a unary
// handler's status error. The caller has claimed d, or d.w.end has.
func (d *directWrite) fail(err error) {
	resp := &kvrpcpb.BatchCommandsResponse_Response{Id: d.req.Id}
	setBatchErr(resp, err)
	d.answer(resp, d.method())
}

func (d *directWrite) isPut() bool {
	_, ok := d.req.Cmd.(*kvrpcpb.BatchCommandsRequest_Request_Put)
	return ok
}

// method is the full name of the unary method d stands for.
func (d *directWrite) method() string {
	if d.isPut() {
		return methodRawPut
	}
	return methodRawDelete
}

// answerErr answers d with what the unary handler makes of the store's
// error err, within what is left of the request's timeout.
func (d *directWrite) answerErr(err error) {
	ctx := d.w.ctx
	if d.req.TimeoutUs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.start.Add(time.Duration(d.req.TimeoutUs)*time.Microsecond))
		defer cancel()
	}
	err = d.s.maybeForward(ctx, d.t, err)
	resp := &kvrpcpb.BatchCommandsResponse_Response{Id: d.req.Id}
	switch cmd := d.req.Cmd.(type) {
	case *kvrpcpb.BatchCommandsRequest_Request_Put:
		r, err := d.s.answerPut(ctx, cmd.Put, err)
		if err != nil {
			setBatchErr(resp, err)
		} else {
			resp.Cmd = &kvrpcpb.BatchCommandsResponse_Response_Put{Put: r}
		}
		d.answer(resp, methodRawPut)
	case *kvrpcpb.BatchCommandsRequest_Request_Delete:
		r, err := d.s.answerDelete(ctx, cmd.Delete, err)
		if err != nil {
			setBatchErr(resp, err)
		} else {
			resp.Cmd = &kvrpcpb.BatchCommandsResponse_Response_Delete{Delete: r}
		}
		d.answer(resp, methodRawDelete)
	}
}
