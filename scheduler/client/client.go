// Package client is the Go client of the regionkv scheduler, for stores and
// tools: it finds the leader member through GetMembers, retries calls that
// reach a non-leader or an unavailable member, checks the cluster id, and,
// once the first region heartbeat is sent, keeps one region heartbeat stream
// open, reconnecting as needed.
//
// It depends only on the protos and gRPC, so the store binary can use it
// without linking the scheduler itself.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	_ "github.com/regionkv/regionkv/internal/grpccodec" // the gogo-aware "proto" codec
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// Error is a failure the scheduler reported in a response header.
type Error struct {
	Type    schedulerpb.ErrorType
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("scheduler: %s: %s", e.Type, e.Message) }

// IsErrorType reports whether err is a scheduler *Error of type t.
func IsErrorType(err error, t schedulerpb.ErrorType) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == t
}

// ErrClusterIDMismatch: the scheduler belongs to another cluster than the
// one the caller expects (a store pointed at the wrong scheduler).
var ErrClusterIDMismatch = errors.New("scheduler: cluster id mismatch")

// Options configures a Client.
type Options struct {
	// ClusterID, when not 0, is the cluster the caller belongs to; New
	// fails with ErrClusterIDMismatch if the scheduler's differs.
	ClusterID uint64
	// RetryInterval is the pause between attempts of a call that found no
	// leader (default 200ms). Calls retry until their context ends.
	RetryInterval time.Duration
	// HeartbeatQueue bounds the region heartbeats waiting to be sent; when
	// it is full the oldest are dropped (they are periodic). Default 1024.
	HeartbeatQueue int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Client talks to the scheduler leader. It is safe for concurrent use.
type Client struct {
	addrs  []string
	opts   Options
	logger *slog.Logger
	// clusterID is set by New and never changes.
	clusterID uint64

	mu struct {
		sync.Mutex
		leaderAddr string
		conn       *grpc.ClientConn
		cli        schedulerpb.SchedulerClient
		onResponse func(*schedulerpb.RegionHeartbeatResponse)
		// closed is set by Close; no goroutine starts after it.
		closed bool
	}

	// heartbeatOnce starts the heartbeat stream on the first RegionHeartbeat:
	// clients that only look regions up (kv/client, tools) never open one.
	heartbeatOnce sync.Once
	heartbeats    chan *schedulerpb.RegionHeartbeatRequest
	ctx           context.Context
	cancel        context.CancelFunc
	wg            sync.WaitGroup
}

// New connects to the scheduler through any of addrs (host:port of one or
// more members) and learns the cluster id and the leader.
func New(ctx context.Context, addrs []string, opts Options) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("scheduler client: no scheduler address")
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 200 * time.Millisecond
	}
	if opts.HeartbeatQueue <= 0 {
		opts.HeartbeatQueue = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{addrs: addrs, opts: opts, logger: opts.Logger, heartbeats: make(chan *schedulerpb.RegionHeartbeatRequest, opts.HeartbeatQueue)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for {
		err := c.discover(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, ErrClusterIDMismatch) {
			c.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("scheduler client: no scheduler leader reachable at %v: %w (last error: %v)", addrs, ctx.Err(), err)
		case <-time.After(opts.RetryInterval):
		}
	}
	return c, nil
}

// ClusterID returns the scheduler's cluster id.
func (c *Client) ClusterID() uint64 { return c.clusterID }

// Close stops the heartbeat stream and closes the connection.
func (c *Client) Close() {
	c.mu.Lock()
	c.mu.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.conn != nil {
		c.mu.conn.Close()
		c.mu.conn, c.mu.cli = nil, nil
	}
}

func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
	}
}

