package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regionkv/regionkv/proto/raft_serverpb"
)

// errNilMessage is returned by StoreTransport.Send for a nil message.
var errNilMessage = errors.New("harness: send of nil RaftMessage")

// NetworkStats counts what a Network did with the messages handed to it.
//
// Once no message is queued or delayed, Sent == Delivered + Dropped.
type NetworkStats struct {
	// Sent counts calls to StoreTransport.Send with a non-nil message.
	Sent uint64
	// Delivered counts messages handed to a store's deliver func.
	Delivered uint64
	// Dropped counts messages discarded by a filter, sent to an unknown or
	// detached store, or still in flight when their store was detached or
	// the network closed.
	Dropped uint64
}

// link is a directed pair of stores, the key of a one-way cut.
type link struct {
	from, to uint64
}

// Network is an in-process, lossy, partitionable network between stores.
//
// Every message is copied through its wire encoding, so sender and receiver
// never share memory. Messages to one store are delivered by one goroutine
// from an unbounded FIFO queue, so without a Delay filter the messages one
// sender sends to one store arrive in order. The deliver func of a store is
// never called with a Network lock held.
//
// All randomness (Drop, Delay) comes from one generator seeded by NewNetwork,
// so a single sender sees a reproducible drop and delay pattern.
type Network struct {
	// wg tracks the delivery goroutine of every endpoint and every delayed
	// message whose timer has been armed. Add is called only with mu held
	// and mu.closed false, so it never races with the Wait in Close.
	wg sync.WaitGroup

	sent      atomic.Uint64
	delivered atomic.Uint64
	dropped   atomic.Uint64

	// mu protects the attached endpoints, the filters, the random source and
	// the pending delay timers. It is held only for short bookkeeping: never
	// while calling deliver or a custom filter, and never while waiting for a
	// delivery goroutine.
	mu struct {
		sync.Mutex
		closed    bool
		rng       *rand.Rand
		endpoints map[uint64]*endpoint
		// snapshots receives each attached store's snapshot transfers.
		snapshots map[uint64]func(*raft_serverpb.RaftMessage, io.Reader) error

		// partitioned is set by Partition; then groups maps a store to the
		// indexes of the groups it belongs to, and two distinct stores can
		// talk only if they share a group.
		partitioned bool
		groups      map[uint64][]int
		isolated    map[uint64]bool
		cuts        map[link]bool
		dropProb    float64
		maxDelay    time.Duration
		filters     []func(*raft_serverpb.RaftMessage) bool

		nextTimer uint64
		timers    map[uint64]*time.Timer
	}
}

// NewNetwork returns an empty network whose random decisions all derive from
// seed. Attach stores to it, and Close it when done.
func NewNetwork(seed int64) *Network {
	n := &Network{}
	n.mu.rng = rand.New(rand.NewSource(seed))
	n.mu.endpoints = make(map[uint64]*endpoint)
	n.mu.snapshots = make(map[uint64]func(*raft_serverpb.RaftMessage, io.Reader) error)
	n.mu.isolated = make(map[uint64]bool)
	n.mu.cuts = make(map[link]bool)
	n.mu.timers = make(map[uint64]*time.Timer)
	return n
}

// Attach connects storeID to the network: from now on deliver is called, on a
// goroutine owned by the network, for each message to storeID that gets
// through. deliver should return quickly (enqueue into a mailbox); it must not
// call Detach, Attach or Close.
//
// Attaching a store that is already attached replaces it: the old attachment
// is detached first, dropping its queued messages. A nil deliver only
// detaches. Attach on a closed network does nothing.
func (n *Network) Attach(storeID uint64, deliver func(*raft_serverpb.RaftMessage)) {
	n.Detach(storeID)
	if deliver == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		return
	}
	if old := n.mu.endpoints[storeID]; old != nil {
		// A concurrent Attach of the same store won the race; replace it
		// without waiting, as we hold mu. Its goroutine stops on its own.
		old.close()
	}
	ep := newEndpoint(n, deliver)
	n.mu.endpoints[storeID] = ep
	n.wg.Add(1)
	go ep.run()
}

