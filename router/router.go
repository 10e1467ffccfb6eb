// Package router maps region IDs to mailboxes and schedules those mailboxes
// onto a fixed pool of workers (a "batch system", in the manner of TiKV's
// BatchSystem or CockroachDB's raftScheduler).
//
// Each region has a mailbox: the FSM that owns the region on this store (a
// peer) and an unbounded queue of messages for it. Send appends a message and,
// if the mailbox is idle, puts it on a FIFO ready queue. Workers call Fetch to
// take ready mailboxes together with everything queued for them, process them,
// and hand them back with Release. The router guarantees:
//
//   - a mailbox is on the ready queue at most once, however many messages
//     arrive for it;
//   - a mailbox is held by at most one worker at a time, so its FSM needs no
//     locking of its own;
//   - the messages of one mailbox are handed out in the order in which Send
//     calls for it took effect;
//   - a message sent while a worker holds the mailbox is not lost: Release
//     puts the mailbox back on the ready queue.
//
// A separate store mailbox (SendStore, FetchStore) carries messages for the
// single store FSM.
//
// The package knows nothing about raft; F, M and S are supplied by the
// caller.
package router

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Locks: the registry (Router.mu), the ready queue (readyQueue.mu), the store
// mailbox (storeMailbox.mu) and one lock per mailbox (mailbox.mu). The only
// nesting is readyQueue.mu before mailbox.mu, in Fetch, plus Router.bcast held
// around everything Broadcast does. No goroutine acquires another lock while
// holding a mailbox.mu, which is why a mailbox is pushed onto the ready queue
// only after its own lock has been released.

// Errors returned by the router.
var (
	// ErrRegionNotFound is returned by Send when no live mailbox is
	// registered for the region: it was never registered or it was closed.
	ErrRegionNotFound = errors.New("router: region not found")
	// ErrRegionExists is returned by Register when a live mailbox is already
	// registered for the region.
	ErrRegionExists = errors.New("router: region already registered")
	// ErrStopped is returned by Register, Send and SendStore after Stop.
	ErrStopped = errors.New("router: stopped")
)

// Router routes messages to per-region mailboxes and hands ready mailboxes to
// workers. F is the FSM owned by a mailbox (typically a pointer to a peer), M
// the message type for regions and S the message type for the store FSM.
//
// All methods are safe for concurrent use. The zero value is not usable; call
// New.
type Router[F any, M any, S any] struct {
	// mu protects the registry. Send, Wake, Has and Len take it for reading;
	// Register and Close take it for writing. It is never held while
	// messages are handed to workers.
	mu struct {
		sync.RWMutex
		// mailboxes holds every live (registered, not closed) mailbox.
		// Invariant: mailboxes[id].regionID == id.
		mailboxes map[uint64]*mailbox[F, M]
		// list holds the same mailboxes as mailboxes, for Broadcast to copy
		// in one go. Invariant: list[mb.index] == mb for every mb in
		// mailboxes, and len(list) == len(mailboxes).
		list []*mailbox[F, M]
	}

	// bcast serializes Broadcast calls so that they can share a scratch
	// slice instead of allocating one per call.
	bcast struct {
		sync.Mutex
		// scratch is a copy of mu.list taken by the Broadcast in progress.
		// Between calls it has length zero and holds no pointers.
		scratch []*mailbox[F, M]
	}

	// ready is the FIFO queue of mailboxes waiting for a worker.
	ready readyQueue[F, M]

	// store is the store FSM's mailbox.
	store storeMailbox[S]

	// stopped is set once by Stop, while holding ready.mu (so that a
	// Fetch waiting on ready.cond cannot miss it). It is read without locks
	// on the Send paths.
	stopped atomic.Bool
}

// New returns an empty running router.
func New[F, M, S any]() *Router[F, M, S] {
	r := &Router[F, M, S]{}
	r.mu.mailboxes = make(map[uint64]*mailbox[F, M])
	r.ready.cond.L = &r.ready.mu
	r.store.cond.L = &r.store.mu
	return r
}

