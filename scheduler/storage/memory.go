package storage

import (
	"context"
	"slices"
	"sync"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// Memory is a Storage that keeps everything in memory. Values are copied in
// and out, so callers may not alias them.
type Memory struct {
	mu           sync.Mutex
	bootstrapped bool
	config       *schedulerpb.ClusterConfig
	stores       map[uint64]*metapb.Store
	regions      map[uint64]*metapb.Region
	allocID      uint64
}

var _ Storage = (*Memory)(nil)

// NewMemory returns an empty Memory storage.
func NewMemory() *Memory {
	return &Memory{stores: make(map[uint64]*metapb.Store), regions: make(map[uint64]*metapb.Region)}
}

// Bootstrapped implements Storage.
func (m *Memory) Bootstrapped(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bootstrapped, nil
}

// Bootstrap implements Storage.
func (m *Memory) Bootstrap(_ context.Context, store *metapb.Store, region *metapb.Region, cfg *schedulerpb.ClusterConfig) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bootstrapped {
		return ErrAlreadyBootstrapped
	}
	m.bootstrapped = true
	m.stores[store.Id] = clone(store)
	m.regions[region.Id] = clone(region)
	m.config = clone(cfg)
	return nil
}

// LoadConfig implements Storage.
func (m *Memory) LoadConfig(context.Context) (*schedulerpb.ClusterConfig, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.config == nil {
		return nil, nil
	}
	return clone(m.config), nil
}

// SaveConfig implements Storage.
func (m *Memory) SaveConfig(_ context.Context, cfg *schedulerpb.ClusterConfig) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.config = clone(cfg)
	return nil
}

// SaveStore implements Storage.
func (m *Memory) SaveStore(_ context.Context, store *metapb.Store) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stores[store.Id] = clone(store)
	return nil
}

// LoadStores implements Storage.
func (m *Memory) LoadStores(_ context.Context, fn func(*metapb.Store)) error {
	m.mu.Lock()
	ids := sortedKeys(m.stores)
	stores := make([]*metapb.Store, len(ids))
	for i, id := range ids {
		stores[i] = clone(m.stores[id])
	}
	m.mu.Unlock()
	for _, s := range stores {
		fn(s)
	}
	return nil
}

// SaveRegions implements Storage.
func (m *Memory) SaveRegions(_ context.Context, put []*metapb.Region, del []uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range del {
		delete(m.regions, id)
	}
	for _, r := range put {
		m.regions[r.Id] = clone(r)
	}
	return nil
}

// LoadRegions implements Storage.
func (m *Memory) LoadRegions(_ context.Context, fn func(*metapb.Region)) error {
	m.mu.Lock()
	ids := sortedKeys(m.regions)
	regions := make([]*metapb.Region, len(ids))
	for i, id := range ids {
		regions[i] = clone(m.regions[id])
	}
	m.mu.Unlock()
	for _, r := range regions {
		fn(r)
	}
	return nil
}

// LoadAllocID implements Storage.
func (m *Memory) LoadAllocID(context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.allocID, nil
}

// CASAllocID implements Storage.
func (m *Memory) CASAllocID(_ context.Context, old, new uint64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.allocID != old {
		return false, nil
	}
	m.allocID = new
	return true, nil
}

// message is what gogo generates for every message.
type message[T any] interface {
	*T
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// clone deep-copies a gogo message through its wire form.
func clone[T any, P message[T]](m P) P {
	b, err := m.Marshal()
	if err != nil {
		panic("storage: marshal " + err.Error()) // generated code fails only on a broken invariant
	}
	out := P(new(T))
	if err := out.Unmarshal(b); err != nil {
		panic("storage: unmarshal " + err.Error())
	}
	return out
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