// Detach disconnects a stopped store: messages to it are dropped, including
// those already queued for it. Detach waits for a delivery in progress to
// that store to return, so once Detach returns the old deliver func is not
// called again. Detaching an unknown store does nothing.
func (n *Network) Detach(storeID uint64) {
	n.mu.Lock()
	ep := n.mu.endpoints[storeID]
	delete(n.mu.endpoints, storeID)
	delete(n.mu.snapshots, storeID)
	n.mu.Unlock()
	if ep != nil {
		ep.close()
		<-ep.done
	}
}

// Transport returns the sending side of storeID. The store does not need to
// be attached to send.
func (n *Network) Transport(storeID uint64) *StoreTransport {
	return &StoreTransport{net: n, storeID: storeID}
}

// Partition splits the stores into groups: two stores can talk only if some
// group holds both, and a store in no group is isolated from all others. A
// store may appear in several groups (a bridge). Partition replaces an earlier
// partition; Partition() with no groups isolates every store. Heal undoes it.
func (n *Network) Partition(groups ...[]uint64) {
	m := make(map[uint64][]int)
	for i, g := range groups {
		for _, id := range g {
			m[id] = append(m[id], i)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.partitioned = true
	n.mu.groups = m
}

// Isolate cuts storeID off from every other store in both directions, on top
// of any partition. Heal undoes it.
func (n *Network) Isolate(storeID uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.isolated[storeID] = true
}

// Cut drops every message from store from to store to, but not the other way
// round. Heal undoes it.
func (n *Network) Cut(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.cuts[link{from: from, to: to}] = true
}

// Drop drops each message with probability p, clamped to [0, 1]; 0 turns
// random loss off. It replaces an earlier Drop.
func (n *Network) Drop(p float64) {
	p = min(max(p, 0), 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.dropProb = p
}

// Delay holds each message for a duration drawn uniformly from [0, maxDelay)
// before queueing it for its store, so messages may be reordered. A maxDelay
// <= 0 turns delay off. It replaces an earlier Delay; messages already
// delayed keep their delay.
func (n *Network) Delay(maxDelay time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.maxDelay = maxDelay
}

// AddFilter adds a custom filter, applied to every message after the
// partition, isolation and cut filters: f returns false to drop the message.
// f sees the network's private copy of the message and may modify it to inject
// faults. f is called on the sender's goroutine with no Network lock held; it
// must be safe for concurrent use. ClearFilters removes it.
func (n *Network) AddFilter(f func(msg *raft_serverpb.RaftMessage) bool) {
	if f == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.filters = append(n.mu.filters, f)
}

// Heal clears the partition, isolation and cut filters. Drop, Delay and
// custom filters stay.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.healLocked()
}

func (n *Network) healLocked() {
	n.mu.partitioned = false
	n.mu.groups = nil
	clear(n.mu.isolated)
	clear(n.mu.cuts)
}

// ClearFilters clears every filter: partition, isolation, cuts, Drop, Delay
// and custom filters.
func (n *Network) ClearFilters() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.healLocked()
	n.mu.dropProb = 0
	n.mu.maxDelay = 0
	n.mu.filters = nil
}

// Stats returns the message counters. They are read one by one, so a
// snapshot taken while messages flow may be slightly inconsistent.
func (n *Network) Stats() NetworkStats {
	return NetworkStats{
		Sent:      n.sent.Load(),
		Delivered: n.delivered.Load(),
		Dropped:   n.dropped.Load(),
	}
}

// Close stops the network: queued and delayed messages are dropped, later
// sends are dropped, and Close waits for every delivery goroutine to exit.
// Close is idempotent. Like Detach, it must not be called from a deliver func.
func (n *Network) Close() {
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		n.wg.Wait()
		return
	}
	n.mu.closed = true
	endpoints := n.mu.endpoints
	timers := n.mu.timers
	n.mu.endpoints = make(map[uint64]*endpoint)
	n.mu.snapshots = make(map[uint64]func(*raft_serverpb.RaftMessage, io.Reader) error)
	n.mu.timers = make(map[uint64]*time.Timer)
	n.mu.Unlock()

	for _, t := range timers {
		if t.Stop() {
			// The callback will never run, so account for it here.
			n.dropped.Add(1)
			n.wg.Done()
		}
	}
	for _, ep := range endpoints {
		ep.close()
	}
	n.wg.Wait()
}

