// Package transport carries raft traffic between stores: raft messages in
// batches on one long-lived raft connection per destination store (plain
// TCP, see kv/raftwire), and snapshots on a gRPC Kv.Snapshot stream each. It
// implements raftstore.Transport.
//
// Store addresses come from a Resolver (the scheduler) through a Pool, which
// caches them and the connections, and which request forwarding in kv/server
// shares.
//
// Delivery is best effort, as raft expects: a message is lost when its
// destination's queue is full, when the connection breaks with it in
// flight, or while the destination is unreachable. Send reports the last
// two synchronously (ErrQueueFull, ErrUnreachable) so that the raftstore
// can tell raft (ReportUnreachable); a connection that breaks while idle is
// noticed by a read on it, and the destination then refuses messages until
// a new connection is open.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/regionkv/regionkv/kv/raftwire"
	rspb "github.com/regionkv/regionkv/proto/raft_serverpb"
)

// Errors Send returns for a message it drops.
var (
	// ErrUnreachable: the destination store could not be reached (its
	// address is unknown, or connecting or its connection failed); the
	// transport keeps retrying in the background.
	ErrUnreachable = errors.New("transport: store unreachable")
	// ErrQueueFull: too many messages are waiting for the destination.
	ErrQueueFull = errors.New("transport: send queue full")
)

// Options configures a Transport. The zero value of each field means its
// default.
type Options struct {
	// QueueSize bounds the messages waiting for one destination (default
	// 4096); past it Send drops with ErrQueueFull.
	QueueSize int
	// MaxBatchMessages and MaxBatchBytes bound one RaftMessageBatch
	// (defaults 256 messages, 8 MiB). A single larger message still goes,
	// alone; the receiver accepts up to 32 MiB (kv/server's
	// MaxGRPCMessageSize), which holds the largest legal command.
	MaxBatchMessages int
	MaxBatchBytes    int
	// RetryMin and RetryMax bound the pause before reconnecting to an
	// unreachable store; it doubles after each failed attempt (defaults
	// 100ms and 2s).
	RetryMin, RetryMax time.Duration
	// IdleTimeout: a destination that has been unreachable and not sent to
	// for this long is forgotten (default 1 minute), so that stores removed
	// from the cluster are not dialed forever.
	IdleTimeout time.Duration
	// SnapshotChunkSize is the data carried by one SnapshotChunk (default
	// 1 MiB).
	SnapshotChunkSize int
	// WriteTimeout bounds one write on a raft connection (default 10s): a
	// store that reads nothing for this long is treated as unreachable.
	WriteTimeout time.Duration
	// Linger is how long a message sent outside a worker round (one that no
	// Flush follows, e.g. a store liveness ping) may wait before the
	// transport flushes it itself (default 2ms).
	Linger time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	setDefault(&o.QueueSize, 4096)
	setDefault(&o.MaxBatchMessages, 256)
	setDefault(&o.MaxBatchBytes, 8<<20)
	setDefault(&o.RetryMin, 100*time.Millisecond)
	setDefault(&o.RetryMax, 2*time.Second)
	setDefault(&o.IdleTimeout, time.Minute)
	setDefault(&o.SnapshotChunkSize, 1<<20)
	setDefault(&o.WriteTimeout, 10*time.Second)
	setDefault(&o.Linger, 2*time.Millisecond)
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Stats counts what a Transport did. Counters only grow.
type Stats struct {
	MessagesSent    uint64 // written to a raft connection (counted once the write returns)
	MessagesDropped uint64 // refused by Send, or lost with a broken connection
	BatchesSent     uint64
	SnapshotsSent   uint64 // transfers the receiver acknowledged
	SnapshotsFailed uint64
	SnapshotBytes   uint64 // data bytes of acknowledged transfers
	Reconnects      uint64 // raft connections opened after a failure
}

// Transport sends raft messages and snapshots to other stores. It is safe
// for concurrent use. Close it after the store that uses it has stopped.
type Transport struct {
	pool *Pool
	opts Options
	log  *slog.Logger

	// mu protects dests and closed.
	mu     sync.RWMutex
	dests  map[uint64]*dest
	closed bool

	// linger (capacity 1) arms the flusher: a message went into an empty
	// queue.
	linger chan struct{}

	// ctx is canceled by Close; every connection and goroutine ends with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, dropped, batches            atomic.Uint64
	snapsSent, snapsFailed, snapBytes atomic.Uint64
	reconnects                        atomic.Uint64
}

// New returns a transport that reaches stores through pool. The caller
// keeps ownership of pool (close it after the transport).
func New(pool *Pool, opts Options) *Transport {
	opts = opts.withDefaults()
	t := &Transport{pool: pool, opts: opts, log: opts.Logger.With("component", "transport"),
		dests: make(map[uint64]*dest), linger: make(chan struct{}, 1)}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.runFlusher()
	return t
}

// runFlusher flushes Linger after a message went into an empty queue, so
// that a message no Flush follows still goes. In a worker round the
// round's own Flush comes first and this one finds nothing to do.
func (t *Transport) runFlusher() {
	defer t.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		select {
		case <-t.ctx.Done():
			timer.Stop()
			return
		case <-t.linger:
			if !armed { // later messages wait for the same flush
				timer.Reset(t.opts.Linger)
				armed = true
			}
		case <-timer.C:
			armed = false
			t.Flush()
		}
	}
}

