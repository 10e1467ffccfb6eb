package node

import (
	"context"
	"time"

	"github.com/regionkv/regionkv/kv/server"
	"github.com/regionkv/regionkv/kv/transport"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/scheduler/client"
)

// locateTimeout bounds asking the scheduler where a key lives.
const locateTimeout = 3 * time.Second

// forwarder is the server.Forwarder of a store: connections from the
// transport's pool, key locations from the scheduler.
type forwarder struct {
	pool  *transport.Pool
	sched *client.Client
}

var _ server.Forwarder = forwarder{}

func (f forwarder) KvClient(ctx context.Context, storeID uint64) (kvpb.KvClient, error) {
	conn, err := f.pool.Conn(ctx, storeID)
	if err != nil {
		return nil, err
	}
	return kvpb.NewKvClient(conn), nil
}

func (f forwarder) Unreachable(storeID uint64) { f.pool.InvalidateIfBroken(storeID) }

func (f forwarder) LocateKey(ctx context.Context, key []byte) (*metapb.Region, *metapb.Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, locateTimeout)
	defer cancel()
	return f.sched.GetRegion(ctx, key)
}
