// Package cluster is the scheduler's view of the cluster: its stores, its
// regions (a range tree keyed by start key), leaders, pending peers and
// per-store counts, kept from store and region heartbeats and persisted
// through a storage.Storage.
//
// A Cluster is owned by the scheduler leader: it is loaded from storage when
// a member starts leading and dropped when it stops. Every change of
// persisted metadata (bootstrap, stores, region shapes, configuration) is
// written to storage before it becomes visible in memory, so memory is never
// ahead of what a successor would load. Leaders, sizes and store stats are
// not persisted; the next heartbeats restore them.
package cluster

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
	"github.com/regionkv/regionkv/scheduler/idalloc"
	"github.com/regionkv/regionkv/scheduler/storage"
)

// Defaults of the cluster configuration.
const (
	DefaultMaxReplicas      = 3
	DefaultMaxStoreDownTime = 30 * time.Minute
	// maxSplitCount bounds one AskBatchSplit.
	maxSplitCount = 1024
)

// DefaultConfig returns the configuration of a new cluster.
func DefaultConfig() *schedulerpb.ClusterConfig {
	return &schedulerpb.ClusterConfig{
		MaxReplicas:        DefaultMaxReplicas,
		MaxStoreDownTimeMs: uint64(DefaultMaxStoreDownTime / time.Millisecond),
	}
}

// Options configures a Cluster.
type Options struct {
	// ClusterID is the cluster's id (for logs).
	ClusterID uint64
	// Storage persists the metadata. Required.
	Storage storage.Storage
	// IDs allocates ids; by default an idalloc.Allocator over Storage.
	IDs *idalloc.Allocator
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Cluster is the in-memory cluster state. It is safe for concurrent use.
type Cluster struct {
	id      uint64
	storage storage.Storage
	ids     *idalloc.Allocator
	logger  *slog.Logger
	now     func() time.Time

	// mu protects the state below. Writers hold it across the storage write
	// that precedes a change, so changes are persisted in the order they are
	// made visible.
	mu struct {
		sync.RWMutex
		bootstrapped bool
		config       *schedulerpb.ClusterConfig // replaced, never modified
		stores       map[uint64]*StoreInfo
		regions      *RegionsInfo
		// loadedAt is when the state was loaded: stores that have not sent a
		// heartbeat since count as down from then.
		loadedAt time.Time
	}
}

// New returns an empty Cluster; call Load before using it.
func New(opts Options) *Cluster {
	c := &Cluster{id: opts.ClusterID, storage: opts.Storage, ids: opts.IDs, logger: opts.Logger, now: opts.Now}
	if c.ids == nil {
		c.ids = idalloc.New(opts.Storage, 0)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.mu.config = DefaultConfig()
	c.mu.stores = make(map[uint64]*StoreInfo)
	c.mu.regions = NewRegionsInfo()
	c.mu.loadedAt = c.now()
	return c
}

// Load reads the persisted state. Regions that overlap (which a crash
// between two writes cannot produce, but an operator's hand might) are
// resolved in favour of the newer epoch.
func (c *Cluster) Load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok, err := c.storage.Bootstrapped(ctx)
	if err != nil {
		return err
	}
	cfg, err := c.storage.LoadConfig(ctx)
	if err != nil {
		return err
	}
	if cfg == nil {
		cfg = DefaultConfig()
	}
	stores := make(map[uint64]*StoreInfo)
	if err := c.storage.LoadStores(ctx, func(s *metapb.Store) { stores[s.Id] = &StoreInfo{meta: s} }); err != nil {
		return err
	}
	regions := NewRegionsInfo()
	var dropped int
	err = c.storage.LoadRegions(ctx, func(m *metapb.Region) {
		r := NewRegionInfo(m, nil)
		if len(m.Peers) == 1 {
			r.leader = m.Peers[0] // a single voter can only be its own leader
		}
		for _, o := range regions.Overlaps(r) {
			if staleAgainst(m.RegionEpoch, o.Epoch()) {
				dropped++
				return
			}
		}
		dropped += len(regions.Set(r))
	})
	if err != nil {
		return err
	}
	c.mu.bootstrapped, c.mu.config, c.mu.stores, c.mu.regions = ok, cfg, stores, regions
	c.mu.loadedAt = c.now()
	c.logger.Info("cluster state loaded", "cluster_id", c.id, "bootstrapped", ok,
		"stores", len(stores), "regions", regions.Len(), "dropped_overlapping_regions", dropped)
	return nil
}

// ID returns the cluster id.
func (c *Cluster) ID() uint64 { return c.id }

// AllocID returns a new unique id.
func (c *Cluster) AllocID(ctx context.Context) (uint64, error) { return c.ids.Alloc(ctx) }

// IsBootstrapped reports whether the cluster has been bootstrapped.
func (c *Cluster) IsBootstrapped() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.bootstrapped
}