// mailboxState says where a mailbox is in the scheduling cycle
// idle -> queued -> running -> (idle | queued).
type mailboxState uint8

const (
	// stateIdle: not on the ready queue and not held by a worker.
	stateIdle mailboxState = iota
	// stateQueued: on the ready queue (or about to be pushed onto it by the
	// goroutine that made the transition), not held by a worker.
	stateQueued
	// stateRunning: held by a worker between Fetch and Release. It is not
	// on the ready queue.
	stateRunning
)

// mailbox is one region's FSM and message queue.
type mailbox[F any, M any] struct {
	// regionID and fsm are set by Register and never change. The FSM
	// itself is only touched by the worker holding the mailbox.
	regionID uint64
	fsm      F

	// index is the position of this mailbox in Router.mu.list. Protected
	// by Router.mu.
	index int

	// mu protects the fields below. It is held only briefly and no other
	// lock is taken while holding it.
	mu sync.Mutex
	// msgs are the messages not yet handed to a worker, in Send order.
	msgs []M
	// spare is the Msgs slice of the last released batch, emptied, ready to
	// become msgs at the next Fetch so that steady traffic allocates
	// nothing. It is nil while a batch is out.
	spare []M
	// state is the scheduling state. Invariant: the mailbox appears on the
	// ready queue at most once, and only while state == stateQueued (or
	// closed, see below).
	state mailboxState
	// woken records a Wake, or a message, that arrived while the mailbox was
	// queued or running and has not been handed out yet. Release re-queues
	// the mailbox if woken is set or msgs is non-empty.
	woken bool
	// closed is set by Close and never cleared: a closed mailbox accepts no
	// messages, is skipped by Fetch if it is still on the ready queue, and
	// is not re-queued by Release.
	closed bool
	// round counts the batches handed out; a Batch remembers the round it
	// was handed out in so that Release can reject stale copies.
	round uint64
}

// Register creates a mailbox for regionID owned by fsm. It returns
// ErrRegionExists if a live mailbox is already registered for the region and
// ErrStopped after Stop. Registering again after Close is allowed and
// creates a fresh, empty mailbox.
//
// Close does not wait for a worker that holds the old mailbox, so right
// after a Close and Register from another goroutine the old FSM may still be
// running next to the new one. Callers that recreate a region should Close it
// from the worker that holds it (as TiKV destroys a peer from its own FSM), or
// otherwise wait for the old FSM to finish.
func (r *Router[F, M, S]) Register(regionID uint64, fsm F) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped.Load() {
		return ErrStopped
	}
	if _, ok := r.mu.mailboxes[regionID]; ok {
		return ErrRegionExists
	}
	mb := &mailbox[F, M]{regionID: regionID, fsm: fsm, index: len(r.mu.list)}
	r.mu.mailboxes[regionID] = mb
	r.mu.list = append(r.mu.list, mb)
	return nil
}

// lookup returns the live mailbox of regionID, or nil.
func (r *Router[F, M, S]) lookup(regionID uint64) *mailbox[F, M] {
	r.mu.RLock()
	mb := r.mu.mailboxes[regionID]
	r.mu.RUnlock()
	return mb
}

// Send queues msg for regionID and, if the mailbox is idle, schedules it. It
// never blocks on a worker: the queue is unbounded. It returns ErrStopped
// after Stop and ErrRegionNotFound if the region has no live mailbox.
//
// A Send that races with Stop may succeed; its message is then handed out by
// Fetch before Fetch reports ok=false, or left in the mailbox for Close to
// return.
func (r *Router[F, M, S]) Send(regionID uint64, msg M) error {
	if r.stopped.Load() {
		return ErrStopped
	}
	mb := r.lookup(regionID)
	if mb == nil {
		return ErrRegionNotFound
	}
	mb.mu.Lock()
	if mb.closed {
		mb.mu.Unlock()
		return ErrRegionNotFound
	}
	mb.msgs = append(mb.msgs, msg)
	schedule := mb.scheduleLocked()
	mb.mu.Unlock()
	if schedule {
		r.ready.push(mb)
	}
	return nil
}

