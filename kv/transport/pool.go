package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	_ "github.com/regionkv/regionkv/internal/grpccodec" // the gogo-aware "proto" codec
	"github.com/regionkv/regionkv/internal/grpcwindow"
	"github.com/regionkv/regionkv/internal/writeoutcome"
	"github.com/regionkv/regionkv/proto/metapb"
)

// Resolver tells where a store listens. The scheduler client
// (scheduler/client.Client) implements it.
type Resolver interface {
	// GetStore returns the store's metadata, in particular its address. A
	// tombstone store may be returned along with an error.
	GetStore(ctx context.Context, storeID uint64) (*metapb.Store, error)
}

// ErrClosed is returned by a closed Pool or Transport.
var ErrClosed = errors.New("transport: closed")

// PoolOptions configures a Pool. The zero value of each field means its
// default.
type PoolOptions struct {
	// ResolveTimeout bounds one address lookup (default 3s).
	ResolveTimeout time.Duration
	// ConnectTimeout bounds one connection attempt (default 3s), and
	// BackoffMax the pause between attempts of one gRPC connection (default
	// 3s). gRPC's own default (up to 2 minutes) would keep a restarted
	// store unreachable for far too long.
	ConnectTimeout time.Duration
	BackoffMax     time.Duration
	// DialOptions are appended to the pool's own (tests use them).
	DialOptions []grpc.DialOption
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (o PoolOptions) withDefaults() PoolOptions {
	if o.ResolveTimeout <= 0 {
		o.ResolveTimeout = 3 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 3 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 3 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Client keepalive: ping an idle connection every 10 s (the store's server
// admits pings every 5 s) and drop it when a ping is not answered in 3 s, so
// a peer that vanished without closing its sockets is noticed.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 3 * time.Second
)

// Pool resolves store ids to addresses through a Resolver and keeps one gRPC
// connection per store, shared by the raft transport and by request
// forwarding. Addresses are cached until Invalidate, which callers use when a
// store cannot be reached: the next Conn looks the address up again (the
// store may have moved) and dials afresh. It is safe for concurrent use.
type Pool struct {
	resolver Resolver
	opts     PoolOptions
	log      *slog.Logger

	// mu protects conns and closed. It is never held while resolving or
	// dialing.
	mu     sync.Mutex
	conns  map[uint64]*storeConn
	closed bool
}

// storeConn is one store's cached address and connection.
type storeConn struct {
	addr string
	conn *grpc.ClientConn
}

// NewPool returns a pool that resolves addresses through r.
func NewPool(r Resolver, opts PoolOptions) *Pool {
	opts = opts.withDefaults()
	return &Pool{resolver: r, opts: opts, log: opts.Logger.With("component", "transport"), conns: make(map[uint64]*storeConn)}
}

func (p *Pool) dialOptions() []grpc.DialOption {
	bc := backoff.DefaultConfig
	bc.MaxDelay = p.opts.BackoffMax
	return append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: p.opts.ConnectTimeout}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		// Forwarded writes (kv/server) must not take an Unavailable after
		// the send for "not run".
		grpc.WithChainUnaryInterceptor(writeoutcome.UnaryClientInterceptor),
	}, append(grpcwindow.DialOptions(), p.opts.DialOptions...)...)
}

// maxRecvMsgSize matches what a store's server accepts (kv/server's
// MaxGRPCMessageSize): forwarded responses can be as large as requests.
const maxRecvMsgSize = 32 << 20

// Conn returns the connection to a store, resolving its address first if it
// is not cached. The connection is shared: callers must not close it.
func (p *Pool) Conn(ctx context.Context, storeID uint64) (*grpc.ClientConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if sc := p.conns[storeID]; sc != nil {
		p.mu.Unlock()
		return sc.conn, nil
	}
	p.mu.Unlock()

	addr, err := p.resolve(ctx, storeID)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, p.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("transport: store %d at %s: %w", storeID, addr, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		conn.Close()
		return nil, ErrClosed
	}
	if sc := p.conns[storeID]; sc != nil {
		// Another caller got there first; use its connection.
		conn.Close()
		return sc.conn, nil
	}
	p.conns[storeID] = &storeConn{addr: addr, conn: conn}
	p.log.Debug("store address resolved", "to_store", storeID, "addr", addr)
	return conn, nil
}

// resolve looks a store's address up.
func (p *Pool) resolve(ctx context.Context, storeID uint64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ResolveTimeout)
	defer cancel()
	st, err := p.resolver.GetStore(ctx, storeID)
	if err != nil {
		return "", fmt.Errorf("transport: resolve store %d: %w", storeID, err)
	}
	switch {
	case st.GetState() == metapb.StoreState_Tombstone:
		return "", fmt.Errorf("transport: store %d is a tombstone", storeID)
	case st.GetAddress() == "":
		return "", fmt.Errorf("transport: store %d has no address", storeID)
	}
	return st.Address, nil
}

// Invalidate forgets a store's address and closes its connection, if conn
// is still the one cached (nil: whatever is cached). Call it when the store
// could not be reached through conn.
func (p *Pool) Invalidate(storeID uint64, conn *grpc.ClientConn) {
	p.mu.Lock()
	sc := p.conns[storeID]
	if sc == nil || (conn != nil && sc.conn != conn) {
		p.mu.Unlock()
		return
	}
	delete(p.conns, storeID)
	p.mu.Unlock()
	sc.conn.Close()
}

// InvalidateIfBroken invalidates a store's connection if it is failing to
// connect (gRPC's TransientFailure), and keeps it otherwise: an Unavailable
// answer can come from a healthy connection (a store shutting down).
func (p *Pool) InvalidateIfBroken(storeID uint64) {
	p.mu.Lock()
	sc := p.conns[storeID]
	p.mu.Unlock()
	if sc != nil && sc.conn.GetState() == connectivity.TransientFailure {
		p.Invalidate(storeID, sc.conn)
	}
}

// Addr returns the cached address of a store, if any.
func (p *Pool) Addr(storeID uint64) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sc := p.conns[storeID]; sc != nil {
		return sc.addr, true
	}
	return "", false
}

// Close closes every connection; later calls to Conn fail with ErrClosed.
func (p *Pool) Close() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	for _, sc := range conns {
		sc.conn.Close()
	}
}