// route is the verdict of the network filters for one message.
type route struct {
	ep      *endpoint
	filters []func(*raft_serverpb.RaftMessage) bool
	delay   time.Duration
}

// routeLocked applies the built-in filters to a message from store from to
// store to and draws its random fate. It returns ok == false if the message
// must be dropped.
func (n *Network) routeLocked(from, to uint64) (r route, ok bool) {
	if n.mu.closed {
		return route{}, false
	}
	ep := n.mu.endpoints[to]
	if ep == nil || !n.reachableLocked(from, to) {
		return route{}, false
	}
	// Draw from the generator only for the filters that are on, so that
	// turning Delay on does not change which messages Drop picks, and so on.
	if n.mu.dropProb > 0 && n.mu.rng.Float64() < n.mu.dropProb {
		return route{}, false
	}
	var delay time.Duration
	if n.mu.maxDelay > 0 {
		delay = time.Duration(n.mu.rng.Int63n(int64(n.mu.maxDelay)))
	}
	return route{ep: ep, filters: n.mu.filters, delay: delay}, true
}

// reachableLocked reports whether the partition, isolation and cut filters let
// a message from store from reach store to. A store can always reach itself.
func (n *Network) reachableLocked(from, to uint64) bool {
	if from == to {
		return true
	}
	if n.mu.isolated[from] || n.mu.isolated[to] || n.mu.cuts[link{from: from, to: to}] {
		return false
	}
	if !n.mu.partitioned {
		return true
	}
	for _, g := range n.mu.groups[from] {
		for _, h := range n.mu.groups[to] {
			if g == h {
				return true
			}
		}
	}
	return false
}

// send implements StoreTransport.Send for a message from store from.
func (n *Network) send(from uint64, msg *raft_serverpb.RaftMessage) error {
	if msg == nil {
		return errNilMessage
	}
	n.sent.Add(1)
	// Copy first, like a wire: whatever the sender does to msg after Send
	// returns cannot reach the receiver.
	cp, err := copyMessage(msg)
	if err != nil {
		n.dropped.Add(1)
		return err
	}
	to := cp.GetToPeer().GetStoreId()

	n.mu.Lock()
	r, ok := n.routeLocked(from, to)
	n.mu.Unlock()
	if !ok {
		n.dropped.Add(1)
		return nil
	}
	for _, f := range r.filters {
		if !f(cp) {
			n.dropped.Add(1)
			return nil
		}
	}
	if r.delay <= 0 {
		r.ep.enqueue(cp)
		return nil
	}
	n.sendLater(to, cp, r.delay)
	return nil
}

// sendLater queues msg for store to after d. The message goes to whichever
// endpoint store to has when the delay expires, like a packet reaching a
// restarted process.
func (n *Network) sendLater(to uint64, msg *raft_serverpb.RaftMessage, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		n.dropped.Add(1)
		return
	}
	id := n.mu.nextTimer
	n.mu.nextTimer++
	n.wg.Add(1)
	// The callback takes mu first, so it cannot observe the map before the
	// timer is stored in it.
	n.mu.timers[id] = time.AfterFunc(d, func() {
		defer n.wg.Done()
		n.mu.Lock()
		delete(n.mu.timers, id)
		var ep *endpoint
		if !n.mu.closed {
			ep = n.mu.endpoints[to]
		}
		n.mu.Unlock()
		if ep == nil {
			n.dropped.Add(1)
			return
		}
		ep.enqueue(msg)
	})
}

// copyMessage returns a deep copy of msg made through its wire encoding.
func copyMessage(msg *raft_serverpb.RaftMessage) (*raft_serverpb.RaftMessage, error) {
	data, err := msg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("harness: marshal RaftMessage for region %d: %w", msg.GetRegionId(), err)
	}
	cp := &raft_serverpb.RaftMessage{}
	if err := cp.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("harness: unmarshal RaftMessage for region %d: %w", msg.GetRegionId(), err)
	}
	return cp, nil
}