// scheduleLocked notes that the mailbox has work. It returns true if the
// caller must push the mailbox onto the ready queue (after unlocking mb.mu).
// mb.mu must be held and mb must not be closed.
func (mb *mailbox[F, M]) scheduleLocked() bool {
	switch mb.state {
	case stateIdle:
		mb.state = stateQueued
		return true
	case stateRunning:
		mb.woken = true
	}
	return false
}

// Broadcast sends msg to every live mailbox, as Send would; it is meant for
// ticks. It is a no-op after Stop. Mailboxes registered or closed while
// Broadcast runs may or may not receive msg.
//
// Broadcast holds the registry lock only to copy the list of mailboxes, and
// the ready queue lock once to schedule all the idle ones. Apart from growing
// message queues and internal buffers to their high-water mark, it does not
// allocate.
func (r *Router[F, M, S]) Broadcast(msg M) {
	if r.stopped.Load() {
		return
	}
	r.bcast.Lock()
	defer r.bcast.Unlock()

	r.mu.RLock()
	all := append(r.bcast.scratch[:0], r.mu.list...)
	r.mu.RUnlock()

	// Compact the mailboxes that went from idle to queued into all[:n].
	n := 0
	for _, mb := range all {
		mb.mu.Lock()
		if mb.closed {
			mb.mu.Unlock()
			continue
		}
		mb.msgs = append(mb.msgs, msg)
		schedule := mb.scheduleLocked()
		mb.mu.Unlock()
		if schedule {
			all[n] = mb
			n++
		}
	}
	r.ready.pushAll(all[:n])
	clear(all)
	r.bcast.scratch = all[:0]
}

// Wake schedules the mailbox of regionID even though no message arrived, for
// example because the FSM still has work after a round. If a worker holds the
// mailbox, it is re-queued when released. Wake on a region without a live
// mailbox, and Wake after Stop, do nothing.
func (r *Router[F, M, S]) Wake(regionID uint64) {
	if r.stopped.Load() {
		return
	}
	mb := r.lookup(regionID)
	if mb == nil {
		return
	}
	mb.mu.Lock()
	if mb.closed {
		mb.mu.Unlock()
		return
	}
	schedule := mb.scheduleLocked()
	mb.mu.Unlock()
	if schedule {
		r.ready.push(mb)
	}
}

// Close unregisters regionID and closes its mailbox. It returns the messages
// that were queued but not yet handed to a worker, in Send order, so that the
// caller can fail them; the caller owns the returned slice. Later Sends to the
// region return ErrRegionNotFound until it is registered again. Closing an
// absent region returns nil.
//
// Close is safe while a worker holds the mailbox: the worker keeps its batch
// (and the FSM) until Release, and Release then drops the mailbox instead of
// re-queuing it.
func (r *Router[F, M, S]) Close(regionID uint64) []M {
	r.mu.Lock()
	mb := r.mu.mailboxes[regionID]
	if mb == nil {
		r.mu.Unlock()
		return nil
	}
	delete(r.mu.mailboxes, regionID)
	last := len(r.mu.list) - 1
	moved := r.mu.list[last]
	r.mu.list[mb.index] = moved
	moved.index = mb.index
	r.mu.list[last] = nil
	r.mu.list = r.mu.list[:last]
	r.mu.Unlock()

	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.closed = true
	mb.woken = false
	pending := mb.msgs
	mb.msgs = nil
	mb.spare = nil
	return pending
}

// Len returns the number of live mailboxes.
func (r *Router[F, M, S]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.mu.mailboxes)
}

// Has reports whether regionID has a live mailbox.
func (r *Router[F, M, S]) Has(regionID uint64) bool {
	return r.lookup(regionID) != nil
}