// Pool returns the transport's connection pool.
func (t *Transport) Pool() *Pool { return t.pool }

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	return Stats{
		MessagesSent:    t.sent.Load(),
		MessagesDropped: t.dropped.Load(),
		BatchesSent:     t.batches.Load(),
		SnapshotsSent:   t.snapsSent.Load(),
		SnapshotsFailed: t.snapsFailed.Load(),
		SnapshotBytes:   t.snapBytes.Load(),
		Reconnects:      t.reconnects.Load(),
	}
}

// Send queues msg for its destination store (msg.ToPeer.StoreId); Flush, a
// full batch, or Linger without a Flush gets it going. It never blocks on
// the network. The transport owns msg from now on: the caller must not
// modify it.
func (t *Transport) Send(msg *rspb.RaftMessage) error {
	storeID := msg.GetToPeer().GetStoreId()
	if storeID == 0 {
		t.dropped.Add(1)
		return errors.New("transport: raft message without a destination store")
	}
	d, err := t.dest(storeID)
	if err != nil {
		t.dropped.Add(1)
		return err
	}
	d.lastSend.Store(time.Now().UnixNano())
	d.mu.Lock()
	if d.down != nil {
		err := d.down
		d.mu.Unlock()
		t.dropped.Add(1)
		return err
	}
	if len(d.queue) >= t.opts.QueueSize {
		d.mu.Unlock()
		t.dropped.Add(1)
		return fmt.Errorf("%w: %d messages waiting for store %d", ErrQueueFull, t.opts.QueueSize, storeID)
	}
	d.queue = append(d.queue, msg)
	first, full := len(d.queue) == 1, len(d.queue) >= t.opts.MaxBatchMessages
	d.mu.Unlock()
	if full {
		d.notify()
	} else if first {
		select {
		case t.linger <- struct{}{}:
		default:
		}
	}
	return nil
}

// Flush starts sending everything queued so far.
func (t *Transport) Flush() {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, d := range t.dests {
		if d.hasQueued() {
			d.notify()
		}
	}
}

// Close stops every connection and goroutine; queued messages are dropped and
// later sends fail with ErrClosed. It does not close the Pool.
func (t *Transport) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
}

