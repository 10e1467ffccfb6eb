package cluster

import (
	"time"

	"github.com/regionkv/regionkv/proto/metapb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// StoreInfo is a store as the scheduler knows it. Like RegionInfo it is
// immutable once published.
type StoreInfo struct {
	meta          *metapb.Store
	stats         *schedulerpb.StoreStats // nil before the first heartbeat
	lastHeartbeat time.Time               // zero before the first heartbeat
}

// Meta returns the store's metadata. Callers must not modify it.
func (s *StoreInfo) Meta() *metapb.Store { return s.meta }

// ID returns the store id.
func (s *StoreInfo) ID() uint64 { return s.meta.GetId() }

// Address returns the store's gRPC address.
func (s *StoreInfo) Address() string { return s.meta.GetAddress() }

// State returns the store's lifecycle state.
func (s *StoreInfo) State() metapb.StoreState { return s.meta.GetState() }

// IsTombstone reports whether the store was removed for good.
func (s *StoreInfo) IsTombstone() bool { return s.meta.GetState() == metapb.StoreState_Tombstone }

// Stats returns the last reported stats, or nil.
func (s *StoreInfo) Stats() *schedulerpb.StoreStats { return s.stats }

// LastHeartbeat returns when the store last sent a heartbeat (zero if never).
func (s *StoreInfo) LastHeartbeat() time.Time { return s.lastHeartbeat }

// DownTime returns how long the store has been silent at now. A store that
// never sent a heartbeat since this scheduler started leading counts from
// since (the time the scheduler loaded it).
func (s *StoreInfo) DownTime(now, since time.Time) time.Duration {
	last := s.lastHeartbeat
	if last.IsZero() {
		last = since
	}
	if now.Before(last) {
		return 0
	}
	return now.Sub(last)
}