// Batch is one mailbox handed to a worker by Fetch: the region's FSM and the
// messages drained from its queue, in Send order. Msgs may be empty when the
// mailbox was scheduled by Wake.
//
// The worker has exclusive use of FSM until it passes the batch to Release.
// Msgs belongs to the router again after Release, which reuses its backing
// array for later messages of the same region: the worker must not keep Msgs,
// or a sub-slice of it, past Release.
type Batch[F any, M any] struct {
	// RegionID is the region the mailbox was registered for.
	RegionID uint64
	// FSM is the value passed to Register.
	FSM F
	// Msgs are the messages queued since the previous batch of this region.
	Msgs []M

	// mb is the mailbox held; nil once released.
	mb *mailbox[F, M]
	// round is mb.round at the time of Fetch.
	round uint64
}

// Fetch blocks until at least one mailbox is ready or the router is stopped,
// then appends up to limit ready batches (at least one; limit < 1 is treated
// as 1)
// to buf in FIFO order and returns it. Each batch must be passed to Release
// once the worker is done with it; until then its mailbox is not returned by
// any Fetch.
//
// After Stop, Fetch keeps handing out what is already queued (including
// mailboxes re-queued by Release) and returns buf, false once nothing is
// left. A worker may exit on ok=false: a mailbox that another worker still
// holds is re-queued by that worker's Release and picked up by its next
// Fetch, so a pool whose workers all loop until ok=false delivers every
// message sent before Stop.
func (r *Router[F, M, S]) Fetch(buf []Batch[F, M], limit int) (out []Batch[F, M], ok bool) {
	if limit < 1 {
		limit = 1
	}
	q := &r.ready
	q.mu.Lock()
	defer q.mu.Unlock()
	got := 0
	for got == 0 {
		for q.len == 0 {
			if r.stopped.Load() {
				return buf, false
			}
			q.cond.Wait()
		}
		for got < limit && q.len > 0 {
			mb := q.popLocked()
			mb.mu.Lock()
			if mb.closed {
				// Closed while queued; Close already returned its messages.
				mb.state = stateIdle
				mb.mu.Unlock()
				continue
			}
			mb.state = stateRunning
			mb.woken = false
			mb.round++
			b := Batch[F, M]{RegionID: mb.regionID, FSM: mb.fsm, Msgs: mb.msgs, mb: mb, round: mb.round}
			mb.msgs = mb.spare
			mb.spare = nil
			mb.mu.Unlock()
			buf = append(buf, b)
			got++
		}
	}
	if q.len > 0 {
		// Work is left for another waiting worker; the pushes that queued it
		// may have signalled only this one.
		q.cond.Signal()
	}
	return buf, true
}

// Release hands b's mailbox back to the router. If messages arrived, or Wake
// was called, since b was fetched, the mailbox goes to the back of the ready
// queue; otherwise it goes idle. Release clears b, and the router reuses the
// backing array of b.Msgs (see Batch).
//
// Release panics if b is not a batch currently held from Fetch (for example,
// if it was already released).
func (r *Router[F, M, S]) Release(b *Batch[F, M]) {
	mb := b.mb
	if mb == nil {
		panic("router: Release of a batch that is not held")
	}
	msgs := b.Msgs
	round := b.round
	*b = Batch[F, M]{}

	mb.mu.Lock()
	if mb.state != stateRunning || mb.round != round {
		mb.mu.Unlock()
		panic("router: Release of a stale batch")
	}
	if mb.closed {
		mb.state = stateIdle
		mb.mu.Unlock()
		return
	}
	clear(msgs) // Drop references so the handled messages can be collected.
	mb.spare = msgs[:0]
	schedule := len(mb.msgs) > 0 || mb.woken
	if schedule {
		mb.state = stateQueued
		mb.woken = false
	} else {
		mb.state = stateIdle
	}
	mb.mu.Unlock()
	if schedule {
		r.ready.push(mb)
	}
}

// SendStore queues msg for the store FSM. It never blocks and returns
// ErrStopped after Stop.
func (r *Router[F, M, S]) SendStore(msg S) error {
	s := &r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	s.msgs = append(s.msgs, msg)
	s.cond.Signal()
	return nil
}