// dest returns the destination of storeID, starting it if needed.
func (t *Transport) dest(storeID uint64) (*dest, error) {
	t.mu.RLock()
	d, closed := t.dests[storeID], t.closed
	t.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if d != nil {
		return d, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if d := t.dests[storeID]; d != nil {
		return d, nil
	}
	d = &dest{t: t, storeID: storeID, wake: make(chan struct{}, 1), log: t.log.With("to_store", storeID)}
	d.lastSend.Store(time.Now().UnixNano())
	t.dests[storeID] = d
	t.wg.Add(1)
	go d.run()
	return d, nil
}

// retire forgets d, which is unreachable and unused; its goroutine ends.
func (t *Transport) retire(d *dest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dests[d.storeID] == d {
		delete(t.dests, d.storeID)
	}
}

// dest is one destination store: its queue and the goroutine that owns its
// connection.
type dest struct {
	t       *Transport
	storeID uint64
	log     *slog.Logger
	// wake (capacity 1) tells the goroutine that messages are queued.
	wake chan struct{}
	// lastSend is when Send was last called for this store (Unix ns).
	lastSend atomic.Int64

	// mu protects queue and down.
	mu    sync.Mutex
	queue []*rspb.RaftMessage
	// down is non-nil (wrapping ErrUnreachable) while the store cannot be
	// reached: Send refuses messages with it until a connection is open again.
	down error
}

func (d *dest) notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dest) hasQueued() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue) > 0
}

// run owns the destination's connection: it connects, sends batches, and
// after a failure reconnects with backoff, until the transport closes or the
// destination is retired.
func (d *dest) run() {
	t := d.t
	defer t.wg.Done()
	retry := t.opts.RetryMin
	for opened := 0; ; {
		gc, c, err := d.open()
		if err == nil {
			if opened++; opened > 1 {
				t.reconnects.Add(1)
			}
			retry = t.opts.RetryMin
			d.markUp()
			err = d.serve(c)
			c.close()
		}
		if t.ctx.Err() != nil {
			return
		}
		d.markDown(err)
		if c == nil && gc != nil {
			// The store could not be reached at its address; it may have
			// moved: look the address up again. (A connection that ended
			// is simply dialed again, and the pool's gRPC connection, with
			// any snapshot on it, is left alone.)
			t.pool.Invalidate(d.storeID, gc)
		}
		if time.Since(time.Unix(0, d.lastSend.Load())) > t.opts.IdleTimeout {
			d.log.Info("forgetting unreachable store")
			t.retire(d)
			return
		}
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, t.opts.RetryMax)
	}
}

// raftConn is one open raft connection.
type raftConn struct {
	conn net.Conn
	// ended receives why the connection ended, once the reading side sees
	// it end (the store closed it, or it broke).
	ended chan error
	// buf holds the frames of one write.
	buf []byte
	// unwatch stops the closing of the connection when the transport
	// closes, which ends a handshake or write under way at once.
	unwatch func() bool
}

// close closes the connection.
func (c *raftConn) close() {
	c.unwatch()
	c.conn.Close()
}