// Bootstrap creates the cluster with its first store and its first region,
// which must cover all keys and have one voter, on that store.
func (c *Cluster) Bootstrap(ctx context.Context, store *metapb.Store, region *metapb.Region) error {
	if err := checkStore(store); err != nil {
		return err
	}
	if err := checkRegionMeta(region); err != nil {
		return err
	}
	if len(region.StartKey) != 0 || len(region.EndKey) != 0 {
		return invalidf("bootstrap region %d must cover all keys", region.Id)
	}
	if len(region.Peers) != 1 || region.Peers[0].StoreId != store.Id || region.Peers[0].Role != metapb.PeerRole_Voter {
		return invalidf("bootstrap region %d must have exactly one voter, on store %d", region.Id, store.Id)
	}
	store = cloneStore(store)
	store.State = metapb.StoreState_Up
	cfg := DefaultConfig()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.bootstrapped {
		return ErrAlreadyBootstrapped
	}
	if err := c.storage.Bootstrap(ctx, store, region, cfg); err != nil {
		if err == storage.ErrAlreadyBootstrapped {
			return ErrAlreadyBootstrapped
		}
		return err
	}
	c.mu.bootstrapped = true
	c.mu.config = cfg
	c.mu.stores[store.Id] = &StoreInfo{meta: store}
	c.mu.regions.Set(NewRegionInfo(region, region.Peers[0]))
	c.logger.Info("cluster bootstrapped", "cluster_id", c.id, "store_id", store.Id,
		"store_address", store.Address, "region_id", region.Id)
	return nil
}

// PutStore registers a store or updates its address. The store's state is
// kept for a known store (new stores are Up); a tombstone store cannot come
// back, and two live stores cannot share an address.
func (c *Cluster) PutStore(ctx context.Context, store *metapb.Store) error {
	if err := checkStore(store); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.bootstrapped {
		return ErrNotBootstrapped
	}
	old := c.mu.stores[store.Id]
	if old != nil && old.IsTombstone() {
		return fmt.Errorf("%w: store %d", ErrStoreTombstone, store.Id)
	}
	for _, s := range c.mu.stores {
		if s.ID() != store.Id && !s.IsTombstone() && s.Address() == store.Address {
			return invalidf("address %s is already used by store %d", store.Address, s.ID())
		}
	}
	meta := cloneStore(store)
	meta.State = metapb.StoreState_Up
	if old != nil {
		meta.State = old.State()
		if old.Address() == meta.Address {
			return nil
		}
	}
	if err := c.storage.SaveStore(ctx, meta); err != nil {
		return err
	}
	si := &StoreInfo{meta: meta}
	if old != nil {
		si.stats, si.lastHeartbeat = old.stats, old.lastHeartbeat
	}
	c.mu.stores[meta.Id] = si
	c.logger.Info("store put", "store_id", meta.Id, "address", meta.Address, "new", old == nil)
	return nil
}

// SetStoreState moves a store to state: Up and Offline may alternate,
// Tombstone is final and needs a store that holds no peer any more.
func (c *Cluster) SetStoreState(ctx context.Context, id uint64, state metapb.StoreState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.mu.stores[id]
	switch {
	case old == nil:
		return fmt.Errorf("%w: %d", ErrStoreNotFound, id)
	case old.IsTombstone():
		return fmt.Errorf("%w: store %d", ErrStoreTombstone, id)
	case old.State() == state:
		return nil
	case state == metapb.StoreState_Tombstone && c.mu.regions.StoreRegionCount(id) > 0:
		return invalidf("store %d still holds %d region peers", id, c.mu.regions.StoreRegionCount(id))
	}
	meta := cloneStore(old.meta)
	meta.State = state
	if err := c.storage.SaveStore(ctx, meta); err != nil {
		return err
	}
	c.mu.stores[id] = &StoreInfo{meta: meta, stats: old.stats, lastHeartbeat: old.lastHeartbeat}
	c.logger.Info("store state changed", "store_id", id, "from", old.State(), "to", state)
	return nil
}

// GetStore returns the store with id. A tombstone store is returned along
// with ErrStoreTombstone.
func (c *Cluster) GetStore(id uint64) (*StoreInfo, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.mu.stores[id]
	switch {
	case s == nil:
		return nil, fmt.Errorf("%w: %d", ErrStoreNotFound, id)
	case s.IsTombstone():
		return s, fmt.Errorf("%w: store %d", ErrStoreTombstone, id)
	}
	return s, nil
}