// FetchStore blocks until the store mailbox has messages or the router is
// stopped, then appends all queued store messages to buf, in SendStore order,
// and returns it. It is meant for one store goroutine. After Stop it returns
// what is still queued, then buf, false.
func (r *Router[F, M, S]) FetchStore(buf []S) ([]S, bool) {
	s := &r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.msgs) == 0 {
		if s.stopped {
			return buf, false
		}
		s.cond.Wait()
	}
	buf = append(buf, s.msgs...)
	clear(s.msgs)
	s.msgs = s.msgs[:0]
	return buf, true
}

// Stop stops the router: Register, Send and SendStore then return ErrStopped,
// Broadcast and Wake do nothing, and every blocked Fetch and FetchStore wakes
// up. Fetch and FetchStore drain what was queued before reporting ok=false.
// Messages that race with Stop can be left in a mailbox; once the workers have
// exited, the owner should Close every region to collect them. Stop is
// idempotent.
func (r *Router[F, M, S]) Stop() {
	r.ready.mu.Lock()
	r.stopped.Store(true)
	r.ready.cond.Broadcast()
	r.ready.mu.Unlock()

	r.store.mu.Lock()
	r.store.stopped = true
	r.store.cond.Broadcast()
	r.store.mu.Unlock()
}

// readyQueue is a FIFO of mailboxes waiting for a worker, kept in a ring
// buffer that grows as needed and is never shrunk.
type readyQueue[F any, M any] struct {
	// mu protects the fields below; cond (with L == &mu) is signalled when
	// mailboxes are pushed and broadcast by Stop.
	mu   sync.Mutex
	cond sync.Cond
	// buf[head], buf[head+1], ... (mod len(buf)) hold the len queued
	// mailboxes, oldest first; the other slots are nil.
	// Invariant: 0 <= len <= len(buf), and 0 <= head < len(buf) when
	// len(buf) > 0.
	buf  []*mailbox[F, M]
	head int
	len  int
}

// push appends mb and wakes one waiting worker.
func (q *readyQueue[F, M]) push(mb *mailbox[F, M]) {
	q.mu.Lock()
	q.pushLocked(mb)
	q.cond.Signal()
	q.mu.Unlock()
}

// pushAll appends mbs in order and wakes waiting workers.
func (q *readyQueue[F, M]) pushAll(mbs []*mailbox[F, M]) {
	if len(mbs) == 0 {
		return
	}
	q.mu.Lock()
	for _, mb := range mbs {
		q.pushLocked(mb)
	}
	if len(mbs) == 1 {
		q.cond.Signal()
	} else {
		q.cond.Broadcast()
	}
	q.mu.Unlock()
}

func (q *readyQueue[F, M]) pushLocked(mb *mailbox[F, M]) {
	if q.len == len(q.buf) {
		q.growLocked()
	}
	i := q.head + q.len
	if i >= len(q.buf) {
		i -= len(q.buf)
	}
	q.buf[i] = mb
	q.len++
}

// growLocked doubles the ring (to at least one slot), unrolling it so that
// the oldest element is at index 0.
func (q *readyQueue[F, M]) growLocked() {
	grown := make([]*mailbox[F, M], max(2*len(q.buf), 1))
	n := copy(grown, q.buf[q.head:])
	copy(grown[n:], q.buf[:q.head])
	q.buf = grown
	q.head = 0
}

// popLocked removes and returns the oldest mailbox. q.len must be positive.
func (q *readyQueue[F, M]) popLocked() *mailbox[F, M] {
	mb := q.buf[q.head]
	q.buf[q.head] = nil
	q.head++
	if q.head == len(q.buf) {
		q.head = 0
	}
	q.len--
	return mb
}

// storeMailbox is the store FSM's unbounded message queue.
type storeMailbox[S any] struct {
	// mu protects the fields below; cond (with L == &mu) is signalled by
	// SendStore and broadcast by Stop.
	mu   sync.Mutex
	cond sync.Cond
	// msgs are the messages not yet fetched, in SendStore order.
	msgs []S
	// stopped is set by Stop and never cleared.
	stopped bool
}
