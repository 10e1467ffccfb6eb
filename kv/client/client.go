package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	_ "github.com/regionkv/regionkv/internal/grpccodec" // the gogo-aware "proto" codec
	"github.com/regionkv/regionkv/internal/routekey"
	"github.com/regionkv/regionkv/proto/metapb"
	schedclient "github.com/regionkv/regionkv/scheduler/client"
)

// Scheduler is what the client needs from the scheduler. The scheduler's Go
// client (scheduler/client) implements it; tests may pass their own.
type Scheduler interface {
	// GetRegion returns the region that contains key and its leader (nil
	// when unknown).
	GetRegion(ctx context.Context, key []byte) (*metapb.Region, *metapb.Peer, error)
	// GetStore returns a store, with the address to dial.
	GetStore(ctx context.Context, id uint64) (*metapb.Store, error)
}

var _ Scheduler = (*schedclient.Client)(nil)

// Options configures a Client. Zero fields take the defaults noted.
type Options struct {
	// Timeout bounds a call whose context has no deadline, and New's
	// search for the scheduler (default 30s). A context with a deadline is
	// obeyed as is.
	Timeout time.Duration
	// AttemptTimeout bounds one RPC to one store (default 10s). A read that
	// outlives it is retried; a write reports ErrUnknownOutcome (see
	// RetryUnknownOutcome).
	AttemptTimeout time.Duration
	// ConnsPerStore is the number of gRPC connections kept to each store and
	// used in turn (default 2).
	ConnsPerStore int
	// UnaryCalls sends every Get, Put and Delete as a gRPC call of its own.
	// By default they go on one BatchCommands stream per connection, where
	// the requests of concurrent callers share messages (batch.go).
	UnaryCalls bool
	// BackoffBase and BackoffMax shape the jittered exponential backoff
	// between retries (defaults 5ms and 500ms).
	BackoffBase, BackoffMax time.Duration
	// RetryUnknownOutcome retries writes whose outcome is unknown instead of
	// returning ErrUnknownOutcome. Raw writes are idempotent; see the package
	// documentation for what a retry may still do.
	RetryUnknownOutcome bool
	// BatchConcurrency bounds the requests one batch call runs at once
	// (default 16).
	BatchConcurrency int
	// ScanPageSize is the most pairs one scan request asks a store for
	// (default 1024, at most 100,000).
	ScanPageSize int
	// DialOptions are added to the options of every store connection.
	DialOptions []grpc.DialOption
	// Logger receives debug logs of retries (default: discarded).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	if o.ConnsPerStore <= 0 {
		o.ConnsPerStore = 2
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 5 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 500 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = o.BackoffBase
	}
	if o.BatchConcurrency <= 0 {
		o.BatchConcurrency = 16
	}
	if o.ScanPageSize <= 0 {
		o.ScanPageSize = 1024
	}
	o.ScanPageSize = min(o.ScanPageSize, maxScanLimit)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Client is a regionkv raw KV client. It is safe for concurrent use; one
// Client per process is the intended use.
type Client struct {
	opts   Options
	sched  Scheduler
	owned  *schedclient.Client // closed by Close; nil if the caller passed sched
	cache  *regionCache
	stores *storePool
	closed atomic.Bool
}

// New connects to the cluster through its scheduler, at any of
// schedulerAddrs (host:port of one or more scheduler members). It fails
// with an error matching ErrSchedulerUnreachable when no scheduler leader
// answers before ctx ends (or, without a deadline, within Options.Timeout).
// Stores are connected to lazily, on first use.
func New(ctx context.Context, schedulerAddrs []string, opts Options) (*Client, error) {
	opts.setDefaults()
	if len(schedulerAddrs) == 0 {
		return nil, errors.New("regionkv: no scheduler address")
	}
	ctx, cancel := withDefaultTimeout(ctx, opts.Timeout)
	defer cancel()
	sc, err := schedclient.New(ctx, schedulerAddrs, schedclient.Options{RetryInterval: 100 * time.Millisecond, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrSchedulerUnreachable, strings.Join(schedulerAddrs, ","), err)
	}
	c := NewWithScheduler(sc, opts)
	c.owned = sc
	return c, nil
}

// NewWithScheduler returns a client that finds regions and stores through
// sched, which the caller keeps and closes.
func NewWithScheduler(sched Scheduler, opts Options) *Client {
	opts.setDefaults()
	return &Client{
		opts:   opts,
		sched:  sched,
		cache:  newRegionCache(),
		stores: newStorePool(sched, opts.ConnsPerStore, opts.UnaryCalls, dialOptions(opts.DialOptions)),
	}
}

// Close closes every connection. Calls in flight fail; later ones return
// ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.stores.close()
	if c.owned != nil {
		c.owned.Close()
	}
	return nil
}

// withDefaultTimeout gives ctx a deadline d away if it has none. A ctx
// with a deadline is returned as is, with a no-op cancel: a context costs a
// timer or a registration with its parent, on every request.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// locate returns where to send a request for key: from the cache, else from
// the scheduler.
func (c *Client) locate(ctx context.Context, key []byte) (location, error) {
	if loc, ok := c.cache.locate(key); ok {
		return loc, nil
	}
	return c.load(ctx, key, func() (location, bool) { return c.cache.locate(key) })
}

// locateBelow returns where to send a reverse scan whose exclusive upper
// bound is upper (empty: none): the region that holds the keys just below.
func (c *Client) locateBelow(ctx context.Context, upper []byte) (location, error) {
	if loc, ok := c.cache.locateBelow(upper); ok {
		return loc, nil
	}
	return c.load(ctx, routekey.Before(upper), func() (location, bool) { return c.cache.locateBelow(upper) })
}

// load asks the scheduler for the region holding key, caches it, and
// returns what lookup then finds.
func (c *Client) load(ctx context.Context, key []byte, lookup func() (location, bool)) (location, error) {
	region, leader, err := c.sched.GetRegion(ctx, key)
	if err != nil {
		return location{}, fmt.Errorf("look up the region of key %q: %w", key, err)
	}
	if region == nil {
		return location{}, fmt.Errorf("look up the region of key %q: the scheduler knows none", key)
	}
	c.cache.insert(region, leader)
	if loc, ok := lookup(); ok {
		return loc, nil
	}
	// The scheduler's view is older than the cache's (which kept a newer
	// region), or it answered with a region that does not hold the key
	// (a split half-reported). Use what it said for this attempt; a region
	// error will correct it.
	loc := (&cachedRegion{region: region, leader: leader}).locationLocked()
	return loc, nil
}