// GetStores returns all stores in id order.
func (c *Cluster) GetStores() []*StoreInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	res := make([]*StoreInfo, 0, len(c.mu.stores))
	for _, s := range c.mu.stores {
		res = append(res, s)
	}
	slices.SortFunc(res, func(a, b *StoreInfo) int { return cmp.Compare(a.ID(), b.ID()) })
	return res
}

// HandleStoreHeartbeat records a store's stats.
func (c *Cluster) HandleStoreHeartbeat(stats *schedulerpb.StoreStats) error {
	if stats == nil || stats.StoreId == 0 {
		return invalidf("store heartbeat without store id")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.bootstrapped {
		return ErrNotBootstrapped
	}
	old := c.mu.stores[stats.StoreId]
	switch {
	case old == nil:
		return fmt.Errorf("%w: %d", ErrStoreNotFound, stats.StoreId)
	case old.IsTombstone():
		return fmt.Errorf("%w: store %d", ErrStoreTombstone, stats.StoreId)
	}
	c.mu.stores[stats.StoreId] = &StoreInfo{meta: old.meta, stats: stats, lastHeartbeat: c.now()}
	return nil
}

// HandleRegionHeartbeat applies a region heartbeat. It is rejected with a
// *StaleRegionError when its epoch (version or conf_ver) is older than the
// known region's or any overlapping region's, or, at the known epoch, its
// term is older than the known term (a deposed leader). Otherwise the
// region replaces the known one and every region it overlaps.
//
// Comparing conf_ver across different overlapping regions is sound because
// regions only split: a region created by a split inherits its parent's
// conf_ver. (Merges would need a different rule.)
func (c *Cluster) HandleRegionHeartbeat(ctx context.Context, r *RegionInfo) error {
	if err := checkRegionMeta(r.meta); err != nil {
		return err
	}
	l := r.leader
	if l == nil {
		return invalidf("heartbeat of region %d names no leader", r.ID())
	}
	if p := r.Peer(l.Id); p == nil || p.StoreId != l.StoreId {
		return invalidf("heartbeat of region %d: leader %d on store %d is not a peer of the region", r.ID(), l.Id, l.StoreId)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.bootstrapped {
		return ErrNotBootstrapped
	}
	switch s := c.mu.stores[l.StoreId]; {
	case s == nil:
		return fmt.Errorf("%w: heartbeat of region %d from unknown store %d", ErrStoreNotFound, r.ID(), l.StoreId)
	case s.IsTombstone():
		return fmt.Errorf("%w: heartbeat of region %d from store %d", ErrStoreTombstone, r.ID(), l.StoreId)
	}
	return c.putRegionLocked(ctx, r)
}

// putRegionLocked checks r against the known regions and applies it,
// persisting it first if its shape changed or it covers other regions.
func (c *Cluster) putRegionLocked(ctx context.Context, r *RegionInfo) error {
	old := c.mu.regions.Get(r.ID())
	if old != nil {
		if staleAgainst(r.Epoch(), old.Epoch()) {
			return &StaleRegionError{Region: r.meta, Newer: old.meta}
		}
		if r.term != 0 && r.term < old.term && !staleAgainst(old.Epoch(), r.Epoch()) {
			return &StaleRegionError{Region: r.meta, Newer: old.meta, Term: r.term, KnownTerm: old.term}
		}
	}
	overlaps := c.mu.regions.Overlaps(r)
	var del []uint64
	for _, o := range overlaps {
		if o.ID() == r.ID() {
			continue
		}
		if staleAgainst(r.Epoch(), o.Epoch()) {
			return &StaleRegionError{Region: r.meta, Newer: o.meta}
		}
		del = append(del, o.ID())
	}
	r = r.withLeaderFrom(old)
	if old == nil || len(del) > 0 || !sameMeta(old.meta, r.meta) {
		if err := c.storage.SaveRegions(ctx, []*metapb.Region{r.meta}, del); err != nil {
			return err
		}
		c.logger.Debug("region changed", "region_id", r.ID(), "epoch", epochString(r.Epoch()),
			"start_key", fmt.Sprintf("%x", r.StartKey()), "end_key", fmt.Sprintf("%x", r.EndKey()),
			"peers", len(r.Peers()), "replaced_regions", del)
	}
	c.mu.regions.Set(r)
	return nil
}

// ReportSplit records the regions a split produced (in key order, each
// ending where the next starts), before their own heartbeats arrive. A
// region that is already known at a newer epoch is left alone; the first
// such conflict is returned after the others are applied.
func (c *Cluster) ReportSplit(ctx context.Context, regions []*metapb.Region) error {
	if len(regions) < 2 {
		return invalidf("a split report needs at least two regions, got %d", len(regions))
	}
	for i, m := range regions {
		if err := checkRegionMeta(m); err != nil {
			return err
		}
		if i > 0 && (len(regions[i-1].EndKey) == 0 || !bytes.Equal(regions[i-1].EndKey, m.StartKey)) {
			return invalidf("split report: region %d ends at %x but region %d starts at %x",
				regions[i-1].Id, regions[i-1].EndKey, m.Id, m.StartKey)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.bootstrapped {
		return ErrNotBootstrapped
	}
	var firstErr error
	for _, m := range regions {
		if err := c.putRegionLocked(ctx, NewRegionInfo(m, nil)); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// AskSplit allocates the ids for count splits of region: per split, a new
// region id and one peer id per peer of region (in the order of its peers).
func (c *Cluster) AskSplit(ctx context.Context, region *metapb.Region, count int) ([]*schedulerpb.SplitID, error) {
	if err := checkRegionMeta(region); err != nil {
		return nil, err
	}
	if count < 1 || count > maxSplitCount {
		return nil, invalidf("split count %d is not in [1, %d]", count, maxSplitCount)
	}
	c.mu.RLock()
	bootstrapped, known := c.mu.bootstrapped, c.mu.regions.Get(region.Id)
	c.mu.RUnlock()
	switch {
	case !bootstrapped:
		return nil, ErrNotBootstrapped
	case known == nil:
		return nil, fmt.Errorf("%w: %d", ErrRegionNotFound, region.Id)
	case staleAgainst(region.RegionEpoch, known.Epoch()):
		return nil, &StaleRegionError{Region: region, Newer: known.meta}
	}
	per := 1 + len(region.Peers)
	ids, err := c.ids.AllocN(ctx, count*per)
	if err != nil {
		return nil, err
	}
	res := make([]*schedulerpb.SplitID, count)
	for i := range res {
		chunk := ids[i*per : (i+1)*per]
		res[i] = &schedulerpb.SplitID{NewRegionId: chunk[0], NewPeerIds: chunk[1:]}
	}
	c.logger.Debug("split ids allocated", "region_id", region.Id, "splits", count)
	return res, nil
}

// GetRegion returns the region with id, or nil.
func (c *Cluster) GetRegion(id uint64) *RegionInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.regions.Get(id)
}

// GetRegionByKey returns the region containing key, or nil.
func (c *Cluster) GetRegionByKey(key []byte) *RegionInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.regions.GetByKey(key)
}

// GetPrevRegionByKey returns the region before the one containing key, or nil.
func (c *Cluster) GetPrevRegionByKey(key []byte) *RegionInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.regions.GetPrevByKey(key)
}

// ScanRegions returns up to limit (<= 0: all) regions overlapping
// [start, end), in key order; an empty end means +infinity.
func (c *Cluster) ScanRegions(start, end []byte, limit int) []*RegionInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.regions.Scan(start, end, limit)
}

// StoreRegions returns the regions with a peer on store, in no order.
func (c *Cluster) StoreRegions(store uint64) []*RegionInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.regions.StoreRegions(store)
}

// StoreLeaderRegions returns the regions store leads, in no order.
func (c *Cluster) StoreLeaderRegions(store uint64) []*RegionInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.regions.StoreLeaderRegions(store)
}