// open resolves the store and opens a raft connection to it. gc is the
// pool's connection to the store, if one was obtained, even when opening
// failed: its address is the one dialed.
func (d *dest) open() (gc *grpc.ClientConn, _ *raftConn, _ error) {
	t := d.t
	gc, err := t.pool.Conn(t.ctx, d.storeID)
	if err != nil {
		return nil, nil, err
	}
	addr := gc.Target() // the address the pool resolved
	dialer := net.Dialer{
		Timeout: t.pool.opts.ConnectTimeout,
		// Notice a store that vanished without closing its sockets, as the
		// pool's gRPC connections do (keepalive probes while idle, the user
		// timeout while a write is unacknowledged).
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepaliveTime, Interval: keepaliveTimeout, Count: 1},
		Control:         setUserTimeout(keepaliveTime + keepaliveTimeout),
	}
	c, err := dialer.DialContext(t.ctx, "tcp", addr)
	if err != nil {
		return gc, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	rc := &raftConn{conn: c, ended: make(chan error, 1), unwatch: context.AfterFunc(t.ctx, func() { c.Close() })}
	// The hello and the store's answer, within the connect timeout.
	_ = c.SetDeadline(time.Now().Add(t.pool.opts.ConnectTimeout))
	if _, err := c.Write(raftwire.AppendHello(nil, d.storeID)); err != nil {
		rc.close()
		return gc, nil, fmt.Errorf("raft connection to %s: %w", addr, err)
	}
	if err := raftwire.ReadStatus(c); err != nil {
		rc.close()
		return gc, nil, fmt.Errorf("raft connection to %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	// The store writes only when it closes the connection, so a read
	// returns exactly then: that is how a break is noticed while nothing is
	// sent. The read ends at the latest when run closes the connection.
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		err := raftwire.ReadStatus(c)
		if err == nil {
			err = errors.New("the store sent data on the raft connection")
		}
		rc.ended <- err
	}()
	return gc, rc, nil
}

// serve sends batches on c until the connection fails or the transport
// closes. Every batch queued when it looks goes in one write.
func (d *dest) serve(c *raftConn) error {
	t := d.t
	for {
		c.buf = c.buf[:0]
		var msgs, batches int
		for len(c.buf) < maxWrite {
			batch := d.take()
			if batch == nil {
				break
			}
			var err error
			if c.buf, err = raftwire.AppendFrame(c.buf, batch); err != nil {
				d.log.Error("raft message batch dropped", "messages", len(batch.Msgs), "err", err)
				t.dropped.Add(uint64(len(batch.Msgs)))
				continue
			}
			msgs += len(batch.Msgs)
			batches++
		}
		if batches > 0 {
			_ = c.conn.SetWriteDeadline(time.Now().Add(t.opts.WriteTimeout))
			if _, err := c.conn.Write(c.buf); err != nil {
				t.dropped.Add(uint64(msgs))
				return c.finalError(err)
			}
			t.sent.Add(uint64(msgs))
			t.batches.Add(uint64(batches))
			if cap(c.buf) > maxWrite {
				c.buf = nil // keep no large buffer between rare large batches
			}
			continue
		}
		select {
		case <-t.ctx.Done():
			return ErrClosed
		case err := <-c.ended:
			return endedError(err)
		case <-d.wake:
		}
	}
}

// maxWrite: serve stops adding batches to a write past this size.
const maxWrite = 1 << 20

// finalError returns why a connection whose write failed with err ended:
// the store may have said why before closing it.
func (c *raftConn) finalError(err error) error {
	select {
	case rerr := <-c.ended:
		return endedError(rerr)
	case <-time.After(100 * time.Millisecond):
	}
	return err
}

// endedError describes the end the reading side saw.
func endedError(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("the store closed the raft connection")
	}
	return err
}

// take removes the next batch from the queue, or returns nil if it is
// empty.
func (d *dest) take() *rspb.RaftMessageBatch {
	opts := &d.t.opts
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		return nil
	}
	n, size := 0, 0
	for n < len(d.queue) && n < opts.MaxBatchMessages {
		sz := d.queue[n].Size()
		if n > 0 && size+sz > opts.MaxBatchBytes {
			break
		}
		size += sz
		n++
	}
	msgs := make([]*rspb.RaftMessage, n)
	copy(msgs, d.queue)
	clear(d.queue[:n])
	d.queue = d.queue[n:]
	if len(d.queue) == 0 {
		d.queue = nil // let the backing array go
	}
	return &rspb.RaftMessageBatch{Msgs: msgs}
}

// markDown records that the store cannot be reached and drops what is
// queued for it.
func (d *dest) markDown(cause error) {
	d.mu.Lock()
	wasDown := d.down != nil
	d.down = fmt.Errorf("%w: store %d: %v", ErrUnreachable, d.storeID, cause)
	dropped := len(d.queue)
	d.queue = nil
	d.mu.Unlock()
	d.t.dropped.Add(uint64(dropped))
	if !wasDown {
		d.log.Warn("store unreachable", "err", cause, "dropped", dropped)
	}
}

// markUp records that a raft connection to the store is open.
func (d *dest) markUp() {
	d.mu.Lock()
	wasDown := d.down != nil
	d.down = nil
	d.mu.Unlock()
	if wasDown {
		d.log.Info("store reachable again")
	}
}