// discover asks the known members for the leader and connects to it.
func (c *Client) discover(ctx context.Context) error {
	var lastErr error
	for _, addr := range c.addrs {
		conn, err := grpc.NewClient(addr, dialOptions()...)
		if err != nil {
			lastErr = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := schedulerpb.NewSchedulerClient(conn).GetMembers(cctx, &schedulerpb.GetMembersRequest{})
		cancel()
		conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if e := resp.GetHeader().GetError(); e != nil {
			lastErr = &Error{Type: e.Type, Message: e.Message}
			continue
		}
		id := resp.Header.ClusterId
		if c.opts.ClusterID != 0 && id != c.opts.ClusterID {
			return fmt.Errorf("%w: the scheduler at %s serves cluster %d, this store belongs to cluster %d",
				ErrClusterIDMismatch, addr, id, c.opts.ClusterID)
		}
		if c.clusterID != 0 && id != c.clusterID {
			return fmt.Errorf("%w: the scheduler at %s serves cluster %d, not %d", ErrClusterIDMismatch, addr, id, c.clusterID)
		}
		if resp.Leader.GetAddress() == "" {
			lastErr = fmt.Errorf("scheduler at %s knows no leader", addr)
			continue
		}
		if c.clusterID == 0 {
			c.clusterID = id // only in New, before other goroutines start
		}
		return c.connect(resp.Leader.Address)
	}
	return lastErr
}

// connect points the client at the leader at addr.
func (c *Client) connect(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.leaderAddr == addr && c.mu.conn != nil {
		return nil
	}
	conn, err := grpc.NewClient(addr, dialOptions()...)
	if err != nil {
		return err
	}
	if c.mu.conn != nil {
		c.mu.conn.Close()
	}
	c.mu.leaderAddr, c.mu.conn, c.mu.cli = addr, conn, schedulerpb.NewSchedulerClient(conn)
	c.logger.Info("scheduler leader found", "addr", addr, "cluster_id", c.clusterID)
	return nil
}

// leader returns the client of the current leader, discovering it if needed.
func (c *Client) leader(ctx context.Context) (schedulerpb.SchedulerClient, error) {
	c.mu.Lock()
	cli := c.mu.cli
	c.mu.Unlock()
	if cli != nil {
		return cli, nil
	}
	if err := c.discover(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.cli, nil
}

// forgetLeader drops the leader connection; the next call rediscovers.
func (c *Client) forgetLeader(cli schedulerpb.SchedulerClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.cli == cli && c.mu.conn != nil {
		c.mu.conn.Close()
		c.mu.leaderAddr, c.mu.conn, c.mu.cli = "", nil, nil
	}
}

func (c *Client) header() *schedulerpb.RequestHeader {
	return &schedulerpb.RequestHeader{ClusterId: c.clusterID}
}

type headered interface {
	GetHeader() *schedulerpb.ResponseHeader
}

// call runs f against the leader, retrying (until ctx ends) when no leader
// answers: NOT_LEADER, or a gRPC Unavailable. Other header errors come back
// as *Error.
func call[R headered](ctx context.Context, c *Client, f func(context.Context, schedulerpb.SchedulerClient) (R, error)) (R, error) {
	var zero R
	for {
		cli, err := c.leader(ctx)
		if errors.Is(err, ErrClusterIDMismatch) {
			return zero, err
		}
		if err == nil {
			resp, rerr := f(ctx, cli)
			switch {
			case rerr == nil && resp.GetHeader().GetError() == nil:
				return resp, nil
			case rerr == nil:
				e := resp.GetHeader().GetError()
				if e.Type != schedulerpb.ErrorType_NOT_LEADER {
					return resp, &Error{Type: e.Type, Message: e.Message}
				}
				c.forgetLeader(cli)
				if addr := e.Leader.GetAddress(); addr != "" {
					_ = c.connect(addr)
				}
				err = &Error{Type: e.Type, Message: e.Message}
			case status.Code(rerr) == codes.Unavailable:
				c.forgetLeader(cli)
				err = rerr
			default:
				return zero, rerr
			}
		}
		select {
		case <-ctx.Done():
			return zero, fmt.Errorf("scheduler: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(c.opts.RetryInterval):
		}
	}
}

// AllocID returns a new cluster-unique id.
func (c *Client) AllocID(ctx context.Context) (uint64, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.AllocIDResponse, error) {
		return s.AllocID(ctx, &schedulerpb.AllocIDRequest{Header: c.header()})
	})
	return resp.GetId(), err
}

// IsBootstrapped reports whether the cluster is bootstrapped.
func (c *Client) IsBootstrapped(ctx context.Context) (bool, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.IsBootstrappedResponse, error) {
		return s.IsBootstrapped(ctx, &schedulerpb.IsBootstrappedRequest{Header: c.header()})
	})
	return resp.GetBootstrapped(), err
}