// RegionCount returns the number of known regions.
func (c *Cluster) RegionCount() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.regions.Len()
}

// Config returns the cluster configuration. Callers must not modify it.
func (c *Cluster) Config() *schedulerpb.ClusterConfig {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.config
}

// PutConfig replaces the cluster configuration.
func (c *Cluster) PutConfig(ctx context.Context, cfg *schedulerpb.ClusterConfig) error {
	if cfg == nil || cfg.MaxReplicas < 1 || cfg.MaxReplicas > 9 {
		return invalidf("max_replicas must be in [1, 9]")
	}
	if cfg.MaxStoreDownTimeMs == 0 {
		return invalidf("max_store_down_time_ms must be positive")
	}
	cfg = &schedulerpb.ClusterConfig{MaxReplicas: cfg.MaxReplicas, MaxStoreDownTimeMs: cfg.MaxStoreDownTimeMs}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.bootstrapped {
		return ErrNotBootstrapped
	}
	if err := c.storage.SaveConfig(ctx, cfg); err != nil {
		return err
	}
	c.mu.config = cfg
	c.logger.Info("cluster config changed", "max_replicas", cfg.MaxReplicas, "max_store_down_time_ms", cfg.MaxStoreDownTimeMs)
	return nil
}

// StoreStatus is a store with the scheduler's per-store region statistics.
type StoreStatus struct {
	Store            *StoreInfo
	RegionCount      int
	LeaderCount      int
	PendingPeerCount int
	RegionSize       uint64
	LeaderSize       uint64
	// Down: no heartbeat for longer than max_store_down_time.
	Down bool
	// DownTime is how long the store has been silent.
	DownTime time.Duration
}

