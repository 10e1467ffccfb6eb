package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/regionkv/regionkv/internal/grpcwindow"
	"github.com/regionkv/regionkv/internal/writeoutcome"
	"github.com/regionkv/regionkv/proto/kvpb"
)

// resolveInterval is how long a store address looked up again after a
// failure is trusted before the next look-up.
const resolveInterval = time.Second

// storePool keeps, per store, its address (from the scheduler) and a few
// gRPC connections to it, used in turn. It is safe for concurrent use.
type storePool struct {
	sched Scheduler
	conns int
	unary bool // no BatchCommands streams
	dial  []grpc.DialOption

	mu struct {
		sync.Mutex
		stores map[uint64]*storeConns
		closed bool
	}
}

// storeConns are the connections to one store. Immutable once made, except
// next and stale.
type storeConns struct {
	id       uint64
	addr     string
	conns    []*grpc.ClientConn
	clients  []kvpb.KvClient
	next     atomic.Uint32
	resolved atomic.Int64 // unix nanoseconds of the last look-up
	// stale is set when a call failed as if the store were gone or had
	// moved: the next use looks its address up again (at most once per
	// resolveInterval).
	stale atomic.Bool
}

func newStorePool(sched Scheduler, conns int, unary bool, dial []grpc.DialOption) *storePool {
	p := &storePool{sched: sched, conns: conns, unary: unary, dial: dial}
	p.mu.stores = make(map[uint64]*storeConns)
	return p
}

// dialOptions are the options of every store connection.
func dialOptions(extra []grpc.DialOption) []grpc.DialOption {
	return append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Stores admit client pings every 5 s (kv/server keepalive policy).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(maxGRPCMessage)),
		grpc.WithChainUnaryInterceptor(writeoutcome.UnaryClientInterceptor),
	}, append(grpcwindow.DialOptions(), extra...)...)
}

// client returns a Kv client of the store and its address.
func (p *storePool) client(ctx context.Context, storeID uint64) (kvpb.KvClient, string, error) {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, "", ErrClosed
	}
	sc := p.mu.stores[storeID]
	p.mu.Unlock()
	if sc == nil || (sc.stale.Load() && time.Since(time.Unix(0, sc.resolved.Load())) > resolveInterval) {
		var err error
		if sc, err = p.resolve(ctx, storeID, sc); err != nil {
			return nil, "", err
		}
	}
	i := sc.next.Add(1) % uint32(len(sc.clients))
	return sc.clients[i], sc.addr, nil
}

// resolve looks the store's address up and connects to it, keeping the
// connections of old if the address did not change.
func (p *storePool) resolve(ctx context.Context, storeID uint64, old *storeConns) (*storeConns, error) {
	store, err := p.sched.GetStore(ctx, storeID)
	if err != nil {
		return nil, fmt.Errorf("look up store %d: %w", storeID, err)
	}
	if store.GetAddress() == "" {
		return nil, fmt.Errorf("store %d has no address", storeID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, ErrClosed
	}
	cur := p.mu.stores[storeID]
	if cur != nil && cur != old {
		return cur, nil // another goroutine resolved it meanwhile
	}
	if cur != nil && cur.addr == store.Address {
		cur.resolved.Store(time.Now().UnixNano())
		cur.stale.Store(false)
		return cur, nil
	}
	sc := &storeConns{id: storeID, addr: store.Address}
	sc.resolved.Store(time.Now().UnixNano())
	for range p.conns {
		conn, err := grpc.NewClient(store.Address, p.dial...)
		if err != nil {
			for _, c := range sc.conns {
				c.Close()
			}
			return nil, fmt.Errorf("store %d at %s: %w", storeID, store.Address, err)
		}
		sc.conns = append(sc.conns, conn)
		if p.unary {
			sc.clients = append(sc.clients, kvpb.NewKvClient(conn))
		} else {
			sc.clients = append(sc.clients, newBatchingClient(conn))
		}
	}
	if cur != nil {
		for _, c := range cur.conns {
			c.Close()
		}
	}
	p.mu.stores[storeID] = sc
	return sc, nil
}

// markStale notes that a call to the store failed as if it were down or had
// moved.
func (p *storePool) markStale(storeID uint64) {
	p.mu.Lock()
	sc := p.mu.stores[storeID]
	p.mu.Unlock()
	if sc != nil {
		sc.stale.Store(true)
	}
}

func (p *storePool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.closed = true
	for _, sc := range p.mu.stores {
		for _, c := range sc.conns {
			c.Close()
		}
	}
	p.mu.stores = nil
}