// Bootstrap bootstraps the cluster with store and its first region. An
// already bootstrapped cluster gives an *Error of type ALREADY_BOOTSTRAPPED.
func (c *Client) Bootstrap(ctx context.Context, store *metapb.Store, region *metapb.Region) error {
	_, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.BootstrapResponse, error) {
		return s.Bootstrap(ctx, &schedulerpb.BootstrapRequest{Header: c.header(), Store: store, Region: region})
	})
	return err
}

// PutStore registers the store or updates its address.
func (c *Client) PutStore(ctx context.Context, store *metapb.Store) error {
	_, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.PutStoreResponse, error) {
		return s.PutStore(ctx, &schedulerpb.PutStoreRequest{Header: c.header(), Store: store})
	})
	return err
}

// GetStore returns a store (a tombstone one with an error of type
// STORE_TOMBSTONE).
func (c *Client) GetStore(ctx context.Context, id uint64) (*metapb.Store, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.GetStoreResponse, error) {
		return s.GetStore(ctx, &schedulerpb.GetStoreRequest{Header: c.header(), StoreId: id})
	})
	return resp.GetStore(), err
}

// GetAllStores returns all stores, optionally without tombstones.
func (c *Client) GetAllStores(ctx context.Context, excludeTombstones bool) ([]*metapb.Store, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.GetAllStoresResponse, error) {
		return s.GetAllStores(ctx, &schedulerpb.GetAllStoresRequest{Header: c.header(), ExcludeTombstoneStores: excludeTombstones})
	})
	return resp.GetStores(), err
}

// StoreHeartbeat reports a store's stats.
func (c *Client) StoreHeartbeat(ctx context.Context, stats *schedulerpb.StoreStats) error {
	_, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.StoreHeartbeatResponse, error) {
		return s.StoreHeartbeat(ctx, &schedulerpb.StoreHeartbeatRequest{Header: c.header(), Stats: stats})
	})
	return err
}

// GetRegion returns the region containing key and its leader (nil if
// unknown). A key in no known region gives REGION_NOT_FOUND.
func (c *Client) GetRegion(ctx context.Context, key []byte) (*metapb.Region, *metapb.Peer, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.GetRegionResponse, error) {
		return s.GetRegion(ctx, &schedulerpb.GetRegionRequest{Header: c.header(), RegionKey: key})
	})
	return resp.GetRegion(), resp.GetLeader(), err
}

// GetRegionByID returns a region and its leader.
func (c *Client) GetRegionByID(ctx context.Context, id uint64) (*metapb.Region, *metapb.Peer, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.GetRegionResponse, error) {
		return s.GetRegionByID(ctx, &schedulerpb.GetRegionByIDRequest{Header: c.header(), RegionId: id})
	})
	return resp.GetRegion(), resp.GetLeader(), err
}

// ScanRegions returns up to limit regions overlapping [start, end).
func (c *Client) ScanRegions(ctx context.Context, start, end []byte, limit int) ([]*schedulerpb.RegionInfo, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.ScanRegionsResponse, error) {
		return s.ScanRegions(ctx, &schedulerpb.ScanRegionsRequest{Header: c.header(), StartKey: start, EndKey: end, Limit: int32(limit)})
	})
	return resp.GetRegions(), err
}

// AskBatchSplit allocates the ids for count splits of region.
func (c *Client) AskBatchSplit(ctx context.Context, region *metapb.Region, count int) ([]*schedulerpb.SplitID, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.AskBatchSplitResponse, error) {
		return s.AskBatchSplit(ctx, &schedulerpb.AskBatchSplitRequest{Header: c.header(), Region: region, SplitCount: uint32(count)})
	})
	return resp.GetIds(), err
}