// StoreStatuses returns the status of every store, in id order.
func (c *Cluster) StoreStatuses() []StoreStatus {
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	maxDown := time.Duration(c.mu.config.MaxStoreDownTimeMs) * time.Millisecond
	res := make([]StoreStatus, 0, len(c.mu.stores))
	for _, s := range c.mu.stores {
		id := s.ID()
		down := s.DownTime(now, c.mu.loadedAt)
		res = append(res, StoreStatus{
			Store:            s,
			RegionCount:      c.mu.regions.StoreRegionCount(id),
			LeaderCount:      c.mu.regions.StoreLeaderCount(id),
			PendingPeerCount: c.mu.regions.StorePendingPeerCount(id),
			RegionSize:       c.mu.regions.StoreRegionSize(id),
			LeaderSize:       c.mu.regions.StoreLeaderSize(id),
			Down:             !s.IsTombstone() && down > maxDown,
			DownTime:         down,
		})
	}
	slices.SortFunc(res, func(a, b StoreStatus) int { return cmp.Compare(a.Store.ID(), b.Store.ID()) })
	return res
}

func checkStore(s *metapb.Store) error {
	switch {
	case s == nil:
		return invalidf("missing store")
	case s.Id == 0:
		return invalidf("store id is 0")
	case s.Address == "":
		return invalidf("store %d has no address", s.Id)
	}
	return nil
}

// checkRegionMeta rejects malformed region metadata.
func checkRegionMeta(r *metapb.Region) error {
	switch {
	case r == nil:
		return invalidf("missing region")
	case r.Id == 0:
		return invalidf("region id is 0")
	case r.RegionEpoch == nil:
		return invalidf("region %d has no epoch", r.Id)
	case len(r.Peers) == 0:
		return invalidf("region %d has no peers", r.Id)
	case len(r.EndKey) > 0 && bytes.Compare(r.StartKey, r.EndKey) >= 0:
		return invalidf("region %d: start key %x is not below end key %x", r.Id, r.StartKey, r.EndKey)
	}
	seenPeer := make(map[uint64]bool, len(r.Peers))
	seenStore := make(map[uint64]bool, len(r.Peers))
	for _, p := range r.Peers {
		if p == nil || p.Id == 0 || p.StoreId == 0 {
			return invalidf("region %d has a peer without id or store id", r.Id)
		}
		if seenPeer[p.Id] || seenStore[p.StoreId] {
			return invalidf("region %d has two peers with id %d or on store %d", r.Id, p.Id, p.StoreId)
		}
		seenPeer[p.Id], seenStore[p.StoreId] = true, true
	}
	return nil
}

func cloneStore(s *metapb.Store) *metapb.Store {
	cp := *s
	return &cp
}

// StoreLoad is what scheduling needs to know of a store, cheap to compute.
type StoreLoad struct {
	Store       *StoreInfo
	RegionCount int
	LeaderCount int
	// Down: no heartbeat for longer than max_store_down_time.
	Down bool
}

// Schedulable reports whether new peers may be placed on the store: it is
// Up, not down, and not busy.
func (l StoreLoad) Schedulable() bool {
	return l.Store.State() == metapb.StoreState_Up && !l.Down && !l.Store.Stats().GetIsBusy()
}

// StoreLoads returns every store's load by id, in O(stores).
func (c *Cluster) StoreLoads() map[uint64]StoreLoad {
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	maxDown := time.Duration(c.mu.config.MaxStoreDownTimeMs) * time.Millisecond
	res := make(map[uint64]StoreLoad, len(c.mu.stores))
	for id, s := range c.mu.stores {
		res[id] = StoreLoad{
			Store:       s,
			RegionCount: c.mu.regions.StoreRegionCount(id),
			LeaderCount: c.mu.regions.StoreLeaderCount(id),
			Down:        !s.IsTombstone() && s.DownTime(now, c.mu.loadedAt) > maxDown,
		}
	}
	return res
}