// endpoint is the receiving side of one attached store: an unbounded FIFO
// queue drained by one goroutine, run, which calls deliver.
type endpoint struct {
	net     *Network
	deliver func(*raft_serverpb.RaftMessage)
	// done is closed when run returns.
	done chan struct{}

	// mu protects the queue; cond signals it grew or the endpoint closed.
	mu     sync.Mutex
	cond   sync.Cond
	closed bool
	queue  []*raft_serverpb.RaftMessage
}

func newEndpoint(n *Network, deliver func(*raft_serverpb.RaftMessage)) *endpoint {
	ep := &endpoint{net: n, deliver: deliver, done: make(chan struct{})}
	ep.cond.L = &ep.mu
	return ep
}

// enqueue appends msg to the queue, or drops it if the endpoint is closed.
func (ep *endpoint) enqueue(msg *raft_serverpb.RaftMessage) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		ep.net.dropped.Add(1)
		return
	}
	ep.queue = append(ep.queue, msg)
	ep.cond.Signal()
}

// close drops the queued messages and tells run to return; it does not wait.
func (ep *endpoint) close() {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		return
	}
	ep.closed = true
	ep.net.dropped.Add(uint64(len(ep.queue)))
	ep.queue = nil
	ep.cond.Broadcast()
}

// run delivers queued messages in order until the endpoint is closed.
func (ep *endpoint) run() {
	defer ep.net.wg.Done()
	defer close(ep.done)
	for {
		ep.mu.Lock()
		for len(ep.queue) == 0 && !ep.closed {
			ep.cond.Wait()
		}
		if ep.closed {
			ep.mu.Unlock()
			return
		}
		msg := ep.queue[0]
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		ep.mu.Unlock()

		ep.deliver(msg)
		ep.net.delivered.Add(1)
	}
}

// StoreTransport is the sending side of one store on a Network. It is safe
// for concurrent use.
type StoreTransport struct {
	net     *Network
	storeID uint64
}

// Send copies msg and routes the copy to the store of msg.ToPeer through the
// network filters. It never blocks on the receiver. A dropped message is not
// an error, as raft tolerates loss; Send returns an error only for a nil
// message or one that cannot be encoded.
func (t *StoreTransport) Send(msg *raft_serverpb.RaftMessage) error {
	return t.net.send(t.storeID, msg)
}

// Flush does nothing: Send hands each message to the network immediately.
func (t *StoreTransport) Flush() {}

// AttachSnapshots sets the receiver of snapshot transfers to a store (its
// ReceiveSnapshot). Detach removes it too.
func (n *Network) AttachSnapshots(storeID uint64, recv func(*raft_serverpb.RaftMessage, io.Reader) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.snapshots[storeID] = recv
}

// errUnreachable is what a snapshot transfer the network drops returns.
var errUnreachable = errors.New("harness: store unreachable")

// sendSnapshot moves a snapshot like a stream would: the message and the data
// are copied, the same filters as for messages decide whether it gets
// through (a dropped transfer fails, as a broken stream would), and the
// receiving store's ReceiveSnapshot gets the copies.
func (n *Network) sendSnapshot(ctx context.Context, from uint64, msg *raft_serverpb.RaftMessage, data io.Reader) error {
	n.sent.Add(1)
	cp, err := copyMessage(msg)
	if err != nil {
		n.dropped.Add(1)
		return err
	}
	buf, err := io.ReadAll(data)
	if err != nil {
		n.dropped.Add(1)
		return err
	}
	to := cp.GetToPeer().GetStoreId()
	n.mu.Lock()
	r, ok := n.routeLocked(from, to)
	recv := n.mu.snapshots[to]
	n.mu.Unlock()
	if !ok || recv == nil {
		n.dropped.Add(1)
		return errUnreachable
	}
	for _, f := range r.filters {
		if !f(cp) {
			n.dropped.Add(1)
			return errUnreachable
		}
	}
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			n.dropped.Add(1)
			return ctx.Err()
		}
	}
	if err := recv(cp, bytes.NewReader(buf)); err != nil {
		n.dropped.Add(1)
		return err
	}
	n.delivered.Add(1)
	return nil
}

// SendSnapshot implements the snapshot half of raftstore.Transport.
func (t *StoreTransport) SendSnapshot(ctx context.Context, msg *raft_serverpb.RaftMessage, data io.Reader) error {
	return t.net.sendSnapshot(ctx, t.storeID, msg, data)
}