// AskSplit allocates the ids for one split of region: the new region's id
// and one peer id per peer of region, in order.
func (c *Client) AskSplit(ctx context.Context, region *metapb.Region) (newRegionID uint64, newPeerIDs []uint64, err error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.AskSplitResponse, error) {
		return s.AskSplit(ctx, &schedulerpb.AskSplitRequest{Header: c.header(), Region: region})
	})
	return resp.GetNewRegionId(), resp.GetNewPeerIds(), err
}

// ReportSplit reports the two halves of a split.
func (c *Client) ReportSplit(ctx context.Context, left, right *metapb.Region) error {
	_, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.ReportSplitResponse, error) {
		return s.ReportSplit(ctx, &schedulerpb.ReportSplitRequest{Header: c.header(), Left: left, Right: right})
	})
	return err
}

// ReportBatchSplit reports the regions a split produced, in key order.
func (c *Client) ReportBatchSplit(ctx context.Context, regions []*metapb.Region) error {
	_, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.ReportBatchSplitResponse, error) {
		return s.ReportBatchSplit(ctx, &schedulerpb.ReportBatchSplitRequest{Header: c.header(), Regions: regions})
	})
	return err
}

// GetClusterConfig returns the cluster configuration.
func (c *Client) GetClusterConfig(ctx context.Context) (*schedulerpb.ClusterConfig, error) {
	resp, err := call(ctx, c, func(ctx context.Context, s schedulerpb.SchedulerClient) (*schedulerpb.GetClusterConfigResponse, error) {
		return s.GetClusterConfig(ctx, &schedulerpb.GetClusterConfigRequest{Header: c.header()})
	})
	return resp.GetConfig(), err
}

// SetRegionHeartbeatHandler sets the function called, on the stream's
// receiving goroutine, with every region heartbeat response: operator
// steps, and errors for rejected heartbeats (header error set, region_id
// set, no region_epoch). It must not block for long. A store passes its
// raftstore.Store.HandleRegionHeartbeatResponse.
func (c *Client) SetRegionHeartbeatHandler(f func(*schedulerpb.RegionHeartbeatResponse)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.onResponse = f
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("scheduler client: closed")

// RegionHeartbeat queues a region heartbeat for the stream and returns at
// once: responses come back through the handler set with
// SetRegionHeartbeatHandler. When the queue is full the oldest queued
// heartbeat is dropped (heartbeats are periodic). The request's header is
// filled in; the caller must not modify req afterwards.
func (c *Client) RegionHeartbeat(_ context.Context, req *schedulerpb.RegionHeartbeatRequest) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	req.Header = c.header()
	c.heartbeatOnce.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.mu.closed {
			c.wg.Add(1)
			go c.heartbeatLoop()
		}
	})
	for {
		select {
		case c.heartbeats <- req:
			return nil
		default:
		}
		select {
		case <-c.heartbeats: // drop the oldest
		default:
		}
	}
}

// heartbeatLoop keeps a RegionHeartbeat stream to the leader open and sends
// queued heartbeats on it, reopening it after any failure.
func (c *Client) heartbeatLoop() {
	defer c.wg.Done()
	for c.ctx.Err() == nil {
		err := c.runHeartbeatStream()
		if c.ctx.Err() != nil {
			return
		}
		c.logger.Warn("region heartbeat stream broken, reconnecting", "err", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.opts.RetryInterval):
		}
	}
}

func (c *Client) runHeartbeatStream() error {
	cli, err := c.leader(c.ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stream, err := cli.RegionHeartbeat(ctx)
	if err != nil {
		c.forgetLeader(cli)
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if e := resp.GetHeader().GetError(); e != nil && e.Type == schedulerpb.ErrorType_NOT_LEADER {
				recvErr <- &Error{Type: e.Type, Message: e.Message}
				return
			}
			c.mu.Lock()
			f := c.mu.onResponse
			c.mu.Unlock()
			if f != nil {
				f(resp)
			}
		}
	}()
	for {
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case err := <-recvErr:
			c.forgetLeader(cli)
			return err
		case req := <-c.heartbeats:
			if err := stream.Send(req); err != nil {
				c.forgetLeader(cli)
				return err
			}
		}
	}
}
