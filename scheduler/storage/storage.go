// Package storage persists the scheduler's metadata: the bootstrap marker,
// the cluster configuration, stores, regions and the id allocator's high
// water mark.
//
// Storage is the contract; Etcd keeps the metadata in etcd (the scheduler's
// embedded etcd, or any etcd cluster), and Memory keeps it in memory for
// tests and for in-process schedulers. Both have the same semantics: every
// write is atomic, and a write through a guarded Etcd fails with
// ErrNotLeader once the guard (the writer's leadership) no longer holds, so a
// deposed scheduler leader can never overwrite what its successor wrote.
package storage

import (
	"context"
	"errors"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// Errors returned by Storage implementations.
var (
	// ErrAlreadyBootstrapped is returned by Bootstrap when the cluster has
	// been bootstrapped before.
	ErrAlreadyBootstrapped = errors.New("storage: cluster already bootstrapped")
	// ErrNotLeader is returned by a write whose leadership guard failed: the
	// writer is no longer the scheduler leader and nothing was written.
	ErrNotLeader = errors.New("storage: not the leader any more, write refused")
	// ErrCorrupt wraps a stored value that cannot be decoded.
	ErrCorrupt = errors.New("storage: corrupt metadata")
)

// Storage persists one cluster's metadata. Implementations are safe for
// concurrent use, but callers serialize writes that must apply in order
// (the cluster does all its writes under its lock).
type Storage interface {
	// Bootstrapped reports whether Bootstrap has succeeded.
	Bootstrapped(ctx context.Context) (bool, error)
	// Bootstrap atomically marks the cluster bootstrapped and saves its
	// first store, first region and configuration, or returns
	// ErrAlreadyBootstrapped and writes nothing.
	Bootstrap(ctx context.Context, store *metapb.Store, region *metapb.Region, cfg *schedulerpb.ClusterConfig) error

	// LoadConfig returns the saved configuration, or nil if there is none.
	LoadConfig(ctx context.Context) (*schedulerpb.ClusterConfig, error)
	SaveConfig(ctx context.Context, cfg *schedulerpb.ClusterConfig) error

	SaveStore(ctx context.Context, store *metapb.Store) error
	// LoadStores calls fn for every saved store, in id order.
	LoadStores(ctx context.Context, fn func(*metapb.Store)) error

	// SaveRegions atomically saves put and deletes the regions with the ids
	// in del (a region update that covers older regions).
	SaveRegions(ctx context.Context, put []*metapb.Region, del []uint64) error
	// LoadRegions calls fn for every saved region, in id order.
	LoadRegions(ctx context.Context, fn func(*metapb.Region)) error

	// LoadAllocID returns the id allocator's high water mark: no id above it
	// has been handed out. It is 0 in a new cluster.
	LoadAllocID(ctx context.Context) (uint64, error)
	// CASAllocID sets the high water mark to new if it is still old, and
	// reports whether it did.
	CASAllocID(ctx context.Context, old, new uint64) (bool, error)
}
